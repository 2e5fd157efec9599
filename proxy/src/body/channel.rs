//! A body fed by a task, with backpressure: the task waits while the reader is behind.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

use super::BoxError;

/// The receiving end: a body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    done: bool,
    /// Data bytes still to come, when the sender knows its length (an HTTP/3 request's
    /// `content-length`): an HTTP/1.1 upstream then gets the length, not chunks.
    remaining: Option<u64>,
}

/// The sending end.
pub type BodySender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// A body and the sender that feeds it. At most `depth` frames wait between them.
pub fn channel(depth: usize) -> (BodySender, ChannelBody) {
    sized_channel(depth, None)
}

/// [`channel`] for a body of a known `length` (the sender must keep to it: send an
/// error rather than more or fewer bytes).
pub fn sized_channel(depth: usize, length: Option<u64>) -> (BodySender, ChannelBody) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (
        tx,
        ChannelBody {
            rx,
            done: false,
            remaining: length,
        },
    )
}

impl ChannelBody {
    pub(super) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(left), Some(d)) = (&mut this.remaining, frame.data_ref()) {
                    *left = left.saturating_sub(d.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    pub(super) fn size_hint(&self) -> http_body::SizeHint {
        match self.remaining {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.done
    }
}
