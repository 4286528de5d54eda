//! Permits from the shared budget a few at a time ([`super::budget`]): an instance on a shared
//! store takes a batch with one increment and hands them to its own calls from a counter kept
//! in the process, so most calls cost the shared store nothing for their permit.
//!
//! A batch is a share of what the window had left when this instance last reserved, so it
//! shrinks as the window fills: what an instance holds and does not use when the window ends
//! (the budget it keeps from the others) is at most its last, smallest batch.
//!
//! The balance is one signed counter per window: a call takes one (`-1`); a result of zero or
//! more is a permit the instance held. A call that drove it below zero reserves a batch and
//! adds what it was granted, its own permit included, or gives its `-1` back when the window
//! is spent. Calls that overdraw at the same moment each reserve, so however they interleave,
//! no more calls go than the permits granted (a counter at `-p` has `p` reservations on the
//! way, each adding at least the one it took).
//!
//! Pure: the wasi shell increments and writes what these functions name.

use super::budget::Meter;
use super::keys;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};

/// The most permits one reservation takes.
pub const MAX_BATCH: u64 = 16;

/// A reservation takes this fraction (1 / n) of what the window had left.
pub const SHARE_OF_REST: u64 = 8;

/// Stored per instance under [`seen_key`]: the last reservation in a district's bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Seen {
    /// The window it was in.
    pub reset_at: UnixMillis,
    /// The shared count right after it.
    pub count: i64,
}

/// Whether a permit is worth batching: a window's own permit. Probes (one per second) and
/// crossing permits (the next window's, given back later) stay single increments.
pub fn batched(m: &Meter) -> bool {
    !m.crossing && m.limit > 0 && m.key.starts_with(keys::BUDGET_COUNT_PREFIX)
}

/// `district/slot/reset` of a counter key.
fn window_part(m: &Meter) -> &str {
    m.key
        .strip_prefix(keys::BUDGET_COUNT_PREFIX)
        .unwrap_or(&m.key)
}

/// The instance's balance of permits for `m`'s window (a counter).
pub fn balance_key(m: &Meter) -> String {
    format!("{}{}", keys::BUDGET_HELD_PREFIX, window_part(m))
}

/// `district/slot` of a counter key.
fn bucket_part(m: &Meter) -> &str {
    let part = window_part(m);
    part.rsplit_once('/').map_or(part, |(bucket, _)| bucket)
}

/// The instance's last reservation in `m`'s bucket (a [`Seen`]).
pub fn seen_key(m: &Meter) -> String {
    format!("{}{}", keys::BUDGET_SEEN_PREFIX, bucket_part(m))
}

/// What to reserve after a call overdrew the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How much to add to the shared counter.
    pub batch: u64,
    /// The balance of an earlier window, to delete: its permits can no longer be used.
    pub retire: Option<String>,
}

pub fn plan(m: &Meter, seen: Option<&Seen>) -> Plan {
    let same_window = seen.filter(|s| s.reset_at == m.reset_at);
    let used = same_window.map_or(0, |s| u64::try_from(s.count).unwrap_or(0));
    let retire = seen.filter(|s| s.reset_at < m.reset_at).map(|s| {
        format!(
            "{}{}/{}",
            keys::BUDGET_HELD_PREFIX,
            bucket_part(m),
            s.reset_at
        )
    });
    Plan {
        batch: (m.limit.saturating_sub(used) / SHARE_OF_REST).clamp(1, MAX_BATCH),
        retire,
    }
}

/// What a reservation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// How much to add to the balance: the permits granted (this call's included), or the one
    /// this call took back when none was.
    pub add: i64,
    /// The count to hand [`super::budget::verdict`] for this call's permit: its place in the
    /// window (within the limit when granted, past it when the window is spent).
    pub count: i64,
    /// To store under [`seen_key`].
    pub seen: Seen,
}

/// `count` is the shared counter after adding `batch`: the permits numbered
/// `count - batch + 1 ..= count`, of which those within the limit are granted.
pub fn reserved(m: &Meter, batch: u64, count: i64) -> Reserved {
    let limit = i64::try_from(m.limit).unwrap_or(i64::MAX);
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let first = count.saturating_sub(batch).saturating_add(1);
    let granted = count.min(limit).saturating_sub(first.max(1) - 1).max(0);
    Reserved {
        add: granted.max(1),
        count: if granted > 0 { first.max(1) } else { count },
        seen: Seen {
            reset_at: m.reset_at,
            count,
        },
    }
}

/// The count to hand [`super::budget::verdict`] for a permit the balance held: the instance
/// holds only permits within the limit.
pub const HELD: i64 = 1;

