use clap::Parser;
use clever_auth_host::{cli::Cli, logging, telemetry};
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: the gateway allocates and frees on two threads at a high
/// rate, and glibc's free path (consolidation, arena locks) showed in its profile. Interleaved
/// pairs at 1 KB and 64 connections: +4, +8 and +14 % req/s; peak RSS streaming 1 MB pages at
/// 256 connections 109 MiB against 99 (mimalloc, tried before, peaked at 121 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every rustls user in the process (ours, reqwest's, the Azure
    // SDK's), so none of them has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if cli.precompile {
        let _flush = logging::init(cli.log_format, None);
        return precompile(&cli);
    }
    let telemetry = telemetry::Telemetry::start(&cli.telemetry_settings());
    // Dropped last, after the final lines below: it writes what is still queued for stdout.
    let _flush = logging::init(cli.log_format, telemetry.layers());
    telemetry.report();
    let result = clever_auth_host::run(cli).await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "clever-auth-host cannot start");
    }
    // After SIGTERM/SIGINT (or a failed start): send what is still queued, bounded.
    telemetry.shutdown(telemetry::SHUTDOWN_FLUSH).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn precompile(cli: &Cli) -> ExitCode {
    let Some(dir) = cli.component_cache_dir() else {
        eprintln!("error: --precompile needs --component-cache (or HOME / XDG_CACHE_HOME)");
        return ExitCode::FAILURE;
    };
    match clever_auth_host::runtime::precompile(&cli.component, &dir) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
