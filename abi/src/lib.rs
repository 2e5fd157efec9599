//! The two buffers of `weft:filter@0.3` phase calls, written and read by the SDK (in
//! the filter) and by the proxy (in the host), from this one implementation so that
//! they cannot drift apart.
//!
//! - A **view** ([`view`]) carries what a filter declared it reads (request parts and
//!   header values) into the call: one buffer, one allocation in the filter, however
//!   much it reads.
//! - An **answer** ([`answer`]) carries everything a phase call hands back: the
//!   decision (continue, respond, delay, route, retry; or continue, replace, respond
//!   for a body phase), the edits to the exchange, and the buffered metric updates.
//!   One buffer instead of typed lists, because every string or list in a typed answer
//!   costs an allocation and a free in the filter and a copy in the host: measured with
//!   callgrind, that was a third of a small filter's instructions per call. The common
//!   answer, "continue, nothing changed", is the empty buffer: nothing to allocate,
//!   copy or free.
//!
//! Both encodings are little-endian; a byte string is a `u32` length and its bytes.
//! `wit/types.wit` documents them for authors of SDKs in other languages.

#![deny(missing_docs)]
#![no_std]

extern crate alloc;

pub mod answer;
pub mod view;

/// Appends a `u32` length and the bytes.
#[inline]
fn put_bytes(out: &mut alloc::vec::Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over an encoded buffer; every read is bounds-checked and a short buffer
/// reads as `None`.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        core::str::from_utf8(self.bytes()?).ok()
    }
}
