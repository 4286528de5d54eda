//! The native host's `host:deadlines` check: component calls cut off at their deadline.

use super::detail::error_json;
use super::grade::Status;
use super::inputs::HealthReport;
use crate::status::{ErrorRecord, HostDeadlineStatus};
use crate::time_fmt::rfc3339;
use crate::UnixMillis;
use serde_json::{json, Value};

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
