//! jessy-api's flags and environment variables.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderValue, Uri, uri::Authority};

use crate::config::{
    CommonConfig, IpNet, List, parse_duration, parse_list, parse_nonzero_duration, parse_size,
};
use crate::healthcheck::HealthcheckArgs;

/// `jessy-api [healthcheck]`
#[derive(Debug, clap::Parser)]
#[command(
    name = "jessy-api",
    version,
    about = "jessy-api: the public gateway in front of jessy-core"
)]
pub struct GatewayCli {
    #[command(subcommand)]
    pub command: Option<GatewayCommand>,
    #[command(flatten)]
    pub config: GatewayConfig,
}

#[derive(Debug, clap::Subcommand)]
pub enum GatewayCommand {
    /// Probe this gateway's /api/health on 127.0.0.1:<API_PORT>; exit 0 if healthy, 1 if not.
    Healthcheck(HealthcheckArgs),
}

/// Configuration of jessy-api.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    /// Address to listen on (loopback unless told otherwise; the images
    /// set 0.0.0.0).
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "API_PORT", default_value_t = 3000)]
    pub port: u16,

    /// Base URL of jessy-core (http://host:port, no path).
    #[arg(long, env = "RUST_SERVICE_URL", default_value = "http://127.0.0.1:8080", value_parser = parse_upstream_url)]
    pub upstream_url: UpstreamUrl,

    /// Deadline for connecting to jessy-core (then 502).
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_nonzero_duration)]
    pub upstream_connect_timeout: Duration,

    /// Longest wait on jessy-core once connected: for its response headers
    /// after the request was sent (then 504), and for each further piece of
    /// its answer, or for it to take more of the request (then the
    /// connection is closed).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub upstream_timeout: Duration,

    /// Longest wait for the next piece of a request body (then 408 and the
    /// connection is closed). Below jessy-core's REQUEST_TIMEOUT, so a
    /// stalled body is the gateway's to answer.
    #[arg(long, env = "CLIENT_BODY_TIMEOUT", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub client_body_timeout: Duration,

    /// Longest wait for the client to take the next piece of an answer
    /// (then the connection is closed).
    #[arg(long, env = "CLIENT_SEND_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub client_send_timeout: Duration,

    /// How often jessy-core's /ready is probed for /api/ready.
    #[arg(long, env = "UPSTREAM_PROBE_INTERVAL", default_value = "2s", value_parser = parse_nonzero_duration)]
    pub upstream_probe_interval: Duration,

    /// Per-client rate limiting on /api/v1/*.
    #[arg(long, env = "RATE_LIMIT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limit_enabled: bool,

    /// Requests a client may make per window (sustained rate).
    #[arg(long, env = "RATE_LIMIT_REQUESTS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_requests: u32,

    /// The window of RATE_LIMIT_REQUESTS (e.g. 1m, 10s).
    #[arg(long, env = "RATE_LIMIT_WINDOW", default_value = "1m", value_parser = parse_nonzero_duration)]
    pub rate_limit_window: Duration,

    /// Requests a client may make at once before the rate applies
    /// (unset or empty: RATE_LIMIT_REQUESTS).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value = "", value_parser = parse_burst)]
    pub rate_limit_burst: Burst,

    /// Proxies whose X-Forwarded-For is believed (comma-separated CIDRs).
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_list::<IpNet>)]
    pub trusted_proxies: List<IpNet>,

    /// Largest accepted request body (e.g. 64KiB; 413 beyond it). Keep it
    /// at or below jessy-core's MAX_BODY_SIZE (64KiB), so a body the core
    /// would refuse is refused here, before it is forwarded.
    #[arg(long, env = "MAX_BODY_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_body_size: usize,

    /// Requests served at once; beyond that, 503 with Retry-After.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,

    /// Origins allowed by CORS (comma-separated; default none).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "", value_parser = parse_list::<Origin>)]
    pub cors_allowed_origins: List<Origin>,

    /// How long an idle pooled connection to jessy-core is kept. Keep it
    /// below the core's `HEADER_READ_TIMEOUT` (10 s), after which the core
    /// closes an idle connection itself.
    #[arg(long, env = "UPSTREAM_POOL_IDLE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub upstream_pool_idle_timeout: Duration,

    #[command(flatten)]
    pub common: CommonConfig,
}

impl GatewayConfig {
    /// Defaults on 127.0.0.1 with the given port and upstream (tests).
    pub fn local(port: u16, upstream: &str) -> GatewayConfig {
        use clap::Parser;
        let mut cli = GatewayCli::parse_from(["jessy-api"]);
        cli.config.host = IpAddr::from([127, 0, 0, 1]);
        cli.config.port = port;
        cli.config.upstream_url = parse_upstream_url(upstream).expect("valid test upstream URL");
        cli.config
    }

