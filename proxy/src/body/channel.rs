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
}

/// The sending end.
pub type BodySender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// A body and the sender that feeds it. At most `depth` frames wait between them.
pub fn channel(depth: usize) -> (BodySender, ChannelBody) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (tx, ChannelBody { rx, done: false })
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
            other => other,
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.done
    }
}
