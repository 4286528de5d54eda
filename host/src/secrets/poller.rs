//! The background task that keeps the Clever credentials fresh: the first fetch retries with a
//! bounded, jittered backoff until it succeeds (the host serves health meanwhile); afterwards
//! the secrets are re-read on an interval and, rate-limited, whenever Clever answers 401.

use super::audit;
use super::held::{now_ms, SecretNames, Secrets};
use super::source::{FetchError, SecretSource};
use clever_auth_core::secret::Secret;
use clever_auth_core::status::ErrorRecord;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub refresh_every: Duration,
    pub reread_min_gap: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// Full jitter: uniform in [base·2^n / 2, base·2^n], capped.
fn backoff(t: &Timing, failures: u32) -> Duration {
    let exp = t
        .backoff_base
        .saturating_mul(1u32 << failures.min(16))
        .min(t.backoff_cap);
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let frac = 0.5 + (r >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
    exp.mul_f64(frac)
}

pub async fn run(
    source: Arc<dyn SecretSource>,
    names: SecretNames,
    secrets: Arc<Secrets>,
    reread: Arc<Notify>,
    on_change: impl Fn() + Send + 'static,
    timing: Timing,
) {
    let mut failures: u32 = 0;
    loop {
        let last_fetch = Instant::now();
        match fetch_all(source.as_ref(), &names, &secrets).await {
            Ok(fetched) => {
                failures = 0;
                let changed = secrets.commit(fetched);
                if changed {
                    tracing::info!(
                        provider = source.provider(),
                        "Clever credentials changed; tokens will be re-acquired"
                    );
                    on_change();
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    provider = source.provider(),
                    error_code = %e.code,
                    error = %e.message,
                    attempt = failures,
                    "reading the Clever credentials failed"
                );
                secrets.record_failure(ErrorRecord {
                    code: e.code,
                    message: e.message,
                    at: now_ms(),
                });
            }
        }
        let wait = if failures > 0 {
            backoff(&timing, failures - 1)
        } else {
            timing.refresh_every
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = reread.notified() => {
                // A burst of 401s must not hammer the vault: at most one re-read per gap.
                let delay = timing.reread_min_gap.saturating_sub(last_fetch.elapsed());
                tracing::info!(
                    provider = source.provider(),
                    delay_ms = delay.as_millis() as u64,
                    "Clever rejected the credentials; re-reading them"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Fetches both secrets. Nothing is stored until both are read, so the component never
/// sees a new id with an old secret.
async fn fetch_all(
    source: &dyn SecretSource,
    names: &SecretNames,
    secrets: &Secrets,
) -> Result<[Secret; 2], FetchError> {
    let id = fetch_one(source, 0, &names.client_id, secrets).await?;
    let secret = fetch_one(source, 1, &names.client_secret, secrets).await?;
    Ok([id, secret])
}

/// Reads one secret and writes its audit record (the development provider is not audited).
async fn fetch_one(
    source: &dyn SecretSource,
    slot: usize,
    name: &str,
    secrets: &Secrets,
) -> Result<Secret, FetchError> {
    audit::fetch(source, name, |fetched| {
        Some(secrets.differs(slot, &fetched.value))
    })
    .await
    .map(|fetched| fetched.value)
    .map_err(|e| FetchError {
        message: format!("{name}: {}", e.message),
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let t = Timing {
            refresh_every: Duration::from_secs(300),
            reread_min_gap: Duration::from_secs(30),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
        };
        for failures in 0..40 {
            let d = backoff(&t, failures);
            let full = Duration::from_millis(500)
                .saturating_mul(1 << failures.min(16))
                .min(t.backoff_cap);
            assert!(
                d >= full / 2 && d <= full,
                "failures {failures}: {d:?} vs {full:?}"
            );
        }
    }
}
