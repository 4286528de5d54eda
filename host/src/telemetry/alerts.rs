//! Alerts and errors as Application Insights sees them.
//!
//! - Any event with an `alert` field becomes a custom Event (`Microsoft.ApplicationInsights.Event`,
//!   named by the alert). The exporter makes custom Events only from span events named
//!   `ai.custom` (name in `ai.customEvent.name`), so each alert is carried by a short internal
//!   span, `alert <name>`, a child of the current span when there is one (it shows as an
//!   `InProc` dependency next to the Event).
//! - Error-level log records become Exceptions (`Microsoft.ApplicationInsights.Exception`):
//!   the exporter does that for records carrying `exception.type`/`exception.message`, which
//!   [`ErrorsAsExceptions`] adds (type: the `event` field, else the target; message: the log
//!   message). Every record also gets its `target` as a property.

use super::fields::Fields;
use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry::trace::{SpanKind, Tracer, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_application_insights::attrs::CUSTOM_EVENT_NAME;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::time::Duration;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::Layer;

/// Turns events with an `alert` field into custom Events.
pub struct AlertLayer {
    tracer: SdkTracer,
}

impl AlertLayer {
    pub fn new(provider: &SdkTracerProvider) -> AlertLayer {
        AlertLayer {
            tracer: provider.tracer("clever_auth.alerts"),
        }
    }

    fn record(&self, fields: &Fields, level: &tracing::Level, target: &str) {
        let Some(alert) = fields.get("alert") else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new(CUSTOM_EVENT_NAME, alert.to_string()),
            KeyValue::new("level", level.as_str()),
            KeyValue::new("target", target.to_string()),
        ];
        attributes.extend(
            fields
                .iter()
                .filter(|(k, _)| *k != "alert")
                .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string())),
        );
        let parent = Context::current();
        let mut span = self
            .tracer
            .span_builder(format!("alert {alert}"))
            .with_kind(SpanKind::Internal)
            .start_with_context(&self.tracer, &parent);
        use opentelemetry::trace::Span as _;
        span.add_event("ai.custom", attributes);
        span.end();
    }
}

impl<S: Subscriber> Layer<S> for AlertLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if meta.fields().field("alert").is_none() {
            return;
        }
        let fields = Fields::of(event);
        self.record(&fields, meta.level(), meta.target());
    }
}

/// Marks error-level log records as exceptions and names every record's target.
#[derive(Debug)]
pub struct ErrorsAsExceptions;

impl LogProcessor for ErrorsAsExceptions {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        let target = record.target().map(|t| t.to_string());
        if record
            .severity_number()
            .is_some_and(|s| s >= Severity::Error)
        {
            let event = record.attributes_iter().find_map(|(k, v)| match v {
                AnyValue::String(s) if k.as_str() == "event" => Some(s.as_str().to_string()),
                _ => None,
            });
            let message = match record.body() {
                Some(AnyValue::String(s)) => s.as_str().to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            let kind = event
                .or_else(|| target.clone())
                .unwrap_or_else(|| "error".into());
            record.add_attribute("exception.type", kind);
            record.add_attribute("exception.message", message);
        }
        if let Some(target) = target {
            record.add_attribute("target", target);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
