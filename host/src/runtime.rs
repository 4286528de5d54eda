//! The wasmtime engine, the loaded component and its pre-instantiations.

use crate::bindings::PlatformPre;
use crate::state::{HostState, Shared};
use crate::{config, keyvalue};
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Instances kept ready in the pool; more concurrent requests than this wait for a slot.
const POOL_INSTANCES: u32 = 256;
/// The component needs a few MiB; the cap keeps a misbehaving build from eating the host.
const MAX_MEMORY_BYTES: usize = 64 << 20;

/// Everything needed to create an instance of the component for one request or refresh.
#[derive(Clone)]
pub struct Runtime {
    pub proxy: ProxyPre<HostState>,
    pub platform: PlatformPre<HostState>,
    pub shared: Arc<Shared>,
}

impl Runtime {
    pub fn load(component_path: &Path, shared: Arc<Shared>) -> Result<Runtime> {
        let engine = engine()?;
        let component = load_component(&engine, component_path)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        config::add_to_linker(&mut linker, HostState::config_view)?;
        keyvalue::add_to_linker(&mut linker, HostState::keyvalue_view)?;
        let pre = linker.instantiate_pre(&component).with_context(|| {
            format!(
                "{} imports something this host does not provide",
                component_path.display()
            )
        })?;
        let proxy = ProxyPre::new(pre.clone())
            .context("the component does not export wasi:http/incoming-handler@0.2.x")?;
        let platform =
            PlatformPre::new(pre).context("the component does not export clever:auth/refresher")?;
        Ok(Runtime {
            proxy,
            platform,
            shared,
        })
    }

    pub fn new_store(&self) -> Store<HostState> {
        Store::new(self.proxy.engine(), HostState::new(self.shared.clone()))
    }
}

fn engine() -> Result<Engine> {
    let mut config = Config::new();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES * 4)
        .max_memory_size(MAX_MEMORY_BYTES);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            // Some sandboxes refuse the pool's address-space reservation; on-demand allocation
            // is slower per instance but works everywhere.
            tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok(Engine::new(&config).context("creating the wasmtime engine")?)
        }
    }
}

fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    let bytes = anyhow::Context::with_context(std::fs::read(path), || {
        format!(
            "cannot read the component file {} (build it with `cargo xtask build`, or pass --component)",
            path.display()
        )
    })?;
    let component = Component::new(engine, &bytes)
        .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
    Ok(component)
}
