//! clever-auth-host: the native wasmtime host for the clever-auth component.
//!
//! Rooms, one capability each: `config` (wasi:config), `keyvalue` (wasi:keyvalue), `server`
//! (HTTP in, routing, instance per request), `scheduler` (the refresher export), `runtime`
//! (engine and component), `cli`, `logging`, `shutdown`.

pub mod bindings;
pub mod cli;
pub mod config;
pub mod keyvalue;
pub mod logging;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod shutdown;
pub mod state;

use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;

/// Loads the component, binds, starts the scheduler and serves until SIGTERM/SIGINT.
pub async fn run(cli: cli::Cli) -> Result<()> {
    let addr = cli.listen_addr().map_err(anyhow::Error::msg)?;
    let config = config::ConfigSource::from_env(cli.secrets);
    if cli.secrets == config::SecretsSource::Env {
        tracing::warn!(
            secrets_provider = "env",
            "DEVELOPMENT secrets provider: Clever credentials are read from CLEVER_CLIENT_ID / CLEVER_CLIENT_SECRET; never use this in production"
        );
    }
    let shared = Arc::new(state::Shared {
        config,
        kv: keyvalue::MemoryStore::new([keyvalue::DEFAULT_LABEL.to_string()]),
    });
    let started = std::time::Instant::now();
    let runtime = runtime::Runtime::load(&cli.component, shared)?;
    tracing::info!(
        component = %cli.component.display(),
        load_ms = started.elapsed().as_millis() as u64,
        "component loaded"
    );
    let listener = server::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, health = format!("http://{local}{}", server::routing::HEALTH_PATH), "listening");

    let scheduler = (!cli.no_scheduler)
        .then(|| tokio::spawn(scheduler::run(runtime.clone(), scheduler::Wake::default())));
    if scheduler.is_none() {
        tracing::info!("scheduler off: refreshes run only after health requests, as under Spin");
    }
    let result = server::serve(
        listener,
        runtime,
        shutdown::signal(),
        Duration::from_secs(cli.drain_secs),
    )
    .await;
    if let Some(s) = scheduler {
        s.abort();
    }
    tracing::info!("stopped");
    result
}
