//! Which keys the component may read and which provider answers each.

use super::provider::{EnvProvider, NoProvider, Provider};
use clap::ValueEnum;
use clever_auth_core::health_view;
use clever_auth_core::settings::SETTINGS;
use clever_auth_core::store_seal;
use std::sync::Arc;

/// Where the two Clever secrets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretsSource {
    /// No secrets: health reports the credentials as missing.
    None,
    /// DEVELOPMENT ONLY: `CLEVER_CLIENT_ID` / `CLEVER_CLIENT_SECRET` environment variables.
    Env,
    /// Azure Key Vault (KEYVAULT_URL) through the App Service managed identity.
    Keyvault,
}

/// The settings the component sees through `wasi:config/store`.
///
/// Only the documented keys are answered, so the component cannot read arbitrary environment
/// variables of the host; secrets come only from the secrets provider, never from app settings.
pub struct ConfigSource {
    settings: Arc<dyn Provider>,
    secrets: Arc<dyn Provider>,
    /// On a shared store: the store key and the demand to seal (`store_seal`'s settings).
    store_keys: Option<Arc<dyn Provider>>,
}

impl ConfigSource {
    pub fn new(settings: Arc<dyn Provider>, secrets: Arc<dyn Provider>) -> Self {
        Self {
            settings,
            secrets,
            store_keys: None,
        }
    }

    /// The store is shared: `store_keys` answers `clever_store_key`, its previous key and the
    /// demand to seal. Without it those settings are absent (the memory store seals nothing).
    pub fn with_store_keys(mut self, store_keys: Arc<dyn Provider>) -> Self {
        self.store_keys = Some(store_keys);
        self
    }

    /// App settings from the environment; secrets only from `secrets` (or nowhere).
    pub fn from_env(secrets: Option<Arc<dyn Provider>>) -> Self {
        Self::new(
            Arc::new(EnvProvider),
            secrets.unwrap_or_else(|| Arc::new(NoProvider)),
        )
    }

    /// A non-secret setting's value, or its documented default.
    pub fn setting_or_default(&self, key: &str) -> Option<String> {
        let default = SETTINGS
            .iter()
            .find(|s| s.name == key)
            .and_then(|s| s.default);
        match self.get(key) {
            Ok(Some(v)) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => default.map(str::to_string),
        }
    }

    pub fn secrets_provider(&self) -> &'static str {
        self.secrets.name()
    }

    /// `Ok(None)` for unknown keys as well as unset ones: to the component both mean "absent".
    /// The health view key is the host's own answer, never an app setting: this host strips
    /// and sets the view header itself (`server::health_view`), so the component may follow it.
    pub fn get(&self, key: &str) -> Result<Option<String>, String> {
        if key == health_view::DETAIL_SETTING {
            return Ok(Some(health_view::FOLLOW_HOST_HEADER.to_string()));
        }
        if [
            store_seal::KEY_SETTING,
            store_seal::PREVIOUS_KEY_SETTING,
            store_seal::MODE_SETTING,
        ]
        .contains(&key)
        {
            return match &self.store_keys {
                Some(p) => p.get(key),
                None => Ok(None),
            };
        }
        let Some(spec) = SETTINGS.iter().find(|s| s.name == key) else {
            return Ok(None);
        };
        let provider = if spec.secret {
            &self.secrets
        } else {
            &self.settings
        };
        provider
            .get(key)
            .map_err(|e| format!("{} provider: {e}", provider.name()))
    }

    pub fn get_all(&self) -> Result<Vec<(String, String)>, String> {
        let mut all = Vec::new();
        for spec in SETTINGS {
            if let Some(v) = self.get(spec.name)? {
                all.push((spec.name.to_string(), v));
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapProvider(&'static str, HashMap<&'static str, &'static str>);

    impl Provider for MapProvider {
        fn name(&self) -> &'static str {
            self.0
        }
        fn get(&self, key: &str) -> Result<Option<String>, String> {
            Ok(self.1.get(key).map(|v| v.to_string()))
        }
    }

    fn source() -> ConfigSource {
        let settings = MapProvider(
            "settings",
            HashMap::from([
                ("clever_api_version", "v3.1"),
                ("clever_client_secret", "from-app-settings"),
                ("path", "/usr/bin"),
            ]),
        );
        let secrets = MapProvider(
            "secrets",
            HashMap::from([("clever_client_secret", "s3cr3t")]),
        );
        ConfigSource::new(Arc::new(settings), Arc::new(secrets))
    }

    #[test]
    fn settings_come_from_settings_and_secrets_from_secrets() {
        let s = source();
        assert_eq!(s.get("clever_api_version"), Ok(Some("v3.1".into())));
        assert_eq!(s.get("clever_client_secret"), Ok(Some("s3cr3t".into())));
        assert_eq!(s.get("clever_client_id"), Ok(None));
    }

    #[test]
    fn unknown_keys_are_never_answered() {
        assert_eq!(source().get("path"), Ok(None));
        let all = source().get_all().expect("readable");
        assert_eq!(
            all,
            vec![
                ("clever_client_secret".to_string(), "s3cr3t".to_string()),
                ("clever_api_version".to_string(), "v3.1".to_string()),
            ]
        );
    }

    #[test]
    fn the_health_view_setting_is_the_hosts_own_so_only_the_listener_decides() {
        let settings = MapProvider(
            "settings",
            HashMap::from([(health_view::DETAIL_SETTING, "always")]),
        );
        let s = ConfigSource::new(Arc::new(settings), Arc::new(NoProvider));
        assert_eq!(
            s.get(health_view::DETAIL_SETTING),
            Ok(Some(health_view::FOLLOW_HOST_HEADER.to_string()))
        );
        assert!(s.get_all().expect("readable").is_empty());
    }

    #[test]
    fn provider_errors_name_the_provider() {
        struct Broken;
        impl Provider for Broken {
            fn name(&self) -> &'static str {
                "broken"
            }
            fn get(&self, _: &str) -> Result<Option<String>, String> {
                Err("unreachable".into())
            }
        }
        let s = ConfigSource::new(Arc::new(Broken), Arc::new(NoProvider));
        assert_eq!(
            s.get("clever_grant"),
            Err("broken provider: unreachable".into())
        );
    }
}
