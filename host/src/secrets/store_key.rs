//! The store key that seals token records on a shared store (`clever_auth_core::store_seal`):
//! read through the secrets provider, held in memory, served to the component as
//! `clever_store_key` / `clever_store_key_previous`, never printed.
//!
//! The env provider's key is read once at start: a shared store without a valid key is a
//! start-up error. Key Vault's is read in the background, like the Clever credentials, so an
//! unreachable vault delays tokens but not the start; it is read again every refresh period
//! so a rotation (new key current, old key previous) takes effect without a restart.

use super::source::SecretSource;
use clever_auth_core::secret::Secret;
use clever_auth_core::secrets_error as codes;
use clever_auth_core::store_seal::StoreKeys;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Names in the env provider.
pub const ENV_CURRENT: &str = "CLEVER_AUTH_STORE_KEY";
pub const ENV_PREVIOUS: &str = "CLEVER_AUTH_STORE_KEY_PREVIOUS";
/// Names in Key Vault.
pub const VAULT_CURRENT: &str = "clever-auth-store-key";
pub const VAULT_PREVIOUS: &str = "clever-auth-store-key-previous";

#[derive(Default, Clone)]
struct Held {
    current: Option<Secret>,
    previous: Option<Secret>,
}

/// The keys as last read. Empty until the first successful read.
#[derive(Default)]
pub struct StoreKeyHolder {
    held: Mutex<Held>,
}

impl StoreKeyHolder {
    pub fn current(&self) -> Option<String> {
        self.lock().current.as_ref().map(|s| s.expose().to_string())
    }

    pub fn previous(&self) -> Option<String> {
        self.lock()
            .previous
            .as_ref()
            .map(|s| s.expose().to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a pair that parses as store keys; the error names the setting, never the value.
    fn commit(&self, current: Secret, previous: Option<Secret>) -> Result<(), String> {
        StoreKeys::parse(current.expose(), previous.as_ref().map(Secret::expose))
            .map_err(|e| e.to_string())?;
        crate::redact::pin(crate::redact::Pin::StoreKey, current.expose());
        if let Some(p) = &previous {
            crate::redact::pin(crate::redact::Pin::StoreKeyPrevious, p.expose());
        }
        *self.lock() = Held {
            current: Some(current),
            previous,
        };
        Ok(())
    }

    /// From `CLEVER_AUTH_STORE_KEY` (and `_PREVIOUS`), at start.
    pub fn from_env() -> Result<Arc<StoreKeyHolder>, String> {
        let read = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let current = read(ENV_CURRENT).ok_or_else(|| {
            format!(
                "a shared store needs a store key: set {ENV_CURRENT} to base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
            )
        })?;
        let holder = Arc::new(StoreKeyHolder::default());
        holder
            .commit(Secret::new(current), read(ENV_PREVIOUS).map(Secret::new))
            .map_err(|e| format!("{e} (from {ENV_CURRENT} / {ENV_PREVIOUS})"))?;
        Ok(holder)
    }
}

/// Answers the component's reads of the store-key settings; its presence says the store is
/// shared, so sealing is required.
impl crate::config::Provider for StoreKeyHolder {
    fn name(&self) -> &'static str {
        "store key"
    }

    fn get(&self, key: &str) -> Result<Option<String>, String> {
        use clever_auth_core::store_seal::{
            KEY_SETTING, MODE_SETTING, PREVIOUS_KEY_SETTING, REQUIRED,
        };
        Ok(match key {
            KEY_SETTING => self.current(),
            PREVIOUS_KEY_SETTING => self.previous(),
            MODE_SETTING => Some(REQUIRED.to_string()),
            _ => None,
        })
    }
}

/// Reads the vault's store keys now and again: quickly after a failure, every `every` after
/// a success. An absent previous key is normal (no rotation under way).
pub async fn poll_vault(
    source: Arc<dyn SecretSource>,
    holder: Arc<StoreKeyHolder>,
    every: Duration,
    on_first: impl Fn() + Send + 'static,
) {
    let mut first = true;
    let mut backoff = Duration::from_millis(500);
    loop {
        let wait = match source.fetch(VAULT_CURRENT).await {
            Ok(current) => {
                let previous = match source.fetch(VAULT_PREVIOUS).await {
                    Ok(p) => Some(p.value),
                    Err(e) if e.code == codes::SECRET_NOT_FOUND => None,
                    // Unsure whether a rotation is under way: keep what is held.
                    Err(e) => {
                        tracing::warn!(code = %e.code, error = %e.message, secret = VAULT_PREVIOUS, "store key: reading the previous key failed");
                        holder.lock().previous.clone()
                    }
                };
                match holder.commit(current.value, previous) {
                    Ok(()) => {
                        if first {
                            tracing::info!(secret = VAULT_CURRENT, "store key read");
                            on_first();
                            first = false;
                        }
                        backoff = Duration::from_millis(500);
                        every
                    }
                    Err(e) => {
                        tracing::error!(code = "store_key_invalid", error = %e, secret = VAULT_CURRENT, "store key in Key Vault is not usable; tokens are not stored until it is fixed");
                        every.min(Duration::from_secs(30))
                    }
                }
            }
            Err(e) => {
                tracing::error!(code = %e.code, error = %e.message, secret = VAULT_CURRENT, "store key: reading it failed; tokens are not stored until it is read");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                backoff
            }
        };
        tokio::time::sleep(wait).await;
    }
}
