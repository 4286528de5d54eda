//! Proactive pacing: once a district's binding rate-limit bucket shows `remaining = 0` (or
//! Clever answered 429), requests for that district hold until the reset instead of calling
//! Clever, which would only earn more 429s. The record lives in the shared store, so every
//! instance holds back alike.

use super::{ErrorCode, GatewayError};
use crate::ratelimit::RateLimitInfo;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};

/// Stored under [`super::keys::pace`] for one district.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PaceRecord {
    /// No request for this district goes to Clever before this instant.
    pub until: UnixMillis,
    /// The bucket that ran out, for logs.
    pub bucket: Option<String>,
}

/// What a response says about the next request for the same district: `Some` when requests
/// must hold until an instant in the future. A hold is capped at `max_wait_ms` from `now`,
/// so a wrong reset header cannot stall a district for long.
pub fn after_response(
    status: u16,
    limits: &RateLimitInfo,
    now: UnixMillis,
    max_wait_ms: u64,
) -> Option<PaceRecord> {
    let binding = limits.binding();
    let exhausted = binding.is_some_and(|b| b.is_exhausted());
    if status != 429 && !exhausted {
        return None;
    }
    let until = limits.wait_until(status)?;
    (until > now).then(|| PaceRecord {
        until: until.min(now.saturating_add(max_wait_ms)),
        bucket: binding.and_then(|b| b.name.clone()),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Hold until this instant, then go (it is within the deadline).
    WaitUntil(UnixMillis),
    /// The hold outlasts the deadline: answer 429 without calling Clever.
    Refuse(GatewayError),
}

pub fn gate(record: Option<&PaceRecord>, now: UnixMillis, deadline: UnixMillis) -> Gate {
    match record {
        Some(r) if r.until > now => {
            if r.until < deadline {
                Gate::WaitUntil(r.until)
            } else {
                Gate::Refuse(
                    GatewayError::new(
                        ErrorCode::RateLimited,
                        "this district's Clever rate limit is used up until after the request's deadline",
                    )
                    .retry_after(r.until - now),
                )
            }
        }
        _ => Gate::Go,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_700_000_000_000;

    fn limits(remaining: &str, reset_in_secs: u64) -> RateLimitInfo {
        let reset = (NOW / 1000 + reset_in_secs).to_string();
        let h: Vec<(String, Vec<u8>)> = [
            ("X-Ratelimit-Bucket", "district"),
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", remaining),
            ("X-Ratelimit-Reset", reset.as_str()),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
        RateLimitInfo::from_headers(&h, NOW)
    }

    #[test]
    fn remaining_zero_holds_the_district_until_the_reset() {
        let r = after_response(200, &limits("0", 5), NOW, 120_000).expect("hold");
        assert_eq!(r.until, (NOW / 1000 + 5) * 1000);
        assert_eq!(r.bucket.as_deref(), Some("district"));
    }

    #[test]
    fn remaining_capacity_holds_nothing() {
        assert_eq!(after_response(200, &limits("7", 5), NOW, 120_000), None);
        assert_eq!(
            after_response(200, &RateLimitInfo::default(), NOW, 120_000),
            None
        );
    }

    #[test]
    fn a_429_holds_even_without_remaining_zero() {
        let r = after_response(429, &limits("3", 2), NOW, 120_000).expect("hold");
        assert_eq!(r.until, (NOW / 1000 + 2) * 1000);
    }

    #[test]
    fn a_hold_is_capped() {
        let r = after_response(200, &limits("0", 3_600), NOW, 10_000).expect("hold");
        assert_eq!(r.until, NOW + 10_000);
    }

    #[test]
    fn the_gate_waits_within_the_deadline_and_refuses_beyond_it() {
        let r = PaceRecord {
            until: NOW + 2_000,
            bucket: None,
        };
        assert_eq!(
            gate(Some(&r), NOW, NOW + 30_000),
            Gate::WaitUntil(NOW + 2_000)
        );
        match gate(Some(&r), NOW, NOW + 1_000) {
            Gate::Refuse(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert_eq!(e.retry_after_secs, Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(gate(Some(&r), NOW + 2_000, NOW + 30_000), Gate::Go);
        assert_eq!(gate(None, NOW, NOW + 1), Gate::Go);
    }
}
