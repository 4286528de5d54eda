//! Token lifecycle rules: when a token was obtained, when it must be refreshed, when it may no
//! longer be handed out, and which districts stay (the refresher's schedule is in
//! [`crate::refresher`]).

use crate::clever_wire::DistrictToken;
use crate::secret::{stored, AccessToken};
use crate::settings::Settings;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The cache key used for the single application token in `client_credentials` mode.
pub const APP_TOKEN_ID: &str = "app";

/// One cached token. Serialising it exposes the token on purpose: it goes only to the host's
/// in-memory key-value store, and `Debug` still redacts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub district_id: String,
    #[serde(with = "stored")]
    pub token: AccessToken,
    pub obtained_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub refresh_at: UnixMillis,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl TokenEntry {
    /// `lifetime_ms` is the server's `expires_in` when it gave one, else the configured lifetime.
    pub fn new(
        district_id: String,
        token: AccessToken,
        scopes: Vec<String>,
        now: UnixMillis,
        lifetime_ms: u64,
        refresh_fraction: f64,
    ) -> TokenEntry {
        // Past 2^53 ms, `as f64` rounds the lifetime and the product can exceed it; the refresh
        // must still come no later than the expiry.
        let refresh_after =
            ((lifetime_ms as f64 * refresh_fraction.clamp(0.0, 1.0)) as u64).min(lifetime_ms);
        TokenEntry {
            district_id,
            token,
            obtained_at: now,
            expires_at: now.saturating_add(lifetime_ms),
            refresh_at: now.saturating_add(refresh_after),
            scopes,
        }
    }

    /// The skew margin before expiry already counts as expired.
    pub fn usable(&self, now: UnixMillis, skew_ms: u64) -> bool {
        now < self.expires_at.saturating_sub(skew_ms)
    }
}

/// The only way a token leaves the cache: for the district asked for, and only while usable.
pub fn hand_out<'a>(
    entry: Option<&'a TokenEntry>,
    district_id: &str,
    now: UnixMillis,
    skew_ms: u64,
) -> Option<&'a AccessToken> {
    entry
        .filter(|e| e.district_id == district_id && e.usable(now, skew_ms))
        .map(|e| &e.token)
}

/// Lifetime and refresh settings in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub default_lifetime_ms: u64,
    pub refresh_fraction: f64,
    pub skew_ms: u64,
    /// Pause before a new cycle after one gave up (retries exhausted, or a permanent error).
    pub cooldown_ms: u64,
}

impl Timing {
    pub fn from_settings(s: &Settings) -> Timing {
        Timing {
            default_lifetime_ms: s.token_lifetime_secs.saturating_mul(1000),
            refresh_fraction: s.refresh_fraction,
            skew_ms: s.expiry_skew_secs.saturating_mul(1000),
            cooldown_ms: s.retry_max_delay_ms,
        }
    }
}

/// What a listing means for the cache: the districts to keep (allow-list applied) and the
/// previously known ones that vanished (disconnected, or no longer allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingDiff {
    pub kept: Vec<DistrictToken>,
    pub removed: Vec<String>,
    pub not_allowed: Vec<String>,
}

pub fn diff_listing(
    known: &BTreeSet<String>,
    listed: Vec<DistrictToken>,
    allow_list: &[String],
) -> ListingDiff {
    let (kept, not_allowed): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .partition(|t| allow_list.is_empty() || allow_list.iter().any(|a| a == &t.district_id));
    let kept_ids: BTreeSet<&str> = kept.iter().map(|t| t.district_id.as_str()).collect();
    let removed = known
        .iter()
        .filter(|k| !kept_ids.contains(k.as_str()))
        .cloned()
        .collect();
    ListingDiff {
        kept,
        removed,
        not_allowed: not_allowed.into_iter().map(|t| t.district_id).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn entry(id: &str, now: UnixMillis) -> TokenEntry {
        TokenEntry::new(
            id.into(),
            AccessToken::new(format!("tok-{id}")),
            vec![],
            now,
            HOUR,
            0.75,
        )
    }

    #[test]
    fn refresh_is_at_75_percent_of_lifetime() {
        let e = entry("a", 1_000);
        assert_eq!(e.refresh_at, 1_000 + 2_700_000);
        assert_eq!(e.expires_at, 1_000 + HOUR);
    }

    #[test]
    fn refresh_never_comes_after_expiry() {
        // Found by the `token_response` fuzz target: `expires_in` 9007199254742798 s is a
        // lifetime that `as f64` rounds up by 336 ms, so a whole-lifetime refresh fell after it.
        let lifetime = 9_007_199_254_742_798_000;
        let now = 1_700_000_000_000;
        let e = TokenEntry::new(
            "a".into(),
            AccessToken::new("t"),
            vec![],
            now,
            lifetime,
            1.0,
        );
        assert_eq!(e.expires_at, now + lifetime);
        assert_eq!(e.refresh_at, e.expires_at);
    }

    #[test]
    fn skew_counts_as_expired_and_hand_out_respects_it() {
        let e = entry("a", 0);
        assert_eq!(
            hand_out(Some(&e), "a", HOUR - 30_001, 30_000).map(|t| t.expose()),
            Some("tok-a")
        );
        assert!(hand_out(Some(&e), "a", HOUR - 30_000, 30_000).is_none());
        assert!(hand_out(Some(&e), "a", HOUR + 1, 0).is_none());
    }

    #[test]
    fn a_token_is_never_handed_out_for_another_district() {
        let e = entry("a", 0);
        assert!(hand_out(Some(&e), "b", 1, 0).is_none());
        assert!(hand_out(None, "a", 1, 0).is_none());
    }

    #[test]
    fn listing_diff_applies_allow_list_and_finds_removed() {
        let listed = ["a", "b", "c"]
            .map(|id| DistrictToken {
                district_id: id.into(),
                token: AccessToken::new(format!("t{id}")),
                scopes: vec![],
                created: None,
            })
            .to_vec();
        let known: BTreeSet<String> = ["a", "gone"].map(String::from).into();
        let d = diff_listing(&known, listed.clone(), &[]);
        assert_eq!(d.kept.len(), 3);
        assert_eq!(d.removed, ["gone"]);
        let d = diff_listing(&known, listed, &["a".into(), "c".into()]);
        let kept: Vec<&str> = d.kept.iter().map(|t| t.district_id.as_str()).collect();
        assert_eq!(kept, ["a", "c"]);
        assert_eq!(d.not_allowed, ["b"]);
        assert_eq!(d.removed, ["gone"]);
    }
}
