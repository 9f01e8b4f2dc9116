//! What idle client connections cost jessy-api, counted exactly: this test
//! binary's global allocator is the system one with a counter of live
//! bytes around it (test-only; the services' allocator is not touched), and
//! a gateway in this process holds a flood of connections that send
//! nothing until the header timeout cuts them.
//!
//! A connection that has sent nothing holds no read buffer (it is taken
//! when bytes arrive, as nginx takes its header buffer), and its task does
//! not carry the gateway's own router; once the flood is cut, every byte
//! it took is given back. Whether the process's RSS follows is the
//! allocator's policy (glibc keeps freed memory for reuse, musl returns
//! it): measured with the release builds, not asserted here.

#[path = "integration/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// Both ends of each connection are in this process: 600 descriptors, well
// under the common soft limit of 1,024.
const FLOOD: usize = 300;

/// Opens `n` connections that send nothing; returns once the gateway has
/// had time to accept them all.
async fn idle_flood(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    flood
}

/// Waits until the gateway has closed every connection of the flood, and
/// drops them.
async fn all_cut(flood: Vec<TcpStream>) {
    for mut stream in flood {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "cut by the header timeout"
        );
    }
    // Closed connections' tasks end on the gateway's threads: let them.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_hold_no_buffers_and_give_back_all_they_took() {
    let gw = helpers::spawn_gateway_with("http://127.0.0.1:9", |c| {
        c.common.header_read_timeout = Duration::from_secs(1);
        c.rate_limit_enabled = false;
        // The accepting runtime and one the connections are handed to.
        c.common.worker_threads =
            Some(jessy::config::WorkerThreads(std::num::NonZeroUsize::new(2)));
    })
    .await;
    // One served request, then one flood, so what is made once (per-thread
    // state, timer levels) is in the baseline.
    let mut warm = TcpStream::connect(gw.addr).await.unwrap();
    warm.write_all(b"GET /api/health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    warm.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    all_cut(idle_flood(gw.addr, FLOOD).await).await;

    let base = LIVE.load(Ordering::SeqCst);
    let flood = idle_flood(gw.addr, FLOOD).await;
    let open = LIVE.load(Ordering::SeqCst);
    all_cut(flood).await;
    let after = LIVE.load(Ordering::SeqCst);
    // Both ends of each connection are in this process: the client's
    // stream is counted too (a few hundred bytes).
    let each = (open - base) / FLOOD as isize;
    eprintln!("live bytes: base {base}, {FLOOD} idle open {open} ({each} each), after {after}");
    // An idle connection is a task, a socket and its timers: in a debug
    // build (larger futures) about 4 KiB, both ends counted; well under the
    // 8 KiB read buffer it used to hold from its first moment, on top of
    // the rest (16 KiB each before).
    assert!(
        each < 6 * 1024,
        "an idle connection holds {each} bytes; a read buffer alone was 8 KiB"
    );
    assert!(
        (after - base).abs() < 64 * 1024,
        "{} bytes not given back after the flood",
        after - base
    );
}
