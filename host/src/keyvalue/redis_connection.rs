//! The store's Redis connections: one per thread that calls the store, all replaced by fresh
//! ones after an authentication failure.
//!
//! One connection per thread, because a multiplexed connection's driver task runs on the
//! runtime that first used it. The gateway serves on threads of its own, each a
//! single-threaded runtime (`server/threads.rs`): with one shared connection, every Redis
//! round trip of a gateway call crossed threads twice (the command to the driver's thread,
//! the answer back), and at 64 gateway connections the host ran out of CPU at about half the
//! memory store's req/s (docs/benchmarks.md, "Scale-out"). A host has a handful of threads
//! that call the store, so a handful of connections.
//!
//! Replaced after an authentication failure, because the redis crate's `ConnectionManager`
//! reconnects after I/O errors only: once a connection could not be set up because Redis
//! refused the credential (or none was read yet), the manager hands out that failure for
//! good. A fresh manager (connected lazily, on its first call) asks the credentials for the
//! current key or token, so a fixed key heals the store.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

pub struct Connection {
    client: Client,
    config: ConnectionManagerConfig,
    /// Tells this store's managers from other stores' in a thread's cache.
    id: u64,
    /// Bumped by [`Connection::renew`]: a cached manager of an older generation is replaced.
    generation: AtomicU64,
    /// Dropped with the store, so threads drop its managers (and their connections).
    alive: Arc<()>,
}

/// A thread's manager for one store.
struct Cached {
    id: u64,
    generation: u64,
    alive: Weak<()>,
    manager: ConnectionManager,
}

thread_local! {
    static MANAGERS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Connection {
    /// Must be called inside a tokio runtime. The first manager is made here, so a setting
    /// the redis crate refuses is an error at start.
    pub fn new(client: Client, config: ConnectionManagerConfig) -> RedisResult<Self> {
        let conn = Self {
            client,
            config,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            alive: Arc::new(()),
        };
        conn.get()?;
        Ok(conn)
    }

    /// This thread's manager (cheap: a handle on its multiplexed connection), made on first use
    /// on each thread, inside that thread's runtime.
    pub fn get(&self) -> RedisResult<ConnectionManager> {
        let generation = self.generation.load(Ordering::Acquire);
        MANAGERS.with(|cell| {
            let mut managers = cell.borrow_mut();
            managers.retain(|m| m.alive.strong_count() > 0);
            if let Some(m) = managers.iter().find(|m| m.id == self.id) {
                if m.generation == generation {
                    return Ok(m.manager.clone());
                }
            }
            let manager =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
            managers.retain(|m| m.id != self.id);
            managers.push(Cached {
                id: self.id,
                generation,
                alive: Arc::downgrade(&self.alive),
                manager: manager.clone(),
            });
            Ok(manager)
        })
    }

    /// Every thread's manager is replaced by a fresh one on its next call. Calls already under
    /// way finish on the old.
    pub fn renew(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
