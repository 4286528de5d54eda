//! The health report for `GET /health/clever-auth`, in the IETF "Health Check Response Format
//! for HTTP APIs" shape (`application/health+json`).
//!
//! Built only from records already in memory, so answering never waits on Clever or Key Vault.
//! Status rules follow App Service's health check: `warn` is still HTTP 200 (the instance can
//! serve); 503 means this instance has no usable token or cannot get one.

pub use crate::health_summary::DistrictCounts;
use crate::settings::SettingError;
use crate::status::{
    CredentialState, DistrictRecord, ErrorRecord, HostDeadlineStatus, HostSecretsStatus,
    ServiceStatus, VersionState,
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

/// Which answer to render. The public one is safe for anyone who can reach the endpoint; the
/// detail names districts, the secrets source, rate-limit state and full error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Public,
    /// One page (1-based) of [`DETAIL_PAGE_SIZE`] districts.
    Detail {
        page: u32,
    },
}

/// Districts per detail page: the detail answer stays below ~100 KB however many districts
/// there are.
pub const DETAIL_PAGE_SIZE: usize = 250;

/// Where the district part of the report comes from.
#[derive(Debug, Clone, Copy)]
pub enum Districts<'a> {
    /// Every district's record (the detail view, or when the precomputed record cannot answer).
    Records(&'a [DistrictRecord]),
    /// The precomputed counts ([`crate::health_summary`]) and the newest error among them.
    Counted {
        counts: DistrictCounts,
        latest_error: Option<&'a ErrorRecord>,
    },
}

/// Everything the report is built from.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs<'a> {
    pub now: UnixMillis,
    pub settings_errors: &'a [SettingError],
    pub credentials: CredentialPresence,
    pub service: Option<&'a ServiceStatus>,
    pub districts: Districts<'a>,
    pub expiry_skew_ms: u64,
    /// The native host's secrets provider status, when there is one.
    pub secrets: Option<&'a HostSecretsStatus>,
    /// Which instance answers (`WEBSITE_INSTANCE_ID` on App Service), when known.
    pub instance_id: Option<&'a str>,
    pub view: View,
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

