//! Reading a message body off a connection's buffer, as its framing says: the one
//! decoder behind both the client's request bodies and the upstreams' response bodies.

use bytes::{Bytes, BytesMut};

use crate::wire::{decode_chunk, Chunk, ChunkOut, Framing};

/// What [`BodyDecoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body is complete; the buffer holds whatever follows it.
    End,
    /// More bytes must be read first.
    NeedMore,
}

/// Why a body could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The chunked coding is malformed (the reason says where).
    InvalidChunk(&'static str),
    /// The connection ended before the body did.
    Truncated,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::InvalidChunk(why) => write!(f, "invalid chunked body: {why}"),
            BodyError::Truncated => f.write_str("the connection closed mid-body"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A body's decoding state: how it is framed and how far it got.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    done: bool,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing` (an `Empty` body is done at once).
    pub fn new(framing: Framing) -> BodyDecoder {
        BodyDecoder {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size,
            done: framing == Framing::Empty || framing == Framing::Length(0),
        }
    }

    /// How the body is framed.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the whole body was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The body's length still to come, when its framing states it.
    pub fn exact_remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(_) => Some(self.remaining),
            Framing::Chunked | Framing::Close => None,
        }
    }

    /// Takes what it can of the body from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        if self.done {
            return Ok(Decoded::End);
        }
        match self.framing {
            Framing::Empty => {
                self.done = true;
                Ok(Decoded::End)
            }
            Framing::Length(_) if self.remaining == 0 => {
                self.done = true;
                Ok(Decoded::End)
            }
            Framing::Length(_) if !buf.is_empty() => {
                let n = (buf.len() as u64).min(self.remaining) as usize;
                self.remaining -= n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            Framing::Close if !buf.is_empty() => Ok(Decoded::Data(buf.split().freeze())),
            Framing::Chunked if !buf.is_empty() => match decode_chunk(buf, &mut self.chunk) {
                Ok(Some(ChunkOut::Data(d))) => Ok(Decoded::Data(d)),
                Ok(Some(ChunkOut::End)) => {
                    self.done = true;
                    Ok(Decoded::End)
                }
                Ok(None) => Ok(Decoded::NeedMore),
                Err(why) => Err(BodyError::InvalidChunk(why)),
            },
            _ => Ok(Decoded::NeedMore),
        }
    }

    /// The connection reached its end (a read of 0 bytes): the end of a body framed by
    /// the connection's close, a truncated body otherwise.
    pub fn at_eof(&mut self) -> Result<(), BodyError> {
        if self.done || self.framing == Framing::Close {
            self.done = true;
            return Ok(());
        }
        Err(BodyError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        framing: Framing,
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut d = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pieces = wire.chunks(step);
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => out.extend_from_slice(&b),
                Decoded::End => return Ok((out, buf.to_vec())),
                Decoded::NeedMore => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => {
                        d.at_eof()?;
                        return Ok((out, buf.to_vec()));
                    }
                },
            }
        }
    }

    #[test]
    fn every_framing_reads_to_its_end_and_leaves_what_follows() {
        for step in [1, 3, 64] {
            assert_eq!(
                read_all(Framing::Length(5), b"helloGET", step).unwrap().0,
                b"hello"
            );
            let (body, rest) =
                read_all(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\nNEXT", step).unwrap();
            assert_eq!(body, b"abc");
            assert!(b"NEXT".starts_with(&rest), "{rest:?}");
            assert_eq!(
                read_all(Framing::Close, b"all of it", step).unwrap().0,
                b"all of it"
            );
            assert_eq!(read_all(Framing::Empty, b"x", step).unwrap().0, b"");
        }
    }

    #[test]
    fn short_and_malformed_bodies_are_errors() {
        assert_eq!(
            read_all(Framing::Length(9), b"short", 2),
            Err(BodyError::Truncated)
        );
        assert_eq!(
            read_all(Framing::Chunked, b"3\r\nab", 2),
            Err(BodyError::Truncated)
        );
        assert!(matches!(
            read_all(Framing::Chunked, b"zz\r\n", 2),
            Err(BodyError::InvalidChunk(_))
        ));
        assert!(matches!(
            read_all(Framing::Chunked, b"2\r\nabc\r\n", 8),
            Err(BodyError::InvalidChunk(_))
        ));
    }
}
