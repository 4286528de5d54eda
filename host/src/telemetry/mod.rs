//! Application Insights: when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set, the host exports
//! through `opentelemetry-application-insights`:
//!
//! - traces: a server span per incoming request and a client span per call to Clever, Key
//!   Vault and the identity endpoint ([`spans`]), bridged from `tracing` by
//!   `tracing-opentelemetry`;
//! - log records: `tracing` events at info and above (within `RUST_LOG`), bridged by
//!   `opentelemetry-appender-tracing`; error-level ones as exceptions ([`alerts`]);
//! - custom Events for every event with an `alert` field ([`alerts`]);
//! - metrics named `clever_auth.*` ([`metrics`]).
//!
//! The exporter's HTTP client is reqwest on the host's rustls configuration, and every payload
//! goes through [`crate::redact::scrub`] just before it leaves ([`exporter`]).
//!
//! Telemetry never stops the host: a bad connection string is a warning and the service runs
//! without it; an unreachable endpoint only costs the telemetry threads their retries.

pub mod alerts;
mod exporter;
mod fields;
pub mod metrics;
pub mod settings;
pub mod spans;

pub use exporter::scrub_payload;
pub use settings::Settings;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use settings::Intervals;
use std::time::Duration;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The boxed layers the logging set-up adds to its subscriber `S`.
pub type Layers<S> = Vec<Box<dyn Layer<S> + Send + Sync>>;

/// How long the shutdown flush may take before the host exits anyway.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

pub struct Telemetry {
    state: State,
}

enum State {
    Off,
    /// The setting was given but cannot be used; the reason, for the start-up warning.
    Invalid(String),
    On {
        pipeline: exporter::Pipeline,
        ingestion_host: Option<String>,
        intervals: Intervals,
    },
}

impl Telemetry {
    /// Builds the pipeline when a connection string is set. Never fails: whatever goes wrong
    /// is reported by [`Telemetry::report`] once logging is up, and telemetry stays off.
    /// Must run inside the tokio runtime the uploads will use.
    pub fn start(settings: &Settings) -> Telemetry {
        let Some(raw) = settings.connection_string.as_deref() else {
            return Telemetry { state: State::Off };
        };
        let connection_string = settings::normalise_connection_string(raw);
        let state = match Self::pipeline(settings, &connection_string) {
            Ok(pipeline) => {
                metrics::install(&pipeline.meter_provider);
                State::On {
                    pipeline,
                    ingestion_host: settings::ingestion_host(&connection_string),
                    intervals: settings.intervals,
                }
            }
            Err(e) => State::Invalid(format!("{e:#}")),
        };
        Telemetry { state }
    }

