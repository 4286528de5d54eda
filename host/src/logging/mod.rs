//! `tracing` set-up: JSON lines on stdout by default, level from RUST_LOG. Every line passes
//! through [`crate::redact`] on its way out, and the component's stderr lines are re-emitted
//! here as structured events ([`component`]).

pub mod component;
mod writer;

use crate::cli::LogFormat;
use tracing_subscriber::EnvFilter;

/// Field names shared by host and component events, so one query finds both.
pub mod fields {
    pub const COMPONENT_TARGET: &str = "clever_auth_component";
    pub const COMPONENT_SOURCE: &str = "clever-auth-component";
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer::ScrubbedStdout)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
    install_panic_hook();
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
