//! Per-district gateway figures for the health report: the last status served and the 429s
//! of the last minute. Kept per district in the shared store; concurrent instances may lose
//! an update to each other, which figures for operators can afford.

use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const WINDOW_MS: u64 = 60_000;
/// Bounds the record whatever the traffic: beyond this many 429s a minute the count saturates.
pub const MAX_RECENT: usize = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayFigures {
    pub last_status: Option<u16>,
    pub last_at: Option<UnixMillis>,
    pub requests: u64,
    /// When each 429 of the last minute was answered (by Clever or by the gateway).
    pub recent_429: Vec<UnixMillis>,
}

impl GatewayFigures {
    pub fn record(&mut self, status: u16, now: UnixMillis) {
        self.last_status = Some(status);
        self.last_at = Some(now);
        self.requests = self.requests.saturating_add(1);
        self.recent_429
            .retain(|t| now.saturating_sub(*t) < WINDOW_MS);
        if status == 429 && self.recent_429.len() < MAX_RECENT {
            self.recent_429.push(now);
        }
    }

    pub fn rate_limited_last_minute(&self, now: UnixMillis) -> usize {
        self.recent_429
            .iter()
            .filter(|t| now.saturating_sub(**t) < WINDOW_MS)
            .count()
    }

    /// The `gateway` object of a district's health check.
    pub fn to_json(&self, now: UnixMillis) -> Value {
        json!({
            "lastStatus": self.last_status,
            "lastRequestAt": self.last_at.map(crate::time_fmt::rfc3339),
            "requests": self.requests,
            "rateLimitedLastMinute": self.rate_limited_last_minute(now),
        })
    }
}

/// Adds each district's figures to its entry of `checks."clever:districtTokens"` in a health
/// body; districts without figures are left as they are.
pub fn annotate(body: &mut Value, figures: &[(String, GatewayFigures)], now: UnixMillis) {
    let Some(checks) = body
        .pointer_mut("/checks/clever:districtTokens")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for check in checks {
        let Some(id) = check.get("componentId").and_then(Value::as_str) else {
            continue;
        };
        if let Some((_, f)) = figures.iter().find(|(d, _)| d == id) {
            let g = f.to_json(now);
            if let Some(obj) = check.as_object_mut() {
                obj.insert("gateway".into(), g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_minutes_429s_count() {
        let mut f = GatewayFigures::default();
        f.record(429, 1_000);
        f.record(200, 2_000);
        f.record(429, 30_000);
        assert_eq!(f.rate_limited_last_minute(30_000), 2);
        assert_eq!(f.rate_limited_last_minute(61_000), 1);
        f.record(200, 90_001);
        assert_eq!(f.recent_429.len(), 0);
        assert_eq!(f.last_status, Some(200));
        assert_eq!(f.requests, 4);
    }

    #[test]
    fn the_record_stays_bounded() {
        let mut f = GatewayFigures::default();
        for i in 0..5_000 {
            f.record(429, 1_000 + i);
        }
        assert_eq!(f.recent_429.len(), MAX_RECENT);
    }

    #[test]
    fn figures_land_on_their_district_check() {
        let mut body = json!({"checks": {"clever:districtTokens": [
            {"componentId": "a", "status": "pass"},
            {"componentId": "b", "status": "pass"},
        ]}});
        let mut f = GatewayFigures::default();
        f.record(429, 10);
        annotate(&mut body, &[("a".into(), f)], 20);
        let checks = &body["checks"]["clever:districtTokens"];
        assert_eq!(checks[0]["gateway"]["lastStatus"], 429);
        assert_eq!(checks[0]["gateway"]["rateLimitedLastMinute"], 1);
        assert!(checks[1].get("gateway").is_none());
    }
}
