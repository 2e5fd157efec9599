//! Header names and values from a filter, checked before they reach a head: names must
//! be valid and not ones the proxy frames messages with, values what HTTP allows.
//!
//! These checks run on every header a filter sets, so both are kept cheap: an instance
//! remembers the few names it changes (a filter sets the same ones request after
//! request), and values are checked eight bytes at a time.

use http::header::{HeaderName, HeaderValue};

/// Headers the proxy manages itself (connection framing, and `host`, which is the
/// request's authority). Filters may read them but not change them, or the message
/// could no longer be framed (or routed) correctly.
pub const MANAGED: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A header name a filter may change, or why not.
pub fn name_for_change(name: &str) -> Result<HeaderName, String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    if MANAGED.contains(&n.as_str()) {
        return Err(format!(
            "header {n} is managed by the proxy and cannot be changed"
        ));
    }
    Ok(n)
}

/// Names an instance changed lately, already checked. Looked up by the exact text the
/// filter passed, so a hit costs a few comparisons instead of parsing (and, for a
/// custom header, allocating) the name again.
#[derive(Debug, Default)]
pub struct NameCache {
    names: Vec<HeaderName>,
    next: usize,
}

/// Names kept per instance.
const CACHED_NAMES: usize = 8;

impl NameCache {
    /// The checked name for `name`, from the cache or [`name_for_change`].
    pub fn for_change(&mut self, name: &str) -> Result<HeaderName, String> {
        if let Some(n) = self.names.iter().find(|n| n.as_str() == name) {
            return Ok(n.clone());
        }
        let n = name_for_change(name)?;
        if self.names.len() < CACHED_NAMES {
            self.names.push(n.clone());
        } else {
            self.names[self.next] = n.clone();
            self.next = (self.next + 1) % CACHED_NAMES;
        }
        Ok(n)
    }
}

/// Whether `b` may be in a header value: the rule `HeaderValue` applies (visible ASCII,
/// obs-text, spaces and tabs).
fn value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether every byte of `v` may be in a header value, eight at a time: a word with no
/// byte below 0x20 and no DEL passes at once; one with (a tab, say) is checked byte by
/// byte.
fn valid_value(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, rest) = v.as_chunks::<8>();
    for word in words {
        let x = u64::from_le_bytes(*word);
        // Some byte is below 0x20 (obs-text, at 0x80 and up, cannot set this).
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        // Some byte is 0x7f (zero after the xor).
        let y = x ^ (ONES * 0x7f);
        let del = y.wrapping_sub(ONES) & !y & HIGH;
        if control | del != 0 && !word.iter().all(|&b| value_byte(b)) {
            return false;
        }
    }
    rest.iter().all(|&b| value_byte(b))
}

/// A header value from bytes in a filter's answer, checked, then copied once.
pub fn value_from_slice(value: &[u8]) -> Result<HeaderValue, String> {
    if !valid_value(value) {
        return Err(format!(
            "invalid header value {:?}",
            String::from_utf8_lossy(value)
        ));
    }
    // SAFETY: each byte was checked against the rule `HeaderValue::from_bytes` applies.
    Ok(unsafe { HeaderValue::from_maybe_shared_unchecked(bytes::Bytes::copy_from_slice(value)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_http_checks_them() {
        for b in 0..=255u8 {
            let ours = value_byte(b);
            let http = HeaderValue::from_bytes(&[b'a', b, b'a']).is_ok();
            assert_eq!(ours, http, "byte {b:#x}");
            // At every position of a value long enough to take the word-wise path.
            for at in 0..19 {
                let mut v = vec![b'a'; 19];
                v[at] = b;
                assert_eq!(valid_value(&v), http, "byte {b:#x} at {at}");
            }
        }
        assert!(value_from_slice("ok\tvalue ÿ and some more words".as_bytes()).is_ok());
        assert!(value_from_slice(b"obs-text \xff\x80 passes").is_ok());
        assert!(value_from_slice("a tab\there, then a line\r\nbreak".as_bytes()).is_err());
    }

    #[test]
    fn cached_names_are_the_checked_ones() {
        let mut cache = NameCache::default();
        for _ in 0..2 {
            assert_eq!(cache.for_change("x-request-id").unwrap(), "x-request-id");
            assert!(cache.for_change("Transfer-Encoding").is_err());
        }
        // Mixed case is not the cached text: parsed again, and still the same name.
        assert_eq!(cache.for_change("X-Request-Id").unwrap(), "x-request-id");
        // More names than the cache holds: every one still right.
        for i in 0..3 * CACHED_NAMES {
            let name = format!("x-n{i}");
            assert_eq!(cache.for_change(&name).unwrap(), name.as_str());
        }
        assert!(cache.names.len() <= CACHED_NAMES);
    }
}
