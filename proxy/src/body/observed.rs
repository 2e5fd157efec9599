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

/// What the body enum needs of an observed body, whatever its callback's type (one
/// allocation holds the body and its callback together).
pub trait Observe: Send + Unpin {
    /// Polls the inner body, counting and watching for its end.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>;
    /// Whether the inner body is at its end.
    fn is_end_stream(&self) -> bool;
    /// The inner body's size hint.
    fn size_hint(&self) -> SizeHint;
}

/// A body wrapped with an end callback.
pub struct ObservedBody<F: FnOnce(BodyEnd) + Send + Unpin> {
    inner: ProxyBody,
    bytes: u64,
    on_end: Option<F>,
}

impl ObservedBody<fn(BodyEnd)> {
    /// Wraps `inner`; `on_end` runs once when it ends or is dropped.
    pub fn wrap<F: FnOnce(BodyEnd) + Send + Unpin + 'static>(
        inner: ProxyBody,
        on_end: F,
    ) -> ProxyBody {
        let mut body = ObservedBody {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        };
        if body.inner.is_end_stream() {
            body.finish(true);
        }
        ProxyBody::Observed(Box::new(body))
    }
}

impl<F: FnOnce(BodyEnd) + Send + Unpin> ObservedBody<F> {
    fn finish(&mut self, completed: bool) {
        if let Some(f) = self.on_end.take() {
            f(BodyEnd {
                bytes: self.bytes,
                completed,
            });
        }
    }
}

impl<F: FnOnce(BodyEnd) + Send + Unpin> Observe for ObservedBody<F> {
    fn poll_frame(
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

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(BodyEnd) + Send + Unpin> Drop for ObservedBody<F> {
    fn drop(&mut self) {
        self.finish(false);
    }
}
