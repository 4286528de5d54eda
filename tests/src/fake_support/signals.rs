//! What the fake binaries share: stopping on SIGINT or SIGTERM, and turning the result of
//! their run into an exit code.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT handlers. Install them before printing the first line: whoever reads it
/// may signal at once.
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs both handlers. Must run inside a tokio runtime.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Resolves on the next SIGTERM or SIGINT. Cancel safe.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The process exit code for a binary's run; an error is printed as one readable line
/// prefixed with `name` (a backtrace helps nobody holding a bad --addr).
pub fn exit_code(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
