//! What the refresher records in the key-value store and the health handler reads back.
//!
//! The records are JSON so that a record written by one build of the component can still be
//! read by the next one: unknown fields are ignored and missing ones take their defaults.

use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key-value keys, namespaced so the store can be shared with other components.
pub mod keys {
    /// Records that describe one instance (its settings check, its gateway figures) or its
    /// host process (secrets, deadlines, the store's reachability). The native host keeps them
    /// in the process whatever the store: on a shared store each instance would overwrite the
    /// others', and every gateway request would pay a network round trip for its own settings.
    pub const INSTANCE_PREFIX: &str = "clever-auth/v1/host/";
    /// The whole status ([`super::StatusSnapshot`]) in one record, so a health request never
    /// sees half of a refresh cycle's results.
    pub const STATUS: &str = "clever-auth/v1/status";
    /// Prefix of the cached tokens ([`crate::lifecycle::TokenEntry`]).
    pub const TOKEN_PREFIX: &str = "clever-auth/v1/token/";
    /// The refresher's schedule and retry bookkeeping.
    pub const CYCLE: &str = "clever-auth/v1/cycle";
    /// Written by the native host: where the Clever credentials come from and how that goes.
    pub const HOST_SECRETS: &str = "clever-auth/v1/host/secrets";
    /// What the public health answer reads ([`crate::health_summary::HealthSummary`]), written
    /// together with [`STATUS`] so its size does not grow with the number of districts.
    pub const HEALTH_SUMMARY: &str = "clever-auth/v1/health-summary";
    /// Written by the native host at start-up ([`super::HostInstance`]).
    pub const HOST_INSTANCE: &str = "clever-auth/v1/host/instance";
    /// The lease that lets one instance at a time acquire tokens.
    pub const LEASE: &str = "clever-auth/v1/lease/acquire";
    /// A counter (`wasi:keyvalue/atomics.increment`, nothing else): who creates the lease
    /// record on a new store.
    pub const LEASE_SEEDS: &str = "clever-auth/v1/lease/seeds";
    /// Written by the gateway when Clever refused a district's token (401) or a district has no
    /// usable token: asks the refresher for a new listing.
    pub const RELIST_REQUEST: &str = "clever-auth/v1/relist-request";
    /// Written by the native host: component calls it cut off at their wall-clock deadline
    /// ([`super::HostDeadlineStatus`]).
    pub const HOST_DEADLINES: &str = "clever-auth/v1/host/deadlines";
    /// Whether the shared store answers, as the native host last saw it
    /// ([`super::HostStoreStatus`]); absent on the memory store and under Spin.
    pub const HOST_STORE: &str = "clever-auth/v1/host/store";
    /// This instance refreshing alone during a store outage
    /// ([`crate::refresher::solo::SoloRecord`]); absent otherwise.
    pub const SOLO: &str = "clever-auth/v1/host/solo/state";
    /// Prefix of the tokens this instance obtained alone (sealed like the shared ones).
    pub const SOLO_TOKEN_PREFIX: &str = "clever-auth/v1/host/solo/token/";

    pub fn solo_token(id: &str) -> String {
        format!("{SOLO_TOKEN_PREFIX}{id}")
    }

    pub fn token(id: &str) -> String {
        format!("{TOKEN_PREFIX}{id}")
    }
}

/// See [`keys::RELIST_REQUEST`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelistRequest {
    pub at: UnixMillis,
    pub district: Option<String>,
    pub reason: String,
}

/// A failure as shown to operators: a stable code, a sanitised message, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub code: String,
    pub message: String,
    pub at: UnixMillis,
}

/// Whether the client id and secret could be read, and whether Clever accepted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    /// Both are present; not yet known whether Clever accepts them.
    Present,
    /// One or both are absent (no Key Vault answer yet, or not configured).
    Missing,
    /// Clever answered 401 to them.
    Rejected,
    /// Clever accepted them (a token was obtained with them).
    Accepted,
}

