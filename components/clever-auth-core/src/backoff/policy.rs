//! The retry schedule: how long each retry waits, exponential growth capped per step, with
//! optional jitter.

use serde::{Deserialize, Serialize};
use thiserror::Error;

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

/// The spec's default schedule, which several tests check against.
#[cfg(test)]
pub(super) const SPEC_SCHEDULE: [u64; 5] = [2_000, 4_000, 8_000, 16_000, 32_000];

#[cfg(test)]
mod tests {
    use super::*;

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
}
