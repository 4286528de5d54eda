//! Retry policy: which failures are worth another attempt, and when.
//!
//! The spec fixes the default schedule (5 retries after 2 s, 4 s, 8 s, 16 s, 32 s); everything
//! else is configurable. Randomness for jitter is passed in so the schedule is reproducible in
//! tests, and the attempt counter lives in [`RetryState`], which the component persists between
//! invocations because a wasm instance does not survive a 32 s wait.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::UnixMillis;

/// Exponential backoff parameters. `Default` is exactly the spec's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub base_ms: u64,
    /// Growth factor between consecutive retries.
    pub multiplier: f64,
    /// No single backoff step is longer than this.
    pub max_delay_ms: u64,
    /// Fraction (0.0..=1.0) of each step that may be shaved off at random, so that many
    /// instances failing together do not retry in lockstep. 0 keeps the exact schedule.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_ms: 2_000,
            multiplier: 2.0,
            max_delay_ms: 32_000,
            jitter: 0.0,
        }
    }
}

/// A policy field outside its meaningful range; names the field so the settings layer can
/// point at the offending setting.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RetryPolicyError {
    #[error("multiplier must be a finite number >= 1.0, got {0}")]
    Multiplier(f64),
    #[error("jitter must be between 0.0 and 1.0, got {0}")]
    Jitter(f64),
    #[error("max_delay_ms ({max_delay_ms}) must not be below base_ms ({base_ms})")]
    CapBelowBase { base_ms: u64, max_delay_ms: u64 },
}

impl RetryPolicy {
    /// Rejects values that would make the schedule meaningless. [`Self::delay_for_retry`]
    /// tolerates them anyway (it clamps), so an unvalidated policy still never panics.
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(RetryPolicyError::Multiplier(self.multiplier));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(RetryPolicyError::Jitter(self.jitter));
        }
        if self.max_delay_ms < self.base_ms {
            return Err(RetryPolicyError::CapBelowBase {
                base_ms: self.base_ms,
                max_delay_ms: self.max_delay_ms,
            });
        }
        Ok(())
    }

    /// Delay before retry number `retry` (1-based): `min(base * multiplier^(retry-1), cap)`,
    /// reduced by `jitter * random01` of itself. `None` once `retry` exceeds `max_retries`.
    /// Retry 0 is the first attempt, which waits nothing.
    pub fn delay_for_retry(&self, retry: u32, random01: f64) -> Option<u64> {
        if retry > self.max_retries {
            return None;
        }
        if retry == 0 {
            return Some(0);
        }
        let step = self.step_ms(retry);
        let jitter = unit_interval(self.jitter);
        if jitter == 0.0 {
            // Integer path keeps the documented schedule exact.
            return Some(step);
        }
        let factor = 1.0 - jitter * unit_interval(random01);
        // `as` saturates and the factor is within 0..=1, so this cannot exceed `step`.
        Some((step as f64 * factor) as u64)
    }

    fn step_ms(&self, retry: u32) -> u64 {
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 0.0 {
            self.multiplier
        } else {
            1.0
        };
        let exponent = i32::try_from(retry - 1).unwrap_or(i32::MAX);
        let raw = self.base_ms as f64 * multiplier.powi(exponent);
        let capped = if raw.is_finite() {
            raw.min(self.max_delay_ms as f64)
        } else {
            self.max_delay_ms as f64
        };
        // A cap below the base still caps: the cap is the operator's promise about waiting.
        (capped as u64).min(self.max_delay_ms)
    }
}

/// NaN and out-of-range inputs are clamped rather than trusted: a bad random source or setting
/// must not produce a negative or growing delay.
fn unit_interval(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

/// Why an attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum TransientKind {
    /// The per-attempt timeout fired, or the server answered 408.
    Timeout,
    /// DNS, connect, TLS or reset: no HTTP response arrived.
    Connection,
    /// 429.
    RateLimited,
    /// 500, 502, 503, 504 and other 5xx except 501 and 505.
    ServerError(u16),
}

