//! W3C Trace Context: the `traceparent` header read from a request and written on each
//! upstream attempt (<https://www.w3.org/TR/trace-context/>). `tracestate` is passed
//! on as it came.

use http::HeaderValue;

/// The `traceparent` header's name.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The sampled bit of `trace-flags`.
pub const SAMPLED: u8 = 0x01;

/// What an incoming `traceparent` says: the trace, the caller's span and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// 128-bit trace id, never zero.
    pub trace_id: u128,
    /// The caller's span, never zero.
    pub span_id: u64,
    /// `trace-flags` (bit 0: sampled).
    pub flags: u8,
}

fn hex(bytes: &[u8]) -> Option<u128> {
    let mut v: u128 = 0;
    for &b in bytes {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            // Upper case is invalid in trace context.
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

/// Parses a `traceparent` value. Anything malformed (wrong lengths, upper-case hex,
/// all-zero ids, version `ff`, a version-00 value with trailing data) is `None`: the
/// proxy then starts a new trace, as the specification asks.
pub fn parse(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex(&value[0..2])? as u8;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    // A later version may append fields after another dash.
    if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    let trace_id = hex(&value[3..35])?;
    let span_id = hex(&value[36..52])? as u64;
    let flags = hex(&value[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags,
    })
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the low `out.len() / 2` bytes of `v` as lower-case hex digits filling `out`
/// (of even length, at most 32).
pub fn put_hex(out: &mut [u8], v: u128) {
    let bytes = v.to_be_bytes();
    let n = out.len() / 2;
    for (pair, b) in out.as_chunks_mut::<2>().0.iter_mut().zip(&bytes[16 - n..]) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The `traceparent` to send: version 00, the trace, the span that makes the call, and
/// the flags (only the sampled bit is kept).
pub fn traceparent(trace_id: u128, span_id: u64, flags: u8) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    put_hex(&mut buf[3..35], trace_id);
    put_hex(&mut buf[36..52], u128::from(span_id));
    put_hex(&mut buf[53..55], u128::from(flags & SAMPLED));
    HeaderValue::from_bytes(&buf).expect("hex digits and dashes are a valid header value")
}

/// A trace id as 32 lower-case hex digits.
pub fn trace_id_hex(trace_id: u128) -> String {
    let mut buf = [0u8; 32];
    put_hex(&mut buf, trace_id);
    String::from_utf8(buf.to_vec()).expect("hex digits")
}

/// A new random non-zero id.
pub fn new_trace_id() -> u128 {
    fastrand::u128(1..)
}

/// A new random non-zero span id.
pub fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specifications_example() {
        let p = parse(EXAMPLE).expect("valid");
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert_eq!(p.flags, 1);
    }

    #[test]
    fn refuses_what_the_specification_calls_invalid() {
        for bad in [
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // A later version may carry more fields.
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some());
    }

    #[test]
    fn writes_what_it_reads() {
        let p = parse(EXAMPLE).expect("valid");
        let v = traceparent(p.trace_id, p.span_id, p.flags);
        assert_eq!(v.as_bytes(), EXAMPLE);
        assert_eq!(
            traceparent(1, 2, 0x03).as_bytes(),
            b"00-00000000000000000000000000000001-0000000000000002-01"
        );
        assert_eq!(trace_id_hex(p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
