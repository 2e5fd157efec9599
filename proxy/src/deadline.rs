//! Deadlines from timers that are re-armed lazily and reused.
//!
//! A new `tokio::time::timeout` per request registers a timer with the worker's timer
//! wheel when first polled and takes it out again when dropped: two trips through the
//! driver's lock, and a clock read, for a timer that almost never fires. Resetting a
//! kept timer to each new deadline is cheaper but still not free. A [`Lazy`] timer is
//! only reset when the new deadline is earlier than the one it is set for; when it
//! fires before the deadline it now serves (a later one), it reads the clock and sets
//! itself again. With a fixed timeout, requests come and go without touching the timer,
//! and each timer fires early about once per timeout. Each worker keeps the timers its
//! requests finished with and hands them out again.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Timers kept per worker thread: more than the requests a worker has in flight at
/// once is never needed, and a spare costs only its wheel entry (and a wake-up of
/// nothing when its old deadline comes).
const KEEP: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<Lazy>> = const { RefCell::new(Vec::new()) };
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

/// A timer that fires at its deadline, re-arming itself when it went off earlier.
pub struct Lazy {
    sleep: Pin<Box<Sleep>>,
    want: Instant,
}

impl Lazy {
    /// A timer for `deadline`.
    pub fn new(deadline: Instant) -> Lazy {
        Lazy {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            want: deadline,
        }
    }

    /// Moves the deadline. Touches the timer wheel only when it moves earlier than the
    /// timer is set for.
    pub fn set(&mut self, deadline: Instant) {
        self.want = deadline;
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Ready at the deadline (never before).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            if Instant::now() >= self.want {
                return Poll::Ready(());
            }
            // Set for an earlier deadline than the one it now serves.
            self.sleep.as_mut().reset(self.want);
        }
    }
}

/// A [`Lazy`] timer borrowed from the worker's spares, returned to them when dropped.
struct Timer(Option<Lazy>);

impl Timer {
    fn until(deadline: Instant) -> Timer {
        let spare = SPARE.with(|s| s.borrow_mut().pop());
        let timer = match spare {
            Some(mut timer) => {
                timer.set(deadline);
                timer
            }
            None => Lazy::new(deadline),
        };
        Timer(Some(timer))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(timer) => timer.poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(timer) = self.0.take() {
            // During thread teardown the spares may already be gone: then it just drops.
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < KEEP {
                    s.push(timer);
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
