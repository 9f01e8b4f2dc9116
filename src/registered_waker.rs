//! The waker a tokio timer or channel has taken, remembered by the future
//! that polled it: polled again by the same task, that future need not poll
//! the resource again, which will wake the task anyway. A connection's
//! futures are polled at every wake-up of the connection, and the repeated
//! polls were a measurable share of a request (docs/src/performance-history.md,
//! fixes 19 and 20). Used by `connection_timer` and `server::DrainWatch`.
//!
//! The one trap, and why this is a type: with the task's coop budget spent,
//! tokio's resources answer `Pending` without taking the waker (and have
//! the task polled again), so only a poll made with budget counts.

use std::task::{Context, Poll, Waker};

/// See the module documentation.
#[derive(Default)]
pub struct RegisteredWaker(Option<Waker>);

impl RegisteredWaker {
    /// Whether the resource holds a waker that wakes `cx`'s task.
    pub fn wakes(&self, cx: &Context<'_>) -> bool {
        self.0
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
    }

    /// Polls the resource with `poll`, and remembers `cx`'s waker when the
    /// resource took it: it answered `Pending` to a poll made with budget.
    pub fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let with_budget = tokio::task::coop::has_budget_remaining();
        let polled = poll(cx);
        if polled.is_pending() && with_budget {
            self.0 = Some(cx.waker().clone());
        }
        polled
    }

    /// The resource was re-armed: it holds no waker until polled again.
    pub fn forget(&mut self) {
        self.0 = None;
    }
}
