//! The pieces both sides share: how a body is framed, the chunked decoder and encoder,
//! keep-alive by version and `Connection`, and number formatting that does not
//! allocate.

use bytes::{Buf, Bytes, BytesMut};
use http::Version;

/// Largest message head accepted.
pub const MAX_HEAD: usize = 64 << 10;
/// Read buffer growth step.
pub const READ_CHUNK: usize = 16 << 10;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// What `Connection` values say, added up over the values read.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionSays {
    /// `close` was named.
    pub close: bool,
    /// `keep-alive` was named.
    pub keep_alive: bool,
}

impl ConnectionSays {
    /// Adds what one `Connection` value says; returns whether it named anything else
    /// (`upgrade`, or a header to drop with it).
    pub fn read(&mut self, value: &[u8]) -> bool {
        let mut others = false;
        for token in list_items(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                others = true;
            }
        }
        others
    }

    /// Whether the peer lets the connection be reused, by its version and this.
    pub fn reusable(&self, version: Version) -> bool {
        match version {
            Version::HTTP_10 => self.keep_alive,
            _ => !self.close,
        }
    }
}

/// A response's header lines as an HTTP/1.1 upstream sent them (`name: value\r\n`
/// each, in order), less what the proxy frames or consumes itself. Carried in the
/// response's extensions instead of a header map when nothing on the way back reads
/// the headers (no response-phase filter, an HTTP/1.1 client, no upgrade): the server
/// writes them as they are, with the proxy's own headers after them. Building a header
/// map from an upstream's head and writing it out again was a fifth of an unfiltered
/// request's user-space work.
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    /// The lines, each ending in CRLF.
    pub lines: Vec<u8>,
    /// Whether a `date` line is among them.
    pub dated: bool,
}

/// The items of a comma-separated header value (`Connection`, `Transfer-Encoding`),
/// spaces trimmed, empty ones skipped, as bytes: no UTF-8 check, no allocation.
pub fn list_items(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
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
    out.extend_from_slice(&digits[i..]);
}

/// Appends a chunk's size line (`{len:x}\r\n`).
pub fn push_chunk_size(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len as u64;
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a size line.
    Size,
    /// Inside a chunk, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk.
    DataEnd,
    /// Expecting trailers (or the final CRLF).
    Trailers,
}

/// What the chunk decoder produced.
pub enum ChunkOut {
    /// Body bytes.
    Data(Bytes),
    /// The last chunk and trailers were read.
    End,
}

/// Decodes what it can of a chunked body from `buf`. `Ok(None)`: more bytes needed.
pub fn decode_chunk(
    buf: &mut BytesMut,
    state: &mut Chunk,
) -> Result<Option<ChunkOut>, &'static str> {
    loop {
        match *state {
            Chunk::Size => {
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > 4096 {
                        Err("chunk size line too long")
                    } else {
                        Ok(None)
                    };
                };
                let line = &buf[..end];
                // RFC 9112 section 7.1: 1*HEXDIG, then extensions after `;` (whitespace
                // only before it). Anything looser (signs, leading space, bare CR or LF,
                // control bytes) is refused: a peer that read it differently would see a
                // different end of the body.
                if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    return Err("control character in a chunk size line");
                }
                let hex_end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
                let mut hex = &line[..hex_end];
                while let [rest @ .., b' ' | b'\t'] = hex {
                    hex = rest;
                }
                if hex.is_empty() || hex.len() > 16 || !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err("chunk size");
                }
                let text = std::str::from_utf8(hex).map_err(|_| "chunk size")?;
                let size = u64::from_str_radix(text, 16).map_err(|_| "chunk size")?;
                buf.advance(end + 2);
                *state = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(n).freeze();
                *state = if left == n as u64 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                };
                return Ok(Some(ChunkOut::Data(data)));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("missing CRLF after chunk");
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > MAX_HEAD {
                        Err("trailers too long")
                    } else {
                        Ok(None)
                    };
                };
                if buf[..end]
                    .iter()
                    .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                {
                    return Err("control character in a trailer");
                }
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(Some(ChunkOut::End));
                }
                // A trailer field: dropped (trailers are not forwarded).
            }
        }
    }
}

/// Where the first CRLF in `buf` starts.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, &'static str> {
        let mut buf = BytesMut::new();
        let mut state = Chunk::Size;
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(o) = decode_chunk(&mut buf, &mut state)? {
                match o {
                    ChunkOut::Data(d) => out.extend_from_slice(&d),
                    ChunkOut::End => return Ok(out),
                }
            }
        }
        Err("incomplete")
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(
                decode_all(wire, step).unwrap(),
                b"hello, world",
                "step {step}"
            );
        }
        assert!(decode_all(b"zz\r\n", 64).is_err());
        for loose in [
            &b"+5\r\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5;\nx\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nx-t: a\nb\r\n\r\n",
        ] {
            assert!(
                decode_all(loose, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(loose)
            );
        }
        assert_eq!(
            decode_all(b"5 ;x=1\r\nhello\r\n0\r\n\r\n", 64).unwrap(),
            b"hello"
        );
        assert!(decode_all(b"2\r\nabXX", 64).is_err());
    }

    #[test]
    fn numbers_are_written_without_allocating() {
        for n in [0u64, 7, 10, 24, 65_536, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for n in [0usize, 9, 10, 255, 65_536] {
            let mut out = Vec::new();
            push_chunk_size(&mut out, n);
            assert_eq!(out, format!("{n:x}\r\n").into_bytes());
        }
    }
}