/// Whether the balance after this call's `-1` held a permit for it.
pub fn held(balance: i64) -> bool {
    balance >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESET: UnixMillis = 1_700_000_005_000;

    fn meter(limit: u64) -> Meter {
        Meter {
            key: format!("{}d/district/{RESET}", keys::BUDGET_COUNT_PREFIX),
            limit,
            reset_at: RESET,
            crossing: false,
        }
    }

    #[test]
    fn only_a_windows_own_permits_are_batched() {
        assert!(batched(&meter(40)));
        assert!(!batched(&Meter {
            crossing: true,
            ..meter(40)
        }));
        assert!(!batched(&meter(0)));
        let probe = Meter {
            key: format!("{}d/1700000000", keys::BUDGET_PROBE_PREFIX),
            ..meter(1)
        };
        assert!(!batched(&probe));
    }

    #[test]
    fn the_instances_records_are_its_own_and_name_the_window() {
        let m = meter(40);
        assert_eq!(
            balance_key(&m),
            "clever-auth/v1/host/budget-held/d/district/1700000005000"
        );
        assert_eq!(seen_key(&m), "clever-auth/v1/host/budget-seen/d/district");
        assert!(balance_key(&m).starts_with(crate::status::keys::INSTANCE_PREFIX));
        assert!(seen_key(&m).starts_with(crate::status::keys::INSTANCE_PREFIX));
    }

    #[test]
    fn batches_are_a_share_of_what_is_left_and_shrink_to_one() {
        let m = meter(1_200);
        assert_eq!(plan(&m, None).batch, MAX_BATCH);
        let seen = |count| Seen {
            reset_at: RESET,
            count,
        };
        assert_eq!(plan(&m, Some(&seen(1_100))).batch, 12);
        assert_eq!(plan(&m, Some(&seen(1_190))).batch, 1);
        assert_eq!(plan(&m, Some(&seen(5_000))).batch, 1);
        assert_eq!(plan(&meter(40), None).batch, 5);
        assert_eq!(plan(&meter(3), None).batch, 1);
        // A reservation in an earlier window says nothing about this one's use.
        let earlier = Seen {
            reset_at: RESET - 5_000,
            count: 1_199,
        };
        assert_eq!(plan(&m, Some(&earlier)).batch, MAX_BATCH);
    }

    #[test]
    fn a_new_window_retires_the_balance_of_the_last_one() {
        let m = meter(40);
        let earlier = Seen {
            reset_at: RESET - 5_000,
            count: 12,
        };
        assert_eq!(
            plan(&m, Some(&earlier)).retire.as_deref(),
            Some("clever-auth/v1/host/budget-held/d/district/1700000000000")
        );
        let same = Seen {
            reset_at: RESET,
            count: 12,
        };
        assert_eq!(plan(&m, Some(&same)).retire, None);
        assert_eq!(plan(&m, None).retire, None);
    }

    #[test]
    fn a_reservation_grants_the_permits_within_the_limit() {
        let m = meter(40);
        // 5 from 10: permits 6..=10, all granted; this call holds the 6th.
        let r = reserved(&m, 5, 10);
        assert_eq!((r.add, r.count), (5, 6));
        assert_eq!(
            r.seen,
            Seen {
                reset_at: RESET,
                count: 10
            }
        );
        // Straddling the limit: 38..=42, three granted.
        let r = reserved(&m, 5, 42);
        assert_eq!((r.add, r.count), (3, 38));
        // Spent: 41..=45, none; the call gives its -1 back and is held by verdict.
        let r = reserved(&m, 5, 45);
        assert_eq!((r.add, r.count), (1, 45));
        assert!(r.count as u64 > m.limit);
        // A counter lowered below zero (crossing permits given back) grants from 1.
        let r = reserved(&m, 5, 2);
        assert_eq!((r.add, r.count), (2, 1));
    }

    #[test]
    fn the_balance_holds_a_permit_while_it_stays_at_zero_or_more() {
        assert!(held(0));
        assert!(held(7));
        assert!(!held(-1));
        assert!(HELD as u64 <= meter(1).limit);
    }

    /// However calls of one instance interleave their `-1`s and their reservations, no more go
    /// than were granted.
    #[test]
    fn interleaved_overdrafts_never_let_more_calls_go_than_were_granted() {
        let m = meter(40);
        // Every order of three calls' two steps (take, then reserve if overdrawn), with the
        // shared counter starting at each of a few levels.
        for start in [0i64, 30, 37, 39, 40, 60] {
            for order in permutations() {
                let (mut balance, mut shared, mut granted, mut went) = (0i64, start, 0i64, 0);
                let mut pending = [false; 3];
                let mut done = [0u8; 3];
                for &call in &order {
                    match done[call] {
                        0 => {
                            balance -= 1;
                            if held(balance) {
                                went += 1;
                            } else {
                                pending[call] = true;
                            }
                        }
                        _ if pending[call] => {
                            let batch = 2;
                            shared += batch as i64;
                            let r = reserved(&m, batch, shared);
                            balance += r.add;
                            let limit = m.limit as i64;
                            granted += shared.min(limit) - (shared - batch as i64).min(limit);
                            if r.count <= limit {
                                went += 1;
                            }
                        }
                        _ => {}
                    }
                    done[call] += 1;
                }
                assert!(balance >= 0, "{order:?} from {start}: balance {balance}");
                assert!(
                    went <= granted,
                    "{order:?} from {start}: {went} > {granted}"
                );
                assert_eq!(went + balance, granted, "{order:?} from {start}");
            }
        }
    }

    /// Sequences of six steps: each call (0, 1, 2) appears twice (take, then reserve).
    fn permutations() -> Vec<Vec<usize>> {
        let mut all = Vec::new();
        fn walk(seq: &mut Vec<usize>, left: &mut [u8; 3], all: &mut Vec<Vec<usize>>) {
            if seq.len() == 6 {
                all.push(seq.clone());
                return;
            }
            for c in 0..3 {
                if left[c] > 0 {
                    left[c] -= 1;
                    seq.push(c);
                    walk(seq, left, all);
                    seq.pop();
                    left[c] += 1;
                }
            }
        }
        walk(&mut Vec::new(), &mut [2; 3], &mut all);
        all
    }
}
