//! When an instance refreshes its tokens alone (issue #19, part 6): during a long outage of
//! the shared store no lease can be taken, so without this rule every instance would keep
//! serving its copy until the tokens expire and then stop.
//!
//! The rule, with `grace` = [`SOLO_GRACE_LEASES`] lease lifetimes ([`solo_grace_ms`], 80 s
//! with the default 10 s HTTP timeout):
//!
//! - the store answers, or there is no shared store (memory, Spin): the shared lease, always;
//! - it has not answered for less than `grace`: wait for it. A blip must not turn every
//!   instance into a Clever client, and any holder's lease has lapsed twice over by then, so
//!   no run that began before the outage can still be writing when the first solo run starts;
//! - past `grace`, an instance refreshes alone once one of the tokens it holds reaches its
//!   normal refresh point (or it holds none), and keeps doing so, on the solo cycle's retry
//!   schedule, until the store answers again: then it hands back to the shared lease.
//!
//! A solo run starts from the last shared cycle this instance read, so its retry schedule
//! goes on from the cluster's; each instance keeps its own from there. Its tokens stay in
//! the process, never in the shared store: when the store answers again, the shared set wins
//! as soon as it is at least as new ([`pick`]); until then the instance's own newer, unexpired
//! token is handed out, so going back loses nothing and no expired token is ever handed out.

use super::cycle::Cycle;
use super::lease::lease_ttl_ms;
use crate::lifecycle::TokenEntry;
use crate::status::{HostStoreStatus, StatusSnapshot};
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The grace, in lease lifetimes.
pub const SOLO_GRACE_LEASES: u64 = 2;

/// How long the shared store must have been unreachable before an instance may refresh alone.
pub fn solo_grace_ms(http_timeout_ms: u64) -> u64 {
    lease_ttl_ms(http_timeout_ms).saturating_mul(SOLO_GRACE_LEASES)
}

/// What a solo run keeps between runs, in the process (`status::keys::SOLO`): the shared
/// records stay as they were, for the lease holder once the store answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SoloRecord {
    /// When this instance began refreshing alone.
    pub since: UnixMillis,
    pub cycle: Cycle,
    pub status: StatusSnapshot,
}

/// Who refreshes this instance's tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The run that holds the deployment's lease (or none is due).
    Shared,
    /// This instance, without the lease, writing only to its own records.
    Alone,
}

/// What the decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct SoloInputs<'a> {
    pub now: UnixMillis,
    /// The host's record of the shared store; `None` where there is none (memory, Spin).
    pub store: Option<&'a HostStoreStatus>,
    /// This instance already refreshes alone (it stays so until the store answers).
    pub alone: bool,
    /// The earliest refresh point among the tokens it holds; `None` when it holds none.
    pub earliest_refresh_at: Option<UnixMillis>,
    pub http_timeout_ms: u64,
}

/// See the module documentation.
pub fn decide(i: &SoloInputs<'_>) -> Refresher {
    let Some(store) = i.store.filter(|s| !s.reachable) else {
        return Refresher::Shared;
    };
    // An outage of unknown start counts from now: waiting is the safe side.
    let since = store.unreachable_since.unwrap_or(i.now);
    if i.now.saturating_sub(since) < solo_grace_ms(i.http_timeout_ms) {
        return Refresher::Shared;
    }
    if i.alone || i.earliest_refresh_at.is_none_or(|at| i.now >= at) {
        Refresher::Alone
    } else {
        Refresher::Shared
    }
}

/// The earliest refresh point of `tokens`.
pub fn earliest_refresh_at<'a>(
    tokens: impl IntoIterator<Item = &'a TokenEntry>,
) -> Option<UnixMillis> {
    tokens.into_iter().map(|t| t.refresh_at).min()
}

/// The set a solo run starts from: per district the newer of the shared copy's token and
/// this instance's own.
pub fn merge(
    shared: impl IntoIterator<Item = TokenEntry>,
    mut own: BTreeMap<String, TokenEntry>,
) -> Vec<TokenEntry> {
    let mut out: Vec<TokenEntry> = shared
        .into_iter()
        .map(|s| match own.remove(&s.district_id) {
            Some(o) if o.obtained_at > s.obtained_at => o,
            _ => s,
        })
        .collect();
    out.extend(own.into_values());
    out
}

/// The token to hand out for a district, from the shared set's and this instance's own:
/// only a usable one, and of two usable ones the newer (the shared one when as new).
pub fn pick(
    shared: Option<TokenEntry>,
    own: Option<TokenEntry>,
    now: UnixMillis,
    skew_ms: u64,
) -> Option<TokenEntry> {
    let shared = shared.filter(|t| t.usable(now, skew_ms));
    let own = own.filter(|t| t.usable(now, skew_ms));
    match (shared, own) {
        (Some(s), Some(o)) if o.obtained_at > s.obtained_at => Some(o),
        (Some(s), _) => Some(s),
        (None, o) => o,
    }
}

