//! Attempt deadlines from timers a worker reuses.
//!
//! A new `tokio::time::timeout` per request registers a timer with the worker's timer
//! wheel when first polled and takes it out again when dropped: two trips through the
//! driver's lock, and a clock read, for a timer that almost never fires. A timer kept
//! from an earlier request and reset to a later deadline is only marked as extended
//! (tokio moves it in the wheel once, when the old deadline comes), so each worker keeps
//! the timers its requests finished with and hands them out again.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Timers kept per worker thread: more than the requests a worker has in flight at
/// once is never needed, and a spare costs only its wheel entry.
const KEEP: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<Pin<Box<Sleep>>>> = const { RefCell::new(Vec::new()) };
}

/// Why [`within`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `fut` until `deadline`: its output, or [`Elapsed`] if the deadline came first.
/// (`Unpin`: a large future is boxed anyway, so that moving this one costs nothing.)
pub async fn within<F: Future + Unpin>(deadline: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let timer = Timer::until(deadline);
    Within { fut, timer }.await
}

/// A timer borrowed from the worker's spares, returned to them when dropped.
struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    fn until(deadline: Instant) -> Timer {
        let spare = SPARE.with(|s| s.borrow_mut().pop());
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Timer(Some(sleep))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(sleep) = self.0.take() {
            // During thread teardown the spares may already be gone: then it just drops.
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < KEEP {
                    s.push(sleep);
                }
            });
        }
    }
}

struct Within<F> {
    fut: F,
    timer: Timer,
}

impl<F: Future + Unpin> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The work first: an answer that is ready counts even at the deadline.
        if let Poll::Ready(v) = Pin::new(&mut this.fut).poll(cx) {
            return Poll::Ready(Ok(v));
        }
        this.timer.poll(cx).map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spares() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[tokio::test]
    async fn a_reused_timer_keeps_each_deadline() {
        let ms = Duration::from_millis;
        // Finishes first: the timer goes back to the spares, set for 10 s from now.
        let r = within(
            Instant::now() + Duration::from_secs(10),
            Box::pin(async { 7 }),
        )
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(spares(), 1);
        // The same timer, now set earlier than it was: it fires then, not at 10 s.
        let begun = Instant::now();
        let r = within(begun + ms(50), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        let took = begun.elapsed();
        assert!(took >= ms(50) && took < Duration::from_secs(5), "{took:?}");
        // Registered (polled while waiting) for 100 ms from now, back after 30 ms...
        let r = within(
            Instant::now() + ms(100),
            Box::pin(tokio::time::sleep(ms(30))),
        )
        .await;
        assert_eq!(r, Ok(()));
        // ...then set later than that (only marked as extended): work that ends after
        // the old deadline but before the new one is not cut off...
        let begun = Instant::now();
        let r = within(begun + ms(250), Box::pin(tokio::time::sleep(ms(150)))).await;
        assert_eq!(r, Ok(()));
        // ...and work that outlasts a deadline is cut off at it.
        let begun = Instant::now();
        let r = within(begun + ms(120), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        let took = begun.elapsed();
        assert!(took >= ms(120) && took < Duration::from_secs(5), "{took:?}");
        assert_eq!(spares(), 1, "one timer, reused throughout");
    }
}
