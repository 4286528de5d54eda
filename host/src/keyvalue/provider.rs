//! The one small trait every store provider implements (the memory store, Redis), so the
//! `wasi:keyvalue` host traits and the contract tests see one shape.

use async_trait::async_trait;

/// The store label the component opens; Spin's manifest lists the same one.
pub const DEFAULT_LABEL: &str = "default";

/// A store operation that failed. The message names what failed, never the store's address
/// or a credential (it reaches the component, and from there logs and health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// Keys are plain strings, values bytes, per store label. The semantics are the memory store's
/// (the contract tests in `tests/tests/store_contract.rs` hold every provider to them):
/// `keys_after` returns keys in ascending byte order strictly after `cursor`, so a page's
/// last key is the next page's cursor; `increment` treats a missing key as 0 and refuses a
/// value that is not a decimal integer; `compare_and_swap` writes only while the key still
/// holds `expected` (`None`: absent); `get_many` answers one value per key asked, in the order
/// asked (a key asked twice is answered twice), in one call to the store.
#[async_trait]
pub trait StoreProvider: Send + Sync {
    async fn get(&self, label: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn get_many(
        &self,
        label: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;
    async fn delete(&self, label: &str, key: &str) -> Result<(), StoreError>;
    async fn keys_after(
        &self,
        label: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    async fn increment(&self, label: &str, key: &str, delta: i64) -> Result<i64, StoreError>;
    async fn compare_and_swap(
        &self,
        label: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError>;
}
