//! The shutdown signal: SIGTERM (what `docker stop` and Kubernetes send) or
//! SIGINT (Ctrl-C). The handlers are registered when [`signal`] is called,
//! not when the future is first polled: as PID 1 in a container, a SIGTERM
//! that arrives before registration would be ignored by the kernel.

use std::future::Future;

/// Registers the handlers now; the future completes on the first signal.
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
                _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
