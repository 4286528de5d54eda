//! The settings as one check of them, kept in the store for health and the gateway.
//!
//! Checking the settings means one `wasi:config` lookup per setting (about 25), each a host
//! call: under Spin (a fresh instance per request, variables resolved per lookup) that was the
//! largest part of the component's own work per health request. The settings cannot change
//! while the process lives (environment under the host, variables under Spin) and the
//! in-memory store dies with the process, so one check serves every health answer after it.
//! A record older than [`FRESH_MS`] is checked again: that bounds how long a store that
//! outlives a restart (Spin's SQLite store) can show the settings of the run before.

use crate::settings::{SettingError, Settings, SETTINGS};
use crate::store_seal;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};

/// The store key of the record: one per instance (its own settings), see
/// [`crate::status::keys::INSTANCE_PREFIX`].
pub const KEY: &str = "clever-auth/v1/host/settings-check";
/// How long a check answers for health before the settings are read again.
pub const FRESH_MS: u64 = 60_000;
/// The skew assumed when the settings are unusable, so token checks still make sense.
pub const FALLBACK_SKEW_MS: u64 = 30_000;
/// The API version assumed when the settings are unusable.
pub const FALLBACK_API_VERSION: &str = "v3.0";
/// Named in a stored error whose setting is not in [`SETTINGS`] (a record from another build).
const UNKNOWN_SETTING: &str = "settings";

/// One check of the settings, as health uses it. Holds no secret: settings errors never carry
/// a secret's value, and the credentials are not settings here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsCheck {
    pub checked_at: UnixMillis,
    pub errors: Vec<StoredError>,
    pub expiry_skew_ms: u64,
    pub api_version: String,
    /// The health view setting (`health_view::DETAIL_SETTING`) as read, to warn when it
    /// changes to an unknown value. The view itself reads the setting at every request: under
    /// Spin this record is shared by every `spin up` on one Redis.
    pub health_detail: Option<String>,
    /// The settings themselves when they are usable: a gateway request needs all of them,
    /// and reading them is the same ~25 host calls. Absent in a record of an older build.
    #[serde(default)]
    pub settings: Option<Settings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredError {
    pub setting: String,
    pub message: String,
}

impl SettingsCheck {
    /// The check of what `settings::load` returned, made at `now`.
    pub fn new(
        loaded: &Result<Settings, Vec<SettingError>>,
        health_detail: Option<String>,
        now: UnixMillis,
    ) -> SettingsCheck {
        let (errors, expiry_skew_ms, api_version) = match loaded {
            Ok(s) => (
                Vec::new(),
                s.expiry_skew_secs.saturating_mul(1000),
                s.api_version.clone(),
            ),
            Err(errors) => (
                errors
                    .iter()
                    .map(|e| StoredError {
                        setting: e.setting.to_string(),
                        message: e.message.clone(),
                    })
                    .collect(),
                FALLBACK_SKEW_MS,
                FALLBACK_API_VERSION.to_string(),
            ),
        };
        SettingsCheck {
            checked_at: now,
            errors,
            expiry_skew_ms,
            api_version,
            health_detail,
            settings: loaded.as_ref().ok().cloned(),
        }
    }

    /// Whether this check may answer for `now`; a clock that went back makes it stale, and so
    /// does a record that holds neither settings nor errors (an older build's).
    pub fn fresh_at(&self, now: UnixMillis) -> bool {
        let complete = self.settings.is_some() || !self.errors.is_empty();
        // The store key may come while the process lives (the native host reads it from Key
        // Vault in the background), and on a shared store this record is every instance's:
        // a missing key is looked for again at every request until it is there.
        let sealing_error = self
            .errors
            .iter()
            .any(|e| store_seal::SETTINGS.contains(&e.setting.as_str()));
        complete && !sealing_error && now >= self.checked_at && now - self.checked_at < FRESH_MS
    }

    /// What `settings::load` gave: the settings, or every error.
    pub fn settings(&self) -> Result<Settings, Vec<SettingError>> {
        match &self.settings {
            Some(s) if self.errors.is_empty() => Ok(s.clone()),
            _ => Err(self.errors()),
        }
    }

