//! What the unit tests of the task-level modules (`poll_again`, `server`,
//! `connection_timer`) share: a waker that counts, and a way to poll with
//! the task's coop budget spent.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};

/// A waker that counts its wakes.
#[derive(Default)]
pub struct WakeCounter(AtomicUsize);

impl WakeCounter {
    /// A new counter and a waker that counts into it.
    pub fn waker() -> (Arc<WakeCounter>, Waker) {
        let counter = Arc::new(WakeCounter::default());
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    pub fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Spends the current task's coop budget, inside the poll of `cx`'s task:
/// what tokio's timers and channels check before they take a waker.
pub fn spend_coop_budget(cx: &mut Context<'_>) {
    let mut spend = std::pin::pin!(async {
        loop {
            tokio::task::coop::consume_budget().await;
        }
    });
    assert!(spend.as_mut().poll(cx).is_pending());
    assert!(!tokio::task::coop::has_budget_remaining());
}
