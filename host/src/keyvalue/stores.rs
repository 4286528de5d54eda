//! What the component's `wasi:keyvalue` calls reach: the shared store of the deployment for
//! its records, and this process's memory for the host's own.
//!
//! Records about one instance (`clever-auth/v1/host/…`: how the host's secrets read, its call
//! deadlines, the component's settings check and gateway figures) stay in the process
//! whatever the store: on a shared store each instance would overwrite the others'. Every
//! other key goes to the shared store when there is one.
//!
//! The process also keeps a copy of each shared record it last read or wrote, for readers
//! that cannot wait on the network (the token-expiry gauge) and to ride out a store outage:
//! while the shared store does not answer, reads and listings are answered from the copy (the
//! component still hands out only unexpired tokens), writes and swaps fail (so no lease can be
//! taken and nothing is written over), and the host's `clever-auth/v1/host/store` record says
//! so for health and for the refresher, which past a grace refreshes this instance's tokens
//! alone into its own `clever-auth/v1/host/solo/…` records (`refresher::solo` in core).

use super::memory::{page, MemoryStore, PAGE_SIZE};
use super::provider::{StoreError, StoreProvider, DEFAULT_LABEL};
use clever_auth_core::status::{keys, HostStoreStatus};
use std::sync::{Arc, Mutex, PoisonError};

/// Keys under this prefix describe one instance.
const HOST_PREFIX: &str = keys::INSTANCE_PREFIX;
/// A cursor past every key under [`HOST_PREFIX`] (`U+10FFFF` is the last character, so only
/// a key that starts with the prefix and that character could sort after it; listing from
/// here still merges such a key in).
const HOST_RANGE_END: &str = "clever-auth/v1/host/\u{10FFFF}";

#[derive(Clone)]
pub struct Stores {
    /// The host's own records, the copy of the shared ones, and the memory store itself
    /// when no shared store is configured.
    pub local: MemoryStore,
    shared: Option<Arc<dyn StoreProvider>>,
    /// Which provider answers, for logs and health ("memory", "redis").
    pub kind: &'static str,
    /// Whether the shared store answered the last call. A lock, not an atomic: the change
    /// and its record are written together, or two calls answering at once (one failing,
    /// one not) could leave the record saying the opposite of the flag for good, and the
    /// refresher decides from the record (`refresher::solo`).
    reachable: Arc<Mutex<bool>>,
}

impl Stores {
    pub fn memory(local: MemoryStore) -> Self {
        Self {
            local,
            shared: None,
            kind: "memory",
            reachable: Arc::new(Mutex::new(true)),
        }
    }

    pub fn shared(local: MemoryStore, shared: Arc<dyn StoreProvider>, kind: &'static str) -> Self {
        let stores = Self {
            local,
            shared: Some(shared),
            kind,
            reachable: Arc::new(Mutex::new(true)),
        };
        stores.publish(true, None);
        stores
    }

    /// Records whether the shared store answered; only a change is written (and logged).
    fn observe<T>(&self, result: &Result<T, StoreError>) {
        // Only an unanswered call is an outage; Redis refusing one command is not.
        let ok = result.as_ref().err().is_none_or(|e| !is_outage(e));
        let mut reachable = self
            .reachable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *reachable != ok {
            *reachable = ok;
            let error = result.as_ref().err().map(|e| e.0.clone());
            if ok {
                tracing::info!(store = self.kind, "shared store answers again");
            } else {
                tracing::warn!(
                    store = self.kind,
                    error = error.as_deref().unwrap_or_default(),
                    "shared store does not answer; serving from this instance's copy"
                );
            }
            self.publish(ok, error);
        }
    }

    fn publish(&self, reachable: bool, last_error: Option<String>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let record = HostStoreStatus {
            kind: self.kind.to_string(),
            reachable,
            unreachable_since: (!reachable).then_some(now),
            last_error,
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            self.local.set(DEFAULT_LABEL, keys::HOST_STORE, bytes);
        }
    }

    pub fn allows(&self, label: &str) -> bool {
        self.local.allows(label)
    }

    /// The shared store that holds `key`, or `None` when the key stays in the process.
    fn shared_for(&self, key: &str) -> Option<&Arc<dyn StoreProvider>> {
        if key.starts_with(HOST_PREFIX) {
            None
        } else {
            self.shared.as_ref()
        }
    }