    fn pipeline(
        settings: &Settings,
        connection_string: &str,
    ) -> anyhow::Result<exporter::Pipeline> {
        let tls = crate::outbound::tls::client_config(settings.extra_ca.as_deref())?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| anyhow::anyhow!("no async runtime for telemetry uploads: {e}"))?;
        exporter::build(settings, connection_string, tls, runtime)
    }

    pub fn is_on(&self) -> bool {
        matches!(self.state, State::On { .. })
    }

    /// The layers for the process-wide subscriber; `None` when telemetry is off.
    pub fn layers<S>(&self) -> Option<Layers<S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let State::On { pipeline, .. } = &self.state else {
            return None;
        };
        let tracer = pipeline.tracer_provider.tracer("clever_auth_host");
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(filter_fn(|m: &Metadata<'_>| {
                m.is_span() && m.target().starts_with("clever_auth_host")
            }));
        let mut layers: Layers<S> = vec![spans.boxed()];
        layers.extend(event_layers(pipeline));
        self::spans::read_from_now_on();
        Some(layers)
    }

    /// Says at start-up whether telemetry is on, or why not (a warning).
    pub fn report(&self) {
        match &self.state {
            State::Off => {}
            State::Invalid(reason) => tracing::warn!(
                operation = "telemetry",
                error = %reason,
                "Application Insights telemetry is OFF: APPLICATIONINSIGHTS_CONNECTION_STRING cannot be used; the service runs without telemetry"
            ),
            State::On {
                ingestion_host,
                intervals,
                ..
            } => tracing::info!(
                operation = "telemetry",
                ingestion_host = ingestion_host
                    .as_deref()
                    .unwrap_or("dc.services.visualstudio.com"),
                traces_every_ms = intervals.traces.as_millis() as u64,
                logs_every_ms = intervals.logs.as_millis() as u64,
                metrics_every_ms = intervals.metrics.as_millis() as u64,
                "Application Insights telemetry on"
            ),
        }
    }

    /// Flushes and stops the pipeline, waiting at most `timeout`; an endpoint that does not
    /// answer by then loses what was still queued.
    pub async fn shutdown(self, timeout: Duration) {
        let State::On { pipeline, .. } = self.state else {
            return;
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        // A plain thread, not spawn_blocking: the runtime must not wait for it at exit.
        let spawned = std::thread::Builder::new()
            .name("telemetry-flush".into())
            .spawn(move || {
                // Spans and metrics first, log records last, so the flush's own records go too.
                let results = [
                    (
                        "traces",
                        pipeline.tracer_provider.shutdown_with_timeout(timeout),
                    ),
                    (
                        "metrics",
                        pipeline.meter_provider.shutdown_with_timeout(timeout),
                    ),
                    (
                        "logs",
                        pipeline.logger_provider.shutdown_with_timeout(timeout),
                    ),
                ];
                let failed: Vec<String> = results
                    .into_iter()
                    .filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e}")))
                    .collect();
                let _ = done.send(failed);
            });
        if spawned.is_err() {
            tracing::warn!(operation = "telemetry", "cannot start the telemetry flush");
            return;
        }
        match tokio::time::timeout(timeout, finished).await {
            Ok(Ok(failed)) if failed.is_empty() => {
                tracing::info!(operation = "telemetry", "telemetry flushed")
            }
            Ok(Ok(failed)) => tracing::warn!(
                operation = "telemetry",
                errors = %failed.join("; "),
                "telemetry flush incomplete"
            ),
            _ => tracing::warn!(
                operation = "telemetry",
                timeout_ms = timeout.as_millis() as u64,
                "telemetry flush timed out; queued telemetry is dropped"
            ),
        }
    }
}

/// The layers that read events: log records, counters, alerts.
fn event_layers<S>(pipeline: &exporter::Pipeline) -> Layers<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let logs = OpenTelemetryTracingBridge::new(&pipeline.logger_provider).with_filter(filter_fn(
        |m: &Metadata<'_>| m.is_event() && *m.level() <= Level::INFO && exported_target(m.target()),
    ));
    vec![
        logs.boxed(),
        metrics::EventCounter.boxed(),
        alerts::AlertLayer::new(&pipeline.tracer_provider).boxed(),
    ]
}

/// The OpenTelemetry SDK's own diagnostics and this room's messages stay on stdout: exporting
/// them would feed the exporter with its own failures.
fn exported_target(target: &str) -> bool {
    !(target.starts_with("opentelemetry")
        || target.starts_with("tracing_opentelemetry")
        || target.starts_with("clever_auth_host::telemetry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_own_diagnostics_are_not_exported() {
        assert!(!exported_target("opentelemetry_sdk"));
        assert!(!exported_target("opentelemetry-http"));
        assert!(!exported_target("clever_auth_host::telemetry"));
        assert!(exported_target("clever_auth_host::server"));
        assert!(exported_target("clever_auth_component"));
        assert!(exported_target("audit"));
    }

    #[tokio::test]
    async fn a_malformed_connection_string_leaves_telemetry_off() {
        let settings = Settings {
            connection_string: Some("this is not a connection string".into()),
            intervals: Intervals::PRODUCTION,
            extra_ca: None,
            request_timeout: Duration::from_secs(1),
        };
        let t = Telemetry::start(&settings);
        assert!(!t.is_on());
        assert!(t.layers::<tracing_subscriber::Registry>().is_none());
        match &t.state {
            State::Invalid(reason) => {
                assert!(reason.contains("not a valid connection string"), "{reason}")
            }
            _ => panic!("expected Invalid"),
        }
    }
}
