//! One rate budget per district token, however many instances call Clever with it.
//!
//! Clever counts calls per token in fixed windows (`X-Ratelimit-Limit` calls until
//! `X-Ratelimit-Reset`). Holding back once a response says `remaining = 0` ([`super::pacing`])
//! is enough for one caller at a time, but calls already in flight on other instances when the
//! bucket runs dry all earn 429s. So every call first takes a permit: an atomic increment of a
//! counter in the shared store, one counter per bucket per window. The first `limit` increments
//! of a window go to Clever; the rest hold until the window resets (or get 429 from the
//! gateway when that is past their deadline).
//!
//! What a window is comes from Clever's own headers, recorded in a [`BudgetRecord`] that every
//! instance reads. Once two consecutive windows were seen, their distance is the period, so
//! the next window is metered from its first call instead of after its first answer. A
//! response to a call that was not counted in its window (the first calls ever, or a window
//! nobody predicted) raises the counter to what Clever says was used (`limit - remaining`), so
//! calls made before counting began, or by another client of the same token, are not spent
//! twice.
//!
//! Pure: the wasi shell reads the record, increments the counters these functions name, and
//! writes and deletes what [`after_response`] says.

use super::error::{ErrorCode, GatewayError};
use super::pacing::Gate;
use crate::ratelimit::RateLimitInfo;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};

/// How many windows past the last one seen are predicted from the period. Beyond that (an
/// instance idle for long) calls go unmetered until an answer names the window again: a
/// prediction carried too far would drift from windows that are not aligned the way we think.
pub const MAX_PREDICTED_WINDOWS: u64 = 4;

/// Clever's resets are whole seconds: a smaller distance between two resets is not a period.
const MIN_PERIOD_MS: u64 = 1_000;

/// A call admitted this close to its window's reset also takes a [`Meter::crossing`] permit
/// from the next window (at most a quarter of the period): a call can take that long to reach
/// Clever.
pub const CROSSING_GUARD_MS: u64 = 2_000;

/// Stored under [`super::keys::budget`] for one district: the windows of its token's buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetRecord {
    pub windows: Vec<Window>,
    /// A probe's answer carried no rate-limit headers (an upstream that sends none): calls go
    /// unmetered until this instant, then one probes again.
    pub unmetered_until: UnixMillis,
}

/// How long an answer without rate-limit headers lets calls go unmetered.
pub const UNMETERED_FOR_MS: u64 = 60_000;

/// One bucket's last window seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Window {
    /// Names the bucket in counter keys: its `X-Ratelimit-Bucket` when that is a plain word,
    /// otherwise `#` and its position among the headers' buckets.
    pub slot: String,
    pub limit: u64,
    /// The instant the window resets (Clever's `X-Ratelimit-Reset`).
    pub reset_at: UnixMillis,
    /// The distance between two consecutive resets, once seen (the smallest such distance).
    pub period_ms: Option<u64>,
}

/// One permit to take before a call: increment `key`; the call may go while the count is at
/// most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    pub key: String,
    pub limit: u64,
    /// The end of the window the permit belongs to.
    pub reset_at: UnixMillis,
    /// Taken from the next window by a call admitted close to a reset, which may reach Clever
    /// after it: counted there at once, so the next window's first callers do not spend it
    /// again, and given back when the answer says the call landed before the reset. It never
    /// holds the call.
    pub crossing: bool,
}

/// The counter of one bucket's window. `slot` is the bucket's name when it is a plain word,
/// otherwise its position, so no header value can reshape the key.
fn counter_key(district: &str, slot: &str, reset_at: UnixMillis) -> String {
    format!(
        "{}{district}/{slot}/{reset_at}",
        super::keys::BUDGET_COUNT_PREFIX
    )
}

fn slot(index: usize, bucket: Option<&str>) -> String {
    match bucket {
        Some(name)
            if !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            name.to_string()
        }
        _ => format!("#{index}"),
    }
}

