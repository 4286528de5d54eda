//! The per-operation retry bookkeeping that survives between invocations, and the decision
//! each recorded attempt leads to.

use serde::{Deserialize, Serialize};

use super::delay::{plan_delay, PlannedDelay};
use super::outcome::Outcome;
use super::policy::RetryPolicy;
use crate::UnixMillis;

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
    use crate::backoff::delay::DelaySource;
    use crate::backoff::outcome::{classify_status, TransientKind};
    use crate::backoff::policy::SPEC_SCHEDULE;

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
