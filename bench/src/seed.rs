//! The records the refresher leaves in the key-value store after a successful cycle, made up
//! natively so the baseline and the hand-out benchmark read what the component reads.

use clever_auth_core::lifecycle::TokenEntry;
use clever_auth_core::ratelimit::Bucket;
use clever_auth_core::secret::AccessToken;
use clever_auth_core::status::{
    keys, CredentialState, DistrictRecord, HostSecretsStatus, ServiceStatus, StatusSnapshot,
    VersionRecord, VersionState,
};
use clever_auth_core::UnixMillis;
use clever_auth_host::keyvalue::{MemoryStore, DEFAULT_LABEL};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Long enough that nothing the baseline serves expires during a run.
pub const LIFETIME_MS: u64 = 24 * 3_600_000;

pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `len` lowercase hex characters, like Clever's ids (24) and tokens (40).
pub fn random_hex(len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    let mut n = 0u64;
    while s.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        n += 1;
        s.push_str(&format!("{:016x}", h.finish()));
    }
    s.truncate(len);
    s
}

/// `n` district ids of Clever's shape (24 hex characters), as the fake makes them.
pub fn district_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| random_hex(24)).collect()
}

fn put<T: serde::Serialize>(store: &MemoryStore, key: &str, value: &T) -> anyhow::Result<()> {
    store.set(DEFAULT_LABEL, key, serde_json::to_vec(value)?);
    Ok(())
}

/// A token entry per district, the status snapshot of a cycle that just succeeded, and the
/// host's secrets status for the development provider.
pub fn seed(store: &MemoryStore, districts: &[String], now: UnixMillis) -> anyhow::Result<()> {
    let scopes: Vec<String> = [
        "read:districts",
        "read:schools",
        "read:students",
        "read:teachers",
    ]
    .map(String::from)
    .to_vec();
    let mut snapshot = StatusSnapshot {
        service: ServiceStatus {
            last_run_at: Some(now),
            last_successful_auth: Some(now),
            last_error: None,
            credentials: Some(CredentialState::Accepted),
            credentials_checked_at: Some(now),
            consecutive_failures: 0,
            failing_since: None,
            rate_limited_until: None,
            rate_limited_since: None,
            rate_limit: Some(Bucket {
                name: Some("per-token".into()),
                limit: Some(1200),
                remaining: Some(1199),
                reset_at: Some(now + 60_000),
            }),
            api_version: Some(VersionRecord {
                configured: "v3.0".into(),
                seen: vec!["v3.0".into()],
                state: VersionState::Match,
                at: now,
            }),
        },
        districts: Default::default(),
        alerts: Default::default(),
    };
    for id in districts {
        let entry = TokenEntry::new(
            id.clone(),
            AccessToken::new(random_hex(40)),
            scopes.clone(),
            now,
            LIFETIME_MS,
            0.75,
        );
        put(store, &keys::token(id), &entry)?;
        snapshot.districts.insert(
            id.clone(),
            DistrictRecord {
                district_id: id.clone(),
                expires_at: Some(entry.expires_at),
                refresh_at: Some(entry.refresh_at),
                last_success: Some(now),
                ..Default::default()
            },
        );
    }
    put(store, keys::STATUS, &snapshot)?;
    // As the component's status write does: the public answer's precomputed record.
    let summary = clever_auth_core::health_summary::HealthSummary::compute(&snapshot, now, 30_000);
    put(store, keys::HEALTH_SUMMARY, &summary)?;
    put(
        store,
        keys::HOST_SECRETS,
        &HostSecretsStatus {
            provider: "env".into(),
            source: "environment variables".into(),
            last_success: Some(now),
            last_error: None,
            consecutive_failures: 0,
            generation: 1,
        },
    )?;
    Ok(())
}
