//! Log lines batched per thread. Written one at a time, every line would
//! cost a `write(2)` (stdout is line-buffered). [`BatchedWriter`] instead
//! appends a line to a buffer of the thread that logged it, and writes the
//! buffer with one `write_all` when
//!
//! - the thread goes idle: [`flush_thread_logs`], Tokio's `on_thread_park`
//!   hook;
//! - it holds [`FLUSH_BYTES`], or its oldest line is [`FLUSH_AGE`] old
//!   (checked as a line is added), so a thread that is never idle still
//!   writes;
//! - the thread exits (the buffer's thread-local destructor);
//! - `main` ends: [`flush_logs_before_exit`] (the main thread's
//!   thread-locals may not be dropped at process exit: glibc drops them,
//!   musl, which the images use, does not).
//!
//! A thread batches from its first park on: it is a runtime thread, and it
//! will park again. Every other thread (`main` before its runtime parks,
//! blocking threads, tests) writes each line through at once.
//!
//! The analogue is nginx's `access_log … buffer=32k flush=100ms`, but a
//! batch is also written whenever its thread goes idle, so at low load a
//! line appears microseconds after the request; only a thread kept busy
//! holds lines back, and for at most `FLUSH_AGE` of logging. The costs:
//! lines of different threads interleave by batch rather than by line (each
//! thread's own stay in order; the timestamps give the true order), and a
//! process that dies abruptly (SIGKILL, abort, `process::exit`, a panic out
//! of `main`) may lose what its threads still hold.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// A batch this large is written without waiting for a park.
const FLUSH_BYTES: usize = 32 * 1024;

/// A batch whose oldest line is this old is written with the next line.
const FLUSH_AGE: Duration = Duration::from_millis(100);

/// A `MakeWriter` that batches lines per thread (see the module docs) and
/// writes the batches, and the lines of threads that do not batch, to
/// another `MakeWriter` (stdout).
pub struct BatchedWriter {
    sink: Arc<dyn Sink>,
}

impl BatchedWriter {
    pub fn new<M>(sink: M) -> BatchedWriter
    where
        M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        BatchedWriter {
            sink: Arc::new(sink),
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> EventWriter<'a> {
        EventWriter { sink: &self.sink }
    }
}

