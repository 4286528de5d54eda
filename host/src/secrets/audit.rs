//! One structured event per secret access: vault host, secret name, version, outcome, HTTP
//! status or error code, duration, client request id, whether the value changed. Never the
//! value: the function has no parameter that could carry it.

use super::source::{FetchError, Fetched, SecretSource};
use std::time::{Duration, Instant};

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

/// Reads `name` from `source` and records the access; `changed` says whether a value read
/// differs from the one held. The development provider (the environment) is not audited.
pub async fn fetch(
    source: &dyn SecretSource,
    name: &str,
    changed: impl FnOnce(&Fetched) -> Option<bool>,
) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let result = source.fetch(name).await;
    if source.provider() == "env" {
        return result;
    }
    let location = source.location();
    let common = Access {
        provider: source.provider(),
        location: &location,
        secret_name: name,
        version: None,
        status: None,
        error_code: None,
        duration: started.elapsed(),
        client_request_id: None,
        changed: None,
    };
    record(&match &result {
        Ok(fetched) => Access {
            version: fetched.version.as_deref(),
            status: fetched.status,
            client_request_id: fetched.client_request_id.as_deref(),
            changed: changed(fetched),
            ..common
        },
        Err(e) => Access {
            status: e.status,
            error_code: Some(&e.code),
            client_request_id: e.client_request_id.as_deref(),
            ..common
        },
    });
    result
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
