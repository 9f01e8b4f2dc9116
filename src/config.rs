//! Configuration shared by both binaries: value parsers for durations, sizes
//! and address lists, the common flags, and turning clap errors into the
//! one-line, exit-code-2 message operators expect.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Flags both services take.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// Log format: json or pretty (the filter comes from RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_enum)]
    pub log_format: LogFormat,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// How long to keep accepting (with readiness already 503) after the
    /// signal, so load balancers stop routing here before connections are refused.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// A client that has not sent complete request headers by then is disconnected.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub header_read_timeout: Duration,

    /// Serving threads (jessy-api: one single-threaded runtime each;
    /// jessy-core: the work-stealing runtime's workers); unset or empty = one
    /// per CPU this process may use.
    #[arg(long, env = "WORKER_THREADS", value_parser = parse_worker_threads)]
    pub worker_threads: Option<WorkerThreads>,

    /// OTLP/gRPC endpoint for traces (e.g. http://jaeger:4317); unset or empty = off.
    /// Only honoured by binaries built with the `otel` feature.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_optional_url)]
    pub otel_endpoint: Option<OptionalUrl>,

    /// Service name on exported traces; unset or empty = jessy-core / jessy-api.
    /// Only honoured by binaries built with the `otel` feature.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
}

impl CommonConfig {
    /// The serve loop's timeouts.
    pub fn serve_config(&self) -> crate::server::ServeConfig {
        crate::server::ServeConfig {
            shutdown_delay: self.shutdown_delay,
            shutdown_timeout: self.shutdown_timeout,
            // One: every connection on the runtime the binary runs on. The
            // gateway asks for more (thread-per-core, `crate::workers`).
            workers: NonZeroUsize::MIN,
        }
    }

    /// `WORKER_THREADS`, or one per CPU this process may use.
    pub fn worker_count(&self) -> NonZeroUsize {
        self.worker_threads
            .and_then(|w| w.0)
            .unwrap_or_else(crate::workers::default_count)
    }

    /// The OTLP endpoint, if one was configured and is not empty.
    pub fn otel_endpoint(&self) -> Option<&str> {
        self.otel_endpoint.as_ref().and_then(|u| u.0.as_deref())
    }

    /// The trace service name, if one was configured and is not empty.
    pub fn otel_service_name(&self) -> Option<&str> {
        self.otel_service_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
    }
}

/// A worker-thread count that may be set to the empty string (= the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerThreads(pub Option<NonZeroUsize>);

fn parse_worker_threads(s: &str) -> Result<WorkerThreads, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(WorkerThreads(None));
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(WorkerThreads(NonZeroUsize::new(n))),
        _ => Err(format!("`{s}` is not a thread count from 1 to 1024")),
    }
}

/// A URL that may be set to the empty string (compose passes `VAR=` when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalUrl(pub Option<String>);

fn parse_optional_url(s: &str) -> Result<OptionalUrl, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(OptionalUrl(None));
    }
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(format!("`{s}` needs a scheme, e.g. http://jaeger:4317"));
    }
    Ok(OptionalUrl(Some(s.to_owned())))
}

/// Parses `500ms`, `30s`, `1m`, `2h`. A unit is required so that `30`
/// cannot silently mean seconds to one reader and milliseconds to another.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "`{s}` is not a duration; write e.g. 500ms, 30s, 1m or 2h"
        ));
    }
    let n: u64 = number.parse().map_err(|_| format!("`{s}` is too large"))?;
    let secs = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{s}` is too large"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "" => Err(format!("`{s}` has no unit; write e.g. {n}s or {n}ms")),
        _ => Err(format!(
            "`{s}` has an unknown unit `{unit}`; use ms, s, m or h"
        )),
    }
}

/// Like [`parse_duration`], but zero is refused (a zero window or timeout
/// would make every request fail).
pub fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be greater than zero"));
    }
    Ok(d)
}

/// Parses a byte size: `1048576`, `512B`, `64KiB`, `1MiB`, `10KB`, `1MB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let n: usize = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size; write e.g. 65536, 64KiB or 1MiB"))?;
    let mul: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1024,
        "MB" => 1000 * 1000,
        "MiB" => 1024 * 1024,
        other => {
            return Err(format!(
                "`{s}` has an unknown unit `{other}`; use B, KiB or MiB"
            ));
        }
    };
    let bytes = n
        .checked_mul(mul)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes == 0 {
        return Err(format!("`{s}` must be greater than zero"));
    }
    Ok(bytes)
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 peers are
    /// compared as IPv4, since dual-stack sockets report them that way.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has an invalid prefix length (0..={max})"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

/// A comma-separated list, where the empty string is the empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

/// Parses a comma-separated list of `T`.
pub fn parse_list<T: std::str::FromStr<Err = String>>(s: &str) -> Result<List<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<T>, String>>()
        .map(List)
}

