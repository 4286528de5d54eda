//! The `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` host traits over
//! [`Stores`](super::Stores).

use super::resources::{BucketHandle, CasHandle};
use super::{KeyValueView, Stores};
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use store::{Error, KeyResponse};
use wasmtime::component::Resource;

fn table_error(e: wasmtime::component::ResourceTableError) -> Error {
    Error::Other(format!("resource table: {e}"))
}

fn store_error(e: super::StoreError) -> Error {
    Error::Other(e.0)
}

impl KeyValueView<'_> {
    fn label(&self, bucket: &Resource<BucketHandle>) -> Result<String, Error> {
        Ok(self.table.get(bucket).map_err(table_error)?.label.clone())
    }
}

/// `set` and each pair of `set-many`: a token record's secrets are known to the scrubber
/// before they can reach any output. A function of the store, not of the view: the view
/// holds the resource table, which is not `Sync`, so a future borrowing it is not `Send`.
async fn set_one(store: &Stores, label: &str, key: String, value: Vec<u8>) -> Result<(), Error> {
    if key.starts_with(clever_auth_core::status::keys::TOKEN_PREFIX) {
        crate::redact::register_token_record(&value);
    }
    store.set(label, &key, value).await.map_err(store_error)
}

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<BucketHandle>, Error> {
        if !self.store.allows(&identifier) {
            return Err(Error::NoSuchStore);
        }
        self.table
            .push(BucketHandle { label: identifier })
            .map_err(table_error)
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.store
            .get(&self.label(&bucket)?, &key)
            .await
            .map_err(store_error)
    }

    async fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let label = self.label(&bucket)?;
        set_one(self.store, &label, key, value).await
    }

    async fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> Result<(), Error> {
        self.store
            .delete(&self.label(&bucket)?, &key)
            .await
            .map_err(store_error)
    }

    async fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> Result<bool, Error> {
        Ok(self
            .store
            .get(&self.label(&bucket)?, &key)
            .await
            .map_err(store_error)?
            .is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        let (keys, cursor) = self
            .store
            .list_keys(&self.label(&bucket)?, cursor.as_deref())
            .await
            .map_err(store_error)?;
        Ok(KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

/// `get-many` is one call to the shared store; the component writes and deletes one key at a
/// time, so `set-many` and `delete-many` are plain loops (stopping at the first failure, which
/// the interface allows: a batch is not atomic).
impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let values = self
            .store
            .get_many(&self.label(&bucket)?, &keys)
            .await
            .map_err(store_error)?;
        Ok(keys.into_iter().zip(values).collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let label = self.label(&bucket)?;
        for (key, value) in key_values {
            set_one(self.store, &label, key, value).await?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Result<(), Error> {
        let label = self.label(&bucket)?;
        for key in keys {
            self.store.delete(&label, &key).await.map_err(store_error)?;
        }
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        delta: i64,
    ) -> Result<i64, Error> {
        self.store
            .increment(&self.label(&bucket)?, &key, delta)
            .await
            .map_err(store_error)
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> Result<(), atomics::CasError> {
        let handle = self
            .table
            .delete(cas)
            .map_err(|e| atomics::CasError::StoreError(table_error(e)))?;
        let written = self
            .store
            .compare_and_swap(&handle.label, &handle.key, handle.seen.as_deref(), value)
            .await
            .map_err(|e| atomics::CasError::StoreError(store_error(e)))?;
        if written {
            Ok(())
        } else {
            // The guest gets a fresh handle on the current value so it can retry.
            let seen = self
                .store
                .get(&handle.label, &handle.key)
                .await
                .map_err(|e| atomics::CasError::StoreError(store_error(e)))?;
            let retry = self
                .table
                .push(CasHandle { seen, ..handle })
                .map_err(|e| atomics::CasError::StoreError(table_error(e)))?;
            Err(atomics::CasError::CasFailed(retry))
        }
    }
}

impl atomics::HostCas for KeyValueView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> Result<Resource<CasHandle>, Error> {
        let label = self.label(&bucket)?;
        let seen = self.store.get(&label, &key).await.map_err(store_error)?;
        self.table
            .push(CasHandle { label, key, seen })
            .map_err(table_error)
    }

    async fn current(&mut self, cas: Resource<CasHandle>) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.table.get(&cas).map_err(table_error)?.seen.clone())
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
