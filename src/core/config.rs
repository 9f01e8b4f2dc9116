//! jessy-core's flags and environment variables.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{CommonConfig, parse_nonzero_duration, parse_size};
use crate::healthcheck::HealthcheckArgs;

/// `jessy-core [healthcheck]`
#[derive(Debug, clap::Parser)]
#[command(
    name = "jessy-core",
    version,
    about = "jessy-core: deterministic query navigation over 14 dimensions"
)]
pub struct CoreCli {
    #[command(subcommand)]
    pub command: Option<CoreCommand>,
    #[command(flatten)]
    pub config: CoreConfig,
}

#[derive(Debug, clap::Subcommand)]
pub enum CoreCommand {
    /// Probe this service's /health on 127.0.0.1:<JESSY_PORT>; exit 0 if healthy, 1 if not.
    Healthcheck(HealthcheckArgs),
}

/// Configuration of jessy-core.
#[derive(Debug, Clone, clap::Args)]
pub struct CoreConfig {
    /// Address to listen on: loopback unless told otherwise (the images
    /// set 0.0.0.0, which a container needs to be reachable).
    #[arg(long, env = "JESSY_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "JESSY_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Deadline for one request; slower requests get 503.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,

    /// Largest accepted request body (e.g. 64KiB, 1MiB).
    #[arg(long, env = "MAX_BODY_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_body_size: usize,

    #[command(flatten)]
    pub common: CommonConfig,
}

impl CoreConfig {
    /// Defaults with the given port on 127.0.0.1 (tests and examples).
    pub fn local(port: u16) -> CoreConfig {
        use clap::Parser;
        let mut cli = CoreCli::parse_from(["jessy-core"]);
        cli.config.host = IpAddr::from([127, 0, 0, 1]);
        cli.config.port = port;
        cli.config
    }
}
