//! The `healthcheck` subcommand: the images have no shell and no curl, so the
//! binary probes itself. A plain blocking HTTP/1.1 GET on loopback — no
//! runtime, no telemetry, no configuration beyond the port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `<binary> healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = crate::config::parse_nonzero_duration)]
    pub timeout: Duration,
}

/// GETs `path` on `127.0.0.1:port`; Ok when the status is 2xx.
pub fn check(port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: jessy-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("read: {e}")),
        }
        if head[..read].contains(&b'\n') {
            break;
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", status_line.lines().next()))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("{path} answered {status}"))
    }
}

/// Runs the check and reports it as the process exit code.
pub fn run(port: u16, path: &str, args: &HealthcheckArgs) -> ExitCode {
    match check(port, path, args.timeout) {
        Ok(status) => {
            println!("healthy: {path} answered {status}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("unhealthy: {reason}");
            ExitCode::FAILURE
        }
    }
}
