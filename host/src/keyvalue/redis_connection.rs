//! The store's Redis connection manager, replaced by a fresh one after an authentication
//! failure.
//!
//! The redis crate's `ConnectionManager` reconnects after I/O errors only: once a connection
//! could not be set up because Redis refused the credential (or none was read yet), the
//! manager hands out that failure for good. A fresh manager (connected lazily, on its first
//! call) asks the credentials for the current key or token, so a fixed key heals the store.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};
use std::sync::{PoisonError, RwLock};

pub struct Connection {
    client: Client,
    config: ConnectionManagerConfig,
    current: RwLock<ConnectionManager>,
}

impl Connection {
    pub fn new(client: Client, config: ConnectionManagerConfig) -> RedisResult<Self> {
        let current = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            client,
            config,
            current: RwLock::new(current),
        })
    }

    /// A handle on the current manager (cheap: managers share their connection).
    pub fn get(&self) -> ConnectionManager {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the current manager for a fresh one. Calls already under way finish on the old.
    pub fn renew(&self) {
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh,
            Err(e) => tracing::warn!(error = %e.category(), "renewing the Redis connection failed"),
        }
    }
}
