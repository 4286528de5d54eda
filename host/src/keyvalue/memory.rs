//! The in-memory key-value store: one process-wide map per store label, shared by every
//! instance of the component and never written to disk (tokens must not reach a disk).

use super::provider::{StoreError, StoreProvider};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

type Bucket = BTreeMap<String, Vec<u8>>;
/// (label, key, who to tell when that key is written).
type Watchers = Vec<(String, String, Arc<Notify>)>;

/// Keys are kept sorted so `list-keys` pages are stable and the cursor is simply the last key.
#[derive(Clone, Default)]
pub struct MemoryStore {
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
    labels: Arc<Vec<String>>,
    /// (label, key, notify): told whenever that key is written, by whichever instance.
    watchers: Arc<Mutex<Watchers>>,
}

/// `increment` on a value that is not a decimal integer (every provider says the same).
pub const NOT_AN_INTEGER: &str = "value is not a decimal integer";
/// `increment` past `i64`'s range.
pub const OVERFLOW: &str = "counter overflow";

/// Page size for `list-keys`; large enough that a few hundred districts need one call.
pub const PAGE_SIZE: usize = 1000;

impl MemoryStore {
    /// A store that only opens the given labels, as Spin does with `key_value_stores`.
    pub fn new(labels: impl IntoIterator<Item = String>) -> Self {
        Self {
            buckets: Arc::default(),
            labels: Arc::new(labels.into_iter().collect()),
            watchers: Arc::default(),
        }
    }

    /// `notify` is told (`notify_one`) after every write of `key`, so a waiter learns of a
    /// change made by another instance without polling.
    pub fn watch(&self, label: &str, key: &str, notify: Arc<Notify>) {
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((label.to_string(), key.to_string(), notify));
    }

    pub(super) fn written(&self, label: &str, key: &str) {
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        for (l, k, n) in watchers.iter() {
            if l == label && k == key {
                n.notify_one();
            }
        }
    }

    pub fn allows(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Bucket>> {
        // A panic while holding the lock cannot leave a map half-updated (every operation is a
        // single map call), so the data is still consistent.
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, label: &str, key: &str) -> Option<Vec<u8>> {
        self.lock().get(label).and_then(|b| b.get(key).cloned())
    }

    /// Every key's value under one lock, so the answer is one moment's, as one `MGET` is.
    pub fn get_many(&self, label: &str, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        let guard = self.lock();
        let bucket = guard.get(label);
        keys.iter()
            .map(|k| bucket.and_then(|b| b.get(k).cloned()))
            .collect()
    }

    pub fn set(&self, label: &str, key: &str, value: Vec<u8>) {
        self.lock()
            .entry(label.to_string())
            .or_default()
            .insert(key.to_string(), value);
        self.written(label, key);
    }

    /// Removes `key`; watchers hear of it when there was a value (a record that vanished is news
    /// too: the scheduler runs at once when the shared store lost the refresher's cycle).
    pub fn delete(&self, label: &str, key: &str) {
        let removed = self
            .lock()
            .get_mut(label)
            .and_then(|b| b.remove(key))
            .is_some();
        if removed {
            self.written(label, key);
        }
    }

    /// Keys after `cursor`, at most [`PAGE_SIZE`], and the cursor for the next page.
    pub fn list_keys(&self, label: &str, cursor: Option<&str>) -> (Vec<String>, Option<String>) {
        page(self.keys_after_sync(label, cursor, PAGE_SIZE + 1))
    }

    /// At most `limit` keys strictly after `cursor`, ascending.
    pub fn keys_after_sync(&self, label: &str, cursor: Option<&str>, limit: usize) -> Vec<String> {
        let guard = self.lock();
        let Some(bucket) = guard.get(label) else {
            return Vec::new();
        };
        match cursor {
            Some(c) => bucket
                .range::<str, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                .map(|(k, _)| k.clone())
                .take(limit)
                .collect(),
            None => bucket.keys().take(limit).cloned().collect(),
        }
    }

    /// Adds `delta` to a little-endian/decimal counter, treating a missing key as 0.
    pub fn increment(&self, label: &str, key: &str, delta: i64) -> Result<i64, String> {
        let mut guard = self.lock();
        let bucket = guard.entry(label.to_string()).or_default();
        let current = match bucket.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| NOT_AN_INTEGER.to_string())?,
        };
        let next = current.checked_add(delta).ok_or(OVERFLOW)?;
        bucket.insert(key.to_string(), next.to_string().into_bytes());
        Ok(next)
    }

    /// Sets `key` to `new` only if it still holds `expected`; the basis of leases.
    pub fn compare_and_swap(
        &self,
        label: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> bool {
        let mut guard = self.lock();
        let bucket = guard.entry(label.to_string()).or_default();
        if bucket.get(key).map(Vec::as_slice) != expected {
            return false;
        }
        bucket.insert(key.to_string(), new);
        drop(guard);
        self.written(label, key);
        true
    }
}

