//! The district's token for one gateway request: handed out only while usable
//! (`lifecycle::hand_out`), and when there is none, a new listing asked for (single-flight
//! through the refresher's lease) and waited for within the request's deadline.

use super::pause;
use crate::kv::Kv;
use crate::{clock, log};
use clever_auth_core::lifecycle::{self, TokenEntry, APP_TOKEN_ID};
use clever_auth_core::secret::AccessToken;
use clever_auth_core::settings::{Grant, Settings};
use clever_auth_core::status::{keys, RelistRequest, StatusSnapshot};
use clever_auth_core::UnixMillis;
use serde_json::json;

/// How often a waiting request looks for its token again.
const POLL_MS: u64 = 25;
/// How often a waiting request asks the refresher again (it does nothing while another
/// instance holds the lease, or while its retry schedule says not yet).
const RERUN_MS: u64 = 1_000;

/// The token to hand out between the district's records as [`super::first_read`] read them:
/// the shared set's, or this instance's own when that is newer (`solo::choose`).
pub fn usable(kv: &Kv, district: &str, skew_ms: u64, read: Tokens) -> Option<AccessToken> {
    let now = clock::now();
    let entry = crate::solo::choose(kv, district, read.shared, read.own, now, skew_ms);
    lifecycle::hand_out(entry.as_ref(), district, now, skew_ms)?;
    entry.map(|e| e.token)
}

/// [`usable`] reading the records itself (`solo::token`).
fn usable_entry(kv: &Kv, district: &str, skew_ms: u64) -> Option<TokenEntry> {
    let now = clock::now();
    let entry = crate::solo::token(kv, district, now, skew_ms);
    lifecycle::hand_out(entry.as_ref(), district, now, skew_ms)?;
    entry
}

/// A district's token records as read, opened: the shared set's and this instance's own.
pub struct Tokens {
    pub shared: Option<TokenEntry>,
    pub own: Option<TokenEntry>,
}

/// A token Clever refused, and when the new listing was asked for.
pub struct Refused<'a> {
    pub token: &'a AccessToken,
    pub relist_asked_at: UnixMillis,
}

/// True when the district certainly has no token to wait for: the grant or the allow-list
/// excludes it, or a listing succeeded without it.
pub fn unknown(kv: &Kv, settings: &Settings, district: &str) -> bool {
    let app = district == APP_TOKEN_ID;
    match settings.grant {
        Grant::ClientCredentials => return !app,
        Grant::DistrictTokens if app => return true,
        Grant::DistrictTokens => {}
    }
    if !settings.districts.is_empty() && !settings.districts.iter().any(|d| d == district) {
        return true;
    }
    let status = kv.get::<StatusSnapshot>(keys::STATUS).ok().flatten();
    status.is_some_and(|s| {
        s.service.last_successful_auth.is_some() && !s.districts.contains_key(district)
    })
}

/// Asks the refresher for a new listing (contract with the refresher: it honours the request
/// as soon as its schedule, rate limits and credential pause allow). Returns when it asked.
pub fn request_relist(kv: &Kv, district: &str, reason: &str) -> UnixMillis {
    let at = clock::now();
    let request = RelistRequest {
        at,
        district: Some(district.to_string()),
        reason: reason.to_string(),
    };
    if let Err(e) = kv.put(keys::RELIST_REQUEST, &request) {
        log::event(
            "error",
            "store_write_failed",
            json!({ "key": keys::RELIST_REQUEST, "error": e.to_string() }),
        );
    }
    at
}

/// Waits until the district has a usable token, running the refresher when it is due. After a
/// refusal the token must be another one, or come from a listing made after the refusal
/// (Clever listing the same token again: it gets its one replay). Fails at the deadline, or
/// as soon as the district turns out unknown.
pub fn wait_for_new(
    kv: &Kv,
    settings: &Settings,
    district: &str,
    refused: Option<&Refused<'_>>,
    deadline: UnixMillis,
    waited_ms: &mut u64,
) -> Result<AccessToken, Missing> {
    let skew_ms = settings.expiry_skew_secs.saturating_mul(1000);
    let started = clock::now();
    let mut next_run = started;
    let result = loop {
        let now = clock::now();
        if now >= next_run {
            crate::refresh::run_due();
            next_run = clock::now().saturating_add(RERUN_MS);
        }
        if let Some(entry) = usable_entry(kv, district, skew_ms) {
            let fresh = refused.is_none_or(|r| {
                r.token.expose() != entry.token.expose() || entry.obtained_at >= r.relist_asked_at
            });
            if fresh {
                break Ok(entry.token);
            }
        }
        if unknown(kv, settings, district) {
            break Err(Missing::Unknown);
        }
        let now = clock::now();
        if now >= deadline {
            break Err(Missing::TimedOut);
        }
        pause::until(now.saturating_add(POLL_MS).min(deadline));
    };
    *waited_ms = waited_ms.saturating_add(clock::now().saturating_sub(started));
    result
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Unknown,
    TimedOut,
}

/// Deletes the district's cached token if it is still the one Clever refused (a newer one
/// written meanwhile stays).
pub fn drop_refused(kv: &Kv, district: &str, refused: &AccessToken) {
    for key in [keys::token(district), keys::solo_token(district)] {
        let current = crate::token_store::entry_at(kv, &key);
        if current.is_some_and(|e| e.token.expose() == refused.expose()) {
            let _ = kv.delete(&key);
        }
    }
}
