//! The timer hyper's header-read timeout runs on in jessy-core: one tokio
//! timer per connection instead of one per request.
//!
//! Why: hyper starts the header-read timeout each time it waits for a
//! request head (that is also how it bounds an idle keep-alive connection)
//! and drops it once the head is parsed, so a keep-alive connection asks
//! its `Timer` for a new sleep at every request. With hyper-util's
//! `TokioTimer` each is a tokio `Sleep` put into the timer wheel and taken
//! out again: about 1,500 of the 22,600 instructions of a `/health` request
//! (callgrind, docs/src/performance.md). Here the sleeps of a connection
//! share one tokio `Sleep`. A sleep that is polled leaves it armed when it
//! will fire at or before its own deadline; when it fires early (it was armed
//! for an earlier request), the sleep polled then re-arms it. A request
//! costs an uncontended lock and the box hyper puts the sleep in (the tokio
//! timer is polled again only when re-armed or when the task's waker
//! changes); the wheel is touched about once per timeout period (the shared timer
//! stays in it after a head arrives, until it fires), and a connection is
//! woken at most once per period for nothing. The deadlines are hyper's own,
//! to Tokio's millisecond.
//!
//! One timer serves one connection: the shared tokio `Sleep` wakes only the
//! task that polled it last, so a timer shared by two connections could leave
//! one of them waiting past its deadline. Hence no `Clone`, and
//! `server::Hyper` builds its hyper `Builder` (which holds the timer) per
//! connection.
//!
//! The clock is Tokio's, as `TokioTimer`'s: paused time in tests moves it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::registered_waker::RegisteredWaker;

/// The one tokio timer of a connection, made at its first sleep's first
/// poll, and the waker it was last polled with.
type SharedSleep = Arc<Mutex<Armed>>;

#[derive(Default)]
struct Armed {
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The waker `timer`, as armed now, holds: a sleep polled by that task
    /// need not poll it.
    registered: RegisteredWaker,
}

/// A `hyper::rt::Timer` for one connection (make one per connection).
pub struct ConnectionTimer {
    shared: SharedSleep,
}

impl ConnectionTimer {
    #[allow(clippy::new_without_default)] // one per connection, made on purpose
    pub fn new() -> ConnectionTimer {
        ConnectionTimer {
            shared: Arc::default(),
        }
    }
}

/// Where `now + duration` overflows: as far as Tokio's own far future.
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = self.now();
        self.sleep_until(now.checked_add(duration).unwrap_or(now + FAR_FUTURE))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ConnectionSleep {
            deadline: tokio::time::Instant::from_std(deadline),
            shared: Arc::clone(&self.shared),
        })
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One sleep of a connection: ready once its deadline has passed.
struct ConnectionSleep {
    deadline: tokio::time::Instant,
    shared: SharedSleep,
}

impl Future for ConnectionSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let Armed { timer, registered } = &mut *shared;
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Armed for later than this deadline (deadlines only grow, but be
        // exact), or already fired for an earlier one: arm it for this one.
        // (A deadline already past fires at once, or at the driver's next
        // turn: no clock read here, as in tokio's own `Sleep`.)
        if timer.deadline() > deadline || timer.is_elapsed() {
            timer.as_mut().reset(deadline);
            registered.forget();
        }
        // Armed at or before this deadline, not fired, and it will wake this
        // task: nothing to do (the common case: every poll of a keep-alive
        // connection waiting for its next request).
        if registered.wakes(cx) {
            return Poll::Pending;
        }
        registered.poll(cx, |cx| match timer.as_mut().poll(cx) {
            // Fired for this deadline (Tokio rounds to its millisecond).
            Poll::Ready(()) if timer.deadline() >= deadline => Poll::Ready(()),
            // Fired for an earlier deadline between the check and the poll
            // (a race the paused-time tests cannot stage; `is_elapsed` above
            // takes every other case): arm it for this one; the poll
            // registers the waker.
            Poll::Ready(()) => {
                timer.as_mut().reset(deadline);
                timer.as_mut().poll(cx)
            }
            Poll::Pending => Poll::Pending,
        })
    }
}