    /// Keeps the process's copy in step with what the shared store was seen to hold. Only
    /// an actual change counts as a write (it wakes the scheduler for the cycle record).
    fn mirror(&self, label: &str, key: &str, value: Option<&[u8]>) {
        match value {
            Some(v) if self.local.get(label, key).as_deref() != Some(v) => {
                self.local.set(label, key, v.to_vec())
            }
            Some(_) => {}
            None => self.local.delete(label, key),
        }
    }

    pub async fn get(&self, label: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(shared) = self.shared_for(key) else {
            return Ok(self.local.get(label, key));
        };
        let result = shared.get(label, key).await;
        self.observe(&result);
        match result {
            Ok(value) => {
                self.mirror(label, key, value.as_deref());
                Ok(value)
            }
            Err(e) if is_outage(&e) => Ok(self.local.get(label, key)),
            Err(e) => Err(e),
        }
    }

    /// One value per key, in order, as [`Stores::get`] answers each: the host's own keys from
    /// the process, the rest with one `get_many` on the shared store (one round trip whatever
    /// their number), kept in the copy, and from the copy while the store does not answer.
    pub async fn get_many(
        &self,
        label: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let (remote, own): (Vec<usize>, Vec<usize>) =
            (0..keys.len()).partition(|&i| self.shared_for(&keys[i]).is_some());
        let mut values: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let held: Vec<String> = own.iter().map(|&i| keys[i].clone()).collect();
        for (i, value) in own.into_iter().zip(self.local.get_many(label, &held)) {
            values[i] = value;
        }
        let Some(shared) = self.shared.as_ref().filter(|_| !remote.is_empty()) else {
            return Ok(values);
        };
        let asked: Vec<String> = remote.iter().map(|&i| keys[i].clone()).collect();
        let result = shared.get_many(label, &asked).await.and_then(|answered| {
            if answered.len() == asked.len() {
                Ok(answered)
            } else {
                Err(StoreError(format!(
                    "store error: {} values for {} keys",
                    answered.len(),
                    asked.len()
                )))
            }
        });
        self.observe(&result);
        match result {
            Ok(answered) => {
                for (i, value) in remote.into_iter().zip(answered) {
                    self.mirror(label, &keys[i], value.as_deref());
                    values[i] = value;
                }
            }
            Err(e) if is_outage(&e) => {
                for i in remote {
                    values[i] = self.local.get(label, &keys[i]);
                }
            }
            Err(e) => return Err(e),
        }
        Ok(values)
    }

    pub async fn set(&self, label: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let Some(shared) = self.shared_for(key) else {
            self.local.set(label, key, value);
            return Ok(());
        };
        let result = shared.set(label, key, &value).await;
        self.observe(&result);
        result?;
        self.mirror(label, key, Some(&value));
        Ok(())
    }

    pub async fn delete(&self, label: &str, key: &str) -> Result<(), StoreError> {
        let Some(shared) = self.shared_for(key) else {
            self.local.delete(label, key);
            return Ok(());
        };
        let result = shared.delete(label, key).await;
        self.observe(&result);
        result?;
        self.mirror(label, key, None);
        Ok(())
    }

    /// One page of keys in ascending order after `cursor`: the host's own keys merged with
    /// the shared store's, so the component lists one store.
    ///
    /// From a cursor among the host's own keys, the page holds only those (no shared key
    /// sorts among them), and once they run out its cursor is [`HOST_RANGE_END`]: a component
    /// listing one prefix of its instance's records (gateway figures, own tokens) stops there
    /// without a round trip to the shared store, which would scan every key.
    pub async fn list_keys(
        &self,
        label: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let Some(shared) = self.shared.as_ref() else {
            return Ok(self.local.list_keys(label, cursor));
        };
        if let Some(c) = cursor.filter(|c| c.starts_with(HOST_PREFIX) && *c < HOST_RANGE_END) {
            let mut keys: Vec<String> = self
                .local
                .keys_after_sync(label, Some(c), usize::MAX)
                .into_iter()
                .take_while(|k| k.starts_with(HOST_PREFIX))
                .take(PAGE_SIZE + 1)
                .collect();
            if keys.len() > PAGE_SIZE {
                return Ok(page(keys));
            }
            keys.truncate(PAGE_SIZE);
            return Ok((keys, Some(HOST_RANGE_END.to_string())));
        }
        let mut keys: Vec<String> = self
            .local
            .keys_after_sync(label, cursor, usize::MAX)
            .into_iter()
            .filter(|k| k.starts_with(HOST_PREFIX))
            .take(PAGE_SIZE + 1)
            .collect();
        let listed = shared.keys_after(label, cursor, PAGE_SIZE + 1).await;
        self.observe(&listed);
        let listed = match listed {
            Ok(listed) => listed,
            // The copy holds every shared key this process has seen.
            Err(e) if is_outage(&e) => return Ok(self.local.list_keys(label, cursor)),
            Err(e) => return Err(e),
        };
        keys.extend(listed.into_iter().filter(|k| !k.starts_with(HOST_PREFIX)));
        keys.sort_unstable();
        keys.truncate(PAGE_SIZE + 1);
        Ok(page(keys))
    }