/// Cuts up to `PAGE_SIZE + 1` ascending keys into one page and the cursor of the next.
pub fn page(mut keys: Vec<String>) -> (Vec<String>, Option<String>) {
    if keys.len() > PAGE_SIZE {
        keys.truncate(PAGE_SIZE);
        let next = keys.last().cloned();
        (keys, next)
    } else {
        (keys, None)
    }
}

#[async_trait]
impl StoreProvider for MemoryStore {
    async fn get(&self, label: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(MemoryStore::get(self, label, key))
    }

    async fn get_many(
        &self,
        label: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(MemoryStore::get_many(self, label, keys))
    }

    async fn set(&self, label: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        MemoryStore::set(self, label, key, value.to_vec());
        Ok(())
    }

    async fn delete(&self, label: &str, key: &str) -> Result<(), StoreError> {
        MemoryStore::delete(self, label, key);
        Ok(())
    }

    async fn keys_after(
        &self,
        label: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.keys_after_sync(label, cursor, limit))
    }

    async fn increment(&self, label: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        MemoryStore::increment(self, label, key, delta).map_err(StoreError)
    }

    async fn compare_and_swap(
        &self,
        label: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(MemoryStore::compare_and_swap(
            self,
            label,
            key,
            expected,
            new.to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MemoryStore {
        MemoryStore::new(["default".to_string()])
    }

    #[test]
    fn values_are_isolated_per_label() {
        let s = store();
        s.set("default", "k", b"v".to_vec());
        assert_eq!(s.get("default", "k"), Some(b"v".to_vec()));
        assert_eq!(s.get("other", "k"), None);
        s.delete("default", "k");
        assert_eq!(s.get("default", "k"), None);
    }

    #[test]
    fn clones_share_one_map() {
        let a = store();
        let b = a.clone();
        a.set("default", "k", b"1".to_vec());
        assert_eq!(b.get("default", "k"), Some(b"1".to_vec()));
    }

    #[test]
    fn list_keys_pages_with_a_cursor() {
        let s = store();
        for i in 0..(PAGE_SIZE + 5) {
            s.set("default", &format!("k{i:05}"), Vec::new());
        }
        let (first, cursor) = s.list_keys("default", None);
        assert_eq!(first.len(), PAGE_SIZE);
        let cursor = cursor.expect("more pages");
        let (rest, end) = s.list_keys("default", Some(&cursor));
        assert_eq!(rest.len(), 5);
        assert_eq!(end, None);
        assert!(first.iter().all(|k| !rest.contains(k)));
    }

    #[test]
    fn increment_and_cas() {
        let s = store();
        assert_eq!(s.increment("default", "n", 2), Ok(2));
        assert_eq!(s.increment("default", "n", -5), Ok(-3));
        s.set("default", "bad", b"x".to_vec());
        assert!(s.increment("default", "bad", 1).is_err());
        assert!(s.compare_and_swap("default", "lease", None, b"a".to_vec()));
        assert!(!s.compare_and_swap("default", "lease", None, b"b".to_vec()));
        assert!(s.compare_and_swap("default", "lease", Some(b"a"), b"b".to_vec()));
        assert_eq!(s.get("default", "lease"), Some(b"b".to_vec()));
    }
}
