//! What to do after each attempt to call Clever, within the request's deadline:
//!
//! - 401: the token is dropped and, once per request, the request is replayed with a new one;
//! - 429: wait for `Retry-After`, else the bucket reset, when that falls within the deadline;
//!   otherwise the gateway's own 429 with `Retry-After`;
//! - 5xx, timeouts, connection errors: retry on the configured backoff (GET and HEAD are
//!   idempotent) while the next attempt starts before the deadline; then Clever's last 5xx
//!   passes through, or the gateway answers 504/502;
//! - anything else is Clever's answer and passes through.

use super::{ErrorCode, GatewayError};
use crate::backoff::RetryPolicy;
use crate::ratelimit::RateLimitInfo;
use crate::UnixMillis;

/// What one attempt produced.
#[derive(Debug, Clone, Copy)]
pub enum Upstream<'a> {
    /// Clever answered with this status and these rate-limit headers.
    Answered {
        status: u16,
        limits: &'a RateLimitInfo,
    },
    Timeout,
    /// No answer: refused, reset, TLS failure, malformed response.
    Connection,
}

/// The request so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Retries already made after 5xx, 429, timeouts or connection errors.
    pub retries: u32,
    /// The one replay after a 401 has been used.
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Pass Clever's answer through (status, headers, body).
    Deliver,
    /// Drop the token, ask for a new listing, and replay once the new token is there.
    ReplayWithNewToken,
    /// Discard this answer and try again at this instant.
    RetryAt(UnixMillis),
    /// Answer with the gateway's own error.
    Fail(GatewayError),
}

/// Never wait less than this between two attempts, whatever a header says (`Retry-After: 0`
/// repeated must not become a tight loop).
pub const MIN_RETRY_GAP_MS: u64 = 10;

/// The time one attempt may take: the per-attempt timeout, cut to what is left of the deadline.
pub fn attempt_timeout_ms(now: UnixMillis, deadline: UnixMillis, http_timeout_ms: u64) -> u64 {
    deadline.saturating_sub(now).min(http_timeout_ms)
}

