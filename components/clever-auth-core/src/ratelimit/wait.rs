//! When to come back: which bucket binds, and how long the server asked us to wait after a
//! given response.

use super::info::{Bucket, RateLimitInfo};
use crate::UnixMillis;

impl RateLimitInfo {
    /// The bucket that will run out first: lowest `remaining`; among equals the one resetting
    /// last. Buckets without a `remaining` value rank after all others.
    pub fn binding(&self) -> Option<&Bucket> {
        self.buckets.iter().min_by_key(|b| {
            (
                b.remaining.is_none(),
                b.remaining,
                std::cmp::Reverse(b.reset_at),
            )
        })
    }

    /// The binding bucket's reset, or, when that bucket did not say, the latest reset any
    /// bucket announced (waiting for the latest one cannot be too early).
    fn binding_reset(&self) -> Option<UnixMillis> {
        self.binding()
            .and_then(|b| b.reset_at)
            .or_else(|| self.buckets.iter().filter_map(|b| b.reset_at).max())
    }

    /// How long the server asked us to wait, measured from `now`: `Retry-After` when present,
    /// else the binding bucket's reset. Never negative: a time in the past gives 0.
    ///
    /// This reads the reset even when capacity remains; to decide whether to wait at all after a
    /// given response, use [`Self::retry_hint_ms`].
    pub fn server_hint_ms(&self, now: UnixMillis) -> Option<u64> {
        self.retry_after_at
            .or_else(|| self.binding_reset())
            .map(|at| at.saturating_sub(now))
    }

    /// The instant before which the next request should not be sent, given the response's
    /// status: `Retry-After` always counts; the bucket reset only after a 429 or when a bucket
    /// is exhausted. Clever sends the reset on every response, so taking it unconditionally
    /// would turn the 2 s backoff after a 503 into a wait for the end of the minute.
    pub fn wait_until(&self, status: u16) -> Option<UnixMillis> {
        if self.retry_after_at.is_some() {
            return self.retry_after_at;
        }
        let exhausted = self.buckets.iter().any(Bucket::is_exhausted);
        if status == 429 || exhausted {
            self.binding_reset()
        } else {
            None
        }
    }

    /// [`Self::wait_until`] as a delay from `now`, floored at 0; the hint to feed the backoff.
    pub fn retry_hint_ms(&self, status: u16, now: UnixMillis) -> Option<u64> {
        self.wait_until(status).map(|at| at.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use crate::ratelimit::fixtures::{parse, NOW};

    #[test]
    fn past_dates_give_zero() {
        let info = parse(&[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(info.server_hint_ms(NOW), Some(0));
        let info = parse(&[
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1699999990"),
        ]);
        assert_eq!(info.server_hint_ms(NOW), Some(0));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(0));
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let info = parse(&[
            ("Retry-After", "5"),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1700000060"),
        ]);
        assert_eq!(info.server_hint_ms(NOW), Some(5_000));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(5_000));
        assert_eq!(info.retry_hint_ms(503, NOW), Some(5_000));
    }

    #[test]
    fn reset_only_matters_after_429_or_when_exhausted() {
        let info = parse(&[
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", "1100"),
            ("X-Ratelimit-Reset", "1700000042"),
        ]);
        assert_eq!(info.retry_hint_ms(503, NOW), None);
        assert_eq!(info.retry_hint_ms(200, NOW), None);
        assert_eq!(info.retry_hint_ms(429, NOW), Some(42_000));
        // The raw hint is still available for callers that want it.
        assert_eq!(info.server_hint_ms(NOW), Some(42_000));

        let exhausted = parse(&[
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1700000042"),
        ]);
        assert_eq!(exhausted.retry_hint_ms(503, NOW), Some(42_000));
    }

    #[test]
    fn binding_without_reset_falls_back_to_latest_reset() {
        let info = parse(&[
            ("X-Ratelimit-Remaining", "10, 0"),
            ("X-Ratelimit-Reset", "1700000020"),
        ]);
        assert_eq!(info.binding().unwrap().remaining, Some(0));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(20_000));
    }

    #[test]
    fn ties_on_remaining_pick_the_later_reset() {
        let info = parse(&[
            ("X-Ratelimit-Remaining", "0, 0"),
            ("X-Ratelimit-Reset", "1700000010, 1700000050"),
        ]);
        assert_eq!(info.binding().unwrap().reset_at, Some(1_700_000_050_000));
    }
}
