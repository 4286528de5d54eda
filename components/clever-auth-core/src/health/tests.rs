//! The report end to end: every rule seen through `report` and `with_host_deadlines`.

use super::*;
use crate::settings::SettingError;
use crate::status::{
    CredentialState, DistrictRecord, ErrorRecord, HostDeadlineStatus, HostSecretsStatus,
    ServiceStatus, VersionState,
};
use crate::time_fmt::rfc3339;
use crate::UnixMillis;
use serde_json::{json, Value};

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

/// Each way the secrets provider can fail gets its own public code and fixed message, so an
/// operator knows whether to add the secret, grant the role or look at the network; the
/// vault's own words stay in the detail.
#[test]
fn missing_credentials_are_named_by_the_providers_failure() {
    let none = CredentialPresence {
        client_id: false,
        client_secret: true,
    };
    let cases = [
        (
            "vault_forbidden",
            "the secrets store refused this service's identity",
        ),
        (
            "secret_not_found",
            "a Clever client credential is absent from the secrets store",
        ),
        (
            "vault_unreachable",
            "the secrets store could not be reached",
        ),
        (
            "vault_throttled",
            "the secrets store is throttling this service",
        ),
        ("vault_error", "the secrets store answered with an error"),
        (
            "identity_unavailable",
            "the managed identity endpoint issued no token",
        ),
        // A code this version does not know says no more than before.
        (
            "something_new",
            "the Clever client credentials are not available yet",
        ),
    ];
    for (code, public) in cases {
        let secrets = HostSecretsStatus {
            provider: "keyvault".into(),
            source: "kv-secret-name.vault.azure.net".into(),
            last_error: Some(ErrorRecord {
                code: code.into(),
                message: "Key Vault Forbidden: caller lacks secrets/get on kv-secret-name".into(),
                at: NOW - 1,
            }),
            consecutive_failures: 1,
            ..Default::default()
        };
        let mut input = inputs(none, None, &[]);
        input.secrets = Some(&secrets);
        input.view = View::Public;
        let r = report(&input);
        assert_eq!(r.status, Status::Fail, "{code}");
        let expected = if code == "something_new" {
            "credentials_missing"
        } else {
            code
        };
        assert_eq!(r.body["error"]["code"], expected, "{code}");
        assert_eq!(r.body["error"]["message"], public, "{code}");
        let body = r.body.to_string();
        assert!(!body.contains("kv-secret-name"), "{code}: {body}");

        input.view = View::Detail { page: 1 };
        let detail = report(&input).body;
        let message = detail["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("caller lacks secrets/get"), "{message}");
    }
}

#[test]
fn rejected_credentials_without_a_token_say_so() {
    let svc = ServiceStatus {
        credentials: Some(CredentialState::Rejected),
        last_error: Some(ErrorRecord {
            code: "bad_credentials".into(),
            message: "Clever answered 401".into(),
            at: NOW - 1,
        }),
        ..Default::default()
    };
    let mut input = inputs(BOTH, Some(&svc), &[]);
    input.view = View::Public;
    let r = report(&input);
    assert_eq!(r.status, Status::Fail);
    assert_eq!(r.body["error"]["code"], "bad_credentials");
    assert_eq!(
        r.body["error"]["message"],
        "Clever rejected the client credentials"
    );
    // With a token still valid, rejected credentials are a warning, not a failure.
    let ds = [district("a", 3_600_000)];
    let mut input = inputs(BOTH, Some(&svc), &ds);
    input.view = View::Public;
    assert_eq!(report(&input).status, Status::Warn);
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
            code: "vault_unreachable".into(),
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
    assert_eq!(r.body["error"]["code"], "vault_unreachable");
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
