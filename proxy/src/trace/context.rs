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

/// The value of eight lower-case hex digits, or `None` if any is not one: all eight
/// checked and converted at once (the first digit is the most significant).
fn unhex8(digits: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let w = u64::from_be_bytes(digits);
    if w & HIGH != 0 {
        return None;
    }
    // For bytes below 0x80: the high bit of `x + (0x80 - lo)` is set when x >= lo, that
    // of `x + (0x7f - hi)` when x > hi; no byte carries into the next.
    let within = |lo: u64, hi: u64| (w + ONES * (0x80 - lo)) & !(w + ONES * (0x7f - hi)) & HIGH;
    // Upper case is invalid in trace context.
    if within(0x30, 0x39) | within(0x61, 0x66) != HIGH {
        return None;
    }
    // '0'..'9' are 0x30..0x39, 'a'..'f' 0x61..0x66: the low nibble, plus 9 for letters.
    let mut x = (w & 0x0f0f_0f0f_0f0f_0f0f) + ((w >> 6) & ONES) * 9;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    x = (x | (x >> 16)) & 0xffff_ffff;
    Some(x as u32)
}

/// The value of `N * 8` lower-case hex digits.
fn unhex<const N: usize>(digits: &[u8]) -> Option<u128> {
    let mut v: u128 = 0;
    for chunk in digits.as_chunks::<8>().0.iter().take(N) {
        v = (v << 32) | u128::from(unhex8(*chunk)?);
    }
    Some(v)
}

/// The value of two lower-case hex digits.
fn unhex2(d: &[u8]) -> Option<u8> {
    let one = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    Some(one(d[0])? << 4 | one(d[1])?)
}

/// Parses a `traceparent` value. Anything malformed (wrong lengths, upper-case hex,
/// all-zero ids, version `ff`, a version-00 value with trailing data) is `None`: the
/// proxy then starts a new trace, as the specification asks.
pub fn parse(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = unhex2(&value[0..2])?;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    // A later version may append fields after another dash.
    if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    let trace_id = unhex::<4>(&value[3..35])?;
    let span_id = unhex::<2>(&value[36..52])? as u64;
    let flags = unhex2(&value[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags,
    })
}

/// Eight lower-case hex digits of `v`, most significant first, as the bytes of a
/// big-endian `u64`: each nibble is spread into a byte, then turned into its digit
/// (`'0' + d`, or `'a' + d - 10`) in all eight bytes at once.
fn hex8(v: u32) -> [u8; 8] {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_be_bytes()
}

/// Writes the low `out.len() / 2` bytes of `v` as lower-case hex digits filling `out`
/// (of even length, at most 32).
pub fn put_hex(out: &mut [u8], v: u128) {
    let mut all = [0u8; 32];
    for (i, chunk) in all.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        *chunk = hex8((v >> (96 - 32 * i)) as u32);
    }
    let n = out.len();
    out.copy_from_slice(&all[32 - n..]);
}

/// The `traceparent` to send: version 00, the trace, the span that makes the call, and
/// the flags (only the sampled bit is kept).
pub fn traceparent(trace_id: u128, span_id: u64, flags: u8) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    put_hex(&mut buf[3..35], trace_id);
    buf[36..44].copy_from_slice(&hex8((span_id >> 32) as u32));
    buf[44..52].copy_from_slice(&hex8(span_id as u32));
    if flags & SAMPLED != 0 {
        buf[54] = b'1';
    }
    HeaderValue::from_bytes(&buf).expect("hex digits and dashes are a valid header value")
}

/// A trace id as 32 lower-case hex digits.
pub fn trace_id_hex(trace_id: u128) -> String {
    let mut buf = [0u8; 32];
    put_hex(&mut buf, trace_id);
    String::from_utf8(buf.to_vec()).expect("hex digits")
}

thread_local! {
    /// This thread's random state (wyrand); zero until first used.
    static RNG: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A random `u64` from this thread's generator: a few instructions, where `fastrand`'s
/// range handling costs a hundred for a `u128`. Seeded from `fastrand` on first use.
pub fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = fastrand::u64(1..);
        }
        s = s.wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    })
}

/// Whether a new trace is sampled at `ratio` (0 never, 1 always).
pub fn sample(ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    // `ratio` of the u64 range; 0 and below (and NaN, refused by the config) never.
    ratio > 0.0 && random_u64() < (ratio * 18_446_744_073_709_551_616.0) as u64
}

/// A new random non-zero id.
pub fn new_trace_id() -> u128 {
    loop {
        let id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        if id != 0 {
            return id;
        }
    }
}

/// A new random non-zero span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = random_u64();
        if id != 0 {
            return id;
        }
    }
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

    #[test]
    fn hex_matches_the_formatter() {
        let mut values = vec![0u128, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210];
        values.extend((0..1000).map(|_| new_trace_id()));
        for v in values {
            let mut buf = [0u8; 32];
            put_hex(&mut buf, v);
            assert_eq!(std::str::from_utf8(&buf).unwrap(), format!("{v:032x}"));
            let mut low = [0u8; 16];
            put_hex(&mut low, v);
            assert_eq!(
                std::str::from_utf8(&low).unwrap(),
                format!("{:016x}", v as u64)
            );
            let span = v as u64 | 1;
            let tp = traceparent(v | 1, span, 0);
            assert_eq!(
                tp.to_str().unwrap(),
                format!("00-{:032x}-{span:016x}-00", v | 1)
            );
        }
    }

    #[test]
    fn reads_every_digit_and_refuses_every_other_byte() {
        for b in 0..=255u8 {
            let valid = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            for pos in 0..8 {
                let mut d = *b"01234567";
                d[pos] = b;
                let expected = if valid {
                    u32::from_str_radix(std::str::from_utf8(&d).unwrap(), 16).ok()
                } else {
                    None
                };
                assert_eq!(unhex8(d), expected, "{d:?}");
            }
        }
        assert_eq!(unhex8(*b"deadbeef"), Some(0xdead_beef));
        assert_eq!(unhex8(*b"ffffffff"), Some(u32::MAX));
        for v in (0..1000).map(|_| new_trace_id()) {
            let text = format!("{v:032x}");
            assert_eq!(unhex::<4>(text.as_bytes()), Some(v));
        }
    }

    #[test]
    fn samples_at_the_ratio() {
        assert!((0..10_000).all(|_| !sample(0.0)));
        assert!((0..10_000).all(|_| sample(1.0)));
        // 100,000 draws at 25%: the standard deviation is 137, the bound 15 of them.
        let hits = (0..100_000).filter(|_| sample(0.25)).count();
        assert!((23_000..27_000).contains(&hits), "{hits}");
        let rare = (0..100_000).filter(|_| sample(0.01)).count();
        assert!((500..1_500).contains(&rare), "{rare}");
    }
}
