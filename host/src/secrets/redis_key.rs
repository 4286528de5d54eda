//! Redis's access key, read through the secrets provider and handed to the store's
//! connections as their password.
//!
//! The env provider's key is read once at start (`CLEVER_AUTH_REDIS_ACCESS_KEY`). Key Vault's
//! (`redis-access-key`) is read in the background like the store key, again every refresh
//! period, and early (at most once per re-read gap) when Redis refuses the key held: after a
//! rotation, new connections and the live ones (re-authenticated) use the new key without a
//! restart.

use super::audit;
use super::source::{FetchError, SecretSource};
use crate::keyvalue::{RedisCredentials, RedisLogin};
use clever_auth_core::secret::Secret;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ENV_NAME: &str = "CLEVER_AUTH_REDIS_ACCESS_KEY";
pub const VAULT_NAME: &str = "redis-access-key";

/// The user an access key logs in as when none is configured: Redis's own.
pub const DEFAULT_USER: &str = "default";

/// Whether the env provider's variable holds a key.
pub fn env_key_given() -> bool {
    std::env::var(ENV_NAME).is_ok_and(|v| !v.trim().is_empty())
}

/// Masked before any connection can carry it.
fn login(user: &str, key: Secret) -> RedisLogin {
    crate::redact::pin(crate::redact::Pin::RedisAccessKey, key.expose());
    RedisLogin {
        user: user.to_string(),
        password: key,
    }
}

/// From `CLEVER_AUTH_REDIS_ACCESS_KEY`, at start; its absence is a start-up error.
pub fn from_env(credentials: &RedisCredentials, user: &str) -> Result<(), String> {
    let key = std::env::var(ENV_NAME)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "--store-auth access-key needs Redis's access key: set {ENV_NAME}, or choose \
                 --store-auth none for a Redis without a password"
            )
        })?;
    credentials.set(login(user, Secret::new(key)));
    Ok(())
}

/// How often Key Vault's key is read.
#[derive(Debug, Clone, Copy)]
pub struct VaultTiming {
    pub every: Duration,
    /// At least this long between two reads that Redis's refusals asked for.
    pub reread_min_gap: Duration,
}

pub async fn poll_vault(
    source: Arc<dyn SecretSource>,
    credentials: Arc<RedisCredentials>,
    user: String,
    timing: VaultTiming,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let wait = match fetch(source.as_ref()).await {
            Ok(key) => {
                if credentials.set(login(&user, key)) {
                    tracing::info!(
                        secret = VAULT_NAME,
                        user = %user,
                        "Redis access key read; connections authenticate with it"
                    );
                }
                backoff = Duration::from_millis(500);
                timing.every
            }
            Err(e) => {
                tracing::error!(
                    code = %e.code,
                    error = %e.message,
                    secret = VAULT_NAME,
                    "reading the Redis access key failed; keeping the key held, if any"
                );
                backoff = (backoff * 2).min(Duration::from_secs(30));
                backoff
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = credentials.wait_refused() => {
                // Every store call fails while the key is wrong: one re-read per gap at most.
                let delay = timing.reread_min_gap.saturating_sub(started.elapsed());
                tracing::info!(
                    secret = VAULT_NAME,
                    delay_ms = delay.as_millis() as u64,
                    "Redis refused the access key; reading it again"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One read, with its audit record.
async fn fetch(source: &dyn SecretSource) -> Result<Secret, FetchError> {
    audit::fetch(source, VAULT_NAME, |_| None)
        .await
        .map(|f| f.value)
}