    pub async fn increment(&self, label: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self.shared_for(key) {
            None => self.local.increment(label, key, delta).map_err(StoreError),
            Some(shared) => {
                let result = shared.increment(label, key, delta).await;
                self.observe(&result);
                result
            }
        }
    }

    pub async fn compare_and_swap(
        &self,
        label: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let Some(shared) = self.shared_for(key) else {
            return Ok(self.local.compare_and_swap(label, key, expected, new));
        };
        let result = shared.compare_and_swap(label, key, expected, &new).await;
        self.observe(&result);
        let written = result?;
        if written {
            self.mirror(label, key, Some(&new));
        }
        Ok(written)
    }

    /// Whether the shared store answered the last call (always true on the memory store).
    pub fn reachable(&self) -> bool {
        *self
            .reachable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether records are shared with other processes (then the scheduler also polls).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

fn is_outage(e: &StoreError) -> bool {
    e.0.starts_with("store unreachable")
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &str = "default";

    fn pair() -> (Stores, MemoryStore) {
        let local = MemoryStore::new([L.to_string()]);
        let shared = MemoryStore::new([L.to_string()]);
        (
            Stores::shared(local, Arc::new(shared.clone()), "test"),
            shared,
        )
    }

    #[tokio::test]
    async fn the_hosts_own_records_stay_in_the_process() {
        let (stores, shared) = pair();
        let host_key = "clever-auth/v1/host/secrets";
        stores
            .set(L, host_key, b"mine".to_vec())
            .await
            .expect("set");
        assert_eq!(
            shared.get(L, host_key),
            None,
            "a host record reached the shared store"
        );
        assert_eq!(
            stores.get(L, host_key).await.expect("get"),
            Some(b"mine".to_vec())
        );
        stores
            .set(L, "clever-auth/v1/token/d", b"t".to_vec())
            .await
            .expect("set");
        assert_eq!(shared.get(L, "clever-auth/v1/token/d"), Some(b"t".to_vec()));
    }

    #[tokio::test]
    async fn get_many_answers_the_hosts_keys_from_the_process_and_keeps_a_copy_of_the_rest() {
        let (stores, shared) = pair();
        let host_key = "clever-auth/v1/host/solo/token/d";
        stores.local.set(L, host_key, b"own".to_vec());
        // A host key in the shared store is not the host's: it must not be answered.
        shared.set(L, host_key, b"elsewhere".to_vec());
        shared.set(L, "clever-auth/v1/token/d", b"t".to_vec());
        stores.local.set(L, "gone", b"stale copy".to_vec());
        let keys = [
            "clever-auth/v1/token/d",
            host_key,
            "gone",
            "clever-auth/v1/token/d",
        ]
        .map(String::from);
        let values = stores.get_many(L, &keys).await.expect("get_many");
        assert_eq!(
            values,
            [
                Some(b"t".to_vec()),
                Some(b"own".to_vec()),
                None,
                Some(b"t".to_vec())
            ]
        );
        assert_eq!(
            stores.local.get(L, "clever-auth/v1/token/d"),
            Some(b"t".to_vec())
        );
        assert_eq!(stores.local.get(L, "gone"), None, "absent clears the copy");
        assert!(stores.get_many(L, &[]).await.expect("empty").is_empty());
    }

    #[tokio::test]
    async fn listing_merges_both_in_order_and_keeps_no_copy_twice() {
        let (stores, shared) = pair();
        shared.set(L, "clever-auth/v1/a", b"1".to_vec());
        shared.set(L, "clever-auth/v1/z", b"1".to_vec());
        stores
            .local
            .set(L, "clever-auth/v1/host/instance", b"i".to_vec());
        // Reading a shared record leaves a copy in the process; it must not list twice.
        stores.get(L, "clever-auth/v1/a").await.expect("get");
        let (keys, next) = stores.list_keys(L, None).await.expect("list");
        assert_eq!(
            keys,
            [
                "clever-auth/v1/a",
                "clever-auth/v1/host/instance",
                // The store's reachability, which the host publishes for health.
                "clever-auth/v1/host/store",
                "clever-auth/v1/z"
            ]
        );
        assert_eq!(next, None);
    }

    #[tokio::test]
    async fn listing_from_a_cursor_among_the_hosts_keys_stays_in_the_process() {
        let (stores, shared) = pair();
        shared.set(L, "clever-auth/v1/gateway/pace/d", b"1".to_vec());
        shared.set(L, "clever-auth/v1/token/d", b"1".to_vec());
        for d in ["a", "b"] {
            stores
                .set(
                    L,
                    &format!("clever-auth/v1/host/gateway-figures/{d}"),
                    b"f".to_vec(),
                )
                .await
                .expect("set");
        }
        assert!(HOST_RANGE_END.starts_with(HOST_PREFIX));
        let (keys, next) = stores
            .list_keys(L, Some("clever-auth/v1/host/gateway-figures/"))
            .await
            .expect("list");
        assert_eq!(
            keys,
            [
                "clever-auth/v1/host/gateway-figures/a",
                "clever-auth/v1/host/gateway-figures/b",
                "clever-auth/v1/host/store",
            ]
        );
        assert_eq!(next.as_deref(), Some(HOST_RANGE_END));
        // The shared keys after the host's come next, from the shared store.
        let (rest, next) = stores
            .list_keys(L, Some(HOST_RANGE_END))
            .await
            .expect("list");
        assert_eq!(rest, ["clever-auth/v1/token/d"]);
        assert_eq!(next, None);
        // With the shared store gone, the host's range still lists (a round trip would fail).
        let local = MemoryStore::new([L.to_string()]);
        let unreachable = Stores::shared(local, Arc::new(Unreachable), "test");
        unreachable
            .set(L, "clever-auth/v1/host/gateway-figures/a", b"f".to_vec())
            .await
            .expect("set");
        let (keys, _) = unreachable
            .list_keys(L, Some("clever-auth/v1/host/gateway-figures/"))
            .await
            .expect("list");
        assert_eq!(keys[0], "clever-auth/v1/host/gateway-figures/a");
        assert!(
            unreachable.reachable(),
            "listing the host's own keys asked the shared store"
        );
    }

    /// A shared store that never answers.
    struct Unreachable;

    #[async_trait::async_trait]
    impl StoreProvider for Unreachable {
        async fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Err(down())
        }
        async fn get_many(
            &self,
            _: &str,
            _: &[String],
        ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            Err(down())
        }
        async fn set(&self, _: &str, _: &str, _: &[u8]) -> Result<(), StoreError> {
            Err(down())
        }
        async fn delete(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Err(down())
        }
        async fn keys_after(
            &self,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<String>, StoreError> {
            Err(down())
        }
        async fn increment(&self, _: &str, _: &str, _: i64) -> Result<i64, StoreError> {
            Err(down())
        }
        async fn compare_and_swap(
            &self,
            _: &str,
            _: &str,
            _: Option<&[u8]>,
            _: &[u8],
        ) -> Result<bool, StoreError> {
            Err(down())
        }
    }

    fn down() -> StoreError {
        StoreError("store unreachable: test".into())
    }

    #[tokio::test]
    async fn the_copy_follows_what_the_shared_store_was_seen_to_hold() {
        let (stores, shared) = pair();
        shared.set(L, "k", b"1".to_vec());
        stores.get(L, "k").await.expect("get");
        assert_eq!(stores.local.get(L, "k"), Some(b"1".to_vec()));
        shared.delete(L, "k");
        stores.get(L, "k").await.expect("get");
        assert_eq!(
            stores.local.get(L, "k"),
            None,
            "a deletion elsewhere clears the copy"
        );
        assert!(stores
            .compare_and_swap(L, "k", None, b"2".to_vec())
            .await
            .expect("cas"));
        assert_eq!(stores.local.get(L, "k"), Some(b"2".to_vec()));
    }
}
