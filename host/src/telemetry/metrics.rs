//! OpenTelemetry instruments, all named `clever_auth.*`:
//!
//! - counters derived from events: a tracing [`EventCounter`] layer counts events by their
//!   `event` field, so it counts whatever logs them, the host or the component;
//! - `clever_auth.token.seconds_to_expiry`, an observable gauge per district, read from the
//!   token records in the shared in-memory store at each collection;
//! - histograms for Key Vault fetches and health requests.
//!
//! Before [`install`] (telemetry off) every recording function does nothing.

use super::fields::Fields;
use crate::keyvalue::{MemoryStore, DEFAULT_LABEL};
use clever_auth_core::status::keys::TOKEN_PREFIX;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableGauge};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// `event` field value → counter name, description.
pub const EVENT_COUNTERS: &[(&str, &str, &str)] = &[
    (
        "tokens_acquired",
        "clever_auth.tokens.acquired",
        "Successful token acquisitions (one per listing or client_credentials grant)",
    ),
    (
        "acquisition_failed",
        "clever_auth.tokens.acquisition_failures",
        "Acquisitions given up after the last retry or a permanent error",
    ),
    (
        "acquisition_retry",
        "clever_auth.tokens.acquisition_retries",
        "Acquisition attempts that failed and were scheduled for a retry",
    ),
    (
        "rate_limited",
        "clever_auth.clever.rate_limited",
        "Clever answers 429 (rate limited)",
    ),
    (
        "probe_failed",
        "clever_auth.clever.probe_failures",
        "Failed connection/version probes of a district token",
    ),
    (
        "api_version_problem",
        "clever_auth.clever.api_version_problems",
        "Clever serving another API version than configured, or an unsupported one",
    ),
    (
        "gateway_request",
        "clever_auth.gateway.requests",
        "Gateway requests, by district, status and error code",
    ),
    (
        "gateway_token_refused",
        "clever_auth.gateway.tokens_refused",
        "District tokens Clever refused (401) on gateway traffic: dropped, relisted, replayed",
    ),
    (
        "district_removed",
        "clever_auth.districts.removed",
        "Districts that left Clever's listing or the allow-list",
    ),
];

pub const TOKEN_EXPIRY_GAUGE: &str = "clever_auth.token.seconds_to_expiry";
pub const KEYVAULT_FETCH_HISTOGRAM: &str = "clever_auth.keyvault.fetch_duration_ms";
pub const HEALTH_HISTOGRAM: &str = "clever_auth.health.duration_ms";
pub const GATEWAY_HISTOGRAM: &str = "clever_auth.gateway.duration_ms";

/// Event fields copied onto the counters as dimensions (all of bounded cardinality).
const COUNTER_DIMENSIONS: [&str; 4] = ["district", "status", "error_code", "alert"];

struct Instruments {
    meter: Meter,
    counters: Vec<(&'static str, Counter<u64>)>,
    keyvault_fetch: Histogram<f64>,
    health: Histogram<f64>,
    gateway: Histogram<f64>,
    token_gauge: OnceLock<ObservableGauge<f64>>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// Creates the instruments on `provider`. Only the first call counts.
pub fn install(provider: &SdkMeterProvider) {
    let meter = provider.meter("clever_auth");
    let counters = EVENT_COUNTERS
        .iter()
        .map(|(event, name, description)| {
            let counter = meter
                .u64_counter(*name)
                .with_description(*description)
                .build();
            (*event, counter)
        })
        .collect();
    let keyvault_fetch = meter
        .f64_histogram(KEYVAULT_FETCH_HISTOGRAM)
        .with_unit("ms")
        .with_description("Duration of one Key Vault secret fetch, identity token included")
        .build();
    let health = meter
        .f64_histogram(HEALTH_HISTOGRAM)
        .with_unit("ms")
        .with_description("Duration of GET /health/clever-auth as served by the host")
        .build();
    let gateway = meter
        .f64_histogram(GATEWAY_HISTOGRAM)
        .with_unit("ms")
        .with_description(
            "Time to the response head of a gateway request, waits and retries included",
        )
        .build();
    let _ = INSTRUMENTS.set(Instruments {
        meter,
        counters,
        keyvault_fetch,
        health,
        gateway,
        token_gauge: OnceLock::new(),
    });
}

/// One health request, `status` its HTTP status.
pub fn record_health(duration: Duration, status: u16) {
    if let Some(i) = INSTRUMENTS.get() {
        i.health.record(
            duration.as_secs_f64() * 1000.0,
            &[KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            )],
        );
    }
}

/// One gateway request, `status` its HTTP status (until its response head).
pub fn record_gateway(duration: Duration, status: u16) {
    if let Some(i) = INSTRUMENTS.get() {
        i.gateway.record(
            duration.as_secs_f64() * 1000.0,
            &[KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            )],
        );
    }
}

