//! Alert conditions, evaluated from the status snapshot: the component raises an alert event
//! when a condition starts and a clear event when it ends, so an Azure Monitor rule on the
//! stable `alert` field fires once per incident rather than once per log line.

// The raised alerts are part of the status snapshot, so their types live there.
pub use crate::status::{ActiveAlert, ActiveAlerts};
use crate::status::{CredentialState, StatusSnapshot, VersionState};
use crate::UnixMillis;

/// The stable names of the `alert` field; monitoring rules match on them.
pub mod names {
    pub const API_VERSION_MISMATCH: &str = "api_version_mismatch";
    pub const API_VERSION_UNSUPPORTED: &str = "api_version_unsupported";
    pub const AUTH_FAILING: &str = "auth_failing";
    pub const DISTRICT_DISCONNECTED: &str = "district_disconnected";
    pub const RATE_LIMITED_PROLONGED: &str = "rate_limited_prolonged";
}

/// How long a condition must last before it is an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub auth_failing_ms: u64,
    pub rate_limited_ms: u64,
    pub skew_ms: u64,
}

/// What changed between two evaluations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub raised: Vec<ActiveAlert>,
    pub cleared: Vec<ActiveAlert>,
}

fn key(alert: &str, district: Option<&str>) -> String {
    match district {
        Some(d) => format!("{alert}/{d}"),
        None => alert.to_string(),
    }
}

/// The alerts that hold at `now`, keeping the `raised_at` of those already raised.
pub fn evaluate(
    snapshot: &StatusSnapshot,
    previous: &ActiveAlerts,
    now: UnixMillis,
    t: &Thresholds,
) -> ActiveAlerts {
    let mut current = ActiveAlerts::new();
    let mut hold = |alert: &str, district: Option<&str>, since: UnixMillis| {
        let k = key(alert, district);
        let raised_at = previous.get(&k).map_or(now, |a| a.raised_at);
        current.insert(
            k,
            ActiveAlert {
                alert: alert.to_string(),
                district: district.map(str::to_string),
                since,
                raised_at,
            },
        );
    };
    let service = &snapshot.service;

    if let Some(v) = &service.api_version {
        match v.state {
            VersionState::Mismatch => hold(names::API_VERSION_MISMATCH, None, v.at),
            VersionState::Unsupported => hold(names::API_VERSION_UNSUPPORTED, None, v.at),
            _ => {}
        }
    }

    // Rejected credentials will not fix themselves: no grace period.
    let rejected = service.credentials == Some(CredentialState::Rejected);
    if let Some(since) = service.failing_since {
        if rejected || now.saturating_sub(since) >= t.auth_failing_ms {
            hold(names::AUTH_FAILING, None, since);
        }
    } else if rejected {
        hold(names::AUTH_FAILING, None, now);
    }

    if let Some(since) = service.rate_limited_since {
        let still_limited = service.rate_limited_until.is_some_and(|u| u > now);
        if still_limited && now.saturating_sub(since) >= t.rate_limited_ms {
            hold(names::RATE_LIMITED_PROLONGED, None, since);
        }
    }

    // A district that was connected once and now has no usable token: callers for it are
    // being refused. Districts never connected yet are covered by auth_failing.
    for (id, record) in &snapshot.districts {
        if record.last_success.is_some() && !record.has_usable_token(now, t.skew_ms) {
            let since = record
                .expires_at
                .map(|e| e.saturating_sub(t.skew_ms))
                .or(record.last_error.as_ref().map(|e| e.at))
                .unwrap_or(now)
                .min(now);
            hold(names::DISTRICT_DISCONNECTED, Some(id), since);
        }
    }
    current
}

