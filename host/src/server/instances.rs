//! Where a request gets its instance of the component: a fresh one each time, or (with
//! `--instance-mode reuse`) one kept from an earlier request. The component keeps no state
//! between requests (everything lives in the host's key-value store), so an instance that
//! finished a request cleanly can serve the next; one that trapped is dropped.

use crate::bindings::Platform;
use crate::runtime::Runtime;
use crate::state::HostState;
use anyhow::Result;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// Requests the public listener lets into the component at once; more wait for a turn.
/// Serving health is CPU-bound, so a higher limit adds live instances (memory), not
/// throughput: 200, 64 and 32 measured the same req/s at 256 connections (docs/benchmarks.md,
/// "Admission limit").
pub const MAX_IN_FLIGHT: usize = 64;
/// Instances kept between requests in reuse mode, at most: a burst up to the public limit
/// never drops instances only to instantiate them again.
const MAX_IDLE: usize = MAX_IN_FLIGHT;

/// `--instance-mode`: whether a request gets a fresh instance or one kept from an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceMode {
    Fresh,
    Reuse,
}

pub struct Instances {
    mode: InstanceMode,
    idle: Mutex<Vec<(Store<HostState>, Proxy, Platform)>>,
    admission: Arc<Semaphore>,
}

/// An instance lent to one request, with its place in the admission count.
pub struct Lease {
    pub store: Store<HostState>,
    pub proxy: Proxy,
    /// The same instance's own exports (the gateway's decisions).
    pub platform: Platform,
    _permit: OwnedSemaphorePermit,
}

impl Instances {
    /// At most `max_in_flight` requests inside the component at once.
    pub fn new(mode: InstanceMode, max_in_flight: usize) -> Arc<Instances> {
        Arc::new(Instances {
            mode,
            idle: Mutex::default(),
            admission: Arc::new(Semaphore::new(max_in_flight.max(1))),
        })
    }

    /// Waits for a turn, then lends a kept instance or instantiates a new one.
    pub async fn checkout(&self, runtime: &Runtime) -> Result<Lease> {
        let permit = self
            .admission
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("the server is shutting down"))?;
        if self.mode == InstanceMode::Reuse {
            let kept = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            if let Some((store, proxy, platform)) = kept {
                return Ok(Lease {
                    store,
                    proxy,
                    platform,
                    _permit: permit,
                });
            }
        }
        let mut store = runtime.new_store();
        let (proxy, platform) = runtime.instantiate(&mut store).await?;
        Ok(Lease {
            store,
            proxy,
            platform,
            _permit: permit,
        })
    }

    /// Takes back an instance whose request completed without a trap.
    pub fn checkin(&self, lease: Lease) {
        if self.mode != InstanceMode::Reuse {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((lease.store, lease.proxy, lease.platform));
        }
    }
}
