//! A future polled again at once when it wakes itself during its poll.
//!
//! Why: hyper's HTTP/1 connection reads a request body only once the handler
//! asks for it, and that asking wakes the connection's own task from inside
//! its poll. Tokio then puts the task at the back of the worker's run queue,
//! so a request with a body went through the queue twice, and under load its
//! p99 was twice a GET's whatever the handler cost (README, "Performance").
//! Polled again right away, the connection reads the body and answers in the
//! same turn. Bounded, so a future that keeps waking itself (a cooperative
//! yield) still goes back to the queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Extra polls in one turn, at most.
const MAX_REPOLLS: usize = 4;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN_WHILE_POLLING: u8 = 2;

pin_project_lite::pin_project! {
    /// Wraps `F`; see the module docs.
    pub struct PollAgain<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        waker: Waker,
        // The outer waker `signal` holds, kept here too so that a poll with
        // the same waker (every poll, for a tokio task) takes no lock.
        outer: Option<Waker>,
    }
}

impl<F: Future> PollAgain<F> {
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            state: AtomicU8::new(IDLE),
            outer: Mutex::new(Waker::noop().clone()),
        });
        let waker = Waker::from(Arc::clone(&signal));
        PollAgain {
            inner,
            signal,
            waker,
            outer: None,
        }
    }
}

impl<F: Future> Future for PollAgain<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if !this.outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            this.signal.set_outer(cx.waker());
            *this.outer = Some(cx.waker().clone());
        }
        let mut inner_cx = Context::from_waker(this.waker);
        for _ in 0..=MAX_REPOLLS {
            this.signal.state.store(POLLING, Ordering::SeqCst);
            if let Poll::Ready(output) = this.inner.as_mut().poll(&mut inner_cx) {
                this.signal.state.store(IDLE, Ordering::SeqCst);
                return Poll::Ready(output);
            }
            // Not woken meanwhile: wakes from now on go to the runtime.
            if this
                .signal
                .state
                .compare_exchange(POLLING, IDLE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Poll::Pending;
            }
        }
        // Still waking itself: back to the run queue, as without the wrapper.
        this.signal.state.store(IDLE, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

struct Signal {
    state: AtomicU8,
    /// The waker of the task that polls the wrapper.
    outer: Mutex<Waker>,
}

impl Signal {
    fn set_outer(&self, waker: &Waker) {
        let mut outer = self.outer.lock().unwrap_or_else(PoisonError::into_inner);
        if !outer.will_wake(waker) {
            outer.clone_from(waker);
        }
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // During a poll the wrapper notices and polls again; otherwise the
        // task is woken as usual.
        let noted = self.state.compare_exchange(
            POLLING,
            WOKEN_WHILE_POLLING,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        if matches!(noted, Ok(_) | Err(WOKEN_WHILE_POLLING)) {
            return;
        }
        self.outer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::WakeCounter;

    /// Pending `pending_polls` times, waking itself from inside each of them.
    struct SelfWaking {
        pending_polls: usize,
        polls: usize,
    }

    impl Future for SelfWaking {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.pending_polls {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_once<F: Future>(future: Pin<&mut F>, task: &Arc<WakeCounter>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::clone(task));
        future.poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_self_wake_is_answered_by_polling_again_in_the_same_turn() {
        let task = Arc::new(WakeCounter::default());
        let future = std::pin::pin!(PollAgain::new(SelfWaking {
            pending_polls: 2,
            polls: 0
        }));
        assert_eq!(poll_once(future, &task), Poll::Ready(3));
        assert_eq!(task.wakes(), 0, "the task was not woken");
    }

    #[test]
    fn a_future_that_keeps_waking_itself_goes_back_to_the_queue() {
        let task = Arc::new(WakeCounter::default());
        let mut future = std::pin::pin!(PollAgain::new(SelfWaking {
            pending_polls: 100,
            polls: 0
        }));
        assert_eq!(poll_once(future.as_mut(), &task), Poll::Pending);
        assert_eq!(future.inner.polls, MAX_REPOLLS + 1);
        assert_eq!(task.wakes(), 1, "woken once, to run later");
    }

    #[test]
    fn a_wake_after_the_poll_wakes_the_task() {
        let task = Arc::new(WakeCounter::default());
        let mut future = std::pin::pin!(PollAgain::new(std::future::pending::<()>()));
        assert_eq!(poll_once(future.as_mut(), &task), Poll::Pending);
        assert_eq!(task.wakes(), 0);
        future.waker.wake_by_ref();
        assert_eq!(task.wakes(), 1);
    }
}
