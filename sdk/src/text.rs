//! Text building for a filter's per-request path.
//!
//! `format!` goes through `core::fmt`'s dynamic dispatch and padding machinery, which
//! in wasm costs a few hundred nanoseconds per call: in a filter that runs on every
//! request, build keys and header values with `String::push_str` and these helpers.

/// Appends `n` in decimal.
///
/// ```
/// let mut key = String::from("req:");
/// weft_sdk::text::push_u64(&mut key, 1700000000);
/// assert_eq!(key, "req:1700000000");
/// ```
pub fn push_u64(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    s.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends `bytes` in lower-case hexadecimal.
///
/// ```
/// let mut s = String::new();
/// weft_sdk::text::push_hex(&mut s, &[0x00, 0xab, 0x7f]);
/// assert_eq!(s, "00ab7f");
/// ```
pub fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    s.reserve(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
}

/// `prefix` followed by `n` in decimal: `concat_u64("req:", 7)` is `"req:7"`.
pub fn concat_u64(prefix: &str, n: u64) -> String {
    let mut s = String::with_capacity(prefix.len() + 20);
    s.push_str(prefix);
    push_u64(&mut s, n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_like_format_does() {
        for n in [0, 7, 10, 99, 1000, 4_294_967_296, u64::MAX] {
            assert_eq!(concat_u64("x", n), format!("x{n}"));
        }
    }

    #[test]
    fn bytes_are_written_in_hex_like_format_does() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut s = String::new();
        push_hex(&mut s, &bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s, expected);
    }
}