    /// The errors, named as `settings::load` names them.
    pub fn errors(&self) -> Vec<SettingError> {
        self.errors
            .iter()
            .map(|e| SettingError {
                setting: SETTINGS
                    .iter()
                    .map(|s| s.name)
                    .chain(store_seal::SETTINGS)
                    .find(|name| *name == e.setting)
                    .unwrap_or(UNKNOWN_SETTING),
                message: e.message.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, Vec<SettingError>> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        settings::load(|k| Ok(map.get(k).map(|v| v.to_string())))
    }

    #[test]
    fn usable_settings_give_their_skew_and_version_and_no_errors() {
        let check = SettingsCheck::new(
            &load(&[
                ("clever_expiry_skew_secs", "7"),
                ("clever_api_version", "v3.1"),
            ]),
            Some("never".into()),
            1_000,
        );
        assert_eq!(check.errors(), Vec::new());
        assert_eq!(check.expiry_skew_ms, 7_000);
        assert_eq!(check.api_version, "v3.1");
        assert_eq!(check.health_detail.as_deref(), Some("never"));
    }

    #[test]
    fn errors_survive_the_store_with_their_setting_names() {
        let loaded = load(&[("clever_retry_max", "many")]);
        let expected = loaded.clone().expect_err("an invalid retry count");
        let check = SettingsCheck::new(&loaded, None, 1_000);
        let json = serde_json::to_vec(&check).expect("serialises");
        let back: SettingsCheck = serde_json::from_slice(&json).expect("parses");
        assert_eq!(back.errors(), expected);
        assert_eq!(back.expiry_skew_ms, FALLBACK_SKEW_MS);
        assert_eq!(back.api_version, FALLBACK_API_VERSION);
    }

    #[test]
    fn usable_settings_survive_the_store_whole() {
        let loaded = load(&[
            ("clever_gateway_deadline_ms", "1234"),
            ("clever_districts", "d-1,d-2"),
            ("clever_grant", "client_credentials"),
        ]);
        let check = SettingsCheck::new(&loaded, None, 1_000);
        let json = serde_json::to_vec(&check).expect("serialises");
        let back: SettingsCheck = serde_json::from_slice(&json).expect("parses");
        assert_eq!(back.settings(), loaded);
        assert!(back.fresh_at(1_000));
        let invalid = load(&[("clever_retry_max", "many")]);
        assert_eq!(SettingsCheck::new(&invalid, None, 0).settings(), invalid);
    }

    #[test]
    fn a_record_without_settings_or_errors_is_never_fresh() {
        let mut check = SettingsCheck::new(&load(&[]), None, 1_000);
        check.settings = None;
        let json = serde_json::to_string(&check).expect("serialises");
        let older: SettingsCheck = serde_json::from_str(&json).expect("parses");
        assert!(!older.fresh_at(1_000));
    }

    #[test]
    fn an_unknown_setting_name_is_still_an_error() {
        let mut check = SettingsCheck::new(&load(&[]), None, 0);
        check.errors.push(StoredError {
            setting: "clever_from_the_future".into(),
            message: "bad".into(),
        });
        let errors = check.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].setting, "settings");
    }

    #[test]
    fn a_missing_store_key_is_named_and_looked_for_again_at_once() {
        let missing = Err(vec![SettingError {
            setting: store_seal::KEY_SETTING,
            message: store_seal::SealError::NoKey.to_string(),
        }]);
        let check = SettingsCheck::new(&missing, None, 1_000);
        let json = serde_json::to_vec(&check).expect("serialises");
        let back: SettingsCheck = serde_json::from_slice(&json).expect("parses");
        assert_eq!(back.errors()[0].setting, store_seal::KEY_SETTING);
        assert!(!back.fresh_at(1_000));
    }

    #[test]
    fn a_check_is_fresh_for_a_minute_and_not_across_a_clock_going_back() {
        let check = SettingsCheck::new(&load(&[]), None, 100_000);
        assert!(check.fresh_at(100_000));
        assert!(check.fresh_at(100_000 + FRESH_MS - 1));
        assert!(!check.fresh_at(100_000 + FRESH_MS));
        assert!(!check.fresh_at(99_999));
    }
}
