//! One integration test binary (one link instead of one per file), in the
//! zero-to-production style: `helpers` spawns the services, the modules
//! speak HTTP to them.

mod core_api;
mod gateway;
mod gateway_wire;
mod h1_fuzz;
mod helpers;
mod lifecycle;
#[cfg(feature = "otel")]
mod tracing_otel;
