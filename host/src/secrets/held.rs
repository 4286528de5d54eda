//! The two secrets as last read, and the status the host publishes about reading them.

use crate::keyvalue::{MemoryStore, DEFAULT_LABEL};
use clever_auth_core::secret::Secret;
use clever_auth_core::status::{keys, ErrorRecord, HostSecretsStatus};
use std::sync::{Arc, Mutex, PoisonError};

/// The names the two secrets have in the source.
#[derive(Debug, Clone)]
pub struct SecretNames {
    pub client_id: String,
    pub client_secret: String,
}

pub(super) fn now_ms() -> u64 {
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
    pub(super) fn commit(&self, fetched: [Secret; 2]) -> bool {
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
    pub(super) fn differs(&self, slot: usize, value: &Secret) -> bool {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        is_new(values.get(slot).and_then(Option::as_ref), value)
    }

    pub(super) fn record_failure(&self, error: ErrorRecord) {
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

    pub(super) fn get(&self, slot: usize) -> Option<String> {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values[slot].as_ref().map(|s| s.expose().to_string())
    }
}
