//! jessy-api: config → telemetry → application → serve until a signal.

use std::process::ExitCode;

use jessy::gateway::{Application, GatewayCli, GatewayCommand};
use jessy::{config, healthcheck, shutdown, telemetry};

// mimalloc on musl, what the images ship (src/allocator.rs says why).
jessy::shipped_allocator!();

fn main() -> ExitCode {
    let cli: GatewayCli = config::parse_or_exit();
    if let Some(GatewayCommand::Healthcheck(args)) = &cli.command {
        return healthcheck::run(cli.config.port, "/api/health", args);
    }
    // Single-threaded: it accepts and serves a share of the connections; the
    // server starts one more such runtime per further CPU (`workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .on_thread_park(telemetry::flush_thread_logs)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("jessy-api: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let exit = runtime.block_on(async {
        let shutdown = match shutdown::signal() {
            Ok(signal) => signal,
            Err(err) => {
                eprintln!("jessy-api: cannot install signal handlers: {err}");
                return ExitCode::FAILURE;
            }
        };
        let config = cli.config;
        let _telemetry = telemetry::init(
            "jessy-api",
            config.common.log_format,
            config.common.otel_endpoint(),
            config.common.otel_service_name(),
        );
        let app = match Application::build(&config).await {
            Ok(app) => app,
            Err(err) => {
                tracing::error!(error = %err, "jessy-api cannot start");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            addr = %app.local_addr(),
            upstream = %config.upstream_url,
            version = jessy::VERSION,
            "jessy-api listening"
        );
        app.run(shutdown).await;
        ExitCode::SUCCESS
    });
    telemetry::flush_logs_before_exit();
    exit
}