impl Window {
    /// The end of the window `now` falls in: the one seen, or one predicted from the period.
    fn current_reset(&self, now: UnixMillis) -> Option<UnixMillis> {
        if now < self.reset_at {
            return Some(self.reset_at);
        }
        let period = self.period_ms?;
        let ahead = (now - self.reset_at) / period + 1;
        (ahead <= MAX_PREDICTED_WINDOWS).then(|| self.reset_at + ahead * period)
    }
}

/// The permits a call at `now` must take: one per bucket whose window is known. While no
/// window is known (the first call, or windows long past), a single probe permit per second
/// instead: callers that all went at once would spend the window before its first answer
/// named it. The probe's answer names the window; until then the others wait a second.
pub fn meters(record: Option<&BudgetRecord>, district: &str, now: UnixMillis) -> Vec<Meter> {
    if record.is_some_and(|r| r.windows.is_empty() && now < r.unmetered_until) {
        return Vec::new();
    }
    let known: Vec<Meter> = record
        .map(|r| r.windows.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|w| w.limit > 0)
        .flat_map(|w| {
            let reset_at = w.current_reset(now);
            let permit = reset_at.map(|reset_at| Meter {
                key: counter_key(district, &w.slot, reset_at),
                // Without a period the next window's counter is unknown, so a call that could
                // land after the reset waits for it instead (only while the period is learned).
                limit: if w.period_ms.is_none() && reset_at.saturating_sub(now) <= CROSSING_GUARD_MS
                {
                    0
                } else {
                    w.limit
                },
                reset_at,
                crossing: false,
            });
            let crossing = reset_at.zip(w.period_ms).and_then(|(reset_at, period)| {
                let guard = CROSSING_GUARD_MS.min(period / 4);
                (reset_at.saturating_sub(now) <= guard).then(|| Meter {
                    key: counter_key(district, &w.slot, reset_at + period),
                    limit: w.limit,
                    reset_at: reset_at + period,
                    crossing: true,
                })
            });
            permit.into_iter().chain(crossing)
        })
        .collect();
    if !known.is_empty() {
        return known;
    }
    let second = now / 1_000;
    vec![Meter {
        key: format!("{}{district}/{second}", super::keys::BUDGET_PROBE_PREFIX),
        limit: 1,
        reset_at: (second + 1) * 1_000,
        crossing: false,
    }]
}

fn is_probe(m: &Meter) -> bool {
    m.key.starts_with(super::keys::BUDGET_PROBE_PREFIX)
}

/// What to clean up after a call that got no answer (a timeout, a connection error): its probe
/// permit, so the next caller may probe at once.
pub fn after_failure(metered: &[Meter]) -> Vec<String> {
    metered
        .iter()
        .filter(|m| is_probe(m))
        .map(|m| m.key.clone())
        .collect()
}

/// Whether the call may go, given the counts its increments returned. A count over the limit
/// holds the call until that window resets; a reset past the deadline refuses it. A counter
/// the store could not increment (`None`) does not hold anything: an unreachable store must
/// not stop the gateway, and Clever's own 429 still paces it.
pub fn verdict(taken: &[(Meter, Option<i64>)], now: UnixMillis, deadline: UnixMillis) -> Gate {
    let until = taken
        .iter()
        .filter(|(m, count)| !m.crossing && count.is_some_and(|c| c > 0 && c as u64 > m.limit))
        .map(|(m, _)| m.reset_at)
        .filter(|&at| at > now)
        .max();
    match until {
        None => Gate::Go,
        Some(at) if at < deadline => Gate::WaitUntil(at),
        Some(at) => Gate::Refuse(
            GatewayError::new(
                ErrorCode::RateLimited,
                "this district's Clever rate limit is used up until after the request's deadline",
            )
            .retry_after(at - now),
        ),
    }
}

/// What one answer teaches the deployment about the district's budget.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The record to write, when it changed.
    pub record: Option<BudgetRecord>,
    /// Windows that Clever charged this call to but that did not count it: add one to the
    /// counter, then raise it by the difference if it is still below `used`.
    pub uncounted: Vec<Uncounted>,
    /// Counters of windows that are over.
    pub stale: Vec<String>,
    /// Crossing permits to give back (decrement): the call landed before the reset.
    pub release: Vec<String>,
}

