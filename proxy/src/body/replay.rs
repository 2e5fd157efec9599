//! Request bodies that can be sent again on retry: recorded while they stream to the
//! first attempt, up to a limit a filter set.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

use super::{BoxError, ProxyBody};

struct State {
    source: Option<ProxyBody>,
    recorded: Vec<Bytes>,
    recorded_len: u64,
    limit: u64,
    /// Some data was read from the source.
    started: bool,
    /// The source reached its end.
    complete: bool,
    /// The body outgrew the limit; what was recorded is gone.
    overflow: bool,
}

/// Hands out a body for each attempt of a request.
#[derive(Clone)]
pub struct ReplaySource(Arc<Mutex<State>>);

/// The body of one attempt, reading the original and recording it.
pub struct ReplayBody {
    state: Arc<Mutex<State>>,
    hint: SizeHint,
}

impl ReplaySource {
    /// Wraps a request body, keeping up to `limit` bytes of it.
    pub fn new(source: ProxyBody, limit: u64) -> ReplaySource {
        ReplaySource(Arc::new(Mutex::new(State {
            complete: source.is_end_stream(),
            source: Some(source),
            recorded: Vec::new(),
            recorded_len: 0,
            limit,
            started: false,
            overflow: false,
        })))
    }

    /// Whether another attempt can be sent: the body has not been read yet, or it was
    /// read to its end within the limit.
    pub fn replayable(&self) -> bool {
        let s = self.0.lock();
        !s.overflow && (!s.started || s.complete)
    }

    /// The body for the next attempt, if it can be sent again.
    pub fn body(&self) -> Option<ProxyBody> {
        let s = self.0.lock();
        if s.overflow || (s.started && !s.complete) {
            return None;
        }
        if s.started || s.complete {
            // Read to its end: replay what was recorded.
            let mut all = BytesMut::with_capacity(s.recorded_len as usize);
            for chunk in &s.recorded {
                all.extend_from_slice(chunk);
            }
            return Some(ProxyBody::full(all.freeze()));
        }
        let hint = s.source.as_ref().map(Body::size_hint).unwrap_or_default();
        Some(ProxyBody::Replay(ReplayBody {
            state: self.0.clone(),
            hint,
        }))
    }
}

impl ReplayBody {
    pub(super) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut s = self.state.lock();
        let Some(source) = s.source.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(source).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                s.started = true;
                if let Some(data) = frame.data_ref() {
                    if !s.overflow {
                        s.recorded_len += data.len() as u64;
                        if s.recorded_len > s.limit {
                            s.overflow = true;
                            s.recorded = Vec::new();
                        } else {
                            s.recorded.push(data.clone());
                        }
                    }
                }
                if s.source.as_ref().is_some_and(Body::is_end_stream) {
                    s.complete = true;
                }
            }
            Poll::Ready(None) => {
                s.started = true;
                s.complete = true;
            }
            Poll::Ready(Some(Err(_))) => {
                s.started = true;
                s.overflow = true;
            }
            Poll::Pending => {}
        }
        polled
    }

    pub(super) fn is_end_stream(&self) -> bool {
        let s = self.state.lock();
        s.complete || s.source.as_ref().is_none_or(Body::is_end_stream)
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(b: ProxyBody) -> Bytes {
        b.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_body_read_within_the_limit_replays() {
        let src = ReplaySource::new(ProxyBody::full("hello"), 10);
        assert_eq!(collect(src.body().unwrap()).await, "hello");
        assert!(src.replayable());
        assert_eq!(collect(src.body().unwrap()).await, "hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_does_not_replay() {
        let src = ReplaySource::new(ProxyBody::full("hello world"), 4);
        assert_eq!(
            collect(src.body().unwrap()).await,
            "hello world",
            "the first attempt gets it all"
        );
        assert!(!src.replayable());
        assert!(src.body().is_none());
    }

    #[tokio::test]
    async fn an_unread_body_can_still_be_sent() {
        let src = ReplaySource::new(ProxyBody::full("abc"), 0);
        let first = src.body().unwrap();
        drop(first); // e.g. the connection failed before sending
        assert!(src.replayable());
        assert_eq!(collect(src.body().unwrap()).await, "abc");
    }
}
