//! `wasi:keyvalue` capability: wires the in-memory store into the linker.

mod host;
mod memory;

pub use memory::MemoryStore;

use crate::bindings::wasi::keyvalue::{atomics, store};
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The store label the component opens; Spin's manifest lists the same one.
pub const DEFAULT_LABEL: &str = "default";

/// Host representation of an open `bucket`.
pub struct BucketHandle {
    label: String,
}

/// Host representation of a `cas` handle: the value seen when it was created.
pub struct CasHandle {
    label: String,
    key: String,
    seen: Option<Vec<u8>>,
}

/// What the `wasi:keyvalue` host traits see of a store's data.
pub struct KeyValueView<'a> {
    pub store: &'a MemoryStore,
    pub table: &'a mut ResourceTable,
}

pub struct KeyValue;

impl HasData for KeyValue {
    type Data<'a> = KeyValueView<'a>;
}

pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KeyValue>(linker, view)?;
    atomics::add_to_linker::<T, KeyValue>(linker, view)?;
    Ok(())
}
