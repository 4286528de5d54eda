//! JSON records in the host's key-value store (`wasi:keyvalue`, store label `default`).

use crate::bindings::wasi::keyvalue::store::{self, Bucket};
use crate::bindings::wasi::keyvalue::{atomics, batch};
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

/// A record's bytes as `T`; a record that no longer parses is treated as absent, so one
/// corrupt entry cannot wedge the health endpoint.
pub fn parse<T: DeserializeOwned>(bytes: Option<Vec<u8>>) -> Option<T> {
    bytes.and_then(|b| serde_json::from_slice(&b).ok())
}

pub struct Kv(Bucket);

impl Kv {
    pub fn open() -> Result<Kv, KvError> {
        store::open(STORE).map(Kv).map_err(describe)
    }

    /// Reads a record (see [`parse`]).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, KvError> {
        self.0.get(key).map(parse).map_err(describe)
    }

    /// Each key's value, in the order of `keys`, with one `wasi:keyvalue/batch.get-many` call
    /// (one Redis `MGET` under the native host instead of a `GET` each). Answers are matched
    /// by key, not by position: Spin's SQLite store leaves absent keys out of its answer.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let found = batch::get_many(&self.0, keys).map_err(describe)?;
        Ok(keys
            .iter()
            .map(|k| {
                found
                    .iter()
                    .find(|(f, _)| f == k)
                    .and_then(|(_, v)| v.clone())
            })
            .collect())
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
