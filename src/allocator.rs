//! The process's allocator. Static musl builds (what the images ship) use
//! mimalloc: musl's malloc serialises every thread on one lock, which cost
//! the shipped jessy-core a quarter of its `/health` throughput (bench A/B in
//! bench/README.md). Other builds keep the system allocator.

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