/// The service-wide status, one record, rewritten by every refresher run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceStatus {
    pub last_run_at: Option<UnixMillis>,
    pub last_successful_auth: Option<UnixMillis>,
    pub last_error: Option<ErrorRecord>,
    pub credentials: Option<CredentialState>,
    pub credentials_checked_at: Option<UnixMillis>,
    /// Failed acquisition attempts since the last success.
    pub consecutive_failures: u32,
    /// When the current run of failed acquisitions began; `None` after a success.
    pub failing_since: Option<UnixMillis>,
    /// Set while Clever's rate limit makes the refresher wait.
    pub rate_limited_until: Option<UnixMillis>,
    /// When the current stretch of rate limiting began; `None` once it has passed.
    pub rate_limited_since: Option<UnixMillis>,
    /// The binding rate-limit bucket of the last Clever response.
    pub rate_limit: Option<crate::ratelimit::Bucket>,
    pub api_version: Option<VersionRecord>,
}

/// What the connection probes said about the API version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub configured: String,
    pub seen: Vec<String>,
    pub state: VersionState,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    Match,
    Mismatch,
    Unsupported,
    Unknown,
}

/// The native host's secrets provider (Key Vault, or the development env provider), as the
/// host reports it. Absent under Spin, whose variables provider reports nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSecretsStatus {
    /// `keyvault`, `env` or `none`.
    pub provider: String,
    /// Where the secrets come from, for operators (e.g. the vault host); never a value.
    pub source: String,
    pub last_success: Option<UnixMillis>,
    pub last_error: Option<ErrorRecord>,
    pub consecutive_failures: u32,
    /// Bumped whenever a secret value changes: the refresher re-acquires tokens at once.
    pub generation: u64,
}

/// The shared store as the native host sees it. Names the provider only: never its address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostStoreStatus {
    /// `redis`.
    pub kind: String,
    pub reachable: bool,
    /// When the current outage began.
    pub unreachable_since: Option<UnixMillis>,
    /// The last failure, in the provider's words (`store unreachable: …`).
    pub last_error: Option<String>,
}

/// Component calls the native host cut off at their wall-clock deadline (each time the
/// instance was dropped, never reused). Absent under Spin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostDeadlineStatus {
    /// Since the host started.
    pub overruns: u64,
    pub last: Option<DeadlineOverrun>,
}

/// One call that overran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadlineOverrun {
    /// `health` or `run-due`.
    pub call: String,
    pub deadline_ms: u64,
    pub at: UnixMillis,
}

/// Which process this is, as the native host reports it: on App Service scale-out each
/// instance has its own store, so health says which one answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostInstance {
    /// `WEBSITE_INSTANCE_ID` on App Service; absent elsewhere.
    pub instance_id: Option<String>,
}

/// Everything the health report shows, written in one piece at the end of each refresher run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusSnapshot {
    pub service: ServiceStatus,
    pub districts: std::collections::BTreeMap<String, DistrictRecord>,
    /// Alerts currently raised (see [`crate::alerts`]).
    pub alerts: ActiveAlerts,
}

/// What is known about one district's token, without the token itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistrictRecord {
    pub district_id: String,
    pub expires_at: Option<UnixMillis>,
    pub refresh_at: Option<UnixMillis>,
    pub last_success: Option<UnixMillis>,
    pub last_error: Option<ErrorRecord>,
    pub consecutive_failures: u32,
    pub rate_limited_until: Option<UnixMillis>,
}

impl DistrictRecord {
    /// True when a token exists that may still be handed out at `now`: the skew margin before
    /// expiry already counts as expired.
    pub fn has_usable_token(&self, now: UnixMillis, skew_ms: u64) -> bool {
        self.expires_at
            .is_some_and(|exp| now < exp.saturating_sub(skew_ms))
    }
}

/// One alert that is currently raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub alert: String,
    pub district: Option<String>,
    /// When the underlying condition began (not when the threshold was crossed).
    pub since: UnixMillis,
    pub raised_at: UnixMillis,
}

/// Keyed by `alert` or `alert/district`, so each district's disconnection is its own incident.
pub type ActiveAlerts = BTreeMap<String, ActiveAlert>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_margin_counts_as_expired() {
        let r = DistrictRecord {
            expires_at: Some(100_000),
            ..Default::default()
        };
        assert!(r.has_usable_token(69_999, 30_000));
        assert!(!r.has_usable_token(70_000, 30_000));
        assert!(!DistrictRecord::default().has_usable_token(0, 0));
    }

    #[test]
    fn old_records_with_unknown_fields_still_load() {
        let r: ServiceStatus =
            serde_json::from_str(r#"{"last_run_at":5,"from_the_future":true}"#).expect("loads");
        assert_eq!(r.last_run_at, Some(5));
        assert_eq!(r.credentials, None);
    }
}
