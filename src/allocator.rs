//! The allocator of the shipped binaries. Static musl builds (what the
//! images ship) use mimalloc: musl's malloc serialises every thread on one
//! lock, which cost the shipped jessy-core about a quarter of its `/health`
//! throughput (bench/README.md has the A/B). Other builds keep the system
//! allocator and build no C.
//!
//! A macro each binary invokes, not a `#[global_allocator]` of the library:
//! a test binary may then bring its own (tests/gateway_memory.rs counts
//! bytes with one).

/// Declares mimalloc as the global allocator on musl targets; nothing elsewhere.
#[macro_export]
macro_rules! shipped_allocator {
    () => {
        #[cfg(target_env = "musl")]
        #[global_allocator]
        static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
    };
}