/// Why repeating an attempt cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum PermanentKind {
    /// 401: bad client credentials or a revoked token. The caller should re-read secrets or
    /// re-list tokens rather than retry the same request.
    Unauthorized,
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404: unavailable, unshared, deleted, or the wrong kind of token.
    NotFound,
    /// 413: `limit` too large.
    PayloadTooLarge,
    /// 501.
    NotImplemented,
    /// Any other 4xx.
    ClientError(u16),
    /// A status no rule covers (1xx, 3xx, 505, out-of-range).
    UnexpectedStatus(u16),
    /// The runtime's outbound policy refused the request before it left (Spin's
    /// `allowed_outbound_hosts`): a configuration error that only a configuration change fixes.
    OutboundDenied,
}

/// The result of one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    Success,
    Transient(TransientKind),
    Permanent(PermanentKind),
}

/// The code of [`PermanentKind::OutboundDenied`] in logs and health.
pub const OUTBOUND_DENIED: &str = "outbound_denied";

/// A failure below HTTP, reported by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportFailure {
    Timeout,
    Connection,
    /// Refused by the runtime's outbound policy; nothing was sent.
    Denied,
}

/// Maps an HTTP status to an [`Outcome`]. 2xx is success; see the kind enums for the rest.
pub fn classify_status(status: u16) -> Outcome {
    use Outcome::{Permanent, Success, Transient};
    match status {
        200..=299 => Success,
        // 408 means the server gave up waiting for our request: the same request can succeed.
        408 => Transient(TransientKind::Timeout),
        429 => Transient(TransientKind::RateLimited),
        400 => Permanent(PermanentKind::BadRequest),
        401 => Permanent(PermanentKind::Unauthorized),
        403 => Permanent(PermanentKind::Forbidden),
        404 => Permanent(PermanentKind::NotFound),
        413 => Permanent(PermanentKind::PayloadTooLarge),
        402..=499 => Permanent(PermanentKind::ClientError(status)),
        501 => Permanent(PermanentKind::NotImplemented),
        // 505 says the server will never speak our HTTP version.
        505 => Permanent(PermanentKind::UnexpectedStatus(status)),
        // Proxies and CDNs in front of Clever use other 5xx (e.g. 520-524) for upstream trouble.
        500..=599 => Transient(TransientKind::ServerError(status)),
        _ => Permanent(PermanentKind::UnexpectedStatus(status)),
    }
}

pub fn classify_transport(failure: TransportFailure) -> Outcome {
    match failure {
        TransportFailure::Timeout => Outcome::Transient(TransientKind::Timeout),
        TransportFailure::Connection => Outcome::Transient(TransientKind::Connection),
        TransportFailure::Denied => Outcome::Permanent(PermanentKind::OutboundDenied),
    }
}

impl Outcome {
    pub fn from_status(status: u16) -> Self {
        classify_status(status)
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Transient(_))
    }

    pub fn is_bad_credentials(&self) -> bool {
        matches!(self, Outcome::Permanent(PermanentKind::Unauthorized))
    }

    /// A failure that only a change of configuration can fix: retrying the same request is
    /// pointless, so the refresher pauses as after rejected credentials instead of cycling.
    pub fn is_configuration_error(&self) -> bool {
        matches!(self, Outcome::Permanent(PermanentKind::OutboundDenied))
    }

    /// Whether the refresher should stop acquiring until the inputs change (or a long pause
    /// passes), rather than follow the retry schedule or the cooldown.
    pub fn pauses_acquisition(&self) -> bool {
        self.is_bad_credentials() || self.is_configuration_error()
    }

    /// A stable machine-readable code for logs and the health report.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Success => "ok",
            Outcome::Transient(TransientKind::Timeout) => "timeout",
            Outcome::Transient(TransientKind::Connection) => "connection_error",
            Outcome::Transient(TransientKind::RateLimited) => "rate_limited",
            Outcome::Transient(TransientKind::ServerError(_)) => "server_error",
            Outcome::Permanent(PermanentKind::Unauthorized) => "bad_credentials",
            Outcome::Permanent(PermanentKind::BadRequest) => "bad_request",
            Outcome::Permanent(PermanentKind::Forbidden) => "forbidden",
            Outcome::Permanent(PermanentKind::NotFound) => "not_found",
            Outcome::Permanent(PermanentKind::PayloadTooLarge) => "payload_too_large",
            Outcome::Permanent(PermanentKind::NotImplemented) => "not_implemented",
            Outcome::Permanent(PermanentKind::ClientError(_)) => "client_error",
            Outcome::Permanent(PermanentKind::UnexpectedStatus(_)) => "unexpected_status",
            Outcome::Permanent(PermanentKind::OutboundDenied) => OUTBOUND_DENIED,
        }
    }
}

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

