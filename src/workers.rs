//! Thread-per-core serving, as jessy-api uses it: the runtime that accepts
//! plus `count - 1` more single-threaded Tokio runtimes, one OS thread each.
//! Every accepted connection is handed, round-robin, to one of them and lives
//! there: its requests, their handlers and the gateway's pooled connections
//! to the core all run on that one thread.
//!
//! Why: with Tokio's work-stealing runtime a forwarded request and the
//! pooled core connection it rides on ran as two tasks that the workers kept
//! passing between threads. On one thread each, the gateway spent less CPU
//! per request (README, "Performance"). This is the nginx model: independent
//! workers, no shared run queue. jessy-core does not use it: its requests are
//! self-contained, and there stealing measured faster (`count` is then 1).

use std::future::Future;
use std::num::NonZeroUsize;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The serving runtimes. Dropping it stops the extra runtimes; tasks still on
/// them are dropped (the drain has ended or timed out by then).
pub struct Workers {
    /// Runtimes besides the current one; connection `n` goes to the current
    /// runtime when `n % count == 0`, else to `extra[n % count - 1]`.
    extra: Vec<Worker>,
    next: usize,
}

struct Worker {
    handle: Handle,
    // Dropped with the worker: its thread's `block_on` returns.
    _stop: oneshot::Sender<()>,
}

impl Workers {
    /// Starts `count - 1` runtimes beside the current one. A thread that
    /// cannot be started is logged and left out: fewer workers still serve.
    pub fn start(count: NonZeroUsize) -> Workers {
        let extra = (1..count.get())
            .filter_map(|index| match Worker::start(index) {
                Ok(worker) => Some(worker),
                Err(err) => {
                    tracing::error!(error = %err, index, "cannot start a worker thread; serving with fewer");
                    None
                }
            })
            .collect();
        Workers { extra, next: 0 }
    }

    /// How many runtimes serve connections, the current one included.
    pub fn count(&self) -> usize {
        self.extra.len() + 1
    }

    /// Runs `task` on the next runtime in turn.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.next_extra() {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Serves `stream` with `serve` on the next runtime in turn. A stream
    /// is registered with the reactor of the runtime that accepted it, so one
    /// that moves is re-registered with its worker's (two syscalls, once per
    /// connection); one that stays here is not touched.
    pub fn spawn_connection<S, F>(&mut self, stream: TcpStream, serve: S)
    where
        S: FnOnce(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(handle) = self.next_extra() else {
            drop(tokio::spawn(serve(stream)));
            return;
        };
        match stream.into_std() {
            Ok(stream) => drop(handle.spawn(async move {
                match TcpStream::from_std(stream) {
                    Ok(stream) => serve(stream).await,
                    Err(err) => tracing::debug!(error = %err, "worker cannot take the connection"),
                }
            })),
            Err(err) => tracing::debug!(error = %err, "cannot hand the connection to a worker"),
        }
    }

    /// The runtime whose turn it is; `None` for the current one.
    fn next_extra(&mut self) -> Option<&Handle> {
        let turn = self.next % self.count();
        self.next = self.next.wrapping_add(1);
        turn.checked_sub(1)
            .and_then(|i| self.extra.get(i).map(|w| &w.handle))
    }
}

impl Worker {
    fn start(index: usize) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .on_thread_park(crate::telemetry::flush_thread_logs)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("jessy-worker-{index}"))
            .spawn(move || {
                // Returns when the sender is dropped; the runtime then drops
                // whatever is left on it.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Worker {
            handle,
            _stop: stop,
        })
    }
}

/// The default worker count: the CPUs this process may run on (affinity and
/// cgroup quota included, as `std` reads them), at least 1.
pub fn default_count() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn connections_are_spread_round_robin_over_distinct_threads() {
        let mut workers = Workers::start(NonZeroUsize::new(3).unwrap());
        assert_eq!(workers.count(), 3);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..6 {
            let (seen, done) = (seen.clone(), done.clone());
            workers.spawn(async move {
                seen.lock().unwrap().push(std::thread::current().id());
                done.send(()).unwrap();
            });
        }
        for _ in 0..6 {
            finished.recv().await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        let threads: HashSet<_> = seen.iter().collect();
        assert_eq!(threads.len(), 3, "three runtimes, three threads: {seen:?}");
        let on_current = seen
            .iter()
            .filter(|id| **id == std::thread::current().id())
            .count();
        assert_eq!(on_current, 2, "every third connection stays here");
    }

    #[tokio::test]
    async fn dropping_the_workers_stops_their_threads() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap());
        let handle = workers.extra[0].handle.clone();
        drop(workers);
        // The runtime shuts down once its thread's block_on returns.
        let mut stopped = false;
        for _ in 0..200 {
            if handle.spawn(async {}).await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(stopped, "the worker runtime kept running after drop");
    }
}
