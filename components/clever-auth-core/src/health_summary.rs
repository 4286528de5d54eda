//! The precomputed health record: what the public health answer needs, prepared when the
//! refresher writes its status, so answering costs the same with 2 districts or 10,000.
//!
//! A district's health changes with time alone (its token reaches the expiry margin, its rate
//! limit ends), so the record carries the district counts as a short timeline of the instants
//! at which they change. Past the last instant it knows ([`HealthSummary::exact_until`]) the
//! record is not trusted and health falls back to the full status snapshot; in normal operation
//! (one listing gives every token the same expiry) the timeline has one or two entries.

use crate::health::{district_status, Status};
use crate::status::{DistrictRecord, ErrorRecord, ServiceStatus, StatusSnapshot};
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Instants kept in the timeline. Each costs ~40 bytes of the record; more distinct change
/// points than this only happen when districts' tokens were obtained at many different times,
/// and then the record says how long it is exact.
pub const MAX_TIMELINE: usize = 32;

/// Districts per health status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistrictCounts {
    pub pass: u32,
    pub warn: u32,
    pub fail: u32,
}

impl DistrictCounts {
    pub fn total(&self) -> u32 {
        self.pass + self.warn + self.fail
    }

    /// True when at least one district has a token that may be handed out.
    pub fn any_usable(&self) -> bool {
        self.pass + self.warn > 0
    }

    /// The worst district status; `Pass` when there is none (the caller reports "no token").
    pub fn worst(&self) -> Status {
        if self.fail > 0 {
            Status::Fail
        } else if self.warn > 0 {
            Status::Warn
        } else {
            Status::Pass
        }
    }

    fn add(&mut self, status: Status, delta: i64) {
        let slot = match status {
            Status::Pass => &mut self.pass,
            Status::Warn => &mut self.warn,
            Status::Fail => &mut self.fail,
        };
        *slot = u32::try_from(i64::from(*slot) + delta).unwrap_or(0);
    }

    /// Counts `districts` as of `now`.
    pub fn of(districts: &[DistrictRecord], now: UnixMillis, skew_ms: u64) -> Self {
        let mut c = DistrictCounts::default();
        for d in districts {
            c.add(district_status(d, now, skew_ms), 1);
        }
        c
    }
}

/// The counts that hold from `from` on (until the next entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CountsFrom {
    pub from: UnixMillis,
    #[serde(flatten)]
    pub counts: DistrictCounts,
}

/// See the module documentation. Stored under [`crate::status::keys::HEALTH_SUMMARY`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSummary {
    pub computed_at: UnixMillis,
    /// The expiry margin the timeline was computed with; a different setting at request time
    /// makes the record unusable.
    pub expiry_skew_ms: u64,
    pub service: ServiceStatus,
    /// The most recent error of the service or of any district.
    pub latest_error: Option<ErrorRecord>,
    /// Ascending by `from`; the first entry is at `computed_at`.
    pub timeline: Vec<CountsFrom>,
    /// The timeline is exact before this instant only; `None`: exact forever.
    pub exact_until: Option<UnixMillis>,
}

impl HealthSummary {
    /// Prepares the record from the snapshot the refresher is about to store.
    pub fn compute(snapshot: &StatusSnapshot, now: UnixMillis, skew_ms: u64) -> Self {
        let districts: Vec<&DistrictRecord> = snapshot.districts.values().collect();
        // Each district's status changes at most twice after `now`: when its rate limit ends
        // and when its token enters the expiry margin. Sweep over those instants.
        let mut deltas: BTreeMap<UnixMillis, [i64; 3]> = BTreeMap::new();
        let mut first = DistrictCounts::default();
        for d in &districts {
            let mut before = district_status(d, now, skew_ms);
            first.add(before, 1);
            let mut points: Vec<UnixMillis> = [
                d.rate_limited_until,
                d.expires_at.map(|e| e.saturating_sub(skew_ms)),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .collect();
            points.sort_unstable();
            points.dedup();
            for t in points {
                let after = district_status(d, t, skew_ms);
                if after != before {
                    let slot = deltas.entry(t).or_default();
                    slot[index(before)] -= 1;
                    slot[index(after)] += 1;
                    before = after;
                }
            }
        }
        let mut timeline = vec![CountsFrom {
            from: now,
            counts: first,
        }];
        let mut exact_until = None;
        let mut current = first;
        for (at, d) in deltas {
            if d == [0, 0, 0] {
                continue;
            }
            if timeline.len() == MAX_TIMELINE {
                exact_until = Some(at);
                break;
            }
            current.add(Status::Pass, d[0]);
            current.add(Status::Warn, d[1]);
            current.add(Status::Fail, d[2]);
            timeline.push(CountsFrom {
                from: at,
                counts: current,
            });
        }
        let latest_error = snapshot
            .service
            .last_error
            .iter()
            .chain(districts.iter().filter_map(|d| d.last_error.as_ref()))
            .max_by_key(|e| e.at)
            .cloned();
        HealthSummary {
            computed_at: now,
            expiry_skew_ms: skew_ms,
            service: snapshot.service.clone(),
            latest_error,
            timeline,
            exact_until,
        }
    }

    /// The district counts at `now`, or `None` when this record cannot say (past
    /// [`Self::exact_until`], or computed with another expiry margin): read the snapshot then.
    pub fn counts_at(&self, now: UnixMillis, skew_ms: u64) -> Option<DistrictCounts> {
        if skew_ms != self.expiry_skew_ms || self.exact_until.is_some_and(|u| now >= u) {
            return None;
        }
        // Another instance's clock may be a little behind the writer's: before the first
        // entry, the first entry is the best knowledge there is.
        let i = self.timeline.partition_point(|c| c.from <= now);
        self.timeline.get(i.saturating_sub(1)).map(|c| c.counts)
    }
}

fn index(s: Status) -> usize {
    match s {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_800_000_000_000;
    const SKEW: u64 = 30_000;

    fn snapshot(districts: Vec<DistrictRecord>) -> StatusSnapshot {
        StatusSnapshot {
            districts: districts
                .into_iter()
                .map(|d| (d.district_id.clone(), d))
                .collect(),
            ..Default::default()
        }
    }

    fn district(i: u64, expires_at: Option<u64>, rl: Option<u64>, failures: u32) -> DistrictRecord {
        DistrictRecord {
            district_id: format!("d-{i}"),
            expires_at,
            rate_limited_until: rl,
            consecutive_failures: failures,
            ..Default::default()
        }
    }

    /// A small deterministic generator, so the comparison below covers many shapes without a
    /// dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound.max(1)
        }
    }