/// What to do after recording an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision", content = "at")]
pub enum Decision {
    /// Try again no earlier than this instant.
    RetryAt(UnixMillis),
    /// A permanent failure, or transient failures beyond the policy's retries.
    GiveUp,
    /// The attempt succeeded.
    Done,
}

/// The retry bookkeeping of one operation (e.g. one district's token acquisition), small
/// enough to persist between invocations.
///
/// A cycle starts with the first recorded attempt and ends with `Done` or `GiveUp`; recording
/// an attempt after that starts a fresh cycle, so the next scheduled refresh gets the full
/// retry budget again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetryState {
    attempts: u32,
    first_attempt_at: Option<UnixMillis>,
    last_attempt_at: Option<UnixMillis>,
    last_outcome: Option<Outcome>,
    next_attempt_at: Option<UnixMillis>,
    last_delay: Option<PlannedDelay>,
    finished: bool,
}

impl RetryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the outcome of the attempt that just ended at `now` and decides what follows.
    /// `server_hint_ms` is the wait the server asked for (see `ratelimit`), if any.
    pub fn record(
        &mut self,
        policy: &RetryPolicy,
        outcome: Outcome,
        now: UnixMillis,
        server_hint_ms: Option<u64>,
        max_wait_ms: u64,
        random01: f64,
    ) -> Decision {
        if self.finished {
            *self = Self::default();
        }
        self.attempts = self.attempts.saturating_add(1);
        self.first_attempt_at.get_or_insert(now);
        self.last_attempt_at = Some(now);
        self.last_outcome = Some(outcome);
        self.next_attempt_at = None;
        self.last_delay = None;

        match outcome {
            Outcome::Success => {
                self.finished = true;
                Decision::Done
            }
            Outcome::Permanent(_) => {
                self.finished = true;
                Decision::GiveUp
            }
            Outcome::Transient(_) => {
                // The n-th failed attempt is followed by retry number n.
                let retry = self.attempts;
                match plan_delay(policy, retry, server_hint_ms, max_wait_ms, random01) {
                    Some(plan) => {
                        let at = now.saturating_add(plan.delay_ms);
                        self.next_attempt_at = Some(at);
                        self.last_delay = Some(plan);
                        Decision::RetryAt(at)
                    }
                    None => {
                        self.finished = true;
                        Decision::GiveUp
                    }
                }
            }
        }
    }

    /// Attempts made in the current (or last finished) cycle, the first one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Retries made so far: attempts beyond the first.
    pub fn retries_used(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    pub fn last_outcome(&self) -> Option<Outcome> {
        self.last_outcome
    }

    pub fn first_attempt_at(&self) -> Option<UnixMillis> {
        self.first_attempt_at
    }

    pub fn last_attempt_at(&self) -> Option<UnixMillis> {
        self.last_attempt_at
    }

    /// When the pending retry is due; `None` when no retry is pending.
    pub fn next_attempt_at(&self) -> Option<UnixMillis> {
        self.next_attempt_at
    }

    /// How the pending retry's delay was chosen.
    pub fn last_delay(&self) -> Option<PlannedDelay> {
        self.last_delay
    }

    /// A retry is pending and its time has come.
    pub fn is_due(&self, now: UnixMillis) -> bool {
        self.next_attempt_at.is_some_and(|at| now >= at)
    }

    /// A retry is scheduled and not yet made.
    pub fn is_pending(&self) -> bool {
        self.next_attempt_at.is_some()
    }

    /// The last cycle ended (success or give-up) and nothing is scheduled.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The last cycle ended by giving up.
    pub fn gave_up(&self) -> bool {
        self.finished && !self.last_outcome.is_some_and(|o| o.is_success())
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SCHEDULE: [u64; 5] = [2_000, 4_000, 8_000, 16_000, 32_000];

    #[test]
    fn default_policy_is_the_spec_schedule() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_retries, 5);
        assert_eq!(policy.base_ms, 2_000);
        assert_eq!(policy.multiplier, 2.0);
        assert_eq!(policy.max_delay_ms, 32_000);
        assert_eq!(policy.jitter, 0.0);
        assert!(policy.validate().is_ok());

        let delays: Vec<u64> = (1..=5)
            .map(|n| policy.delay_for_retry(n, 0.7).unwrap())
            .collect();
        assert_eq!(delays, SPEC_SCHEDULE);
        assert_eq!(policy.delay_for_retry(6, 0.0), None);
        assert_eq!(policy.delay_for_retry(u32::MAX, 0.0), None);
        assert_eq!(policy.delay_for_retry(0, 0.0), Some(0));
    }

    #[test]
    fn cap_limits_each_step() {
        let policy = RetryPolicy {
            max_retries: 10,
            max_delay_ms: 10_000,
            ..RetryPolicy::default()
        };
        let delays: Vec<u64> = (1..=10)
            .map(|n| policy.delay_for_retry(n, 0.0).unwrap())
            .collect();
        assert_eq!(
            delays,
            [2_000, 4_000, 8_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn huge_retry_numbers_and_odd_settings_never_overflow() {
        let policy = RetryPolicy {
            max_retries: u32::MAX,
            base_ms: u64::MAX,
            multiplier: 1e300,
            max_delay_ms: u64::MAX,
            jitter: 0.0,
        };
        assert_eq!(policy.delay_for_retry(u32::MAX, 0.0), Some(u64::MAX));

        let weird = RetryPolicy {
            multiplier: f64::NAN,
            jitter: f64::NAN,
            ..RetryPolicy::default()
        };
        assert_eq!(weird.delay_for_retry(3, 0.5), Some(2_000));
        assert!(weird.validate().is_err());

        let infinite = RetryPolicy {
            multiplier: f64::INFINITY,
            ..RetryPolicy::default()
        };
        assert_eq!(infinite.delay_for_retry(1, 0.0), Some(2_000));
        assert_eq!(infinite.delay_for_retry(2, 0.0), Some(2_000));

        let cap_below_base = RetryPolicy {
            base_ms: 5_000,
            max_delay_ms: 1_000,
            ..RetryPolicy::default()
        };
        assert_eq!(cap_below_base.delay_for_retry(1, 0.0), Some(1_000));
        assert_eq!(
            cap_below_base.validate(),
            Err(RetryPolicyError::CapBelowBase {
                base_ms: 5_000,
                max_delay_ms: 1_000
            })
        );
    }

    #[test]
    fn zero_retries_means_no_retry() {
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay_for_retry(1, 0.0), None);
    }

    #[test]
    fn custom_multiplier_and_scaled_down_schedule() {
        // End-to-end tests scale the schedule down through the settings.
        let policy = RetryPolicy {
            base_ms: 20,
            max_delay_ms: 320,
            ..RetryPolicy::default()
        };
        let delays: Vec<u64> = (1..=5)
            .map(|n| policy.delay_for_retry(n, 0.0).unwrap())
            .collect();
        assert_eq!(delays, [20, 40, 80, 160, 320]);

        let triple = RetryPolicy {
            multiplier: 3.0,
            base_ms: 100,
            max_delay_ms: 1_000_000,
            ..RetryPolicy::default()
        };
        assert_eq!(triple.delay_for_retry(4, 0.0), Some(2_700));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let policy = RetryPolicy {
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        for retry in 1..=5 {
            let step = SPEC_SCHEDULE[retry as usize - 1];
            for i in 0..=100 {
                let r = f64::from(i) / 100.0;
                let d = policy.delay_for_retry(retry, r).unwrap();
                assert!(d <= step, "{d} > {step}");
                assert!(d >= step / 2, "{d} < {}", step / 2);
            }
            assert_eq!(policy.delay_for_retry(retry, 0.0), Some(step));
            assert_eq!(policy.delay_for_retry(retry, 1.0), Some(step / 2));
        }
        // Out-of-range randomness is clamped, never producing more than the step.
        assert_eq!(policy.delay_for_retry(1, 7.0), Some(1_000));
        assert_eq!(policy.delay_for_retry(1, -3.0), Some(2_000));
        assert_eq!(policy.delay_for_retry(1, f64::NAN), Some(2_000));

        let full = RetryPolicy {
            jitter: 1.0,
            ..RetryPolicy::default()
        };
        assert_eq!(full.delay_for_retry(1, 1.0), Some(0));
        assert_eq!(full.delay_for_retry(2, 0.25), Some(3_000));

        let over = RetryPolicy {
            jitter: 2.0,
            ..RetryPolicy::default()
        };
        assert_eq!(over.delay_for_retry(1, 1.0), Some(0));
        assert_eq!(over.validate(), Err(RetryPolicyError::Jitter(2.0)));
    }

    #[test]
    fn validate_rejects_shrinking_multiplier() {
        let policy = RetryPolicy {
            multiplier: 0.5,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.validate(), Err(RetryPolicyError::Multiplier(0.5)));
        assert!(policy
            .validate()
            .unwrap_err()
            .to_string()
            .contains("multiplier"));
    }

    #[test]
    fn classification_table() {
        use Outcome::*;
        let table: &[(u16, Outcome)] = &[
            (200, Success),
            (201, Success),
            (204, Success),
            (408, Transient(TransientKind::Timeout)),
            (429, Transient(TransientKind::RateLimited)),
            (500, Transient(TransientKind::ServerError(500))),
            (502, Transient(TransientKind::ServerError(502))),
            (503, Transient(TransientKind::ServerError(503))),
            (504, Transient(TransientKind::ServerError(504))),
            (522, Transient(TransientKind::ServerError(522))),
            (400, Permanent(PermanentKind::BadRequest)),
            (401, Permanent(PermanentKind::Unauthorized)),
            (403, Permanent(PermanentKind::Forbidden)),
            (404, Permanent(PermanentKind::NotFound)),
            (413, Permanent(PermanentKind::PayloadTooLarge)),
            (501, Permanent(PermanentKind::NotImplemented)),
            (405, Permanent(PermanentKind::ClientError(405))),
            (409, Permanent(PermanentKind::ClientError(409))),
            (422, Permanent(PermanentKind::ClientError(422))),
            (499, Permanent(PermanentKind::ClientError(499))),
            (505, Permanent(PermanentKind::UnexpectedStatus(505))),
            (100, Permanent(PermanentKind::UnexpectedStatus(100))),
            (302, Permanent(PermanentKind::UnexpectedStatus(302))),
            (0, Permanent(PermanentKind::UnexpectedStatus(0))),
            (600, Permanent(PermanentKind::UnexpectedStatus(600))),
            (
                u16::MAX,
                Permanent(PermanentKind::UnexpectedStatus(u16::MAX)),
            ),
        ];
        for &(status, expected) in table {
            assert_eq!(classify_status(status), expected, "status {status}");
            assert_eq!(Outcome::from_status(status), expected);
        }
        assert_eq!(
            classify_transport(TransportFailure::Timeout),
            Transient(TransientKind::Timeout)
        );
        assert_eq!(
            classify_transport(TransportFailure::Connection),
            Transient(TransientKind::Connection)
        );
    }

    #[test]
    fn outcome_helpers() {
        assert!(classify_status(401).is_bad_credentials());
        assert!(!classify_status(403).is_bad_credentials());
        assert!(classify_status(503).is_retryable());
        assert!(!classify_status(404).is_retryable());
        assert!(classify_status(200).is_success());
        assert_eq!(classify_status(401).code(), "bad_credentials");
        assert_eq!(classify_status(429).code(), "rate_limited");
        assert_eq!(
            classify_transport(TransportFailure::Connection).code(),
            "connection_error"
        );
    }

    #[test]
    fn an_outbound_denial_is_a_configuration_error_that_pauses() {
        let denied = classify_transport(TransportFailure::Denied);
        assert_eq!(denied, Outcome::Permanent(PermanentKind::OutboundDenied));
        assert_eq!(denied.code(), "outbound_denied");
        assert!(!denied.is_retryable(), "no retry schedule for a denial");
        assert!(denied.is_configuration_error() && denied.pauses_acquisition());
        assert!(!denied.is_bad_credentials());
        assert!(classify_status(401).pauses_acquisition());
        for other in [
            classify_status(403),
            classify_status(503),
            classify_transport(TransportFailure::Connection),
        ] {
            assert!(!other.is_configuration_error() && !other.pauses_acquisition());
        }
    }

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

    fn transient() -> Outcome {
        Outcome::Transient(TransientKind::ServerError(503))
    }

    #[test]
    fn five_failures_then_success_follow_the_schedule() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::new();
        let mut now = 1_000_000;
        let mut waits = Vec::new();
        for _ in 0..5 {
            match state.record(&policy, transient(), now, None, 120_000, 0.0) {
                Decision::RetryAt(at) => {
                    assert!(state.is_pending());
                    assert!(!state.is_due(at - 1));
                    assert!(state.is_due(at));
                    waits.push(at - now);
                    now = at;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(waits, SPEC_SCHEDULE);
        assert_eq!(
            state.record(&policy, Outcome::Success, now, None, 120_000, 0.0),
            Decision::Done
        );
        assert_eq!(state.attempts(), 6);
        assert_eq!(state.retries_used(), 5);
        assert!(state.is_finished());
        assert!(!state.gave_up());
        assert!(!state.is_pending());
        assert_eq!(state.first_attempt_at(), Some(1_000_000));
        assert_eq!(state.last_attempt_at(), Some(now));
    }

    #[test]
    fn six_failures_give_up_and_the_next_cycle_starts_fresh() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::new();
        let mut now = 0;
        for _ in 0..5 {
            let Decision::RetryAt(at) = state.record(&policy, transient(), now, None, 120_000, 0.0)
            else {
                panic!("expected a retry");
            };
            now = at;
        }
        assert_eq!(
            state.record(&policy, transient(), now, None, 120_000, 0.0),
            Decision::GiveUp
        );
        assert_eq!(state.attempts(), 6);
        assert!(state.gave_up());
        assert_eq!(state.next_attempt_at(), None);
        assert_eq!(state.last_outcome(), Some(transient()));

        // Next scheduled cycle: full budget again.
        assert_eq!(
            state.record(&policy, transient(), 500_000, None, 120_000, 0.0),
            Decision::RetryAt(502_000)
        );
        assert_eq!(state.attempts(), 1);
        assert_eq!(state.first_attempt_at(), Some(500_000));
    }

    #[test]
    fn permanent_failure_gives_up_at_once() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::new();
        let decision = state.record(
            &policy,
            classify_status(401),
            10,
            Some(60_000),
            120_000,
            0.0,
        );
        assert_eq!(decision, Decision::GiveUp);
        assert!(state.last_outcome().unwrap().is_bad_credentials());
        assert_eq!(state.attempts(), 1);
    }

    #[test]
    fn rate_limit_hint_sets_retry_time() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::new();
        let decision = state.record(
            &policy,
            classify_status(429),
            1_000,
            Some(45_000),
            120_000,
            0.0,
        );
        assert_eq!(decision, Decision::RetryAt(46_000));
        let plan = state.last_delay().unwrap();
        assert_eq!(plan.source, DelaySource::ServerHint);
        assert_eq!(plan.delay_ms, 45_000);
    }

    #[test]
    fn retry_time_saturates_at_the_end_of_time() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::new();
        assert_eq!(
            state.record(&policy, transient(), u64::MAX - 5, None, 120_000, 0.0),
            Decision::RetryAt(u64::MAX)
        );
    }

    #[test]
    fn state_survives_persistence() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::new();
        state.record(&policy, transient(), 0, Some(3_000), 120_000, 0.0);
        let json = serde_json::to_string(&state).unwrap();
        let mut restored: RetryState = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, state);
        assert_eq!(
            restored.record(&policy, transient(), 3_000, None, 120_000, 0.0),
            Decision::RetryAt(7_000)
        );
        restored.reset();
        assert_eq!(restored, RetryState::default());

        let policy_json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            serde_json::from_str::<RetryPolicy>(&policy_json).unwrap(),
            policy
        );
        let decision_json = serde_json::to_string(&Decision::RetryAt(5)).unwrap();
        assert_eq!(decision_json, r#"{"decision":"retry_at","at":5}"#);
        let outcome_json = serde_json::to_string(&classify_status(503)).unwrap();
        assert_eq!(
            serde_json::from_str::<Outcome>(&outcome_json).unwrap(),
            classify_status(503)
        );
    }
}