    /// The burst, defaulting to the per-window request count.
    pub fn rate_limit_burst(&self) -> u32 {
        self.rate_limit_burst.0.unwrap_or(self.rate_limit_requests)
    }
}

/// RATE_LIMIT_BURST: a positive count, or empty for "same as the rate"
/// (compose passes `VAR=` for a variable left empty in `.env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst(pub Option<u32>);

fn parse_burst(s: &str) -> Result<Burst, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Burst(None));
    }
    match s.parse::<u32>() {
        Ok(0) => Err("the burst must be at least 1".to_owned()),
        Ok(n) => Ok(Burst(Some(n))),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// jessy-core's base URL: plain HTTP, an authority, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub authority: Authority,
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// Parses RUST_SERVICE_URL.
pub fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    let uri: Uri = s
        .trim()
        .parse()
        .map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{s}`: https upstreams are not supported; jessy-core is reached over plain HTTP inside the cluster"
            ));
        }
        Some(other) => return Err(format!("`{s}`: unsupported scheme `{other}`; use http://")),
        None => {
            return Err(format!(
                "`{s}` has no scheme; write e.g. http://jessy-core:8080"
            ));
        }
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{s}` must not have a path or query; the gateway maps paths itself"
        ));
    }
    Ok(UpstreamUrl { authority })
}

/// A CORS origin (`https://app.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(pub HeaderValue);

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|_| format!("`{s}` is not an origin"))?;
        let ok = matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.authority().is_some()
            && matches!(uri.path(), "" | "/");
        if !ok {
            return Err(format!(
                "`{s}` is not an origin; write e.g. https://app.example.com"
            ));
        }
        let origin = s.trim_end_matches('/');
        HeaderValue::from_str(origin)
            .map(Origin)
            .map_err(|_| format!("`{s}` is not a valid header value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_need_http_and_a_host_and_no_path() {
        let ok = parse_upstream_url("http://jessy-core:8080").unwrap();
        assert_eq!(ok.to_string(), "http://jessy-core:8080");
        assert!(parse_upstream_url("http://127.0.0.1:8080/").is_ok());
        assert!(
            parse_upstream_url("jessy-core:8080")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(
            parse_upstream_url("https://core")
                .unwrap_err()
                .contains("https")
        );
        assert!(
            parse_upstream_url("ftp://core")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            parse_upstream_url("http://core/base")
                .unwrap_err()
                .contains("path")
        );
        assert!(parse_upstream_url("not a url").is_err());
    }

    #[test]
    fn origins_are_scheme_and_host() {
        assert!("https://app.example.com".parse::<Origin>().is_ok());
        assert_eq!(
            "http://localhost:5173/".parse::<Origin>().unwrap().0,
            "http://localhost:5173"
        );
        assert!("app.example.com".parse::<Origin>().is_err());
        assert!("https://app.example.com/path".parse::<Origin>().is_err());
    }

    #[test]
    fn defaults_listen_on_loopback_and_refuse_no_body_the_core_accepts_alone() {
        use clap::Parser;
        let defaults = GatewayCli::parse_from(["jessy-api"]).config;
        assert_eq!(defaults.host, IpAddr::from([127, 0, 0, 1]));
        let core = crate::core::CoreConfig::local(0);
        assert!(
            defaults.max_body_size <= core.max_body_size,
            "the gateway's body limit ({}) is over the core's ({}): bodies in between would be forwarded to be refused",
            defaults.max_body_size,
            core.max_body_size
        );
        // A stalled body is answered by the gateway (408) before the core's
        // own request deadline would answer it (503).
        assert!(defaults.client_body_timeout < core.request_timeout);
    }

    #[test]
    fn burst_defaults_to_the_request_count() {
        let mut config = GatewayConfig::local(0, "http://127.0.0.1:1");
        config.rate_limit_requests = 7;
        assert_eq!(config.rate_limit_burst(), 7);
        config.rate_limit_burst = Burst(Some(3));
        assert_eq!(config.rate_limit_burst(), 3);
    }

    #[test]
    fn an_empty_burst_means_unset_and_zero_is_refused() {
        assert_eq!(parse_burst(""), Ok(Burst(None)));
        assert_eq!(parse_burst(" 5 "), Ok(Burst(Some(5))));
        assert!(parse_burst("0").is_err());
        assert!(parse_burst("many").is_err());
    }
}
