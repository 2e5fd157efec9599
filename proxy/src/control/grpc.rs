//! gRPC message framing (a flag byte, a 4-byte big-endian length, the message) with
//! JSON messages, and a body fed from a channel, for the control stream's two
//! directions.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

/// The content type of the stream.
pub const CONTENT_TYPE: &str = "application/grpc+json";

/// Largest message accepted (a manifest with its configuration).
pub const MAX_MESSAGE: usize = 16 << 20;

/// One message, framed.
pub fn encode<T: Serialize>(msg: &T) -> Bytes {
    let json = serde_json::to_vec(msg).expect("control messages serialize");
    let mut out = BytesMut::with_capacity(5 + json.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.freeze()
}

/// Collects bytes and yields whole messages.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if there is one.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err("compressed messages are not supported".into());
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(format!(
                "message of {len} bytes is over the {MAX_MESSAGE} limit"
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let msg = self.buf.split_to(len);
        serde_json::from_slice(&msg)
            .map(Some)
            .map_err(|e| format!("bad message: {e}"))
    }
}

/// A body whose data comes from a channel; it ends when every sender is gone.
pub struct StreamBody {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl StreamBody {
    /// A body and the sender that feeds it.
    pub fn new() -> (mpsc::UnboundedSender<Bytes>, StreamBody) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, StreamBody { rx })
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_any_split() {
        let a = encode(&serde_json::json!({"n": 1}));
        let b = encode(&serde_json::json!({"n": 2, "s": "x".repeat(300)}));
        let all: Vec<u8> = [a.as_ref(), b.as_ref()].concat();
        for cut in 0..all.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in [&all[..cut], &all[cut..]] {
                d.push(part);
                while let Some(v) = d.next_message::<serde_json::Value>().unwrap() {
                    got.push(v["n"].as_u64().unwrap());
                }
            }
            assert_eq!(got, [1, 2], "cut at {cut}");
        }
    }
}
