//! Token records in the store, sealed when the deployment gives a store key
//! (`clever_auth_core::store_seal`): every read and write of a token goes through here.

use crate::bindings::wasi::config::store as config;
use crate::kv::{Kv, KvError};
use clever_auth_core::lifecycle::TokenEntry;
use clever_auth_core::settings::SettingError;
use clever_auth_core::status::keys;
use clever_auth_core::store_seal::{self, KeyError, SealError, Sealing, StoreKeys};
use std::cell::RefCell;

/// What a token record turned out to be.
pub enum Stored {
    Absent,
    Entry(TokenEntry),
    /// Intact but not for us to open now (sealed with a key this instance lacks, or in the
    /// clear on a shared store): never handed out, and left for an instance that can.
    Unusable(SealError),
    /// Not a token record at all: safe to delete.
    Malformed,
}

fn setting(key: &str) -> Option<String> {
    config::get(key)
        .ok()
        .flatten()
        .filter(|v| !v.trim().is_empty())
}

/// The settings a sealing is built from: current key, previous key, required.
type SealingInputs = (Option<String>, Option<String>, bool);

thread_local! {
    /// The sealing last built, with the setting values it came from: a reused instance builds
    /// the cipher once per key change, not once per token read.
    static SEALING: RefCell<Option<(SealingInputs, Result<Sealing, KeyError>)>> =
        const { RefCell::new(None) };
}

/// The sealing the settings give now, or why they give none (a malformed key: then tokens are
/// neither written nor read, and the message says which setting is wrong).
pub fn sealing() -> Result<Sealing, String> {
    built_sealing().map_err(|e| e.to_string())
}

/// Why the settings allow no token to be kept, if they do not (see
/// `store_seal::settings_error`).
pub fn settings_error() -> Option<SettingError> {
    store_seal::settings_error(&built_sealing())
}

fn built_sealing() -> Result<Sealing, KeyError> {
    let inputs = (
        setting(store_seal::KEY_SETTING),
        setting(store_seal::PREVIOUS_KEY_SETTING),
        setting(store_seal::MODE_SETTING).is_some_and(|m| m.trim() == store_seal::REQUIRED),
    );
    SEALING.with_borrow_mut(|cached| {
        if let Some((seen, sealing)) = cached.as_ref() {
            if *seen == inputs {
                return sealing.clone();
            }
        }
        let built = match &inputs.0 {
            Some(current) => StoreKeys::parse(current, inputs.1.as_deref()).map(|keys| Sealing {
                keys: Some(keys),
                required: inputs.2,
            }),
            None => Ok(Sealing {
                keys: None,
                required: inputs.2,
            }),
        };
        *cached = Some((inputs, built.clone()));
        built
    })
}

/// 12 bytes no earlier write used: each `random_u64` comes from a freshly keyed hasher, which
/// std seeds from wasi:random.
fn nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&crate::entropy::random_u64().to_le_bytes());
    n[8..].copy_from_slice(&crate::entropy::random_u64().to_le_bytes()[..4]);
    n
}

pub fn get(kv: &Kv, key: &str) -> Result<Stored, KvError> {
    kv.bucket().get(key).map(open).map_err(crate::kv::describe)
}

/// What a token record's bytes, read by whichever call, turn out to be.
pub fn open(bytes: Option<Vec<u8>>) -> Stored {
    let Some(bytes) = bytes else {
        return Stored::Absent;
    };
    let sealing = match sealing() {
        Ok(s) => s,
        Err(e) => return Stored::Unusable(SealError::Malformed(e)),
    };
    match store_seal::open(&sealing, &bytes) {
        Ok(entry) => Stored::Entry(entry),
        Err(SealError::Malformed(_)) => Stored::Malformed,
        Err(e) => Stored::Unusable(e),
    }
}

/// The district's token in the shared set, if its record opens.
pub fn entry(kv: &Kv, district: &str) -> Option<TokenEntry> {
    entry_at(kv, &keys::token(district))
}

/// The token record at `key`, if it opens.
pub fn entry_at(kv: &Kv, key: &str) -> Option<TokenEntry> {
    match get(kv, key) {
        Ok(Stored::Entry(e)) => Some(e),
        _ => None,
    }
}

/// The token in a record's bytes, if they open.
pub fn entry_in(bytes: Option<Vec<u8>>) -> Option<TokenEntry> {
    match open(bytes) {
        Stored::Entry(e) => Some(e),
        _ => None,
    }
}

/// Writes the district's token to the shared set.
pub fn put(kv: &Kv, entry: &TokenEntry) -> Result<(), KvError> {
    put_at(kv, &keys::token(&entry.district_id), entry)
}

/// Writes a token record at `key` (the shared set's or this instance's own, see `solo`).
pub fn put_at(kv: &Kv, key: &str, entry: &TokenEntry) -> Result<(), KvError> {
    let sealing = sealing().map_err(KvError)?;
    let bytes = store_seal::seal(&sealing, entry, nonce()).map_err(|e| KvError(e.to_string()))?;
    kv.bucket().set(key, &bytes).map_err(crate::kv::describe)
}
