//! `tracing` set-up: JSON lines on stdout by default, level from RUST_LOG; with Application
//! Insights on, the telemetry layers sit beside the stdout layer under the same level filter.

use crate::cli::LogFormat;
use crate::telemetry::Layers;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// The subscriber the telemetry layers are added to.
pub type Base = Layered<EnvFilter, Registry>;

/// The level filter: RUST_LOG, default `info`.
pub fn level_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

pub fn init(format: LogFormat, telemetry: Option<Layers<Base>>) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let subscriber = tracing_subscriber::registry()
        .with(level_filter())
        .with(telemetry);
    let stdout = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => subscriber
            .with(
                stdout
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    // The spans exist for telemetry; the lines stay as they were.
                    .with_span_list(false),
            )
            .init(),
        LogFormat::Text => subscriber.with(stdout).init(),
    }
}
