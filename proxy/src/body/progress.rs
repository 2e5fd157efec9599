//! A request body whose progress the exchange watches while it streams upstream: when
//! it ended (a route's timeout counts from there, as Envoy's does, so a slow upload is
//! not an upstream's timeout), when its last byte came (a stalled body is the client's
//! fault, 408), and whether it failed (a malformed or cut-off body is the client's
//! fault too, 400, and ends the exchange at once instead of waiting for the upstream).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{BoxError, ProxyBody};

/// What the exchange reads of a request body's progress.
pub struct Progress {
    base: Instant,
    /// Nanoseconds from `base` to the end of the body, plus one; 0 while it streams.
    done: AtomicU64,
    /// Nanoseconds from `base` to the last data the body gave.
    last: AtomicU64,
    failed: Mutex<Option<String>>,
    /// Woken when the body ends or fails.
    pub changed: Notify,
}

/// Where a body stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyState {
    /// Still streaming; its last data came at this instant.
    Streaming(Instant),
    /// Read to its end at this instant.
    Done(Instant),
    /// Failed: the client's body was malformed or cut off.
    Failed(String),
}

impl Progress {
    fn since(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    /// Where the body stands now.
    pub fn state(&self) -> BodyState {
        if let Some(why) = self.failed.lock().clone() {
            return BodyState::Failed(why);
        }
        match self.done.load(Ordering::Acquire) {
            0 => BodyState::Streaming(self.at(self.last.load(Ordering::Relaxed))),
            n => BodyState::Done(self.at(n - 1)),
        }
    }

    /// When the body was read to its end, if it was.
    pub fn done_at(&self) -> Option<Instant> {
        match self.done.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.at(n - 1)),
        }
    }

    /// Why the body failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    fn finish(&self) {
        if self.done.load(Ordering::Relaxed) == 0 {
            self.done
                .store(self.since(Instant::now()) + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }
}

/// A body reporting its [`Progress`].
pub struct ProgressBody {
    inner: ProxyBody,
    progress: Arc<Progress>,
}

impl ProgressBody {
    /// Wraps `inner`, which started arriving at `start`.
    pub fn wrap(inner: ProxyBody, start: Instant) -> (ProxyBody, Arc<Progress>) {
        let progress = Arc::new(Progress {
            base: start,
            done: AtomicU64::new(0),
            last: AtomicU64::new(0),
            failed: Mutex::new(None),
            changed: Notify::new(),
        });
        if inner.is_end_stream() {
            progress.finish();
        }
        let body = ProgressBody {
            inner,
            progress: progress.clone(),
        };
        (ProxyBody::Progress(Box::new(body)), progress)
    }

    pub(super) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let p = &this.progress;
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                p.last.store(p.since(Instant::now()), Ordering::Relaxed);
                if this.inner.is_end_stream() {
                    p.finish();
                }
            }
            Poll::Ready(None) => p.finish(),
            Poll::Ready(Some(Err(e))) => {
                *p.failed.lock() = Some(e.to_string());
                p.changed.notify_one();
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_end_and_a_failure_are_seen() {
        let (tx, rx) = crate::body::channel(4);
        let (mut body, progress) = ProgressBody::wrap(ProxyBody::Channel(rx), Instant::now());
        assert!(matches!(progress.state(), BodyState::Streaming(_)));
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        drop(tx);
        while body.frame().await.is_some() {}
        assert!(matches!(progress.state(), BodyState::Done(_)));
        assert!(progress.done_at().is_some());

        let (tx, rx) = crate::body::channel(4);
        let (mut body, progress) = ProgressBody::wrap(ProxyBody::Channel(rx), Instant::now());
        tx.send(Err("invalid chunk size".into())).await.unwrap();
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(
            progress.state(),
            BodyState::Failed("invalid chunk size".into())
        );

        let (body, progress) = ProgressBody::wrap(ProxyBody::full("x"), Instant::now());
        drop(body);
        assert!(progress.done_at().is_none(), "nothing read yet");
        assert_eq!(progress.failure(), None);
    }
}
