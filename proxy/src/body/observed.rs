//! A body whose end is observed: bytes are counted, and a callback learns how the body
//! ended (completely, with an error, or dropped early), once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyEnd {
    /// Data bytes that passed.
    pub bytes: u64,
    /// Whether it reached its end (false: an error or dropped before the end).
    pub completed: bool,
}

type OnEnd = Box<dyn FnOnce(BodyEnd) + Send>;

/// A body wrapped with an end callback.
pub struct ObservedBody {
    inner: ProxyBody,
    bytes: u64,
    on_end: Option<OnEnd>,
}

impl ObservedBody {
    /// Wraps `inner`; `on_end` runs once when it ends or is dropped.
    pub fn wrap(inner: ProxyBody, on_end: impl FnOnce(BodyEnd) + Send + 'static) -> ProxyBody {
        let mut body = ObservedBody {
            inner,
            bytes: 0,
            on_end: Some(Box::new(on_end)),
        };
        if body.inner.is_end_stream() {
            body.finish(true);
        }
        ProxyBody::Observed(Box::new(body))
    }

    fn finish(&mut self, completed: bool) {
        if let Some(f) = self.on_end.take() {
            f(BodyEnd {
                bytes: self.bytes,
                completed,
            });
        }
    }

    pub(super) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}
