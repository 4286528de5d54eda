//! JSON records in the host's key-value store (`wasi:keyvalue`, store label `default`).

use crate::bindings::wasi::keyvalue::atomics;
use crate::bindings::wasi::keyvalue::store::{self, Bucket};
use serde::{de::DeserializeOwned, Serialize};

/// The store label; Spin denies any label not listed in `key_value_stores`.
const STORE: &str = "default";

#[derive(Debug)]
pub struct KvError(pub String);

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

pub fn describe(e: store::Error) -> KvError {
    KvError(match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    })
}

pub struct Kv(Bucket);

impl Kv {
    pub fn open() -> Result<Kv, KvError> {
        store::open(STORE).map(Kv).map_err(describe)
    }

    /// Reads a record; a record that no longer parses is treated as absent, so one corrupt
    /// entry cannot wedge the health endpoint.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, KvError> {
        let bytes = self.0.get(key).map_err(describe)?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub fn bucket(&self) -> &Bucket {
        &self.0
    }

    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.0.delete(key).map_err(describe)
    }

    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(value).map_err(|e| KvError(e.to_string()))?;
        self.0.set(key, &bytes).map_err(describe)
    }

    /// Adds `delta` to a counter (absent counts as 0) and returns its new value, atomically
    /// across instances.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(&self.0, key, delta).map_err(describe)
    }

    /// Every key that starts with `prefix`. The listing starts at `prefix` and ends at the
    /// first page that ends past it, so a store that pages in key order (the native host's)
    /// lists the prefix's range only; the native host answers a range of its own records
    /// without asking the shared store. Spin's stores refuse any cursor: there the whole store
    /// is listed once and filtered. (A key equal to `prefix` is not listed; prefixes end in `/`
    /// and no key does.)
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut page = match self.0.list_keys(Some(prefix)) {
            Ok(page) => page,
            Err(_) => self.0.list_keys(None).map_err(describe)?,
        };
        let mut keys = Vec::new();
        loop {
            keys.extend(page.keys.into_iter().filter(|k| k.starts_with(prefix)));
            match page.cursor {
                Some(c) if c.as_str() <= prefix || c.starts_with(prefix) => {
                    page = self.0.list_keys(Some(&c)).map_err(describe)?;
                }
                _ => return Ok(keys),
            }
        }
    }
}