    #[test]
    fn the_timeline_agrees_with_counting_the_records_at_every_instant() {
        let mut rng = Lcg(7);
        for round in 0..300 {
            let n = rng.next(40);
            let spread = 1 + rng.next(5) * 60_000;
            let ds: Vec<DistrictRecord> = (0..n)
                .map(|i| {
                    let exp = (rng.next(4) > 0).then(|| NOW - 60_000 + rng.next(spread * 4));
                    let rl = (rng.next(3) == 0).then(|| NOW - 1_000 + rng.next(spread));
                    district(i, exp, rl, u32::from(rng.next(4) == 0))
                })
                .collect();
            let summary = HealthSummary::compute(&snapshot(ds.clone()), NOW, SKEW);
            for step in 0..200 {
                let t = NOW + step * (spread / 40 + 1);
                match summary.counts_at(t, SKEW) {
                    Some(c) => assert_eq!(
                        c,
                        DistrictCounts::of(&ds, t, SKEW),
                        "round {round}, t = NOW + {}",
                        t - NOW
                    ),
                    None => assert!(summary.exact_until.is_some_and(|u| t >= u)),
                }
            }
        }
    }

    #[test]
    fn one_listing_gives_a_two_entry_timeline_whatever_the_number_of_districts() {
        let ds: Vec<DistrictRecord> = (0..10_000)
            .map(|i| district(i, Some(NOW + 3_600_000), None, 0))
            .collect();
        let s = HealthSummary::compute(&snapshot(ds), NOW, SKEW);
        assert_eq!(s.timeline.len(), 2);
        assert_eq!(s.exact_until, None);
        assert_eq!(s.counts_at(NOW, SKEW).map(|c| c.pass), Some(10_000));
        let at_margin = NOW + 3_600_000 - SKEW;
        assert_eq!(s.counts_at(at_margin - 1, SKEW).map(|c| c.fail), Some(0));
        assert_eq!(s.counts_at(at_margin, SKEW).map(|c| c.fail), Some(10_000));
        let bytes = serde_json::to_vec(&s)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        assert!(bytes < 1024, "record is {bytes} bytes");
    }

    #[test]
    fn too_many_change_points_end_the_exact_range_and_later_reads_fall_back() {
        let ds: Vec<DistrictRecord> = (0..100)
            .map(|i| district(i, Some(NOW + 60_000 + i * 1_000), None, 0))
            .collect();
        let s = HealthSummary::compute(&snapshot(ds), NOW, SKEW);
        assert_eq!(s.timeline.len(), MAX_TIMELINE);
        let until = s.exact_until.unwrap_or(0);
        assert!(until > NOW);
        assert!(s.counts_at(until - 1, SKEW).is_some());
        assert_eq!(s.counts_at(until, SKEW), None);
    }

    #[test]
    fn another_expiry_margin_at_read_time_is_not_answered_from_the_record() {
        let s = HealthSummary::compute(
            &snapshot(vec![district(1, Some(NOW + 60_000), None, 0)]),
            NOW,
            SKEW,
        );
        assert!(s.counts_at(NOW, SKEW).is_some());
        assert_eq!(s.counts_at(NOW, 0), None);
    }

    #[test]
    fn the_latest_error_is_the_newest_of_service_and_districts() {
        let err = |code: &str, at| ErrorRecord {
            code: code.into(),
            message: "m".into(),
            at,
        };
        let mut snap = snapshot(vec![
            DistrictRecord {
                last_error: Some(err("timeout", NOW - 5)),
                ..district(1, None, None, 1)
            },
            DistrictRecord {
                last_error: Some(err("server_error", NOW - 1)),
                ..district(2, None, None, 1)
            },
        ]);
        snap.service.last_error = Some(err("rate_limited", NOW - 3));
        let s = HealthSummary::compute(&snap, NOW, SKEW);
        assert_eq!(s.latest_error.map(|e| e.code), Some("server_error".into()));
    }
}