pub fn after_attempt(
    upstream: Upstream<'_>,
    progress: Progress,
    policy: &RetryPolicy,
    now: UnixMillis,
    deadline: UnixMillis,
    random01: f64,
) -> Next {
    let backoff = |hint: Option<UnixMillis>| -> Option<UnixMillis> {
        let delay = policy.delay_for_retry(progress.retries.saturating_add(1), random01)?;
        let at = now
            .saturating_add(delay.max(MIN_RETRY_GAP_MS))
            .max(hint.unwrap_or(0));
        (at < deadline).then_some(at)
    };
    match upstream {
        Upstream::Answered { status: 401, .. } if !progress.replayed => Next::ReplayWithNewToken,
        Upstream::Answered {
            status: 429,
            limits,
        } => {
            let hinted = limits.wait_until(429);
            let at = match hinted {
                Some(at) => Some(at.max(now.saturating_add(MIN_RETRY_GAP_MS))),
                None => policy
                    .delay_for_retry(progress.retries.saturating_add(1), random01)
                    .map(|d| now.saturating_add(d.max(MIN_RETRY_GAP_MS))),
            };
            let retries_left = progress.retries < policy.max_retries;
            match at {
                Some(at) if at < deadline && retries_left => Next::RetryAt(at),
                Some(at) => Next::Fail(
                    GatewayError::new(
                        ErrorCode::RateLimited,
                        "Clever's rate limit for this district does not reset within the request's deadline",
                    )
                    .retry_after(at.saturating_sub(now)),
                ),
                None => Next::Fail(
                    GatewayError::new(
                        ErrorCode::RateLimited,
                        "Clever keeps answering 429 for this district",
                    )
                    .retry_after(policy.max_delay_ms),
                ),
            }
        }
        Upstream::Answered { status, limits } if (500..=599).contains(&status) => {
            // A 503 may say when to come back; never sooner than that.
            match backoff(limits.retry_after_at) {
                Some(at) => Next::RetryAt(at),
                None => Next::Deliver,
            }
        }
        Upstream::Answered { .. } => Next::Deliver,
        Upstream::Timeout => match backoff(None) {
            Some(at) => Next::RetryAt(at),
            None => Next::Fail(GatewayError::new(
                ErrorCode::UpstreamTimeout,
                "Clever did not answer within the request's deadline",
            )),
        },
        Upstream::Connection => match backoff(None) {
            Some(at) => Next::RetryAt(at),
            None => Next::Fail(GatewayError::new(
                ErrorCode::UpstreamUnreachable,
                "Clever could not be reached",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_700_000_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_ms: 100,
            multiplier: 2.0,
            max_delay_ms: 1_000,
            jitter: 0.0,
        }
    }

    fn limits(headers: &[(&str, &str)]) -> RateLimitInfo {
        let h: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        RateLimitInfo::from_headers(&h, NOW)
    }

    fn answered(status: u16, l: &RateLimitInfo, p: Progress, deadline: UnixMillis) -> Next {
        after_attempt(
            Upstream::Answered { status, limits: l },
            p,
            &policy(),
            NOW,
            deadline,
            0.5,
        )
    }

    #[test]
    fn success_and_client_errors_pass_through() {
        let l = limits(&[]);
        for s in [200, 204, 304, 400, 403, 404, 410] {
            assert_eq!(
                answered(s, &l, Progress::default(), NOW + 30_000),
                Next::Deliver,
                "{s}"
            );
        }
    }

    #[test]
    fn a_401_is_replayed_once_then_passed_through() {
        let l = limits(&[]);
        assert_eq!(
            answered(401, &l, Progress::default(), NOW + 30_000),
            Next::ReplayWithNewToken
        );
        let replayed = Progress {
            replayed: true,
            ..Progress::default()
        };
        assert_eq!(answered(401, &l, replayed, NOW + 30_000), Next::Deliver);
    }

    #[test]
    fn a_429_waits_for_retry_after_within_the_deadline() {
        let l = limits(&[("Retry-After", "2")]);
        assert_eq!(
            answered(429, &l, Progress::default(), NOW + 30_000),
            Next::RetryAt(NOW + 2_000)
        );
    }

    #[test]
    fn a_429_without_retry_after_waits_for_the_bucket_reset() {
        let reset = (NOW / 1000 + 5).to_string();
        let l = limits(&[
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", reset.as_str()),
        ]);
        assert_eq!(
            answered(429, &l, Progress::default(), NOW + 30_000),
            Next::RetryAt((NOW / 1000 + 5) * 1000)
        );
    }

    #[test]
    fn a_429_beyond_the_deadline_is_the_gateways_429_with_retry_after() {
        let l = limits(&[("Retry-After", "60")]);
        match answered(429, &l, Progress::default(), NOW + 30_000) {
            Next::Fail(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert_eq!(e.retry_after_secs, Some(60));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_429_without_any_hint_backs_off() {
        let l = limits(&[]);
        assert_eq!(
            answered(429, &l, Progress::default(), NOW + 30_000),
            Next::RetryAt(NOW + 100)
        );
    }

    #[test]
    fn a_zero_retry_after_never_makes_a_tight_loop() {
        let l = limits(&[("Retry-After", "0")]);
        assert_eq!(
            answered(429, &l, Progress::default(), NOW + 30_000),
            Next::RetryAt(NOW + MIN_RETRY_GAP_MS)
        );
    }

    #[test]
    fn server_errors_retry_on_the_backoff_schedule_then_pass_through() {
        let l = limits(&[]);
        let deadline = NOW + 30_000;
        let at = |retries| {
            answered(
                503,
                &l,
                Progress {
                    retries,
                    replayed: false,
                },
                deadline,
            )
        };
        assert_eq!(at(0), Next::RetryAt(NOW + 100));
        assert_eq!(at(1), Next::RetryAt(NOW + 200));
        assert_eq!(at(2), Next::RetryAt(NOW + 400));
        assert_eq!(
            at(3),
            Next::Deliver,
            "retries exhausted: Clever's 5xx passes"
        );
    }

    #[test]
    fn no_retry_starts_at_or_after_the_deadline() {
        let l = limits(&[]);
        assert_eq!(
            answered(500, &l, Progress::default(), NOW + 100),
            Next::Deliver
        );
        assert_eq!(
            answered(500, &l, Progress::default(), NOW + 101),
            Next::RetryAt(NOW + 100)
        );
    }

    #[test]
    fn a_503_retry_after_is_honoured_as_a_floor() {
        let l = limits(&[("Retry-After", "1")]);
        assert_eq!(
            answered(503, &l, Progress::default(), NOW + 30_000),
            Next::RetryAt(NOW + 1_000)
        );
    }

    #[test]
    fn timeouts_and_connection_errors_retry_then_fail_with_their_own_codes() {
        let p = policy();
        let next = |u, retries, deadline| {
            after_attempt(
                u,
                Progress {
                    retries,
                    replayed: false,
                },
                &p,
                NOW,
                deadline,
                0.0,
            )
        };
        assert_eq!(
            next(Upstream::Timeout, 0, NOW + 5_000),
            Next::RetryAt(NOW + 100)
        );
        assert_eq!(
            next(Upstream::Connection, 1, NOW + 5_000),
            Next::RetryAt(NOW + 200)
        );
        match next(Upstream::Timeout, 3, NOW + 5_000) {
            Next::Fail(e) => assert_eq!(e.code, ErrorCode::UpstreamTimeout),
            other => panic!("{other:?}"),
        }
        match next(Upstream::Connection, 0, NOW + 50) {
            Next::Fail(e) => {
                assert_eq!(e.code, ErrorCode::UpstreamUnreachable);
                assert_eq!(e.status(), 502);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_attempt_timeout_is_cut_to_the_deadline() {
        assert_eq!(attempt_timeout_ms(NOW, NOW + 30_000, 10_000), 10_000);
        assert_eq!(attempt_timeout_ms(NOW, NOW + 3_000, 10_000), 3_000);
        assert_eq!(attempt_timeout_ms(NOW + 5, NOW, 10_000), 0);
    }
}
