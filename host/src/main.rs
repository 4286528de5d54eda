use clap::Parser;
use clever_auth_host::{cli::Cli, logging};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every rustls user in the process (ours, reqwest's, the Azure
    // SDK's), so none of them has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    logging::init(cli.log_format);
    if cli.precompile {
        return precompile(&cli);
    }
    match clever_auth_host::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "clever-auth-host cannot start");
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
