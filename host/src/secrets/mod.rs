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

/// Whether `value` replaces what is held (nothing held counts as a change).
fn is_new(held: Option<&Secret>, value: &Secret) -> bool {
    held.is_none_or(|old| old.expose() != value.expose())
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

    /// Replaces both values after a successful read of the pair; true when either changed.
    ///
    /// The values, the generation and the published status move together under the values
    /// lock: a reader that brackets its credential reads between two generation reads (the
    /// component does) and sees the same generation twice has read that generation's pair.
    /// Publishing the generation later, outside the lock, let the component acquire with new
    /// values under the old generation and then, seeing the bump, acquire again at once,
    /// ignoring its retry schedule.
    fn commit(&self, fetched: [Secret; 2]) -> bool {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = values
            .iter()
            .zip(&fetched)
            .any(|(held, new)| is_new(held.as_ref(), new));
        // From here on, nothing the host emits may contain the secret or the Basic credential
        // built from the pair.
        let [id, secret] = &fetched;
        crate::redact::register_client_credentials(id.expose(), secret.expose());
        *values = fetched.map(Some);
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
        drop(values);
        changed
    }

    /// Whether `value` differs from the one held in `slot` (for the audit record).
    fn differs(&self, slot: usize, value: &Secret) -> bool {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        is_new(values.get(slot).and_then(Option::as_ref), value)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(store: &MemoryStore) -> u64 {
        store
            .get(DEFAULT_LABEL, keys::HOST_SECRETS)
            .and_then(|b| serde_json::from_slice::<HostSecretsStatus>(&b).ok())
            .map_or(0, |s| s.generation)
    }

    #[test]
    fn a_reader_bracketing_its_reads_with_the_generation_sees_that_generations_pair() {
        let store = MemoryStore::default();
        let secrets = Secrets::new("env", "test".into(), store.clone());
        let writer = {
            let secrets = secrets.clone();
            std::thread::spawn(move || {
                for n in 1..=1_000u32 {
                    let pair = [
                        Secret::new(format!("id-{n:05}")),
                        Secret::new(format!("secret-{n:05}")),
                    ];
                    assert!(secrets.commit(pair), "pair {n} is new");
                }
            })
        };
        let reader = CachedSecrets(secrets.clone());
        let (mut consistent, mut settling) = (0u32, 0u32);
        while !writer.is_finished() {
            // The component's order: generation, id, secret, generation.
            let before = generation(&store);
            let id = reader.get(CLIENT_ID).ok().flatten();
            let secret = reader.get(CLIENT_SECRET).ok().flatten();
            if generation(&store) != before {
                settling += 1;
                continue;
            }
            consistent += 1;
            if before == 0 {
                assert_eq!((id, secret), (None, None), "values before generation 1");
            } else {
                assert_eq!(id.as_deref(), Some(format!("id-{before:05}").as_str()));
                assert_eq!(
                    secret.as_deref(),
                    Some(format!("secret-{before:05}").as_str())
                );
            }
        }
        writer.join().expect("writer");
        assert_eq!(generation(&store), 1_000);
        assert!(
            consistent > 0,
            "the reader never saw a settled pair ({settling} settling)"
        );
        // The same pair again is no change and keeps the generation.
        let same = [Secret::new("id-01000"), Secret::new("secret-01000")];
        assert!(!secrets.commit(same));
        assert_eq!(generation(&store), 1_000);
    }
}
