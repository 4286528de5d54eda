//! Secrets capability: the Clever client id and secret, fetched in the background from the
//! configured source (Azure Key Vault, or the development env provider), cached in memory, and
//! served to the component through `wasi:config` without ever blocking on the vault. Also the
//! shared store's secrets: the store key, and Redis's access key or Entra ID token.

mod audit;
mod held;
mod identity;
mod keyvault;
mod poller;
pub mod redis_auth;
mod redis_entra;
pub mod redis_key;
mod source;
pub mod store_key;
mod transport;

pub use held::{SecretNames, Secrets};
pub use identity::managed_identity;
pub use keyvault::{KeyVaultConfig, KeyVaultSource};
pub use poller::Timing;
pub use source::{EnvSource, SecretSource};

use crate::config::Provider;
use clever_auth_core::settings::{CLIENT_ID, CLIENT_SECRET};
use std::sync::Arc;
use tokio::sync::Notify;

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
    use crate::keyvalue::{MemoryStore, DEFAULT_LABEL};
    use clever_auth_core::secret::Secret;
    use clever_auth_core::status::{keys, HostSecretsStatus};

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
