//! Jessy: two HTTP services built from one library.
//!
//! - [`core`]: `jessy-core`, the query service (navigation over 14 dimensions).
//! - [`gateway`]: `jessy-api`, the public gateway in front of the core.
//!
//! Everything both services share lives beside them, one idea per module:
//! `allocator` (the shipped binaries' allocator), [`config`] (flags and
//! environment), [`telemetry`] (logs and traces), [`metrics`] (the
//! Prometheus recorder, the one global), [`process`] (the
//! process's own resource usage), [`http`] (middleware and the JSON error
//! shape), [`h1`] (HTTP/1.1 on the wire, for the gateway's forwarding
//! path), [`server`] (the accept loop with graceful drain), [`workers`]
//! (thread-per-core runtimes the connections are served on), [`shutdown`]
//! (signals) and [`healthcheck`] (the image's health probe).

mod allocator;
pub mod config;
pub mod connection_timer;
pub mod core;
pub mod gateway;
pub mod h1;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod poll_again;
pub mod process;
pub mod registered_waker;
pub mod server;
pub mod shutdown;
pub mod small_copy;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod workers;

/// The crate version, reported by `/health`, `/status` and `jessy_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from, when the build knew it
/// (Nix passes `self.rev`; `scripts/build-binaries.sh` passes `git rev-parse`).
pub const GIT_REVISION: &str = match option_env!("JESSY_GIT_REVISION") {
    Some(rev) => rev,
    None => "unknown",
};
