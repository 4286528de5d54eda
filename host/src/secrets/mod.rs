//! Secrets capability: the Clever client id and secret, fetched in the background from the
//! configured source (Azure Key Vault, or the development env provider), cached in memory, and
//! served to the component through `wasi:config` without ever blocking on the vault.

mod audit;
mod keyvault;
mod poller;
mod source;

pub use keyvault::{KeyVaultConfig, KeyVaultSource};
pub use poller::Timing;
pub use source::{EnvSource, SecretSource};

use crate::config::Provider;
use crate::keyvalue::{MemoryStore, DEFAULT_LABEL};
use clever_auth_core::secret::Secret;
use clever_auth_core::settings::{CLIENT_ID, CLIENT_SECRET};
use clever_auth_core::status::{keys, ErrorRecord, HostSecretsStatus};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// The names the two secrets have in the source.
#[derive(Debug, Clone)]
pub struct SecretNames {
    pub client_id: String,
    pub client_secret: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The cached values and the status the health report shows.
pub struct Secrets {
    values: Mutex<[Option<Secret>; 2]>,
    status: Mutex<HostSecretsStatus>,
    store: MemoryStore,
}

impl Secrets {
    pub fn new(provider: &str, location: String, store: MemoryStore) -> Arc<Secrets> {
        let status = HostSecretsStatus {
            provider: provider.into(),
            source: location,
            ..Default::default()
        };
        let s = Arc::new(Secrets {
            values: Mutex::default(),
            status: Mutex::new(status),
            store,
        });
        s.publish();
        s
    }

    /// Stores one value; true when it differs from the one held.
    fn store(&self, slot: usize, value: Secret) -> bool {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = values[slot]
            .as_ref()
            .is_none_or(|old| old.expose() != value.expose());
        values[slot] = Some(value);
        // From here on, nothing the host emits may contain the secret or the Basic credential
        // built from the pair.
        if let [Some(id), Some(secret)] = &*values {
            crate::redact::register_client_credentials(id.expose(), secret.expose());
        }
        changed
    }

    fn record_success(&self, changed: bool) {
        {
            let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            st.last_success = Some(now_ms());
            st.last_error = None;
            st.consecutive_failures = 0;
            if changed {
                st.generation = st.generation.saturating_add(1);
            }
        }
        self.publish();
    }

    fn record_failure(&self, error: ErrorRecord) {
        {
            let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            st.last_error = Some(error);
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
        }
        self.publish();
    }

    /// Writes the status where the component's health handler reads it.
    fn publish(&self) {
        let st = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Ok(bytes) = serde_json::to_vec(&st) {
            self.store.set(DEFAULT_LABEL, keys::HOST_SECRETS, bytes);
        }
    }

    fn get(&self, slot: usize) -> Option<String> {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values[slot].as_ref().map(|s| s.expose().to_string())
    }
}

/// Answers the component's `wasi:config` reads of the two secrets from the cache.
pub struct CachedSecrets(pub Arc<Secrets>);

impl Provider for CachedSecrets {
    fn name(&self) -> &'static str {
        "secrets"
    }

    fn get(&self, key: &str) -> Result<Option<String>, String> {
        Ok(match key {
            CLIENT_ID => self.0.get(0),
            CLIENT_SECRET => self.0.get(1),
            _ => None,
        })
    }
}

/// Starts the poller. `reread` asks it for an early re-read (Clever answered 401).
pub fn spawn(
    source: Arc<dyn SecretSource>,
    names: SecretNames,
    secrets: Arc<Secrets>,
    reread: Arc<Notify>,
    on_change: impl Fn() + Send + 'static,
    timing: Timing,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(poller::run(
        source, names, secrets, reread, on_change, timing,
    ))
}
