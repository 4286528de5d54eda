//! The health report for `GET /health/clever-auth`, in the IETF "Health Check Response Format
//! for HTTP APIs" shape (`application/health+json`).
//!
//! Built only from records already in memory, so answering never waits on Clever or Key Vault.
//! Status rules follow App Service's health check: `warn` is still HTTP 200 (the instance can
//! serve); 503 means this instance has no usable token or cannot get one.

use crate::settings::SettingError;
use crate::status::{
    CredentialState, DistrictRecord, ErrorRecord, HostSecretsStatus, ServiceStatus, VersionState,
};
use crate::time_fmt::rfc3339;
use crate::UnixMillis;
use serde_json::{json, Map, Value};

pub const CONTENT_TYPE: &str = "application/health+json";

/// Overall and per-check status, ordered so that `max` gives the worse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Status::Pass | Status::Warn => 200,
            Status::Fail => 503,
        }
    }
}

/// Whether each secret could be read through `wasi:config` just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialPresence {
    pub client_id: bool,
    pub client_secret: bool,
}

/// Everything the report is built from.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs<'a> {
    pub now: UnixMillis,
    pub settings_errors: &'a [SettingError],
    pub credentials: CredentialPresence,
    pub service: Option<&'a ServiceStatus>,
    pub districts: &'a [DistrictRecord],
    pub expiry_skew_ms: u64,
    /// The native host's secrets provider status, when there is one.
    pub secrets: Option<&'a HostSecretsStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub status: Status,
    pub body: Value,
}

impl HealthReport {
    pub fn http_status(&self) -> u16 {
        self.status.http_status()
    }
}

/// Builds the report. Pure: the same inputs always give the same body.
pub fn report(input: &HealthInputs<'_>) -> HealthReport {
    let now = input.now;
    let mut checks = Map::new();
    // The first reason the instance cannot serve, in order of how actionable it is.
    let mut blocking: Option<ErrorRecord> = None;
    let mut block = |code: &str, message: String| {
        blocking.get_or_insert(ErrorRecord {
            code: code.into(),
            message,
            at: now,
        });
    };

    if !input.settings_errors.is_empty() {
        let output = input
            .settings_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        block("settings_invalid", output.clone());
        checks.insert(
            "clever:settings".into(),
            json!([{ "componentType": "system", "status": "fail", "time": rfc3339(now), "output": output }]),
        );
    }

    let (cred_status, cred_output) = credentials_check(input, &mut block);
    checks.insert(
        "clever:credentials".into(),
        json!([{
            "componentType": "system",
            "status": cred_status.as_str(),
            "time": rfc3339(now),
            "output": cred_output,
        }]),
    );

    let secrets_status = secrets_check(input, &mut checks);
    let version_status = version_check(input, &mut checks, &mut block);
    let rate_status = rate_limit_check(input, &mut checks);

    let skew = input.expiry_skew_ms;
    let mut district_checks = Vec::with_capacity(input.districts.len());
    let mut any_usable = false;
    let mut worst_district = Status::Pass;
    for d in input.districts {
        let usable = d.has_usable_token(now, skew);
        any_usable |= usable;
        let rate_limited = d.rate_limited_until.is_some_and(|t| t > now);
        let status = if !usable {
            Status::Fail
        } else if d.consecutive_failures > 0 || rate_limited {
            Status::Warn
        } else {
            Status::Pass
        };
        worst_district = worst_district.max(status);
        district_checks.push(json!({
            "componentId": d.district_id,
            "componentType": "district",
            "status": status.as_str(),
            "time": rfc3339(now),
            "expiresAt": d.expires_at.map(rfc3339),
            "refreshAt": d.refresh_at.map(rfc3339),
            "lastSuccess": d.last_success.map(rfc3339),
            "lastError": d.last_error.as_ref().map(error_json),
            "consecutiveFailures": d.consecutive_failures,
            "rateLimitedUntil": d.rate_limited_until.filter(|t| *t > now).map(rfc3339),
        }));
    }
    if district_checks.is_empty() {
        district_checks.push(json!({
            "componentType": "district",
            "status": "fail",
            "time": rfc3339(now),
            "output": "no district token has been obtained yet",
        }));
    }
    checks.insert(
        "clever:districtTokens".into(),
        Value::Array(district_checks),
    );

    let last_error = latest_error(input);
    // A configuration error outranks "no valid token": it names what to change, and no retry
    // will clear it.
    if let Some(e) = last_error
        .as_ref()
        .filter(|e| e.code == crate::backoff::OUTBOUND_DENIED)
    {
        block(&e.code, e.message.clone());
    }
    if !any_usable {
        let message = match &last_error {
            Some(e) => format!("no valid token; last error: {}", e.message),
            None => "no valid token has been obtained yet".to_string(),
        };
        block("no_valid_token", message);
    }

    let status = if blocking.is_some() {
        Status::Fail
    } else if [
        worst_district,
        cred_status,
        version_status,
        rate_status,
        secrets_status,
    ]
    .iter()
    .any(|s| *s > Status::Pass)
    {
        Status::Warn
    } else {
        Status::Pass
    };
    let error = match status {
        Status::Fail => blocking,
        Status::Warn => last_error,
        Status::Pass => None,
    };

    let body = json!({
        "status": status.as_str(),
        "serviceId": "clever-auth",
        "description": "Clever API authentication: a valid token per district",
        "time": rfc3339(now),
        "lastSuccessfulAuth": input.service.and_then(|s| s.last_successful_auth).map(rfc3339),
        "error": error.as_ref().map(error_json),
        "checks": Value::Object(checks),
    });
    HealthReport { status, body }
}

