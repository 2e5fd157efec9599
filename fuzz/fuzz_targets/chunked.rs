//! weft's chunked body decoder on arbitrary bytes: it never panics, and the data it
//! yields fed whole equals the data it yields fed in two pieces (a chunk split across
//! reads decodes the same).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_h1::{BodyDecoder, Decoded, Framing};

/// Decodes `pieces` in turn; the data, and whether it ended or failed.
fn run(pieces: &[&[u8]]) -> (Vec<u8>, Option<bool>) {
    let mut d = BodyDecoder::new(Framing::Chunked);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Decoded::Data(b)) => out.extend_from_slice(&b),
                Ok(Decoded::End) => return (out, Some(true)),
                Ok(Decoded::NeedMore) => break,
                Err(_) => return (out, Some(false)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (whole, w_end) = run(&[data]);
    let (split, s_end) = run(&[&data[..cut], &data[cut..]]);
    if w_end == Some(true) && s_end == Some(true) {
        assert_eq!(whole, split);
    }
    if w_end.is_none() && s_end.is_none() {
        assert_eq!(whole, split);
    }
    assert_eq!(w_end, s_end, "whole and split disagree on the end");
});
