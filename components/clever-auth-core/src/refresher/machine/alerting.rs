//! Alerts raised and cleared against the snapshot a run is about to save.

use super::Machine;
use crate::alerts;
use crate::UnixMillis;
use serde_json::json;

impl Machine {
    /// Raises and clears alerts against the snapshot about to be saved; each change is logged.
    pub(super) fn update_alerts(&mut self, now: UnixMillis) {
        let thresholds = alerts::Thresholds {
            auth_failing_ms: self.settings.alert_auth_failing_secs.saturating_mul(1000),
            rate_limited_ms: self.settings.alert_rate_limited_secs.saturating_mul(1000),
            skew_ms: self.settings.expiry_skew_secs.saturating_mul(1000),
        };
        let current = alerts::evaluate(&self.status, &self.status.alerts, now, &thresholds);
        let changes = alerts::transitions(&self.status.alerts, &current);
        for a in changes.raised {
            self.log(
                "error",
                "alert_raised",
                json!({ "alert": a.alert, "district": a.district, "since": a.since }),
            );
        }
        for a in changes.cleared {
            self.log(
                "info",
                "alert_cleared",
                json!({ "alert_cleared": a.alert, "district": a.district, "since": a.since,
                        "duration_ms": now.saturating_sub(a.since) }),
            );
        }
        self.status.alerts = current;
    }
}
