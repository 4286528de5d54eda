//! Pass, warn or fail: the status of a check, a district and the whole answer.

use crate::status::DistrictRecord;
use crate::UnixMillis;

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
