//! The wait before one retry: the backoff step weighed against the server's hint and the
//! configured maximum wait.

use serde::{Deserialize, Serialize};

use super::policy::RetryPolicy;

/// Where the chosen wait came from, for the structured rate-limit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelaySource {
    Backoff,
    ServerHint,
    /// The backoff was capped at the configured maximum wait, or the server asked for longer
    /// than it (and is waited for anyway: a hint is never undercut).
    MaxWait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedDelay {
    pub delay_ms: u64,
    pub backoff_ms: u64,
    pub server_hint_ms: Option<u64>,
    pub source: DelaySource,
}

/// [`next_delay`] with the reasoning kept, so the caller can log what it chose and why.
pub fn plan_delay(
    policy: &RetryPolicy,
    retry: u32,
    server_hint_ms: Option<u64>,
    max_wait_ms: u64,
    random01: f64,
) -> Option<PlannedDelay> {
    let backoff_ms = policy.delay_for_retry(retry, random01)?;
    // The maximum wait caps our own schedule; a server hint is never undercut, however long
    // (retrying earlier only earns another 429): `MaxWait` then tells the operator so.
    let (delay_ms, source) = match server_hint_ms {
        Some(hint) if hint > backoff_ms.min(max_wait_ms) => {
            let source = if hint > max_wait_ms {
                DelaySource::MaxWait
            } else {
                DelaySource::ServerHint
            };
            (hint, source)
        }
        _ if backoff_ms > max_wait_ms => (max_wait_ms, DelaySource::MaxWait),
        _ => (backoff_ms, DelaySource::Backoff),
    };
    Some(PlannedDelay {
        delay_ms,
        backoff_ms,
        server_hint_ms,
        source,
    })
}

/// Wait before retry number `retry` (1-based): the backoff step capped by `max_wait_ms`, or the
/// server hint when it is longer (never undercut). `None` when the policy's retries are
/// exhausted.
pub fn next_delay(
    policy: &RetryPolicy,
    retry: u32,
    server_hint_ms: Option<u64>,
    max_wait_ms: u64,
    random01: f64,
) -> Option<u64> {
    plan_delay(policy, retry, server_hint_ms, max_wait_ms, random01).map(|p| p.delay_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_hint_wins_shorter_hint_loses() {
        let policy = RetryPolicy::default();
        assert_eq!(
            next_delay(&policy, 1, Some(10_000), 120_000, 0.0),
            Some(10_000)
        );
        assert_eq!(next_delay(&policy, 1, Some(500), 120_000, 0.0), Some(2_000));
        assert_eq!(
            next_delay(&policy, 4, Some(15_000), 120_000, 0.0),
            Some(16_000)
        );
        assert_eq!(next_delay(&policy, 3, None, 120_000, 0.0), Some(8_000));
        assert_eq!(next_delay(&policy, 2, Some(0), 120_000, 0.0), Some(4_000));

        let plan = plan_delay(&policy, 1, Some(10_000), 120_000, 0.0).unwrap();
        assert_eq!(plan.source, DelaySource::ServerHint);
        assert_eq!(plan.backoff_ms, 2_000);
        assert_eq!(plan.server_hint_ms, Some(10_000));
        let plan = plan_delay(&policy, 1, Some(10), 120_000, 0.0).unwrap();
        assert_eq!(plan.source, DelaySource::Backoff);
    }

    #[test]
    fn max_wait_caps_backoff_but_never_undercuts_a_hint() {
        let policy = RetryPolicy::default();
        let plan = plan_delay(&policy, 1, Some(3_600_000), 120_000, 0.0).unwrap();
        assert_eq!(plan.delay_ms, 3_600_000);
        assert_eq!(plan.source, DelaySource::MaxWait);
        assert_eq!(next_delay(&policy, 5, None, 10_000, 0.0), Some(10_000));
        assert_eq!(next_delay(&policy, 1, None, 0, 0.0), Some(0));
    }

    #[test]
    fn next_delay_stops_when_retries_are_exhausted_even_with_a_hint() {
        let policy = RetryPolicy::default();
        assert_eq!(next_delay(&policy, 6, Some(1_000), 120_000, 0.0), None);
        assert!(plan_delay(&policy, 6, None, 120_000, 0.0).is_none());
    }
}