impl hyper::rt::Sleep for ConnectionSleep {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::rt::Timer;

    use super::*;

    async fn finishes_within(sleep: Pin<Box<dyn hyper::rt::Sleep>>, limit: Duration) -> bool {
        tokio::time::timeout(limit, sleep).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_its_deadline_not_before() {
        let timer = ConnectionTimer::new();
        let start = tokio::time::Instant::now();
        assert!(
            !finishes_within(
                timer.sleep(Duration::from_secs(10)),
                Duration::from_millis(9_999)
            )
            .await
        );
        assert!(
            finishes_within(
                timer.sleep_until(start.into_std() + Duration::from_secs(10)),
                Duration::from_secs(1)
            )
            .await
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_sleep_re_arms_the_timer_an_earlier_one_left() {
        let timer = ConnectionTimer::new();
        let start = tokio::time::Instant::now();
        // The first request's sleep arms the shared timer for 10 s and is
        // dropped (its head arrived after 4 s).
        assert!(
            !finishes_within(timer.sleep(Duration::from_secs(10)), Duration::from_secs(4)).await
        );
        // The next wait starts at 4 s: its deadline is 14 s. The timer
        // fires at 10 s, and this sleep must not end then.
        let next = timer.sleep(Duration::from_secs(10));
        assert!(
            !finishes_within(next, Duration::from_secs(9)).await,
            "ended at the first deadline"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(13));
        let last = timer.sleep_until(start.into_std() + Duration::from_secs(14));
        assert!(finishes_within(last, Duration::from_secs(2)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_is_kept_when_the_timer_is_armed_later() {
        let timer = ConnectionTimer::new();
        let start = tokio::time::Instant::now();
        assert!(
            !finishes_within(timer.sleep(Duration::from_secs(30)), Duration::from_secs(1)).await
        );
        assert!(finishes_within(timer.sleep(Duration::from_secs(5)), Duration::from_secs(6)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    /// Polls `sleep` once with the task's coop budget spent.
    async fn poll_without_budget(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) {
        std::future::poll_fn(|cx| {
            crate::test_support::spend_coop_budget(cx);
            assert!(sleep.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_first_polled_without_budget_still_ends_at_its_deadline() {
        let timer = ConnectionTimer::new();
        let start = tokio::time::Instant::now();
        let mut sleep = timer.sleep(Duration::from_secs(5));
        poll_without_budget(&mut sleep).await;
        assert!(finishes_within(sleep, Duration::from_secs(6)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_re_armed_timer_polled_without_budget_still_fires() {
        let timer = ConnectionTimer::new();
        let start = tokio::time::Instant::now();
        // The timer fires for the first deadline (2 s) while nobody waits.
        let first = timer.sleep(Duration::from_secs(2));
        assert!(!finishes_within(first, Duration::from_secs(1)).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The next sleep re-arms it in a poll without budget.
        let mut next = timer.sleep(Duration::from_secs(5));
        poll_without_budget(&mut next).await;
        assert!(finishes_within(next, Duration::from_secs(6)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_duration_past_the_clock_s_end_sleeps_instead_of_panicking() {
        let timer = ConnectionTimer::new();
        assert!(!finishes_within(timer.sleep(Duration::MAX), Duration::from_secs(3600)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sleeps_of_other_connections_are_independent() {
        let (a, b) = (ConnectionTimer::new(), ConnectionTimer::new());
        let start = tokio::time::Instant::now();
        let long = a.sleep(Duration::from_secs(20));
        assert!(finishes_within(b.sleep(Duration::from_secs(2)), Duration::from_secs(3)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(finishes_within(long, Duration::from_secs(19)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }
}
