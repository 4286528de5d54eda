//! The wasmtime engine: pooling allocator sized for the component, with a fallback.

use anyhow::Result;
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Component instances the pool has room for. Each listener admits at most its
/// `max_in_flight` requests at once (the public one 64, the gateway at most 160; idle reused
/// instances count against their listener's peak), plus the refresher, so requests wait for
/// a slot rather than fail.
pub const POOL_INSTANCES: u32 = 256;
/// The component needs a few MiB; the cap keeps a misbehaving build from eating the host.
const MAX_MEMORY_BYTES: usize = 64 << 20;

pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    // Every component call has a wall-clock bound (see `deadline`); the guest checks the
    // epoch in its loops and calls.
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    // A Rust wasip2 component is several core instances (the program plus adapter shims),
    // each possibly with its own memory and table: size those per component instance.
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
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