/// Takes one formatted line (tracing-subscriber writes each event with one
/// `write_all`) into the thread's batch, or through to the sink.
pub struct EventWriter<'a> {
    sink: &'a Arc<dyn Sink>,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let batched = BATCH
            .try_with(|batch| {
                // Not borrowable: a line logged while the batch is written.
                let Ok(mut batch) = batch.try_borrow_mut() else {
                    return false;
                };
                if batch.batching {
                    batch.push(self.sink, line, Instant::now());
                }
                batch.batching
            })
            // The thread is exiting and its batch is gone.
            .unwrap_or(false);
        if !batched {
            self.sink.write_lines(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes this thread's pending log lines, and makes the thread batch its
/// lines from now on. Meant for Tokio's `Builder::on_thread_park`: a
/// runtime thread writes its lines as it goes idle.
pub fn flush_thread_logs() {
    with_batch(|batch| {
        batch.batching = true;
        batch.flush();
    });
}

/// Writes this thread's pending log lines, and makes the thread write its
/// lines through from now on. Call at the end of `main`, whose runtime's
/// park hook may have made the main thread batch: its thread-locals may not
/// be dropped at exit, and what it still holds would be lost.
pub fn flush_logs_before_exit() {
    with_batch(|batch| {
        batch.batching = false;
        batch.flush();
    });
}

fn with_batch(f: impl FnOnce(&mut Batch)) {
    let _ = BATCH.try_with(|batch| {
        if let Ok(mut batch) = batch.try_borrow_mut() {
            f(&mut batch);
        }
    });
}

thread_local! {
    // Each thread's pending lines: an implementation detail of the writer,
    // seen by no other module, not one more global (the metrics recorder
    // stays the only one).
    static BATCH: RefCell<Batch> = const { RefCell::new(Batch::new()) };
}

/// Where lines end up: a `MakeWriter` with its type erased, so that the
/// park hook, which has no writer at hand, can write the batch.
trait Sink: Send + Sync {
    fn write_lines(&self, lines: &[u8]) -> io::Result<()>;
}

impl<M> Sink for M
where
    M: for<'a> MakeWriter<'a> + Send + Sync,
{
    fn write_lines(&self, lines: &[u8]) -> io::Result<()> {
        self.make_writer().write_all(lines)
    }
}

/// One thread's pending lines.
struct Batch {
    /// Whether this thread batches (see the module docs).
    batching: bool,
    lines: Vec<u8>,
    /// When the oldest pending line was added.
    oldest: Option<Instant>,
    /// Where `lines` go. One per process outside tests; a line for another
    /// sink first writes the batch to this one.
    sink: Option<Arc<dyn Sink>>,
}

impl Batch {
    const fn new() -> Batch {
        Batch {
            batching: false,
            lines: Vec::new(),
            oldest: None,
            sink: None,
        }
    }

    /// Adds `line` (for `sink`) at `now`, and writes the batch if it is
    /// full or old enough.
    fn push(&mut self, sink: &Arc<dyn Sink>, line: &[u8], now: Instant) {
        if !self.sink.as_ref().is_some_and(|s| Arc::ptr_eq(s, sink)) {
            self.flush();
            self.sink = Some(Arc::clone(sink));
        }
        let oldest = *self.oldest.get_or_insert(now);
        self.lines.extend_from_slice(line);
        if self.lines.len() >= FLUSH_BYTES || now.saturating_duration_since(oldest) >= FLUSH_AGE {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(sink) = &self.sink
            && !self.lines.is_empty()
        {
            // A batch that cannot be written (EPIPE: the log reader is
            // gone) is dropped: kept, it would grow without bound.
            let _ = sink.write_lines(&self.lines);
        }
        self.lines.clear();
        self.oldest = None;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::telemetry::tests::Captured;

    /// Runs `f` on a fresh thread, with a writer to `captured`.
    fn on_a_thread(captured: &Captured, f: impl FnOnce(&BatchedWriter) + Send + 'static) {
        let writer = BatchedWriter::new(captured.clone());
        thread::spawn(move || f(&writer)).join().unwrap();
    }

    fn log(writer: &BatchedWriter, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn a_thread_that_never_parked_writes_each_line_through() {
        let captured = Captured::default();
        let seen = captured.clone();
        on_a_thread(&captured, move |writer| {
            log(writer, "one\n");
            assert_eq!(seen.text(), "one\n");
        });
    }

    #[test]
    fn a_parked_thread_holds_its_lines_until_it_parks_again() {
        let captured = Captured::default();
        let seen = captured.clone();
        on_a_thread(&captured, move |writer| {
            flush_thread_logs();
            log(writer, "one\n");
            log(writer, "two\n");
            assert_eq!(seen.text(), "");
            flush_thread_logs();
            assert_eq!(seen.text(), "one\ntwo\n");
        });
    }

    #[test]
    fn a_full_batch_is_written_without_a_park() {
        let captured = Captured::default();
        let seen = captured.clone();
        on_a_thread(&captured, move |writer| {
            flush_thread_logs();
            let line = format!("{}\n", "x".repeat(1023));
            for _ in 1..FLUSH_BYTES / line.len() {
                log(writer, &line);
            }
            assert_eq!(seen.text(), "");
            log(writer, &line);
            assert_eq!(seen.text().len(), FLUSH_BYTES);
        });
    }

    #[test]
    fn an_old_batch_is_written_with_the_next_line() {
        let captured = Captured::default();
        let sink: Arc<dyn Sink> = Arc::new(captured.clone());
        let mut batch = Batch::new();
        let start = Instant::now();
        batch.push(&sink, b"one\n", start);
        batch.push(
            &sink,
            b"two\n",
            start + FLUSH_AGE - Duration::from_millis(1),
        );
        assert_eq!(captured.text(), "");
        batch.push(&sink, b"three\n", start + FLUSH_AGE);
        assert_eq!(captured.text(), "one\ntwo\nthree\n");
        // The age counts from the oldest line of the next batch.
        batch.push(
            &sink,
            b"four\n",
            start + 2 * FLUSH_AGE - Duration::from_millis(1),
        );
        batch.push(&sink, b"five\n", start + 2 * FLUSH_AGE);
        assert_eq!(captured.text(), "one\ntwo\nthree\n");
    }

    #[test]
    fn pending_lines_are_written_when_the_thread_exits() {
        let captured = Captured::default();
        on_a_thread(&captured, |writer| {
            flush_thread_logs();
            log(writer, "last words\n");
        });
        assert_eq!(captured.text(), "last words\n");
    }

    #[test]
    fn after_the_exit_flush_lines_are_written_through() {
        let captured = Captured::default();
        let seen = captured.clone();
        on_a_thread(&captured, move |writer| {
            flush_thread_logs();
            log(writer, "pending\n");
            flush_logs_before_exit();
            assert_eq!(seen.text(), "pending\n");
            log(writer, "after\n");
            assert_eq!(seen.text(), "pending\nafter\n");
        });
    }

    #[test]
    fn a_batch_that_cannot_be_written_is_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let broken: Arc<dyn Sink> = Arc::new(|| Broken);
        let captured = Captured::default();
        let working: Arc<dyn Sink> = Arc::new(captured.clone());
        let mut batch = Batch::new();
        let now = Instant::now();
        batch.push(&broken, b"lost\n", now);
        batch.flush();
        assert!(batch.lines.is_empty());
        batch.push(&working, b"kept\n", now);
        batch.flush();
        assert_eq!(captured.text(), "kept\n");
    }

    #[test]
    fn lines_for_another_sink_write_the_batch_first() {
        let (first, second) = (Captured::default(), Captured::default());
        let first_sink: Arc<dyn Sink> = Arc::new(first.clone());
        let second_sink: Arc<dyn Sink> = Arc::new(second.clone());
        let mut batch = Batch::new();
        let now = Instant::now();
        batch.push(&first_sink, b"one\n", now);
        batch.push(&second_sink, b"two\n", now);
        assert_eq!(first.text(), "one\n");
        batch.flush();
        assert_eq!(second.text(), "two\n");
    }
}