fn credentials_check(
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
        if let Some(e) = input.secrets.and_then(|s| s.last_error.as_ref()) {
            message.push_str(&format!(" (secrets provider: {})", e.message));
        }
        block("credentials_missing", message.clone());
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

fn secrets_check(input: &HealthInputs<'_>, checks: &mut Map<String, Value>) -> Status {
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

fn version_check(
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

fn rate_limit_check(input: &HealthInputs<'_>, checks: &mut Map<String, Value>) -> Status {
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

fn latest_error(input: &HealthInputs<'_>) -> Option<ErrorRecord> {
    input
        .service
        .and_then(|s| s.last_error.as_ref())
        .into_iter()
        .chain(input.districts.iter().filter_map(|d| d.last_error.as_ref()))
        .max_by_key(|e| e.at)
        .cloned()
}

fn error_json(e: &ErrorRecord) -> Value {
    json!({ "code": e.code, "message": e.message, "at": rfc3339(e.at) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_800_000_000_000;
    const BOTH: CredentialPresence = CredentialPresence {
        client_id: true,
        client_secret: true,
    };

    fn inputs<'a>(
        credentials: CredentialPresence,
        service: Option<&'a ServiceStatus>,
        districts: &'a [DistrictRecord],
    ) -> HealthInputs<'a> {
        HealthInputs {
            now: NOW,
            settings_errors: &[],
            credentials,
            service,
            districts,
            expiry_skew_ms: 30_000,
            secrets: None,
        }
    }

    fn district(id: &str, expires_in_ms: i64) -> DistrictRecord {
        DistrictRecord {
            district_id: id.into(),
            expires_at: Some((NOW as i64 + expires_in_ms) as u64),
            last_success: Some(NOW - 1000),
            ..Default::default()
        }
    }

    #[test]
    fn no_credentials_yet_is_a_clear_fail() {
        let none = CredentialPresence {
            client_id: false,
            client_secret: false,
        };
        let r = report(&inputs(none, None, &[]));
        assert_eq!((r.status, r.http_status()), (Status::Fail, 503));
        assert_eq!(r.body["error"]["code"], "credentials_missing");
        let msg = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("clever_client_id and clever_client_secret"),
            "{msg}"
        );
        assert_eq!(r.body["lastSuccessfulAuth"], Value::Null);
        assert_eq!(r.body["checks"]["clever:credentials"][0]["status"], "fail");
    }

    #[test]
    fn all_districts_valid_is_pass() {
        let svc = ServiceStatus {
            last_successful_auth: Some(NOW - 1000),
            credentials: Some(CredentialState::Accepted),
            ..Default::default()
        };
        let ds = [district("a", 3_600_000), district("b", 3_600_000)];
        let r = report(&inputs(BOTH, Some(&svc), &ds));
        assert_eq!((r.status, r.http_status()), (Status::Pass, 200));
        assert_eq!(r.body["error"], Value::Null);
        assert_eq!(r.body["lastSuccessfulAuth"], rfc3339(NOW - 1000));
        assert_eq!(
            r.body["checks"]["clever:districtTokens"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn one_failing_district_is_warn_with_its_error() {
        let svc = ServiceStatus::default();
        let mut bad = district("b", -1);
        bad.last_error = Some(ErrorRecord {
            code: "http_503".into(),
            message: "Clever answered 503".into(),
            at: NOW - 5,
        });
        let ds = [district("a", 3_600_000), bad];
        let r = report(&inputs(BOTH, Some(&svc), &ds));
        assert_eq!(r.status, Status::Warn);
        assert_eq!(r.http_status(), 200);
        assert_eq!(r.body["error"]["code"], "http_503");
        assert_eq!(
            r.body["checks"]["clever:districtTokens"][1]["status"],
            "fail"
        );
    }

    #[test]
    fn an_outbound_denial_fails_health_with_its_own_code_even_with_tokens() {
        let svc = ServiceStatus {
            last_error: Some(ErrorRecord {
                code: "outbound_denied".into(),
                message: "probe: api.example.org:443 is not an allowed outbound host".into(),
                at: NOW - 5,
            }),
            ..Default::default()
        };
        for ds in [vec![], vec![district("a", 3_600_000)]] {
            let r = report(&inputs(BOTH, Some(&svc), &ds));
            assert_eq!((r.status, r.http_status()), (Status::Fail, 503));
            assert_eq!(r.body["error"]["code"], "outbound_denied");
            assert!(r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("api.example.org")));
        }
    }

    #[test]
    fn token_inside_skew_counts_as_expired() {
        let ds = [district("a", 29_999)];
        let r = report(&inputs(BOTH, None, &ds));
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.body["error"]["code"], "no_valid_token");
    }

    #[test]
    fn failing_refresh_with_valid_token_is_warn() {
        let mut d = district("a", 600_000);
        d.consecutive_failures = 2;
        d.rate_limited_until = Some(NOW + 10_000);
        let r = report(&inputs(BOTH, None, std::slice::from_ref(&d)));
        assert_eq!(r.status, Status::Warn);
        assert_eq!(
            r.body["checks"]["clever:districtTokens"][0]["rateLimitedUntil"],
            rfc3339(NOW + 10_000)
        );
    }

    #[test]
    fn version_mismatch_warns_and_unsupported_fails() {
        use crate::status::VersionRecord;
        let ds = [district("a", 3_600_000)];
        let mut svc = ServiceStatus {
            api_version: Some(VersionRecord {
                configured: "v3.0".into(),
                seen: vec!["v3.1".into()],
                state: VersionState::Mismatch,
                at: NOW,
            }),
            ..Default::default()
        };
        let r = report(&inputs(BOTH, Some(&svc), &ds));
        assert_eq!(r.status, Status::Warn);
        assert_eq!(r.body["checks"]["clever:apiVersion"][0]["status"], "warn");
        if let Some(v) = svc.api_version.as_mut() {
            v.state = VersionState::Unsupported;
        }
        let r = report(&inputs(BOTH, Some(&svc), &ds));
        assert_eq!((r.status, r.http_status()), (Status::Fail, 503));
        assert_eq!(r.body["error"]["code"], "version_unsupported");
    }

    #[test]
    fn rate_limiting_in_progress_warns() {
        let ds = [district("a", 3_600_000)];
        let svc = ServiceStatus {
            rate_limited_until: Some(NOW + 5_000),
            ..Default::default()
        };
        let r = report(&inputs(BOTH, Some(&svc), &ds));
        assert_eq!(r.status, Status::Warn);
        assert_eq!(
            r.body["checks"]["clever:rateLimit"][0]["rateLimitedUntil"],
            rfc3339(NOW + 5_000)
        );
        let past = ServiceStatus {
            rate_limited_until: Some(NOW - 1),
            ..Default::default()
        };
        assert_eq!(report(&inputs(BOTH, Some(&past), &ds)).status, Status::Pass);
    }

    #[test]
    fn an_unreachable_vault_is_named_in_the_credentials_error() {
        let none = CredentialPresence {
            client_id: false,
            client_secret: false,
        };
        let secrets = HostSecretsStatus {
            provider: "keyvault".into(),
            source: "clever.vault.azure.net".into(),
            last_error: Some(ErrorRecord {
                code: "unreachable".into(),
                message: "Key Vault unreachable".into(),
                at: NOW,
            }),
            consecutive_failures: 3,
            ..Default::default()
        };
        let mut i = inputs(none, None, &[]);
        i.secrets = Some(&secrets);
        let r = report(&i);
        assert_eq!(r.status, Status::Fail);
        assert!(r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Key Vault unreachable")));
        assert_eq!(r.body["checks"]["secrets:keyvault"][0]["status"], "fail");
    }

    #[test]
    fn a_failing_vault_with_secrets_in_hand_only_warns() {
        let secrets = HostSecretsStatus {
            provider: "keyvault".into(),
            last_success: Some(NOW - 60_000),
            last_error: Some(ErrorRecord {
                code: "http_503".into(),
                message: "Key Vault answered 503".into(),
                at: NOW,
            }),
            ..Default::default()
        };
        let ds = [district("a", 3_600_000)];
        let mut i = inputs(BOTH, None, &ds);
        i.secrets = Some(&secrets);
        let r = report(&i);
        assert_eq!((r.status, r.http_status()), (Status::Warn, 200));
        assert_eq!(r.body["checks"]["secrets:keyvault"][0]["status"], "warn");
    }

    #[test]
    fn bad_settings_fail_and_are_named() {
        let errs = [SettingError {
            setting: "clever_grant",
            message: "`x` is not one of".into(),
        }];
        let mut i = inputs(BOTH, None, &[]);
        i.settings_errors = &errs;
        let r = report(&i);
        assert_eq!(r.body["error"]["code"], "settings_invalid");
        assert!(r.body["checks"]["clever:settings"][0]["output"]
            .as_str()
            .is_some_and(|o| o.contains("clever_grant")));
    }
}