/// See [`Learned::uncounted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncounted {
    pub key: String,
    /// What Clever said was used of the window (`limit - remaining`), this call included.
    pub used: u64,
}

/// How much to add to a counter that showed `count` after this call was added to it: what
/// Clever counted beyond it (calls before counting began, another client of the same token).
pub fn shortfall(uncounted: &Uncounted, count: i64) -> i64 {
    let used = i64::try_from(uncounted.used).unwrap_or(i64::MAX);
    used.saturating_sub(count).max(0)
}

/// Folds the rate-limit headers of an answer (received at `limits.received_at`) into the
/// record. `metered` are the permits the call took, so an answer counted in its own window
/// does not raise that window's counter.
pub fn after_response(
    record: Option<&BudgetRecord>,
    limits: &RateLimitInfo,
    district: &str,
    metered: &[Meter],
) -> Learned {
    let old = record.cloned().unwrap_or_default();
    let mut new = BudgetRecord {
        windows: Vec::with_capacity(limits.buckets.len()),
        unmetered_until: 0,
    };
    let mut learned = Learned {
        stale: after_failure(metered),
        ..Learned::default()
    };
    for (i, b) in limits.buckets.iter().enumerate() {
        let (Some(limit), Some(reset_at)) = (b.limit, b.reset_at) else {
            continue;
        };
        let slot = slot(i, b.name.as_deref());
        let before = old.windows.iter().find(|w| w.slot == slot);
        let mut window = Window {
            slot: slot.clone(),
            limit,
            reset_at,
            period_ms: before.and_then(|w| w.period_ms),
        };
        if let Some(w) = before {
            if reset_at < w.reset_at {
                // An answer from an older window, arriving late: it teaches nothing new.
                new.windows.push(w.clone());
                continue;
            }
            if reset_at > w.reset_at {
                // A distance is a period only if the old window was over when the new one
                // showed; resets that slide with every call are not windows to predict.
                if limits.received_at >= w.reset_at && reset_at - w.reset_at >= MIN_PERIOD_MS {
                    let seen = reset_at - w.reset_at;
                    window.period_ms = Some(w.period_ms.map_or(seen, |p| p.min(seen)));
                }
                learned
                    .stale
                    .extend(over(w, reset_at).map(|at| counter_key(district, &slot, at)));
            }
        }
        // A call counted in the window its answer names is in the counter already. Any other
        // (a probe; a call admitted just before a reset that reached Clever after it) is added
        // to the window Clever charged it to, so nothing Clever saw goes uncounted.
        let key = counter_key(district, &slot, reset_at);
        if !metered.iter().any(|m| m.key == key) {
            let used = b.remaining.map_or(0, |r| limit.saturating_sub(r));
            learned.uncounted.push(Uncounted { key, used });
        }
        new.windows.push(window);
    }
    if new.windows.is_empty() {
        // An answer without rate-limit headers (an error page, a proxy) keeps what was known,
        // crossing permits included: where the call landed is unknown. If nothing was known,
        // the upstream may never send any: stop probing for a while.
        if old.windows.is_empty() && metered.iter().any(is_probe) {
            learned.record = Some(BudgetRecord {
                windows: Vec::new(),
                unmetered_until: limits.received_at.saturating_add(UNMETERED_FOR_MS),
            });
        }
        return learned;
    }
    learned.release = metered
        .iter()
        .filter(|m| m.crossing)
        .filter(|m| {
            !new.windows
                .iter()
                .any(|w| m.key == counter_key(district, &w.slot, w.reset_at))
        })
        .map(|m| m.key.clone())
        .collect();
    if new != old {
        learned.record = Some(new);
    }
    learned
}

