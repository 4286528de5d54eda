//! `wasi:keyvalue` capability: wires the configured store (memory, or Redis shared by the
//! deployment) into the linker.

mod host;
mod memory;
mod provider;
mod redis;
mod redis_connection;
mod redis_credentials;
mod resources;
pub mod runtime_config;
pub mod store_auth;
mod stores;

pub use memory::MemoryStore;
pub use provider::{StoreError, StoreProvider, DEFAULT_LABEL};
pub use redis::RedisStore;
pub use redis_credentials::{RedisCredentials, RedisLogin};
pub use resources::{BucketHandle, CasHandle};
pub use stores::Stores;

use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use wasmtime::component::{HasData, Linker, ResourceTable};

/// What the `wasi:keyvalue` host traits see of a store's data.
pub struct KeyValueView<'a> {
    pub store: &'a Stores,
    pub table: &'a mut ResourceTable,
}

pub struct KeyValue;

impl HasData for KeyValue {
    type Data<'a> = KeyValueView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KeyValue>(linker, view)?;
    atomics::add_to_linker::<T, KeyValue>(linker, view)?;
    batch::add_to_linker::<T, KeyValue>(linker, view)?;
    Ok(())
}