/// A district's status at `now`: `fail` without a usable token, `warn` while its refreshes
/// fail or it is rate limited, else `pass`.
pub fn district_status(d: &DistrictRecord, now: UnixMillis, skew_ms: u64) -> Status {
    if !d.has_usable_token(now, skew_ms) {
        Status::Fail
    } else if d.consecutive_failures > 0 || d.rate_limited_until.is_some_and(|t| t > now) {
        Status::Warn
    } else {
        Status::Pass
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
    let (counts, district_error) = match input.districts {
        Districts::Records(records) => (
            DistrictCounts::of(records, now, skew),
            records
                .iter()
                .filter_map(|d| d.last_error.as_ref())
                .max_by_key(|e| e.at),
        ),
        Districts::Counted {
            counts,
            latest_error,
        } => (counts, latest_error),
    };
    let mut page_info = None;
    if let (View::Detail { page }, Districts::Records(records)) = (input.view, input.districts) {
        let (district_checks, info) = district_page(records, page, now, skew);
        checks.insert(
            "clever:districtTokens".into(),
            Value::Array(district_checks),
        );
        page_info = Some(info);
    }

    let last_error = input
        .service
        .and_then(|s| s.last_error.as_ref())
        .into_iter()
        .chain(district_error)
        .max_by_key(|e| e.at)
        .cloned();
    // A configuration error outranks "no valid token": it names what to change, and no retry
    // will clear it.
    if let Some(e) = last_error
        .as_ref()
        .filter(|e| e.code == crate::backoff::OUTBOUND_DENIED)
    {
        block(&e.code, e.message.clone());
    }
    if !counts.any_usable() {
        let message = match &last_error {
            Some(e) => format!("no valid token; last error: {}", e.message),
            None => "no valid token has been obtained yet".to_string(),
        };
        block("no_valid_token", message);
    }

    let status = if blocking.is_some() {
        Status::Fail
    } else if [
        counts.worst(),
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

    let mut body = json!({
        "status": status.as_str(),
        "serviceId": "clever-auth",
        "description": "Clever API authentication: a valid token per district",
        "time": rfc3339(now),
        "lastSuccessfulAuth": input.service.and_then(|s| s.last_successful_auth).map(rfc3339),
        "instanceId": input.instance_id,
        "districts": {
            "total": counts.total(),
            "pass": counts.pass,
            "warn": counts.warn,
            "fail": counts.fail,
        },
    });
    match input.view {
        View::Public => {
            body["error"] = error.as_ref().map(public_error_json).into();
        }
        View::Detail { .. } => {
            body["error"] = error.as_ref().map(error_json).into();
            body["checks"] = Value::Object(checks);
            if let Some(info) = page_info {
                body["districtsPage"] = info;
            }
        }
    }
    HealthReport { status, body }
}

/// How long after a component call overran its deadline health says `warn` about it.
pub const DEADLINE_OVERRUN_WARN_MS: u64 = 15 * 60 * 1000;

/// Adds the native host's `host:deadlines` check to a report: component calls cut off at their
/// wall-clock deadline. A recent overrun makes a passing report `warn` (the service still
/// serves: the instance was replaced); an older one is listed with its count only. Nothing is
/// added when no call ever overran (and under Spin, which writes no such record).
pub fn with_host_deadlines(
    mut report: HealthReport,
    now: UnixMillis,
    deadlines: Option<&HostDeadlineStatus>,
) -> HealthReport {
    let Some(d) = deadlines.filter(|d| d.overruns > 0) else {
        return report;
    };
    let recent = d
        .last
        .as_ref()
        .filter(|l| now.saturating_sub(l.at) < DEADLINE_OVERRUN_WARN_MS);
    let status = if recent.is_some() {
        Status::Warn
    } else {
        Status::Pass
    };
    let output = match &d.last {
        Some(l) => format!(
            "{} component call(s) overran their deadline; the last, `{}`, was stopped after {} ms and its instance dropped",
            d.overruns, l.call, l.deadline_ms
        ),
        None => format!("{} component call(s) overran their deadline", d.overruns),
    };
    let check = json!([{
        "componentType": "system",
        "status": status.as_str(),
        "time": rfc3339(now),
        "observedValue": d.overruns,
        "output": output,
        "lastOverrun": d.last.as_ref().map(|l| rfc3339(l.at)),
    }]);
    if let Some(checks) = report.body.get_mut("checks").and_then(Value::as_object_mut) {
        checks.insert("host:deadlines".into(), check);
    }
    if let Some(last) = recent {
        if report.status == Status::Pass {
            report.status = Status::Warn;
            report.body["status"] = json!(Status::Warn.as_str());
            report.body["error"] = error_json(&ErrorRecord {
                code: "component_deadline".into(),
                message: output,
                at: last.at,
            });
        }
    }
    report
}

/// One page of the per-district checks, and where the page sits among all of them.
fn district_page(
    records: &[DistrictRecord],
    page: u32,
    now: UnixMillis,
    skew: u64,
) -> (Vec<Value>, Value) {
    let pages = records.len().div_ceil(DETAIL_PAGE_SIZE).max(1);
    let page = usize::try_from(page).unwrap_or(usize::MAX).clamp(1, pages);
    let mut checks: Vec<Value> = records
        .iter()
        .skip((page - 1) * DETAIL_PAGE_SIZE)
        .take(DETAIL_PAGE_SIZE)
        .map(|d| {
            json!({
                "componentId": d.district_id,
                "componentType": "district",
                "status": district_status(d, now, skew).as_str(),
                "time": rfc3339(now),
                "expiresAt": d.expires_at.map(rfc3339),
                "refreshAt": d.refresh_at.map(rfc3339),
                "lastSuccess": d.last_success.map(rfc3339),
                "lastError": d.last_error.as_ref().map(error_json),
                "consecutiveFailures": d.consecutive_failures,
                "rateLimitedUntil": d.rate_limited_until.filter(|t| *t > now).map(rfc3339),
            })
        })
        .collect();
    if checks.is_empty() {
        checks.push(json!({
            "componentType": "district",
            "status": "fail",
            "time": rfc3339(now),
            "output": "no district token has been obtained yet",
        }));
    }
    let info = json!({
        "page": page,
        "pages": pages,
        "pageSize": DETAIL_PAGE_SIZE,
        "total": records.len(),
    });
    (checks, info)
}

/// What the public answer says about an error: its stable code and a fixed description of
/// that code. The recorded message may name hosts, districts or Clever's own words; those stay
/// in the detail view.
pub fn public_message(code: &str) -> &'static str {
    match code {
        "credentials_missing" => "the Clever client credentials are not available yet",
        "settings_invalid" => "a setting has an unusable value",
        "no_valid_token" => "no valid Clever token is available",
        "version_unsupported" => "Clever does not support the configured API version",
        "bad_credentials" => "Clever rejected the client credentials",
        "timeout" => "a call to Clever timed out",
        "connection_error" => "Clever could not be reached",
        "rate_limited" => "Clever is rate limiting this application",
        "server_error" => "Clever answered with a server error",
        "malformed_response" => "Clever's response could not be used",
        "token_revoked" => "Clever refused a district token",
        "outbound_denied" => "the outbound policy refused a call",
        "component_deadline" => "a component call overran its deadline",
        "bad_request" | "forbidden" | "not_found" | "payload_too_large" | "not_implemented"
        | "client_error" | "unexpected_status" | "request_invalid" => {
            "Clever refused a request; it is not retried"
        }
        _ => "see the detail view of the health answer",
    }
}

fn public_error_json(e: &ErrorRecord) -> Value {
    json!({ "code": e.code, "message": public_message(&e.code), "at": rfc3339(e.at) })
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
            districts: Districts::Records(districts),
            expiry_skew_ms: 30_000,
            secrets: None,
            instance_id: None,
            view: View::Detail { page: 1 },
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

    fn passing() -> HealthReport {
        let svc = ServiceStatus {
            last_successful_auth: Some(NOW - 1000),
            credentials: Some(CredentialState::Accepted),
            ..Default::default()
        };
        let ds = [district("a", 3_600_000)];
        report(&inputs(BOTH, Some(&svc), &ds))
    }

    fn overran(ago_ms: u64) -> HostDeadlineStatus {
        HostDeadlineStatus {
            overruns: 2,
            last: Some(crate::status::DeadlineOverrun {
                call: "run-due".into(),
                deadline_ms: 300_000,
                at: NOW - ago_ms,
            }),
        }
    }

    fn public(i: HealthInputs<'_>) -> HealthReport {
        report(&HealthInputs {
            view: View::Public,
            ..i
        })
    }

    /// Every string in the body, keys included, for "does not mention" checks.
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                strings(x, out);
            }),
            _ => {}
        }
    }

    #[test]
    fn a_recent_deadline_overrun_turns_pass_into_warn_with_its_own_code() {
        let r = with_host_deadlines(passing(), NOW, Some(&overran(60_000)));
        assert_eq!((r.status, r.http_status()), (Status::Warn, 200));
        assert_eq!(r.body["status"], "warn");
        assert_eq!(r.body["error"]["code"], "component_deadline");
        let check = &r.body["checks"]["host:deadlines"][0];
        assert_eq!(check["status"], "warn");
        assert_eq!(check["observedValue"], 2);
        assert!(check["output"]
            .as_str()
            .is_some_and(|o| o.contains("`run-due`") && o.contains("300000 ms")));
    }

    #[test]
    fn an_old_overrun_is_listed_but_passes() {
        let r = with_host_deadlines(passing(), NOW, Some(&overran(DEADLINE_OVERRUN_WARN_MS)));
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.body["error"], Value::Null);
        assert_eq!(r.body["checks"]["host:deadlines"][0]["status"], "pass");
        let just_inside =
            with_host_deadlines(passing(), NOW, Some(&overran(DEADLINE_OVERRUN_WARN_MS - 1)));
        assert_eq!(just_inside.status, Status::Warn);
    }

    #[test]
    fn no_overrun_adds_nothing_and_a_fail_stays_a_fail() {
        assert_eq!(with_host_deadlines(passing(), NOW, None), passing());
        let never = HostDeadlineStatus::default();
        assert_eq!(with_host_deadlines(passing(), NOW, Some(&never)), passing());
        let failing = report(&inputs(BOTH, None, &[]));
        let r = with_host_deadlines(failing.clone(), NOW, Some(&overran(1)));
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.body["error"], failing.body["error"]);
        assert_eq!(r.body["checks"]["host:deadlines"][0]["status"], "warn");
    }

    #[test]
    fn the_public_answer_has_the_spec_fields_and_counts_and_nothing_internal() {
        let svc = ServiceStatus {
            last_successful_auth: Some(NOW - 1000),
            rate_limited_until: Some(NOW + 5_000),
            rate_limit: Some(crate::ratelimit::Bucket {
                name: Some("per-token-bucket".into()),
                limit: Some(1200),
                remaining: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bad = district("d-secret-district", 600_000);
        bad.consecutive_failures = 1;
        bad.last_error = Some(ErrorRecord {
            code: "connection_error".into(),
            message: "probe: connection to 10.1.2.3:443 refused".into(),
            at: NOW - 5,
        });
        let ds = [district("d-other", 3_600_000), bad, district("d-gone", -1)];
        let secrets = HostSecretsStatus {
            provider: "keyvault".into(),
            source: "contoso-kv.vault.azure.net".into(),
            last_success: Some(NOW - 10),
            ..Default::default()
        };
        let mut i = inputs(BOTH, Some(&svc), &ds);
        i.secrets = Some(&secrets);
        i.instance_id = Some("inst-7");
        let r = public(i);
        assert_eq!((r.status, r.http_status()), (Status::Warn, 200));
        let mut keys: Vec<&str> = r
            .body
            .as_object()
            .map_or(vec![], |o| o.keys().map(String::as_str).collect::<Vec<_>>());
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "description",
                "districts",
                "error",
                "instanceId",
                "lastSuccessfulAuth",
                "serviceId",
                "status",
                "time"
            ]
        );
        assert_eq!(
            r.body["districts"],
            json!({"total": 3, "pass": 1, "warn": 1, "fail": 1})
        );
        assert_eq!(r.body["error"]["code"], "connection_error");
        assert_eq!(r.body["error"]["message"], "Clever could not be reached");
        assert_eq!(r.body["instanceId"], "inst-7");
        let mut all = Vec::new();
        strings(&r.body, &mut all);
        for needle in [
            "d-secret-district",
            "d-other",
            "contoso",
            "10.1.2.3",
            "per-token",
            "keyvault",
        ] {
            assert!(
                all.iter().all(|s| !s.contains(needle)),
                "{needle} in {}",
                r.body
            );
        }
        // The same inputs in detail show what the public answer leaves out.
        let d = report(&i);
        assert_eq!(d.status, r.status);
        assert!(d.body.to_string().contains("d-secret-district"));
        assert!(d.body.to_string().contains("contoso-kv.vault.azure.net"));
    }

    #[test]
    fn counts_from_the_summary_give_the_same_answer_as_the_records() {
        use crate::health_summary::HealthSummary;
        use crate::status::StatusSnapshot;
        let mut failing = district("b", 120_000);
        failing.consecutive_failures = 2;
        failing.last_error = Some(ErrorRecord {
            code: "server_error".into(),
            message: "x".into(),
            at: NOW - 2,
        });
        let cases: Vec<Vec<DistrictRecord>> = vec![
            vec![],
            vec![district("a", 3_600_000)],
            vec![district("a", 3_600_000), failing.clone()],
            vec![district("a", -1), failing],
        ];
        for ds in cases {
            let snap = StatusSnapshot {
                districts: ds
                    .iter()
                    .map(|d| (d.district_id.clone(), d.clone()))
                    .collect(),
                ..Default::default()
            };
            let summary = HealthSummary::compute(&snap, NOW - 1_000, 30_000);
            for t in [NOW, NOW + 100_000, NOW + 4_000_000] {
                let mut from_records = inputs(BOTH, Some(&summary.service), &ds);
                from_records.now = t;
                let mut from_summary = from_records;
                from_summary.districts = Districts::Counted {
                    counts: summary.counts_at(t, 30_000).unwrap_or_default(),
                    latest_error: summary.latest_error.as_ref(),
                };
                assert_eq!(public(from_records), public(from_summary), "{ds:?} at {t}");
            }
        }
    }

    #[test]
    fn the_detail_view_is_paged() {
        let ds: Vec<DistrictRecord> = (0..DETAIL_PAGE_SIZE * 2 + 3)
            .map(|i| district(&format!("d-{i:05}"), 3_600_000))
            .collect();
        let mut i = inputs(BOTH, None, &ds);
        let first = report(&i);
        let page = |r: &HealthReport| {
            r.body["checks"]["clever:districtTokens"]
                .as_array()
                .map_or(0, Vec::len)
        };
        assert_eq!(page(&first), DETAIL_PAGE_SIZE);
        assert_eq!(first.body["districtsPage"]["pages"], 3);
        assert_eq!(first.body["districts"]["total"], ds.len());
        i.view = View::Detail { page: 3 };
        let last = report(&i);
        assert_eq!(page(&last), 3);
        assert_eq!(
            last.body["checks"]["clever:districtTokens"][0]["componentId"],
            format!("d-{:05}", DETAIL_PAGE_SIZE * 2)
        );
        // Out of range pages clamp instead of failing.
        i.view = View::Detail { page: 99 };
        assert_eq!(report(&i).body["districtsPage"]["page"], 3);
    }
}