/// The resets of `old` and the windows predicted after it that end before `reset_at`.
fn over(old: &Window, reset_at: UnixMillis) -> impl Iterator<Item = UnixMillis> + '_ {
    let predicted = old.period_ms.map_or(0, |_| MAX_PREDICTED_WINDOWS);
    (0..=predicted)
        .map(move |k| old.reset_at + k * old.period_ms.unwrap_or(0))
        .filter(move |&at| at < reset_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Bucket;

    const NOW: UnixMillis = 1_700_000_000_000;

    fn answer(received_at: UnixMillis, buckets: &[(&str, u64, u64, UnixMillis)]) -> RateLimitInfo {
        RateLimitInfo {
            received_at,
            retry_after_at: None,
            buckets: buckets
                .iter()
                .map(|&(name, limit, remaining, reset_at)| Bucket {
                    name: Some(name.to_string()),
                    limit: Some(limit),
                    remaining: Some(remaining),
                    reset_at: Some(reset_at),
                })
                .collect(),
            warnings: Vec::new(),
        }
    }

    fn window(limit: u64, reset_at: UnixMillis, period_ms: Option<u64>) -> BudgetRecord {
        BudgetRecord {
            windows: vec![Window {
                slot: "district".into(),
                limit,
                reset_at,
                period_ms,
            }],
            unmetered_until: 0,
        }
    }

    #[test]
    fn nothing_known_takes_one_probe_permit_per_second() {
        let probe = Meter {
            key: "clever-auth/v1/gateway/budget-probe/d/1700000000".into(),
            limit: 1,
            reset_at: NOW + 1_000,
            crossing: false,
        };
        assert_eq!(meters(None, "d", NOW + 999), vec![probe.clone()]);
        assert_eq!(
            meters(Some(&BudgetRecord::default()), "d", NOW),
            vec![probe.clone()]
        );
        // The first caller of the second goes, the others wait for the next second.
        assert_eq!(
            verdict(&[(probe.clone(), Some(1))], NOW, NOW + 30_000),
            Gate::Go
        );
        assert_eq!(
            verdict(&[(probe.clone(), Some(2))], NOW, NOW + 30_000),
            Gate::WaitUntil(NOW + 1_000)
        );
        // Its answer, or its failure, frees the probe.
        assert_eq!(
            after_failure(std::slice::from_ref(&probe)),
            vec![probe.key.clone()]
        );
        let l = after_response(
            None,
            &answer(NOW + 50, &[("district", 40, 39, NOW + 5_000)]),
            "d",
            std::slice::from_ref(&probe),
        );
        assert_eq!(l.stale, vec![probe.key]);
    }

    #[test]
    fn a_known_window_meters_until_its_reset_then_stops_without_a_period() {
        let r = window(40, NOW + 5_000, None);
        let m = meters(Some(&r), "d", NOW);
        assert_eq!(
            m,
            vec![Meter {
                key: "clever-auth/v1/gateway/budget-count/d/district/1700000005000".into(),
                limit: 40,
                reset_at: NOW + 5_000,
                crossing: false,
            }]
        );
        assert!(is_probe(&meters(Some(&r), "d", NOW + 5_000)[0]));
    }

    #[test]
    fn while_the_period_is_unknown_calls_close_to_the_reset_wait_for_it() {
        let r = window(40, NOW + 5_000, None);
        assert_eq!(meters(Some(&r), "d", NOW + 2_999)[0].limit, 40);
        let m = meters(Some(&r), "d", NOW + 3_000);
        assert_eq!(m[0].limit, 0);
        assert_eq!(
            verdict(&[(m[0].clone(), Some(1))], NOW + 3_000, NOW + 30_000),
            Gate::WaitUntil(NOW + 5_000)
        );
    }

    #[test]
    fn close_to_a_known_reset_a_call_also_counts_in_the_next_window_without_being_held_by_it() {
        let r = window(40, NOW, Some(8_000));
        let far = meters(Some(&r), "d", NOW + 5_999);
        assert_eq!(far.len(), 1);
        // 2 s (a quarter of 8 s) before the reset of the window ending at NOW + 8 s.
        let near = meters(Some(&r), "d", NOW + 6_000);
        assert_eq!(near.len(), 2);
        assert!(!near[0].crossing && near[1].crossing);
        assert_eq!(near[1].reset_at, NOW + 16_000);
        // A full next window holds nothing; only the call's own window does.
        let taken = [(near[0].clone(), Some(40)), (near[1].clone(), Some(99))];
        assert_eq!(verdict(&taken, NOW + 6_000, NOW + 30_000), Gate::Go);
        // Landed before the reset: the crossing permit is given back.
        let before = after_response(
            Some(&r),
            &answer(NOW + 6_050, &[("district", 40, 0, NOW + 8_000)]),
            "d",
            &near,
        );
        assert_eq!(before.release, vec![near[1].key.clone()]);
        assert!(before.uncounted.is_empty());
        // Landed after it: counted where Clever charged it, nothing to give back or add.
        let after = after_response(
            Some(&r),
            &answer(NOW + 8_050, &[("district", 40, 39, NOW + 16_000)]),
            "d",
            &near,
        );
        assert!(after.release.is_empty());
        assert!(after.uncounted.is_empty());
    }

    #[test]
    fn a_period_predicts_the_next_windows_and_no_further() {
        let r = window(40, NOW, Some(5_000));
        let at = |t| meters(Some(&r), "d", t)[0].reset_at;
        assert_eq!(at(NOW), NOW + 5_000);
        assert_eq!(at(NOW + 4_999), NOW + 5_000);
        assert_eq!(at(NOW + 5_000), NOW + 10_000);
        let last = NOW + MAX_PREDICTED_WINDOWS * 5_000;
        assert_eq!(at(last - 1), last);
        assert!(is_probe(&meters(Some(&r), "d", last)[0]));
    }

    #[test]
    fn counts_up_to_the_limit_go_and_the_rest_hold_until_the_reset() {
        let m = Meter {
            key: "k".into(),
            limit: 40,
            reset_at: NOW + 2_000,
            crossing: false,
        };
        assert_eq!(
            verdict(&[(m.clone(), Some(40))], NOW, NOW + 30_000),
            Gate::Go
        );
        assert_eq!(
            verdict(&[(m.clone(), Some(41))], NOW, NOW + 30_000),
            Gate::WaitUntil(NOW + 2_000)
        );
        match verdict(&[(m.clone(), Some(41))], NOW, NOW + 2_000) {
            Gate::Refuse(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert_eq!(e.retry_after_secs, Some(2));
            }
            other => panic!("{other:?}"),
        }
        // A store that did not answer holds nothing.
        assert_eq!(verdict(&[(m, None)], NOW, NOW + 30_000), Gate::Go);
        assert_eq!(verdict(&[], NOW, NOW + 30_000), Gate::Go);
    }

    #[test]
    fn the_latest_exceeded_reset_binds() {
        let a = Meter {
            key: "a".into(),
            limit: 10,
            reset_at: NOW + 1_000,
            crossing: false,
        };
        let b = Meter {
            key: "b".into(),
            limit: 100,
            reset_at: NOW + 60_000,
            crossing: false,
        };
        let c = Meter {
            key: "c".into(),
            limit: 5,
            reset_at: NOW + 3_000,
            crossing: false,
        };
        assert_eq!(
            verdict(
                &[(a, Some(11)), (b, Some(50)), (c, Some(6))],
                NOW,
                NOW + 30_000
            ),
            Gate::WaitUntil(NOW + 3_000)
        );
    }

    #[test]
    fn the_first_answer_records_the_window_and_raises_its_counter_to_what_clever_counted() {
        let l = after_response(
            None,
            &answer(NOW, &[("district", 40, 28, NOW + 5_000)]),
            "d",
            &[],
        );
        assert_eq!(l.record, Some(window(40, NOW + 5_000, None)));
        let u = Uncounted {
            key: "clever-auth/v1/gateway/budget-count/d/district/1700000005000".into(),
            used: 12,
        };
        assert_eq!(l.uncounted, vec![u.clone()]);
        // Added to a counter at 3, Clever's 12 raise it by 9; at 12 or beyond, by nothing.
        assert_eq!(shortfall(&u, 3), 9);
        assert_eq!(shortfall(&u, 12), 0);
        assert_eq!(shortfall(&u, 20), 0);
        assert!(l.stale.is_empty());
    }

    #[test]
    fn an_answer_counted_in_its_window_changes_nothing() {
        let r = window(40, NOW + 5_000, None);
        let metered = meters(Some(&r), "d", NOW);
        let l = after_response(
            Some(&r),
            &answer(NOW + 10, &[("district", 40, 3, NOW + 5_000)]),
            "d",
            &metered,
        );
        assert_eq!(l, Learned::default());
    }

    #[test]
    fn the_next_window_teaches_the_period_and_retires_the_old_counter() {
        let r = window(40, NOW + 5_000, None);
        let l = after_response(
            Some(&r),
            &answer(NOW + 5_100, &[("district", 40, 39, NOW + 10_000)]),
            "d",
            &[],
        );
        assert_eq!(l.record, Some(window(40, NOW + 10_000, Some(5_000))));
        assert_eq!(
            l.stale,
            vec!["clever-auth/v1/gateway/budget-count/d/district/1700000005000".to_string()]
        );
        assert_eq!(l.uncounted.len(), 1);
    }

    #[test]
    fn resets_that_slide_with_every_answer_teach_no_period() {
        let r = window(40, NOW + 60_000, None);
        let l = after_response(
            Some(&r),
            &answer(NOW + 1_000, &[("district", 40, 38, NOW + 61_000)]),
            "d",
            &[],
        );
        assert_eq!(l.record, Some(window(40, NOW + 61_000, None)));
    }

    #[test]
    fn the_smallest_distance_is_the_period_and_predicted_counters_are_retired() {
        // Idle for three windows: the distance is 15 s, but 5 s stays the period.
        let r = window(40, NOW, Some(5_000));
        let l = after_response(
            Some(&r),
            &answer(NOW + 10_100, &[("district", 40, 39, NOW + 15_000)]),
            "d",
            &[],
        );
        assert_eq!(l.record, Some(window(40, NOW + 15_000, Some(5_000))));
        let resets: Vec<&str> = l
            .stale
            .iter()
            .map(|k| k.rsplit('/').next().unwrap_or_default())
            .collect();
        assert_eq!(resets, ["1700000000000", "1700000005000", "1700000010000"]);
    }

    #[test]
    fn a_late_answer_from_an_older_window_is_ignored() {
        let r = window(40, NOW + 10_000, Some(5_000));
        let l = after_response(
            Some(&r),
            &answer(NOW + 5_100, &[("district", 40, 0, NOW + 5_000)]),
            "d",
            &[],
        );
        assert_eq!(l.record, None);
        assert!(l.stale.is_empty());
    }

    #[test]
    fn a_probe_answered_without_headers_lets_calls_go_unmetered_for_a_while() {
        let probe = meters(None, "d", NOW);
        let quiet = RateLimitInfo {
            received_at: NOW + 20,
            ..RateLimitInfo::default()
        };
        let l = after_response(None, &quiet, "d", &probe);
        let r = l.record.expect("a record");
        assert!(meters(Some(&r), "d", NOW + 20).is_empty());
        assert!(meters(Some(&r), "d", NOW + 20 + UNMETERED_FOR_MS - 1).is_empty());
        assert!(is_probe(
            &meters(Some(&r), "d", NOW + 20 + UNMETERED_FOR_MS)[0]
        ));
        // Headers again: metered from the next call on.
        let l = after_response(
            Some(&r),
            &answer(NOW + 30, &[("district", 40, 39, NOW + 5_000)]),
            "d",
            &[],
        );
        let r = l.record.expect("a record");
        assert_eq!(meters(Some(&r), "d", NOW + 40)[0].limit, 40);
    }

    #[test]
    fn an_answer_without_headers_keeps_the_record() {
        let r = window(40, NOW + 5_000, None);
        assert_eq!(
            after_response(Some(&r), &RateLimitInfo::default(), "d", &[]),
            Learned::default()
        );
    }

    #[test]
    fn odd_bucket_names_cannot_reshape_the_key() {
        let l = after_response(
            None,
            &answer(
                NOW,
                &[("a/../b", 10, 9, NOW + 1_000), ("", 20, 19, NOW + 1_000)],
            ),
            "d",
            &[],
        );
        let keys: Vec<&str> = l.uncounted.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "clever-auth/v1/gateway/budget-count/d/#0/1700000001000",
                "clever-auth/v1/gateway/budget-count/d/#1/1700000001000"
            ]
        );
    }
}
