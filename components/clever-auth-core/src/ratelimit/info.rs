//! What the rate-limit headers of one response said, kept as the refresher and the gateway
//! persist and report it.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// One rate-limit bucket, assembled by position from the `X-Ratelimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bucket {
    pub name: Option<String>,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_at: Option<UnixMillis>,
}

impl Bucket {
    pub fn is_exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Everything the rate-limit headers of one response said.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimitInfo {
    /// When the response was received; relative values (`Retry-After: 30`) are anchored here.
    pub received_at: UnixMillis,
    /// Absolute time named by `Retry-After`, whichever form it came in.
    pub retry_after_at: Option<UnixMillis>,
    pub buckets: Vec<Bucket>,
    /// Values that were ignored, and why. Safe to log: only rate-limit headers are read, and
    /// there are at most [`MAX_WARNINGS`](crate::ratelimit::MAX_WARNINGS) + 3 of them.
    pub warnings: Vec<String>,
}

impl RateLimitInfo {
    /// No rate-limit information at all.
    pub fn is_empty(&self) -> bool {
        self.retry_after_at.is_none() && self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::fixtures::parse;

    #[test]
    fn round_trips_through_serde() {
        let info = parse(&[
            ("Retry-After", "3"),
            ("X-Ratelimit-Bucket", "x"),
            ("X-Ratelimit-Limit", "oops"),
        ]);
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<RateLimitInfo>(&json).unwrap(), info);
    }
}
