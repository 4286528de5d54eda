//! The native host's `store:reachable` check, on a shared store (Redis).

use super::detail::error_json;
use super::grade::Status;
use super::inputs::HealthReport;
use crate::status::{ErrorRecord, HostStoreStatus};
use crate::time_fmt::rfc3339;
use crate::UnixMillis;
use serde_json::{json, Value};

/// The public code of an unreachable shared store.
pub const STORE_UNREACHABLE: &str = "store_unreachable";

/// Adds `store:reachable`. An unreachable store makes a passing report `warn`: the gateway
/// still serves the unexpired tokens this instance last read, but nothing new is stored.
/// `alone_since`: this instance refreshes its tokens alone (`refresher::solo`), since then.
/// Nothing is added on the memory store (no record).
pub fn with_host_store(
    mut report: HealthReport,
    now: UnixMillis,
    store: Option<&HostStoreStatus>,
    alone_since: Option<UnixMillis>,
) -> HealthReport {
    let Some(s) = store else {
        return report;
    };
    let status = if s.reachable {
        Status::Pass
    } else {
        Status::Warn
    };
    let output = match (s.reachable, alone_since) {
        (true, _) => format!("the shared {} store answers", s.kind),
        (false, None) => format!(
            "the shared {} store does not answer ({}); serving the tokens this instance last read until they expire",
            s.kind,
            s.last_error.as_deref().unwrap_or("no answer")
        ),
        (false, Some(since)) => format!(
            "the shared {} store does not answer ({}); this instance refreshes its tokens alone since {} and serves them until the store answers",
            s.kind,
            s.last_error.as_deref().unwrap_or("no answer"),
            rfc3339(since)
        ),
    };
    let check = json!([{
        "componentType": "datastore",
        "componentId": s.kind,
        "status": status.as_str(),
        "time": rfc3339(now),
        "output": output,
        "unreachableSince": s.unreachable_since.map(rfc3339),
        "refreshingAloneSince": alone_since.filter(|_| !s.reachable).map(rfc3339),
    }]);
    if let Some(checks) = report.body.get_mut("checks").and_then(Value::as_object_mut) {
        checks.insert("store:reachable".into(), check);
    }
    if !s.reachable && report.status == Status::Pass {
        report.status = Status::Warn;
        report.body["status"] = json!(Status::Warn.as_str());
        report.body["error"] = error_json(&ErrorRecord {
            code: STORE_UNREACHABLE.into(),
            message: output,
            at: s.unreachable_since.unwrap_or(now),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> HealthReport {
        HealthReport {
            status: Status::Pass,
            body: json!({"status": "pass", "checks": {}}),
        }
    }

    #[test]
    fn an_unreachable_store_turns_pass_into_warn_and_names_no_address() {
        let s = HostStoreStatus {
            kind: "redis".into(),
            reachable: false,
            unreachable_since: Some(1_000),
            last_error: Some("store unreachable: cannot connect to Redis".into()),
        };
        let r = with_host_store(passing(), 2_000, Some(&s), None);
        assert_eq!(r.status, Status::Warn);
        assert_eq!(r.body["error"]["code"], STORE_UNREACHABLE);
        assert_eq!(r.body["checks"]["store:reachable"][0]["status"], "warn");
        assert!(r.body["checks"]["store:reachable"][0]["refreshingAloneSince"].is_null());
    }

    #[test]
    fn an_instance_refreshing_alone_says_so() {
        let s = HostStoreStatus {
            kind: "redis".into(),
            reachable: false,
            unreachable_since: Some(1_000),
            last_error: Some("store unreachable: cannot connect to Redis".into()),
        };
        let r = with_host_store(passing(), 90_000, Some(&s), Some(81_000));
        assert_eq!(r.status, Status::Warn);
        let check = &r.body["checks"]["store:reachable"][0];
        assert_eq!(check["refreshingAloneSince"], rfc3339(81_000));
        let output = check["output"].as_str().unwrap_or_default();
        assert!(output.contains("refreshes its tokens alone"), "{output}");
        // Once the store answers, the check no longer says so, whatever the record.
        let up = HostStoreStatus {
            reachable: true,
            ..s
        };
        let r = with_host_store(passing(), 90_000, Some(&up), Some(81_000));
        assert!(r.body["checks"]["store:reachable"][0]["refreshingAloneSince"].is_null());
    }

    #[test]
    fn a_reachable_store_is_listed_and_changes_nothing() {
        let s = HostStoreStatus {
            kind: "redis".into(),
            reachable: true,
            ..Default::default()
        };
        let r = with_host_store(passing(), 2_000, Some(&s), None);
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.body["checks"]["store:reachable"][0]["status"], "pass");
        let none = with_host_store(passing(), 2_000, None, None);
        assert!(none.body["checks"].get("store:reachable").is_none());
    }
}