/// Whether this instance's own token can go: expired, or the shared one is at least as new.
pub fn own_is_stale(
    shared: Option<&TokenEntry>,
    own: &TokenEntry,
    now: UnixMillis,
    skew_ms: u64,
) -> bool {
    !own.usable(now, skew_ms) || shared.is_some_and(|s| s.obtained_at >= own.obtained_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;

    const TIMEOUT: u64 = 10_000;
    const GRACE: u64 = 80_000;

    fn down_since(at: UnixMillis) -> HostStoreStatus {
        HostStoreStatus {
            kind: "redis".into(),
            reachable: false,
            unreachable_since: Some(at),
            last_error: Some("store unreachable: cannot connect".into()),
        }
    }

    fn decide_at(
        now: UnixMillis,
        store: Option<&HostStoreStatus>,
        alone: bool,
        refresh_at: Option<UnixMillis>,
    ) -> Refresher {
        decide(&SoloInputs {
            now,
            store,
            alone,
            earliest_refresh_at: refresh_at,
            http_timeout_ms: TIMEOUT,
        })
    }

    fn token(obtained_at: UnixMillis, expires_at: UnixMillis) -> TokenEntry {
        TokenEntry {
            district_id: "d".into(),
            token: AccessToken::new(format!("t{obtained_at}")),
            obtained_at,
            expires_at,
            refresh_at: obtained_at + (expires_at - obtained_at) / 2,
            scopes: Vec::new(),
        }
    }

    #[test]
    fn the_grace_is_two_lease_lifetimes() {
        assert_eq!(solo_grace_ms(TIMEOUT), GRACE);
        assert_eq!(solo_grace_ms(1_000), 10_000);
    }

    #[test]
    fn a_reachable_store_or_none_keeps_the_shared_lease() {
        let up = HostStoreStatus {
            reachable: true,
            ..down_since(0)
        };
        for store in [None, Some(&up)] {
            assert_eq!(
                decide_at(1_000_000, store, true, Some(0)),
                Refresher::Shared
            );
        }
    }

    #[test]
    fn alone_only_past_the_grace_and_once_a_token_is_due() {
        let down = down_since(1_000);
        let due = Some(1_000);
        assert_eq!(
            decide_at(1_000 + GRACE - 1, Some(&down), false, due),
            Refresher::Shared
        );
        assert_eq!(
            decide_at(1_000 + GRACE, Some(&down), false, due),
            Refresher::Alone
        );
        // Past the grace but no token at its refresh point yet: the store may come back.
        let later = Some(1_000 + GRACE + 5_000);
        assert_eq!(
            decide_at(1_000 + GRACE, Some(&down), false, later),
            Refresher::Shared
        );
        assert_eq!(
            decide_at(1_000 + GRACE + 5_000, Some(&down), false, later),
            Refresher::Alone
        );
        // Holding no token at all counts as due.
        assert_eq!(
            decide_at(1_000 + GRACE, Some(&down), false, None),
            Refresher::Alone
        );
    }

    #[test]
    fn alone_stays_alone_until_the_store_answers() {
        let down = down_since(1_000);
        let far = Some(10_000_000);
        assert_eq!(
            decide_at(1_000 + GRACE, Some(&down), true, far),
            Refresher::Alone
        );
        let up = HostStoreStatus {
            reachable: true,
            unreachable_since: None,
            ..down
        };
        assert_eq!(
            decide_at(1_000 + GRACE, Some(&up), true, far),
            Refresher::Shared
        );
    }

    #[test]
    fn an_outage_of_unknown_start_waits_the_whole_grace() {
        let down = HostStoreStatus {
            unreachable_since: None,
            ..down_since(0)
        };
        assert_eq!(
            decide_at(1_000_000, Some(&down), false, Some(0)),
            Refresher::Shared
        );
    }

    #[test]
    fn pick_hands_out_only_usable_tokens_and_the_newer_of_two() {
        let old = token(1_000, 100_000);
        let new = token(50_000, 150_000);
        assert_eq!(
            pick(Some(old.clone()), Some(new.clone()), 60_000, 0),
            Some(new.clone())
        );
        assert_eq!(
            pick(Some(new.clone()), Some(old.clone()), 60_000, 0),
            Some(new.clone())
        );
        // As new: the shared one.
        let twin = TokenEntry {
            token: AccessToken::new("other"),
            ..new.clone()
        };
        assert_eq!(
            pick(Some(new.clone()), Some(twin.clone()), 60_000, 0),
            Some(new.clone())
        );
        // The newer one expired (with the skew): the older, if it still is usable.
        assert_eq!(
            pick(Some(new.clone()), Some(old.clone()), 99_000, 2_000),
            Some(new.clone())
        );
        assert_eq!(pick(Some(old.clone()), None, 100_000, 0), None);
        assert_eq!(pick(None, Some(old.clone()), 99_999, 0), Some(old.clone()));
        assert_eq!(pick(None, Some(old), 98_000, 2_000), None);
    }

    #[test]
    fn an_own_token_goes_once_expired_or_overtaken() {
        let own = token(50_000, 150_000);
        assert!(!own_is_stale(None, &own, 60_000, 0));
        assert!(!own_is_stale(Some(&token(1_000, 100_000)), &own, 60_000, 0));
        assert!(own_is_stale(Some(&token(50_000, 150_000)), &own, 60_000, 0));
        assert!(own_is_stale(None, &own, 149_000, 1_000));
    }

    #[test]
    fn a_solo_run_starts_from_the_newer_token_of_each_district() {
        let shared_old = token(1_000, 100_000);
        let own_new = token(50_000, 150_000);
        let other = TokenEntry {
            district_id: "e".into(),
            ..token(2_000, 100_000)
        };
        let own = BTreeMap::from([("d".to_string(), own_new.clone())]);
        let merged = merge([shared_old.clone(), other.clone()], own);
        assert_eq!(merged, vec![own_new.clone(), other.clone()]);
        let own = BTreeMap::from([("d".to_string(), shared_old.clone())]);
        assert_eq!(merge([own_new.clone()], own), vec![own_new]);
    }

    #[test]
    fn earliest_refresh_point() {
        let a = token(0, 100);
        let b = token(10, 30);
        assert_eq!(earliest_refresh_at([&a, &b]), Some(20));
        assert_eq!(earliest_refresh_at([]), None);
    }
}
