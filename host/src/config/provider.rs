//! Where setting values come from: one small trait, one implementation per source.

/// A source of setting values. `Ok(None)` means "not set here".
pub trait Provider: Send + Sync {
    /// A short name for logs and errors (`env`, `keyvault`).
    fn name(&self) -> &'static str;
    fn get(&self, key: &str) -> Result<Option<String>, String>;
}

/// App settings: App Service exposes each as an environment variable, so the setting
/// `clever_api_version` is read from `CLEVER_API_VERSION`.
pub struct EnvProvider;

impl Provider for EnvProvider {
    fn name(&self) -> &'static str {
        "env"
    }

    fn get(&self, key: &str) -> Result<Option<String>, String> {
        match std::env::var(key.to_ascii_uppercase()) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "environment variable {} is not valid UTF-8",
                key.to_ascii_uppercase()
            )),
        }
    }
}

/// Answers nothing: the secrets source when no secrets provider is configured, so health
/// reports missing credentials instead of the host guessing where they might be.
pub struct NoProvider;

impl Provider for NoProvider {
    fn name(&self) -> &'static str {
        "none"
    }

    fn get(&self, _key: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}
