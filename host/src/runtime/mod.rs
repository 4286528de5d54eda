//! The wasmtime engine, the loaded component and its pre-instantiations.

pub mod deadline;
pub mod engine;
pub mod precompiled;

use crate::bindings::PlatformPre;
use crate::state::{HostState, Shared};
use crate::{config, keyvalue};
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime::error::Context as _;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

/// Everything needed to create an instance of the component for one request or refresh.
#[derive(Clone)]
pub struct Runtime {
    pub proxy: ProxyPre<HostState>,
    pub platform: PlatformPre<HostState>,
    pub shared: Arc<Shared>,
    /// The wall-clock bound on each component call.
    pub deadlines: deadline::CallDeadlines,
}

impl Runtime {
    /// Loads the component (from `cache_dir` when a valid precompiled artifact is there) and
    /// links it; returns how it was loaded.
    pub fn load(
        component_path: &Path,
        cache_dir: Option<&Path>,
        shared: Arc<Shared>,
    ) -> Result<(Runtime, precompiled::Origin)> {
        let engine = engine::engine()?;
        deadline::start_ticker(&engine).context("starting the epoch ticker thread")?;
        let bytes = read_component(component_path)?;
        let (component, origin) =
            anyhow::Context::with_context(precompiled::load(&engine, &bytes, cache_dir), || {
                format!(
                    "{} is not a valid WebAssembly component",
                    component_path.display()
                )
            })?;
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
        Ok((
            Runtime {
                proxy,
                platform,
                shared,
                deadlines: deadline::CallDeadlines::default(),
            },
            origin,
        ))
    }

    /// One instance of the component, with both its HTTP handler and its own exports (the
    /// gateway's decisions are asked of the instance that serves the request).
    pub async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> Result<(Proxy, crate::bindings::Platform)> {
        let instance = self
            .proxy
            .instance_pre()
            .instantiate_async(&mut *store)
            .await?;
        let proxy = Proxy::new(&mut *store, &instance)?;
        let platform = crate::bindings::Platform::new(&mut *store, &instance)?;
        Ok((proxy, platform))
    }

    /// A store armed with the health deadline, so instantiating is bounded too (a store's
    /// epoch deadline is "now" until set); each call arms it again with its own clock.
    pub fn new_store(&self) -> Store<HostState> {
        let mut store = Store::new(self.proxy.engine(), HostState::new(self.shared.clone()));
        deadline::arm(&mut store, deadline::CallClock::health(&self.deadlines));
        store
    }
}

/// Compiles the component into `dir` for later starts (`--precompile`).
pub fn precompile(component_path: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let engine = engine::engine()?;
    let bytes = read_component(component_path)?;
    precompiled::precompile(&engine, &bytes, dir)
}

fn read_component(path: &Path) -> Result<Vec<u8>> {
    anyhow::Context::with_context(std::fs::read(path), || {
        format!(
            "cannot read the component file {} (build it with `cargo xtask build`, or pass --component)",
            path.display()
        )
    })
}