/// Parses the command line and environment, or exits: `--help` and
/// `--version` print and exit 0; anything invalid prints one line naming the
/// environment variable (or flag) and exits 2, before anything binds.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(err) => match err.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
            _ => {
                eprintln!("{}", one_line_error(&T::command(), &err));
                std::process::exit(2);
            }
        },
    }
}

/// `jessy-core: invalid JESSY_PORT (--port) "abc": invalid digit found in string`
pub fn one_line_error(cmd: &clap::Command, err: &clap::Error) -> String {
    let name = cmd.get_name().to_owned();
    let arg_text = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let reason = std::error::Error::source(err)
        .map(ToString::to_string)
        .unwrap_or_else(|| first_line(&err.to_string()));
    match arg_text {
        Some(arg_text) => {
            let flag = arg_text
                .split_whitespace()
                .next()
                .unwrap_or(&arg_text)
                .to_owned();
            let env = find_env(cmd, &flag);
            let what = match env {
                Some(env) => format!("{env} ({flag})"),
                None => flag,
            };
            match value {
                Some(v) => format!("{name}: invalid {what} {v:?}: {reason}"),
                None => format!("{name}: invalid {what}: {reason}"),
            }
        }
        None => format!("{name}: {reason}"),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or(s)
        .trim_start_matches("error: ")
        .to_owned()
}

fn find_env(cmd: &clap::Command, flag: &str) -> Option<String> {
    let long = flag.trim_start_matches('-');
    let found = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    found.or_else(|| cmd.get_subcommands().find_map(|sub| find_env(sub, flag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units_and_parse_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
        for bad in ["", "30", "s", "1.5s", "-1s", "10x", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_duration("18446744073709551615h").is_err(),
            "overflow is an error"
        );
    }

    #[test]
    fn zero_durations_are_refused_where_they_make_no_sense() {
        assert!(
            parse_nonzero_duration("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert_eq!(parse_nonzero_duration("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn worker_threads_are_a_count_or_empty_for_the_default() {
        assert_eq!(
            parse_worker_threads(" 4 "),
            Ok(WorkerThreads(NonZeroUsize::new(4)))
        );
        assert_eq!(parse_worker_threads(""), Ok(WorkerThreads(None)));
        for bad in ["0", "-1", "two", "1025", "2.5"] {
            let err = parse_worker_threads(bad).unwrap_err();
            assert!(err.contains("thread count"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("512B"), Ok(512));
        for bad in ["", "0", "1GiB", "abc", "KiB", "-5"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cidr_networks_match_their_members_only() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.9.9.9".parse().unwrap()),
            "v4-mapped peers"
        );
        let host: IpNet = "192.168.1.7".parse().unwrap();
        assert!(host.contains("192.168.1.7".parse().unwrap()));
        assert!(!host.contains("192.168.1.8".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn lists_are_comma_separated_and_empty_means_none() {
        let empty: List<IpNet> = parse_list("").unwrap();
        assert!(empty.0.is_empty());
        let two: List<IpNet> = parse_list("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(two.0.len(), 2);
        assert!(parse_list::<IpNet>("10.0.0.0/8,bogus").is_err());
    }

    #[test]
    fn otel_endpoint_may_be_empty_but_needs_a_scheme() {
        assert_eq!(parse_optional_url(""), Ok(OptionalUrl(None)));
        assert!(
            parse_optional_url("jaeger:4317")
                .unwrap_err()
                .contains("scheme")
        );
        assert_eq!(
            parse_optional_url("http://jaeger:4317"),
            Ok(OptionalUrl(Some("http://jaeger:4317".into())))
        );
    }

    #[derive(clap::Parser, Debug)]
    #[command(name = "common")]
    struct Common {
        #[command(flatten)]
        common: CommonConfig,
    }

    #[test]
    fn otel_service_name_is_a_documented_option_and_empty_means_default() {
        use clap::{CommandFactory, Parser};
        let help = Common::command().render_long_help().to_string();
        assert!(help.contains("OTEL_SERVICE_NAME"), "{help}");
        let named = Common::try_parse_from(["common", "--otel-service-name", "edge"]).unwrap();
        assert_eq!(named.common.otel_service_name(), Some("edge"));
        let empty = Common::try_parse_from(["common", "--otel-service-name", " "]).unwrap();
        assert_eq!(empty.common.otel_service_name(), None);
    }

    #[derive(clap::Parser, Debug)]
    #[command(name = "demo")]
    struct Demo {
        #[arg(long, env = "DEMO_PORT_FOR_TEST", default_value = "1")]
        port: u16,
    }

    #[test]
    fn clap_errors_become_one_line_naming_the_variable() {
        use clap::{CommandFactory, Parser};
        let err = Demo::try_parse_from(["demo", "--port", "abc"]).unwrap_err();
        let line = one_line_error(&Demo::command(), &err);
        assert!(
            line.starts_with("demo: invalid DEMO_PORT_FOR_TEST (--port) \"abc\""),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let err = Demo::try_parse_from(["demo", "--nope"]).unwrap_err();
        let line = one_line_error(&Demo::command(), &err);
        assert!(line.starts_with("demo: "), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
