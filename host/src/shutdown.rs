//! Resolves on the first SIGTERM (App Service stopping the container) or SIGINT (Ctrl-C).

use std::future::Future;

/// Registers the signal handlers now (not when first polled), so a SIGTERM that arrives while
/// the component is still loading is not lost to the default action: the returned future then
/// resolves as soon as the server looks at it.
pub fn watch() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                    }
                }
                (term, int) => {
                    let e = term
                        .err()
                        .or(int.err())
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    tracing::warn!(error = %e, "cannot watch SIGTERM/SIGINT; only Ctrl-C stops the host");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
