//! Views: what a filter declared it reads, handed over with each phase call.
//!
//! Each item is a `u32` length and that many bytes, or the length `0xffffffff` when the
//! item is absent (a header the message does not carry). The items come in the order
//! the filter declared them: the request's method, path, authority, client address and
//! attempt (those declared; the attempt as 4 bytes), then each declared header.

use alloc::vec::Vec;

/// The length that marks an absent item.
pub const ABSENT: u32 = u32::MAX;

/// Appends an item (`None`: absent).
#[inline]
pub fn push(out: &mut Vec<u8>, item: Option<&[u8]>) {
    match item {
        Some(bytes) => super::put_bytes(out, bytes),
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Item `i` of a view: `None` when the buffer has no such item (or is malformed),
/// `Some(None)` when the item is absent from the message.
pub fn item(buf: &[u8], i: usize) -> Option<Option<&[u8]>> {
    let mut c = super::Cursor { buf };
    for n in 0.. {
        let len = c.u32()?;
        let item = if len == ABSENT {
            None
        } else {
            Some(c.take(len as usize)?)
        };
        if n == i {
            return Some(item);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_back_as_written() {
        let mut buf = Vec::new();
        push(&mut buf, Some(b"GET"));
        push(&mut buf, None);
        push(&mut buf, Some(b""));
        push(&mut buf, Some(b"abc"));
        assert_eq!(item(&buf, 0), Some(Some(&b"GET"[..])));
        assert_eq!(item(&buf, 1), Some(None));
        assert_eq!(item(&buf, 2), Some(Some(&b""[..])));
        assert_eq!(item(&buf, 3), Some(Some(&b"abc"[..])));
        assert_eq!(item(&buf, 4), None);
        assert_eq!(item(&[3, 0, 0, 0, b'a'], 0), None, "short");
        assert_eq!(item(&[], 0), None);
    }
}