/// Alerts newly raised and alerts that ended.
pub fn transitions(previous: &ActiveAlerts, current: &ActiveAlerts) -> Transitions {
    Transitions {
        raised: current
            .iter()
            .filter(|(k, _)| !previous.contains_key(*k))
            .map(|(_, a)| a.clone())
            .collect(),
        cleared: previous
            .iter()
            .filter(|(k, _)| !current.contains_key(*k))
            .map(|(_, a)| a.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{DistrictRecord, ErrorRecord, VersionRecord};

    const T: Thresholds = Thresholds {
        auth_failing_ms: 900_000,
        rate_limited_ms: 600_000,
        skew_ms: 30_000,
    };

    fn names_of(a: &ActiveAlerts) -> Vec<&str> {
        a.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_healthy_snapshot_raises_nothing() {
        let mut s = StatusSnapshot::default();
        s.districts.insert(
            "d1".into(),
            DistrictRecord {
                district_id: "d1".into(),
                expires_at: Some(10_000_000),
                last_success: Some(1),
                ..Default::default()
            },
        );
        assert!(evaluate(&s, &ActiveAlerts::new(), 1_000, &T).is_empty());
    }

    #[test]
    fn auth_failing_waits_for_its_threshold_unless_credentials_are_rejected() {
        let mut s = StatusSnapshot::default();
        s.service.failing_since = Some(1_000);
        let none = ActiveAlerts::new();
        assert!(evaluate(&s, &none, 1_000 + 899_999, &T).is_empty());
        assert_eq!(
            names_of(&evaluate(&s, &none, 1_000 + 900_000, &T)),
            ["auth_failing"]
        );
        s.service.credentials = Some(CredentialState::Rejected);
        assert_eq!(names_of(&evaluate(&s, &none, 1_001, &T)), ["auth_failing"]);
    }

    #[test]
    fn rate_limiting_alerts_only_while_it_lasts_past_the_threshold() {
        let mut s = StatusSnapshot::default();
        s.service.rate_limited_since = Some(0);
        s.service.rate_limited_until = Some(700_000);
        let none = ActiveAlerts::new();
        assert!(evaluate(&s, &none, 599_999, &T).is_empty());
        assert_eq!(
            names_of(&evaluate(&s, &none, 600_000, &T)),
            ["rate_limited_prolonged"]
        );
        assert!(
            evaluate(&s, &none, 700_000, &T).is_empty(),
            "the limit has passed"
        );
    }

    #[test]
    fn each_disconnected_district_is_its_own_alert() {
        let mut s = StatusSnapshot::default();
        for (id, exp) in [("d1", 100_000), ("d2", 5_000_000), ("d3", 100_000)] {
            s.districts.insert(
                id.into(),
                DistrictRecord {
                    district_id: id.into(),
                    expires_at: Some(exp),
                    last_success: Some(1),
                    ..Default::default()
                },
            );
        }
        // Never connected: not a disconnection.
        s.districts.insert("d4".into(), DistrictRecord::default());
        let a = evaluate(&s, &ActiveAlerts::new(), 70_000, &T);
        assert_eq!(
            names_of(&a),
            ["district_disconnected/d1", "district_disconnected/d3"]
        );
        assert_eq!(a["district_disconnected/d1"].since, 70_000);
    }

    #[test]
    fn a_revoked_token_disconnects_from_the_error_time() {
        let mut s = StatusSnapshot::default();
        s.districts.insert(
            "d1".into(),
            DistrictRecord {
                district_id: "d1".into(),
                expires_at: None,
                last_success: Some(1),
                last_error: Some(ErrorRecord {
                    code: "token_revoked".into(),
                    message: "probe: 401".into(),
                    at: 500,
                }),
                ..Default::default()
            },
        );
        let a = evaluate(&s, &ActiveAlerts::new(), 2_000, &T);
        assert_eq!(a["district_disconnected/d1"].since, 500);
    }

    #[test]
    fn version_problems_alert_at_once() {
        let mut s = StatusSnapshot::default();
        s.service.api_version = Some(VersionRecord {
            configured: "v3.0".into(),
            seen: vec!["v3.1".into()],
            state: VersionState::Mismatch,
            at: 5,
        });
        assert_eq!(
            names_of(&evaluate(&s, &ActiveAlerts::new(), 6, &T)),
            ["api_version_mismatch"]
        );
    }

    #[test]
    fn transitions_report_each_incident_once_and_keep_raised_at() {
        let mut s = StatusSnapshot::default();
        s.service.credentials = Some(CredentialState::Rejected);
        let first = evaluate(&s, &ActiveAlerts::new(), 10, &T);
        let t1 = transitions(&ActiveAlerts::new(), &first);
        assert_eq!(t1.raised.len(), 1);
        assert!(t1.cleared.is_empty());

        let second = evaluate(&s, &first, 20, &T);
        assert_eq!(transitions(&first, &second), Transitions::default());
        assert_eq!(second["auth_failing"].raised_at, 10);

        s.service.credentials = Some(CredentialState::Accepted);
        let third = evaluate(&s, &second, 30, &T);
        let t3 = transitions(&second, &third);
        assert!(t3.raised.is_empty());
        assert_eq!(t3.cleared.len(), 1);
        assert_eq!(t3.cleared[0].alert, "auth_failing");
    }
}
