//! `wasi:keyvalue` capability: wires the in-memory store into the linker.

mod host;
mod memory;
mod resources;

pub use memory::MemoryStore;
pub use resources::{BucketHandle, CasHandle};

use crate::bindings::wasi::keyvalue::{atomics, store};
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The store label the component opens; Spin's manifest lists the same one.
pub const DEFAULT_LABEL: &str = "default";

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
