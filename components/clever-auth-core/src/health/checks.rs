//! The checks of the report that are not about districts: credentials, the secrets provider,
//! the API version and rate limiting.

use super::detail::error_json;
use super::grade::Status;
use super::inputs::HealthInputs;
use crate::secrets_error;
use crate::status::{CredentialState, VersionState};
use crate::time_fmt::rfc3339;
use serde_json::{json, Map, Value};

pub(super) fn credentials_check(
    input: &HealthInputs<'_>,
    block: &mut impl FnMut(&str, String),
) -> (Status, String) {
    let c = input.credentials;
    if !c.client_id || !c.client_secret {
        let missing: Vec<&str> = [
            (!c.client_id).then_some("clever_client_id"),
            (!c.client_secret).then_some("clever_client_secret"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut message = format!(
            "no credentials yet: {} not available from the configuration source",
            missing.join(" and ")
        );
        let provider_error = input.secrets.and_then(|s| s.last_error.as_ref());
        if let Some(e) = provider_error {
            message.push_str(&format!(" (secrets provider: {})", e.message));
        }
        // The provider's own code says why (absent, refused, unreachable, …); without one the
        // provider has not failed yet, or there is none (Spin's variables, `--secrets none`).
        let code = provider_error
            .map(|e| e.code.as_str())
            .filter(|c| secrets_error::public_message(c).is_some())
            .unwrap_or("credentials_missing");
        block(code, message.clone());
        return (Status::Fail, message);
    }
    match input.service.and_then(|s| s.credentials) {
        Some(CredentialState::Rejected) => (
            Status::Warn,
            "Clever rejected the client credentials (401)".into(),
        ),
        Some(CredentialState::Accepted) => (Status::Pass, "accepted by Clever".into()),
        _ => (Status::Pass, "present; not yet used".into()),
    }
}

pub(super) fn secrets_check(input: &HealthInputs<'_>, checks: &mut Map<String, Value>) -> Status {
    let Some(s) = input.secrets else {
        return Status::Pass;
    };
    let (status, output) = match (&s.last_error, s.last_success) {
        (None, Some(_)) => (Status::Pass, format!("secrets read from {}", s.source)),
        (None, None) => (
            Status::Warn,
            format!("waiting for the first answer from {}", s.source),
        ),
        // Stale-but-present secrets keep working; only the absence of any is a failure, and
        // that is the credentials check's to report.
        (Some(e), Some(_)) => (
            Status::Warn,
            format!("{} (serving the secrets read before)", e.message),
        ),
        (Some(e), None) => (Status::Fail, e.message.clone()),
    };
    checks.insert(
        format!("secrets:{}", s.provider),
        json!([{
            "componentType": "system",
            "status": status.as_str(),
            "time": rfc3339(input.now),
            "output": output,
            "lastSuccess": s.last_success.map(rfc3339),
            "lastError": s.last_error.as_ref().map(error_json),
            "consecutiveFailures": s.consecutive_failures,
        }]),
    );
    // A failing provider without any secret already fails through the credentials check.
    status.min(Status::Warn)
}

pub(super) fn version_check(
    input: &HealthInputs<'_>,
    checks: &mut Map<String, Value>,
    block: &mut impl FnMut(&str, String),
) -> Status {
    let Some(v) = input.service.and_then(|s| s.api_version.as_ref()) else {
        return Status::Pass;
    };
    let seen = v.seen.join(", ");
    let (status, output) = match v.state {
        VersionState::Match => (Status::Pass, format!("Clever serves {}", v.configured)),
        VersionState::Unknown => (
            Status::Pass,
            "no version seen in Clever's responses".to_string(),
        ),
        VersionState::Mismatch => (
            Status::Warn,
            format!(
                "configured {} but Clever's responses carry {seen}",
                v.configured
            ),
        ),
        VersionState::Unsupported => {
            let message = format!("Clever does not support API version {}", v.configured);
            block("version_unsupported", message.clone());
            (Status::Fail, message)
        }
    };
    checks.insert(
        "clever:apiVersion".into(),
        json!([{
            "componentType": "system",
            "status": status.as_str(),
            "time": rfc3339(v.at),
            "observedValue": v.configured,
            "output": output,
        }]),
    );
    status
}

pub(super) fn rate_limit_check(
    input: &HealthInputs<'_>,
    checks: &mut Map<String, Value>,
) -> Status {
    let Some(service) = input.service else {
        return Status::Pass;
    };
    let limited_until = service.rate_limited_until.filter(|t| *t > input.now);
    if limited_until.is_none() && service.rate_limit.is_none() {
        return Status::Pass;
    }
    let status = if limited_until.is_some() {
        Status::Warn
    } else {
        Status::Pass
    };
    let bucket = service.rate_limit.as_ref();
    checks.insert(
        "clever:rateLimit".into(),
        json!([{
            "componentType": "system",
            "status": status.as_str(),
            "time": rfc3339(input.now),
            "observedValue": bucket.and_then(|b| b.remaining),
            "limit": bucket.and_then(|b| b.limit),
            "bucket": bucket.and_then(|b| b.name.clone()),
            "rateLimitedUntil": limited_until.map(rfc3339),
        }]),
    );
    status
}