/// One Key Vault fetch of `secret_name`; `outcome` is `success` or `failure`.
pub fn record_keyvault_fetch(duration: Duration, secret_name: &str, outcome: &'static str) {
    if let Some(i) = INSTRUMENTS.get() {
        i.keyvault_fetch.record(
            duration.as_secs_f64() * 1000.0,
            &[
                KeyValue::new("secret_name", secret_name.to_string()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }
}

/// Registers the seconds-to-expiry gauge over the token records in `kv`.
pub fn watch_tokens(kv: MemoryStore) {
    let Some(i) = INSTRUMENTS.get() else {
        return;
    };
    i.token_gauge.get_or_init(|| {
        i.meter
            .f64_observable_gauge(TOKEN_EXPIRY_GAUGE)
            .with_unit("s")
            .with_description("Seconds until the cached token of a district expires")
            .with_callback(move |observer| {
                let now = unix_ms();
                for (district, expires_at) in token_expiries(&kv) {
                    let secs = expires_at.saturating_sub(now) as f64 / 1000.0;
                    observer.observe(secs, &[KeyValue::new("district", district)]);
                }
            })
            .build()
    });
}

/// Only what the gauge needs from a token record; the token itself is skipped unread.
#[derive(serde::Deserialize)]
struct Expiry {
    district_id: String,
    expires_at: u64,
}

/// `(district, expires_at)` of every cached token.
fn token_expiries(kv: &MemoryStore) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (keys, next) = kv.list_keys(DEFAULT_LABEL, cursor.as_deref());
        for key in keys.iter().filter(|k| k.starts_with(TOKEN_PREFIX)) {
            let Some(bytes) = kv.get(DEFAULT_LABEL, key) else {
                continue;
            };
            if let Ok(e) = serde_json::from_slice::<Expiry>(&bytes) {
                out.push((e.district_id, e.expires_at));
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Counts events by their `event` field into the counters of [`EVENT_COUNTERS`].
#[derive(Debug, Default)]
pub struct EventCounter;

impl<S: Subscriber> Layer<S> for EventCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().fields().field("event").is_none() {
            return;
        }
        let Some(instruments) = INSTRUMENTS.get() else {
            return;
        };
        let fields = Fields::of(event);
        let Some(name) = fields.get("event") else {
            return;
        };
        let Some((_, counter)) = instruments.counters.iter().find(|(e, _)| *e == name) else {
            return;
        };
        let attributes: Vec<KeyValue> = COUNTER_DIMENSIONS
            .iter()
            .filter_map(|d| fields.get(d).map(|v| KeyValue::new(*d, v.to_string())))
            .collect();
        counter.add(1, &attributes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_come_from_token_records_only() {
        let kv = MemoryStore::new([DEFAULT_LABEL.to_string()]);
        kv.set(
            DEFAULT_LABEL,
            &format!("{TOKEN_PREFIX}d-alpha"),
            br#"{"district_id":"d-alpha","token":"secret-value","obtained_at":1,"expires_at":5000,"refresh_at":4000}"#.to_vec(),
        );
        kv.set(
            DEFAULT_LABEL,
            &format!("{TOKEN_PREFIX}broken"),
            b"{".to_vec(),
        );
        kv.set(DEFAULT_LABEL, "clever-auth/v1/status", b"{}".to_vec());
        assert_eq!(token_expiries(&kv), vec![("d-alpha".to_string(), 5000)]);
    }

    #[test]
    fn counter_names_are_prefixed_and_unique() {
        let mut names: Vec<&str> = EVENT_COUNTERS.iter().map(|(_, n, _)| *n).collect();
        assert!(names.iter().all(|n| n.starts_with("clever_auth.")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EVENT_COUNTERS.len());
    }
}
