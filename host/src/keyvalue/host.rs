//! The `wasi:keyvalue/{store,atomics}@0.2.0-draft2` host traits over [`Stores`](super::Stores).

use super::resources::{BucketHandle, CasHandle};
use super::KeyValueView;
use crate::bindings::wasi::keyvalue::{atomics, store};
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
        if key.starts_with(clever_auth_core::status::keys::TOKEN_PREFIX) {
            crate::redact::register_token_record(&value);
        }
        self.store
            .set(&self.label(&bucket)?, &key, value)
            .await
            .map_err(store_error)
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
