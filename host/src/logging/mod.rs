//! `tracing` set-up: JSON lines on stdout by default, level from RUST_LOG; with Application
//! Insights on, the telemetry layers sit beside the stdout layer under the same level filter.
//! Every line passes through [`crate::redact`] on its way out, and the component's stderr
//! lines are re-emitted here as structured events ([`component`]).

pub mod component;
pub mod writer;

use crate::telemetry::Layers;
use tracing_subscriber::layer::{Layer as _, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// Field names shared by host and component events, so one query finds both.
pub mod fields {
    pub const COMPONENT_TARGET: &str = "clever_auth_component";
    pub const COMPONENT_SOURCE: &str = "clever-auth-component";
}

/// This App Service instance (`WEBSITE_INSTANCE_ID`), when there is one: every JSON line and
/// the health answer carry it so scaled-out instances can be told apart.
pub fn instance_id() -> Option<&'static str> {
    static ID: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
        std::env::var("WEBSITE_INSTANCE_ID")
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    });
    ID.as_deref()
}

/// The subscriber the telemetry layers are added to.
pub type Base = Layered<EnvFilter, Registry>;

/// The level filter: RUST_LOG, default `info`.
pub fn level_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Stdout (scrubbed) plus, with Application Insights on, the telemetry layers, all under the
/// same level filter. Lines still queued for stdout are written when the returned value is
/// dropped: hold it until the process ends.
#[must_use = "dropping it stops the stdout writer"]
/// How log lines are written: JSON for App Service and Log Analytics, text for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

pub fn init(format: LogFormat, telemetry: Option<Layers<Base>>) -> writer::Flush {
    let (out, flush) = writer::ScrubbedStdout::start();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let subscriber = tracing_subscriber::registry()
        .with(level_filter())
        .with(telemetry);
    let stdout = tracing_subscriber::fmt::layer()
        .with_writer(out)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => subscriber
            .with(
                stdout
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    // The spans exist for telemetry; the lines stay as they were.
                    .with_span_list(false)
                    // Nor does the layer see them: the JSON formatter otherwise writes every
                    // span's fields as JSON when it opens, and parses and writes them again at
                    // each `record` (a gateway request's server and client spans: two of
                    // each), for lines that never show them.
                    .with_filter(tracing_subscriber::filter::filter_fn(|m| m.is_event())),
            )
            .init(),
        LogFormat::Text => subscriber.with(stdout).init(),
    }
    install_panic_hook();
    flush
}

/// A panic message can quote anything (a value, a URL): it goes through the log, scrubbed,
/// instead of straight to stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text panic payload)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            event = "panic",
            location,
            panic = %crate::redact::scrub(&payload),
            "panic"
        );
    }));
}
