//! This instance's own records while it refreshes alone during a store outage
//! (`clever_auth_core::refresher::solo` decides when): its token set under
//! `keys::SOLO_TOKEN_PREFIX` and its cycle and status in `keys::SOLO`. Both are under
//! `clever-auth/v1/host/`, which the host keeps in the process whatever the store, so they
//! can be written while the shared store does not answer, and never reach other instances.
//!
//! Every token read goes through [`token`] (or [`choose`], between records already read): the
//! shared set's, unless this instance's own is newer and unexpired (`solo::pick`).

use crate::kv::Kv;
use crate::log;
use crate::token_store::{self, Stored};
use clever_auth_core::lifecycle::TokenEntry;
use clever_auth_core::refresher::solo::{self, SoloRecord};
use clever_auth_core::status::keys;
use clever_auth_core::UnixMillis;
use serde_json::json;
use std::collections::BTreeMap;

pub fn load(kv: &Kv) -> Option<SoloRecord> {
    kv.get::<SoloRecord>(keys::SOLO).ok().flatten()
}

pub fn save(kv: &Kv, record: &SoloRecord) {
    if let Err(e) = kv.put(keys::SOLO, record) {
        log::event(
            "error",
            "store_write_failed",
            json!({ "key": keys::SOLO, "error": e.to_string() }),
        );
    }
}

/// Says that this instance refreshes alone from now on.
pub fn started(since: UnixMillis, unreachable_since: Option<UnixMillis>, grace_ms: u64) {
    log::event(
        "warn",
        "solo_refresh_started",
        json!({
            "reason": "the shared store has not answered for longer than the grace; this instance refreshes its tokens alone, without the lease",
            "unreachable_since": unreachable_since,
            "grace_ms": grace_ms,
            "since": since,
        }),
    );
}

/// Hands back to the shared lease: the record goes; the own tokens stay until the shared set
/// is as new (see [`token`]) or they expire.
pub fn hand_back(kv: &Kv, record: &SoloRecord, now: UnixMillis) {
    let _ = kv.delete(keys::SOLO);
    log::event(
        "info",
        "solo_refresh_ended",
        json!({
            "reason": "the shared store answers again; back to the shared lease",
            "alone_ms": now.saturating_sub(record.since),
        }),
    );
}

/// The district's token to hand out now, or `None`: never an expired one. An own token that
/// can no longer win (expired, or the shared one is as new) is removed on the way.
pub fn token(kv: &Kv, district: &str, now: UnixMillis, skew_ms: u64) -> Option<TokenEntry> {
    let shared = token_store::entry(kv, district);
    let own = token_store::entry_at(kv, &keys::solo_token(district));
    choose(kv, district, shared, own, now, skew_ms)
}

/// [`token`] between records already read (the gateway reads both with other records in one
/// call).
pub fn choose(
    kv: &Kv,
    district: &str,
    shared: Option<TokenEntry>,
    own: Option<TokenEntry>,
    now: UnixMillis,
    skew_ms: u64,
) -> Option<TokenEntry> {
    if own
        .as_ref()
        .is_some_and(|o| solo::own_is_stale(shared.as_ref(), o, now, skew_ms))
    {
        let _ = kv.delete(&keys::solo_token(district));
        return solo::pick(shared, None, now, skew_ms);
    }
    solo::pick(shared, own, now, skew_ms)
}

/// This instance's own tokens, by district.
pub fn own_tokens(kv: &Kv) -> BTreeMap<String, TokenEntry> {
    let keys = kv
        .keys_with_prefix(keys::SOLO_TOKEN_PREFIX)
        .unwrap_or_default();
    keys.iter()
        .filter_map(|key| match token_store::get(kv, key) {
            Ok(Stored::Entry(t)) => Some((t.district_id.clone(), t)),
            _ => None,
        })
        .collect()
}

pub fn put(kv: &Kv, entry: &TokenEntry) {
    if let Err(e) = token_store::put_at(kv, &keys::solo_token(&entry.district_id), entry) {
        log::event(
            "error",
            "store_write_failed",
            json!({ "district": entry.district_id, "error": e.to_string() }),
        );
    }
}

pub fn delete(kv: &Kv, district: &str) {
    let _ = kv.delete(&keys::solo_token(district));
}
