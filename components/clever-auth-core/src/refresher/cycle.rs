//! The refresher's persisted bookkeeping and the rules that say, from it alone, whether a run
//! is due: the health path (Spin) decides from this record before reading any secret.

use crate::backoff::RetryState;
use crate::secret::Secret;
use crate::status::RelistRequest;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How soon to look again while credentials are missing: the host's secrets may arrive at any
/// moment (Key Vault recovering), so this stays short.
pub const RECHECK_MS: u64 = 5_000;
/// After Clever rejected the credentials (401), how long before trying the same ones again.
pub const BAD_CREDENTIALS_PAUSE_MS: u64 = 300_000;
/// While the credentials stand rejected, how often a run looks whether they changed. Under
/// Spin no host reports a secrets generation, so a rotated secret is only seen by reading it;
/// this bounds both how late it is seen and how often the vault is read meanwhile (one pair
/// of reads per 2 s at most, and only while rejected; the rejected pair itself is never sent
/// to Clever again before the 5-minute pause).
pub const CREDENTIALS_RECHECK_MS: u64 = 2_000;

/// The credentials as the machine sees them: never the values, only whether they are there
/// and a fingerprint that changes when either changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecretsView {
    /// The native host bumps this when a secret changes; 0 when no host reports one (Spin).
    pub generation: u64,
    /// [`credentials_fingerprint`] of the pair; `None` while either is missing.
    pub fingerprint: Option<u64>,
}

/// A 64-bit FNV-1a digest of (client id, secret). It only tells two pairs apart; it is kept
/// in the store (never logged) and 64 bits of a high-entropy secret cannot be turned back
/// into it. FNV rather than `DefaultHasher` because it must not change between Rust releases.
pub fn credentials_fingerprint(client_id: &str, secret: &Secret) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let parts = [client_id.as_bytes(), &[0xff], secret.expose().as_bytes()];
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cycle {
    /// The next instant anything is due (the machine's `poll_timeout`).
    pub next_due_at: UnixMillis,
    pub retry: RetryState,
    /// Credentials were present at the last run; their arrival makes a refresh due at once.
    pub credentials_seen: bool,
    /// The host's secrets generation last seen; a new one (rotation) is due at once.
    pub secrets_generation: u64,
    /// Fingerprint of the pair last seen; a different one is due at once (Spin's rotation).
    pub credentials_fingerprint: Option<u64>,
    /// The pair Clever refused with 401: not tried again before the pause ends.
    pub rejected_fingerprint: Option<u64>,
    /// When the next acquisition is due (a pending retry's instant while one is pending).
    pub refresh_due_at: UnixMillis,
    /// No token-endpoint call before this instant, except right after a credential change:
    /// the retry schedule, a server's rate-limit hint, or the spacing after a success.
    pub not_before: UnixMillis,
    /// When the last listing (or client_credentials call) began.
    pub listing_started_at: Option<UnixMillis>,
    /// Minimum spacing of two acquisitions outside the retry schedule (the retry base), kept
    /// here so the health path can judge a relist request without reading settings.
    pub spacing_ms: u64,
    /// Districts whose new token still awaits its connection probe, probed a batch per run so
    /// hundreds of districts are not probed in one burst.
    pub pending_probes: Vec<String>,
    /// Districts whose last probe failed; their health verdict stands until a probe passes.
    pub probe_failing: BTreeSet<String>,
    /// The next acquisition was brought forward because a probe failed: it re-probes only
    /// what changed or failed, not every district again.
    pub relist_for_failures: bool,
    /// The last complete listing would have removed every known district; the next one
    /// confirms it before anything is deleted.
    pub empty_listing_seen: bool,
}

impl Cycle {
    /// When a relist request makes an acquisition due: the first instant the spacing, the
    /// retry schedule and any server hint allow; `None` when the request is already served by
    /// a listing that began after it.
    pub fn relist_at(&self, request: Option<&RelistRequest>) -> Option<UnixMillis> {
        let request = request?;
        if self.listing_started_at.is_some_and(|s| request.at <= s) {
            return None;
        }
        let spaced = self
            .listing_started_at
            .map_or(0, |s| s.saturating_add(self.spacing_ms));
        Some(request.at.max(spaced).max(self.not_before))
    }

    /// Due judged from the stored record alone, without reading a secret: the schedule, a new
    /// secrets generation, or a relist request whose time has come.
    pub fn due_without_secrets(
        &self,
        now: UnixMillis,
        generation: u64,
        relist: Option<&RelistRequest>,
    ) -> bool {
        now >= self.next_due_at
            || generation != self.secrets_generation
            || self.relist_at(relist).is_some_and(|at| now >= at)
    }

    /// Due, knowing the credentials: also when they have just arrived or changed.
    pub fn due(
        &self,
        now: UnixMillis,
        secrets: &SecretsView,
        relist: Option<&RelistRequest>,
    ) -> bool {
        self.due_without_secrets(now, secrets.generation, relist)
            || self.credentials_changed(secrets)
    }

    /// The credentials arrived or differ from the last ones seen.
    pub fn credentials_changed(&self, secrets: &SecretsView) -> bool {
        let Some(fp) = secrets.fingerprint else {
            return false;
        };
        !self.credentials_seen
            || self.secrets_generation != secrets.generation
            || self.credentials_fingerprint.is_some_and(|old| old != fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_tells_pairs_apart_and_is_stable() {
        let a = credentials_fingerprint("id", &Secret::new("s1"));
        assert_eq!(a, credentials_fingerprint("id", &Secret::new("s1")));
        assert_ne!(a, credentials_fingerprint("id", &Secret::new("s2")));
        assert_ne!(a, credentials_fingerprint("id2", &Secret::new("s1")));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            credentials_fingerprint("ab", &Secret::new("c")),
            credentials_fingerprint("a", &Secret::new("bc"))
        );
    }

    #[test]
    fn relist_waits_for_spacing_and_schedule_and_is_served_once() {
        let cycle = Cycle {
            listing_started_at: Some(10_000),
            spacing_ms: 2_000,
            not_before: 11_000,
            next_due_at: 1_000_000,
            ..Cycle::default()
        };
        let req = |at| RelistRequest {
            at,
            district: Some("d1".into()),
            reason: "token_rejected".into(),
        };
        assert_eq!(cycle.relist_at(Some(&req(9_000))), None);
        assert_eq!(cycle.relist_at(Some(&req(10_500))), Some(12_000));
        let held = Cycle {
            not_before: 40_000,
            ..cycle.clone()
        };
        assert_eq!(held.relist_at(Some(&req(10_500))), Some(40_000));
        assert!(!cycle.due_without_secrets(11_999, 0, Some(&req(10_500))));
        assert!(cycle.due_without_secrets(12_000, 0, Some(&req(10_500))));
    }

    #[test]
    fn health_path_is_not_due_between_runs() {
        let cycle = Cycle {
            next_due_at: 5_000,
            credentials_seen: true,
            ..Cycle::default()
        };
        assert!(!cycle.due_without_secrets(4_999, 0, None));
        assert!(cycle.due_without_secrets(5_000, 0, None));
        assert!(cycle.due_without_secrets(10, 1, None));
    }
}
