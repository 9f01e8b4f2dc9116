//! jessy-core: config → telemetry → application → serve until a signal.

use std::process::ExitCode;

use jessy::core::{Application, CoreCli, CoreCommand};
use jessy::{config, healthcheck, shutdown, telemetry};

// mimalloc on musl, what the images ship (src/allocator.rs says why).
jessy::shipped_allocator!();

fn main() -> ExitCode {
    let cli: CoreCli = config::parse_or_exit();
    if let Some(CoreCommand::Healthcheck(args)) = &cli.command {
        return healthcheck::run(cli.config.port, "/health", args);
    }
    // Work-stealing: a core request is self-contained, and stealing keeps
    // every worker busy when one thread is descheduled (thread-per-core, as
    // in jessy-api, cost /health 15-20 % and doubled its p99 here).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.config.common.worker_count().get())
        .on_thread_park(telemetry::flush_thread_logs)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("jessy-core: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let exit = runtime.block_on(async {
        let shutdown = match shutdown::signal() {
            Ok(signal) => signal,
            Err(err) => {
                eprintln!("jessy-core: cannot install signal handlers: {err}");
                return ExitCode::FAILURE;
            }
        };
        let config = cli.config;
        let _telemetry = telemetry::init(
            "jessy-core",
            config.common.log_format,
            config.common.otel_endpoint(),
            config.common.otel_service_name(),
        );
        let app = match Application::build(&config).await {
            Ok(app) => app,
            Err(err) => {
                tracing::error!(error = %err, "jessy-core cannot start");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(addr = %app.local_addr(), version = jessy::VERSION, "jessy-core listening");
        app.run(shutdown).await;
        ExitCode::SUCCESS
    });
    telemetry::flush_logs_before_exit();
    exit
}
