//! One structured event per secret access: vault host, secret name, version, outcome, HTTP
//! status or error code, duration, client request id, whether the value changed. Never the
//! value: the function has no parameter that could carry it.

use std::time::Duration;

pub struct Access<'a> {
    pub provider: &'a str,
    pub location: &'a str,
    pub secret_name: &'a str,
    pub version: Option<&'a str>,
    pub status: Option<u16>,
    pub error_code: Option<&'a str>,
    pub duration: Duration,
    pub client_request_id: Option<&'a str>,
    pub changed: Option<bool>,
}

pub fn record(a: &Access<'_>) {
    let outcome = if a.error_code.is_none() {
        "success"
    } else {
        "failure"
    };
    if a.provider == "keyvault" {
        crate::telemetry::metrics::record_keyvault_fetch(a.duration, a.secret_name, outcome);
    }
    tracing::info!(
        target: "audit",
        event = "secret_access",
        provider = a.provider,
        vault = a.location,
        secret_name = a.secret_name,
        version = a.version,
        outcome,
        status = a.status,
        error_code = a.error_code,
        duration_ms = a.duration.as_secs_f64() * 1000.0,
        client_request_id = a.client_request_id,
        changed = a.changed,
        "secret access"
    );
}
