//! The data of one wasmtime `Store`: per-instance WASI contexts plus the process-wide
//! capabilities (settings, key-value store) every instance shares.

use crate::config::{ConfigSource, ConfigView};
use crate::keyvalue::{KeyValueView, Stores};
use crate::outbound::{Outbound, OutboundHooks};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Process-wide state shared by every instance.
pub struct Shared {
    pub config: ConfigSource,
    pub kv: Stores,
    pub outbound: Arc<Outbound>,
}

pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundHooks,
    shared: Arc<Shared>,
}

impl HostState {
    pub fn new(shared: Arc<Shared>) -> Self {
        // The component logs on stderr (Spin has no wasi:logging), re-emitted as host events;
        // nothing else is inherited:
        // no environment, no preopened directories, no arguments.
        let wasi = WasiCtx::builder()
            .stderr(crate::logging::component::ComponentStderr::default())
            .build();
        let outbound = OutboundHooks(shared.outbound.clone());
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound,
            shared,
        }
    }

    pub fn config_view(&mut self) -> ConfigView<'_> {
        ConfigView {
            source: &self.shared.config,
        }
    }

    pub fn keyvalue_view(&mut self) -> KeyValueView<'_> {
        KeyValueView {
            store: &self.shared.kv,
            table: &mut self.table,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
