//! Builds the whole answer from the checks.

use super::checks::{credentials_check, rate_limit_check, secrets_check, version_check};
use super::detail::{district_page, error_json};
use super::grade::Status;
use super::inputs::{Districts, HealthInputs, HealthReport, View};
use super::public::public_error_json;
use crate::health_summary::DistrictCounts;
use crate::status::{CredentialState, ErrorRecord};
use crate::time_fmt::rfc3339;
use serde_json::{json, Map, Value};

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
        // Rejected credentials are why there is no token, and what the operator must fix.
        let rejected = input.service.and_then(|s| s.credentials) == Some(CredentialState::Rejected);
        block(
            if rejected {
                "bad_credentials"
            } else {
                "no_valid_token"
            },
            message,
        );
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
