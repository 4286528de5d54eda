//! Settings and secrets through `wasi:config/store`.

use crate::bindings::wasi::config::store;
use crate::kv::Kv;
use crate::log;
use clever_auth_core::health::CredentialPresence;
use clever_auth_core::health_view;
use clever_auth_core::secret::Secret;
use clever_auth_core::settings::{self, SettingError, Settings, CLIENT_ID, CLIENT_SECRET};
use clever_auth_core::settings_check::{self, SettingsCheck};
use clever_auth_core::UnixMillis;
use serde_json::json;
use std::cell::RefCell;

fn get(key: &str) -> Result<Option<String>, String> {
    store::get(key).map_err(|e| match e {
        store::Error::Upstream(m) => format!("upstream: {m}"),
        store::Error::Io(m) => format!("i/o: {m}"),
    })
}

/// The settings, with the store's sealing among them: on a shared store without a usable key
/// no token could be kept, so the refresher does not call Clever and health names the key.
pub fn settings() -> Result<Settings, Vec<SettingError>> {
    let loaded = settings::load(get);
    match (loaded, crate::token_store::settings_error()) {
        (loaded, None) => loaded,
        (Ok(_), Some(e)) => Err(vec![e]),
        (Err(mut errors), Some(e)) => {
            errors.push(e);
            Err(errors)
        }
    }
}

/// The settings as one check of them: the stored check while it is fresh, else the settings
/// read now (every setting is a host call; see `clever_auth_core::settings_check`) and stored.
/// Health and every gateway request start here.
pub fn checked(kv: Option<&Kv>, now: UnixMillis) -> SettingsCheck {
    let previous = kv.and_then(stored_check);
    if let Some(check) = previous.as_ref().filter(|c| c.fresh_at(now)) {
        return check.clone();
    }
    let check = SettingsCheck::new(&settings(), health_detail_setting(), now);
    // Said when the value changes (or first seen), not at every check.
    if previous.as_ref().map(|p| &p.health_detail) != Some(&check.health_detail) {
        if let Some(problem) = health_view::setting_problem(check.health_detail.as_deref()) {
            log::event(
                "warn",
                "setting_ignored",
                json!({ "setting": health_view::DETAIL_SETTING, "problem": problem }),
            );
        }
    }
    if let Some(kv) = kv {
        // Not stored: the next request reads the settings again, nothing worse.
        let _ = kv.put(settings_check::KEY, &check);
    }
    check
}

thread_local! {
    /// The stored check this instance parsed last, with its bytes: an instance the native host
    /// keeps for many requests parses the record once per change, not once per request (the
    /// gateway reads it on every request). Under Spin every request has a new instance.
    static PARSED: RefCell<Option<(Vec<u8>, SettingsCheck)>> = const { RefCell::new(None) };
}

/// The stored settings check, if any (parsed again only when its bytes changed).
fn stored_check(kv: &Kv) -> Option<SettingsCheck> {
    let bytes = kv.bucket().get(settings_check::KEY).ok().flatten()?;
    PARSED.with_borrow_mut(|parsed| {
        if let Some((seen, check)) = parsed.as_ref() {
            if *seen == bytes {
                return Some(check.clone());
            }
        }
        let check: SettingsCheck = serde_json::from_slice(&bytes).ok()?;
        *parsed = Some((bytes, check.clone()));
        Some(check)
    })
}

/// The health view setting (`clever_auth_core::health_view::DETAIL_SETTING`), if any.
pub fn health_detail_setting() -> Option<String> {
    get(health_view::DETAIL_SETTING).ok().flatten()
}

/// Whether each secret is available right now, without keeping its value.
pub fn credential_presence() -> CredentialPresence {
    let present = |key| matches!(get(key), Ok(Some(v)) if !v.trim().is_empty());
    CredentialPresence {
        client_id: present(CLIENT_ID),
        client_secret: present(CLIENT_SECRET),
    }
}

/// The Clever client credentials, read afresh at each acquisition so a rotated secret takes
/// effect without a restart. `Debug` never shows the secret.
#[derive(Debug)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: Secret,
}

pub fn credentials() -> Option<Credentials> {
    let value = |key| match get(key) {
        Ok(Some(v)) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ => None,
    };
    Some(Credentials {
        client_id: value(CLIENT_ID)?,
        client_secret: Secret::new(value(CLIENT_SECRET)?),
    })
}
