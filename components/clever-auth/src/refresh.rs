//! The refresher: when a refresh is due it takes the lease, obtains tokens, probes each one,
//! and records what happened for the health report. One attempt per call: a retry is not
//! slept on but scheduled, and the caller (the host's scheduler, or the next health request
//! under Spin) calls again when it is due.

use crate::clever_client;
use crate::config::{self, Credentials};
use crate::http_out::{Failure, Response};
use crate::kv::Kv;
use crate::lease::Lease;
use crate::{clock, entropy, log};
use clever_auth_core::alerts;
use clever_auth_core::backoff::{
    classify_status, classify_transport, Decision, Outcome, PermanentKind, RetryPolicy, RetryState,
    TransientKind, TransportFailure,
};
use clever_auth_core::clever_wire::{self, VersionCheck};
use clever_auth_core::lifecycle::{self, Timing, TokenEntry, APP_TOKEN_ID};
use clever_auth_core::ratelimit::RateLimitInfo;
use clever_auth_core::settings::{Grant, Settings};
use clever_auth_core::status::{
    keys, CredentialState, DistrictRecord, ErrorRecord, HostSecretsStatus, StatusSnapshot,
    VersionRecord, VersionState,
};
use clever_auth_core::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;

/// How soon to look again while credentials or settings are missing: the host's secrets may
/// arrive at any moment (Key Vault recovering), so this stays short.
const RECHECK_MS: u64 = 5_000;
/// After Clever rejected the credentials (401), how long before trying the same ones again.
const BAD_CREDENTIALS_PAUSE_MS: u64 = 300_000;
/// How soon to look again when the host changed the secrets while they were being read.
const SECRETS_SETTLING_MS: u64 = 50;
/// How soon to look again when another instance holds the lease.
const LEASE_BUSY_MS: u64 = 200;
/// Marks that a host scheduler drives the refresher (so health requests need not).
const SCHEDULER_KEY: &str = "clever-auth/v1/scheduler";
/// How long past its announced next call a scheduler still counts as alive.
const SCHEDULER_GRACE_MS: u64 = 5_000;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct SchedulerMark {
    alive_until: UnixMillis,
}

/// The refresher's own bookkeeping, persisted between calls.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Cycle {
    next_due_at: UnixMillis,
    retry: RetryState,
    /// Credentials were present at the last run; their arrival makes a refresh due at once.
    credentials_seen: bool,
    /// The host's secrets generation last acquired with; a new one (rotation) is due at once.
    secrets_generation: u64,
    /// When the next acquisition is due (`next_due_at` may be sooner, for pending probes).
    refresh_due_at: UnixMillis,
    /// Districts whose new token still awaits its connection probe, probed a batch per run so
    /// hundreds of districts are not probed in one burst.
    pending_probes: Vec<String>,
    /// The next acquisition was brought forward because a probe failed: it re-probes only
    /// what changed or failed, not every district again.
    relist_for_failures: bool,
}

/// The `clever:auth/refresher.run-due` export, called by the native host's scheduler.
pub fn run_due_scheduled() -> u64 {
    let next_in = run_due();
    if let Ok(kv) = Kv::open() {
        let mark = SchedulerMark {
            alive_until: clock::now()
                .saturating_add(next_in)
                .saturating_add(SCHEDULER_GRACE_MS),
        };
        let _ = kv.put(SCHEDULER_KEY, &mark);
    }
    next_in
}

/// Runs after a health response has been sent (the path Spin uses, which has no scheduler),
/// but only when due and only when no host scheduler is driving the refresher: two drivers
/// would race for the lease and the loser would miss its slot.
pub fn run_if_due() {
    let Ok(kv) = Kv::open() else { return };
    let scheduled = kv
        .get::<SchedulerMark>(SCHEDULER_KEY)
        .ok()
        .flatten()
        .is_some_and(|m| m.alive_until > clock::now());
    if scheduled {
        return;
    }
    let cycle = kv
        .get::<Cycle>(keys::CYCLE)
        .ok()
        .flatten()
        .unwrap_or_default();
    let credentials_arrived = !cycle.credentials_seen && config::credentials().is_some();
    let rotated = cycle.secrets_generation != secrets_generation(&kv);
    if credentials_arrived || rotated || cycle.next_due_at <= clock::now() {
        run_due();
    }
}

/// Does every due refresh and returns the delay in milliseconds until the next one.
pub fn run_due() -> u64 {
    let now = clock::now();
    let kv = match Kv::open() {
        Ok(kv) => kv,
        Err(e) => {
            log::event(
                "error",
                "store_unavailable",
                json!({ "error": e.to_string() }),
            );
            return RECHECK_MS;
        }
    };
    let mut status = load_status(&kv);
    let mut cycle = kv
        .get::<Cycle>(keys::CYCLE)
        .ok()
        .flatten()
        .unwrap_or_default();
    status.service.last_run_at = Some(now);

    let settings = match config::settings() {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                log::event(
                    "error",
                    "setting_invalid",
                    json!({ "setting": e.setting, "error": e.message }),
                );
            }
            save(&kv, &status, None);
            return RECHECK_MS;
        }
    };
    status.service.credentials_checked_at = Some(now);
    // The host changes the pair and the generation together; reading the generation on both
    // sides of the credentials tells whether this pair belongs to it. Otherwise a pair read
    // mid-change would be acquired with under the old generation, and acquired with again as
    // soon as the new one showed, outside the retry schedule.
    let generation = secrets_generation(&kv);
    let creds = config::credentials();
    if secrets_generation(&kv) != generation {
        return SECRETS_SETTLING_MS;
    }
    let Some(creds) = creds else {
        status.service.credentials = Some(CredentialState::Missing);
        cycle.credentials_seen = false;
        cycle.next_due_at = now + RECHECK_MS;
        update_alerts(&mut status, &settings, now);
        save(&kv, &status, Some(&cycle));
        return RECHECK_MS;
    };
    if !due(&cycle, now, generation) {
        return cycle.next_due_at - now;
    }

    let lease_ttl = settings.http_timeout_ms.saturating_mul(4).max(60_000);
    let Some(lease) = Lease::acquire(kv.bucket(), now, lease_ttl) else {
        return LEASE_BUSY_MS;
    };
    // Another instance may have finished a cycle between our first look and the lease.
    let mut cycle = kv
        .get::<Cycle>(keys::CYCLE)
        .ok()
        .flatten()
        .unwrap_or_default();
    if !due(&cycle, now, generation) {
        return cycle.next_due_at.saturating_sub(now);
    }
    // Decided before the cycle records this generation: a new one means acquire now.
    let acquire = acquisition_due(&cycle, now, generation);
    if cycle.secrets_generation != generation && cycle.credentials_seen {
        log::event(
            "info",
            "credentials_changed",
            json!({ "generation": generation }),
        );
    }
    cycle.secrets_generation = generation;
    let mut status = load_status(&kv);
    status.service.last_run_at = Some(now);
    status.service.credentials_checked_at = Some(now);
    if status
        .service
        .credentials
        .is_none_or(|c| c == CredentialState::Missing)
    {
        status.service.credentials = Some(CredentialState::Present);
    }
    cycle.credentials_seen = true;
    let mut run = Refresh::new(&kv, &settings, &creds, now, status, cycle);
    if acquire {
        run.cycle.refresh_due_at = run.run();
    }
    run.probe_pending();
    let next_due_at = run.next_due_at();
    run.cycle.next_due_at = next_due_at;
    update_alerts(&mut run.status, &settings, clock::now().max(now));
    save(&kv, &run.status, Some(&run.cycle));
    drop(lease);
    next_due_at.saturating_sub(clock::now())
}

/// An acquisition (rather than only a batch of pending probes) is due.
fn acquisition_due(cycle: &Cycle, now: UnixMillis, secrets_generation: u64) -> bool {
    !cycle.credentials_seen
        || cycle.secrets_generation != secrets_generation
        || now >= cycle.refresh_due_at
}

/// Raises and clears alerts against the snapshot about to be saved; each change is logged once.
fn update_alerts(status: &mut StatusSnapshot, settings: &Settings, now: UnixMillis) {
    let thresholds = alerts::Thresholds {
        auth_failing_ms: settings.alert_auth_failing_secs.saturating_mul(1000),
        rate_limited_ms: settings.alert_rate_limited_secs.saturating_mul(1000),
        skew_ms: settings.expiry_skew_secs.saturating_mul(1000),
    };
    let current = alerts::evaluate(status, &status.alerts, now, &thresholds);
    let changes = alerts::transitions(&status.alerts, &current);
    for a in &changes.raised {
        log::event(
            "error",
            "alert_raised",
            json!({ "alert": a.alert, "district": a.district, "since": a.since }),
        );
    }
    for a in &changes.cleared {
        log::event(
            "info",
            "alert_cleared",
            json!({ "alert_cleared": a.alert, "district": a.district, "since": a.since,
                    "duration_ms": now.saturating_sub(a.since) }),
        );
    }
    status.alerts = current;
}

/// Due when the schedule says so, or at once when credentials have just arrived or changed.
fn due(cycle: &Cycle, now: UnixMillis, secrets_generation: u64) -> bool {
    !cycle.credentials_seen
        || cycle.secrets_generation != secrets_generation
        || now >= cycle.next_due_at
}

/// The native host bumps this when a secret changes; 0 when no host reports one (Spin).
fn secrets_generation(kv: &Kv) -> u64 {
    kv.get::<HostSecretsStatus>(keys::HOST_SECRETS)
        .ok()
        .flatten()
        .map_or(0, |s| s.generation)
}

fn load_status(kv: &Kv) -> StatusSnapshot {
    kv.get::<StatusSnapshot>(keys::STATUS)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn save(kv: &Kv, status: &StatusSnapshot, cycle: Option<&Cycle>) {
    if let Err(e) = kv.put(keys::STATUS, status) {
        log::event(
            "error",
            "store_write_failed",
            json!({ "key": keys::STATUS, "error": e.to_string() }),
        );
    }
    if let Some(c) = cycle {
        if let Err(e) = kv.put(keys::CYCLE, c) {
            log::event(
                "error",
                "store_write_failed",
                json!({ "key": keys::CYCLE, "error": e.to_string() }),
            );
        }
    }
}

/// A failed acquisition attempt, in the terms the retry policy and the health report use.
struct AttemptError {
    outcome: Outcome,
    code: String,
    message: String,
    hint_ms: Option<u64>,
    operation: &'static str,
    /// The HTTP status, when Clever answered at all.
    status: Option<u16>,
    duration_ms: u64,
}

struct Refresh<'a> {
    kv: &'a Kv,
    settings: &'a Settings,
    creds: &'a Credentials,
    now: UnixMillis,
    timing: Timing,
    status: StatusSnapshot,
    cycle: Cycle,
}

impl<'a> Refresh<'a> {
    fn new(
        kv: &'a Kv,
        settings: &'a Settings,
        creds: &'a Credentials,
        now: UnixMillis,
        status: StatusSnapshot,
        cycle: Cycle,
    ) -> Self {
        let timing = Timing::from_settings(settings);
        Refresh {
            kv,
            settings,
            creds,
            now,
            timing,
            status,
            cycle,
        }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.settings.retry_max,
            base_ms: self.settings.retry_base_ms,
            multiplier: 2.0,
            max_delay_ms: self.settings.retry_max_delay_ms,
            jitter: self.settings.retry_jitter,
        }
    }

    /// One acquisition attempt; returns when the next acquisition is due. The new tokens'
    /// probes are queued for [`Refresh::probe_pending`].
    fn run(&mut self) -> UnixMillis {
        let tokens = self.live_tokens();
        let started = clock::now();
        let attempt = match self.settings.grant {
            Grant::DistrictTokens => self.acquire_district_tokens(),
            Grant::ClientCredentials => self.acquire_client_credentials(),
        };
        let duration_ms = clock::now().saturating_sub(started);
        match attempt {
            Ok(entries) => self.succeeded(entries, duration_ms),
            Err(mut e) => {
                e.duration_ms = duration_ms;
                // The retry delay counts from when the failure was seen, not from when the
                // attempt began, so retries are never closer together than the schedule.
                self.now = clock::now().max(self.now);
                self.failed(e, &tokens)
            }
        }
    }

    /// The refresh point of a new cycle's tokens: the configured fraction, drawn up to
    /// `refresh_jitter` of it earlier, so instances started together drift apart.
    fn refresh_fraction(&self) -> f64 {
        let jitter = self.settings.refresh_jitter * entropy::random01();
        self.timing.refresh_fraction * (1.0 - jitter)
    }

    /// Probes the next batch of districts whose new token has not been probed yet.
    fn probe_pending(&mut self) {
        if self.cycle.pending_probes.is_empty() {
            return;
        }
        let batch =
            (self.settings.probe_batch.max(1) as usize).min(self.cycle.pending_probes.len());
        let ids: Vec<String> = self.cycle.pending_probes.drain(..batch).collect();
        let mut versions = VersionProbe::default();
        let mut any_failed = false;
        for id in ids {
            let Ok(Some(entry)) = self.kv.get::<TokenEntry>(&keys::token(&id)) else {
                continue;
            };
            if !entry.usable(clock::now(), self.timing.skew_ms) {
                continue;
            }
            let mut record = self
                .status
                .districts
                .remove(&id)
                .unwrap_or_else(|| DistrictRecord {
                    district_id: id.clone(),
                    ..Default::default()
                });
            self.probe(&entry, &mut record, &mut versions);
            any_failed |= record.consecutive_failures > 0;
            self.status.districts.insert(id, record);
        }
        if let Some(v) = versions.finish(&self.settings.api_version, self.now) {
            self.status.service.api_version = Some(v);
        }
        if any_failed {
            // A failing probe is worth a fresh listing soon, not at the 75 % point.
            let cooldown = clock::now().saturating_add(self.timing.cooldown_ms);
            if cooldown < self.cycle.refresh_due_at {
                self.cycle.refresh_due_at = cooldown;
                self.cycle.relist_for_failures = true;
            }
        }
    }

    /// The sooner of the next acquisition and the next batch of probes.
    fn next_due_at(&self) -> UnixMillis {
        if self.cycle.pending_probes.is_empty() {
            self.cycle.refresh_due_at
        } else {
            let probes = clock::now().saturating_add(self.settings.probe_pace_ms);
            self.cycle.refresh_due_at.min(probes)
        }
    }

    /// Cached tokens that may still be used; expired ones are deleted so they can never be
    /// handed out, while their district records stay for the health report.
    fn live_tokens(&self) -> Vec<TokenEntry> {
        let keys = self
            .kv
            .keys_with_prefix(keys::TOKEN_PREFIX)
            .unwrap_or_default();
        let mut live = Vec::new();
        for key in keys {
            match self.kv.get::<TokenEntry>(&key) {
                Ok(Some(t)) if t.usable(self.now, self.timing.skew_ms) => live.push(t),
                _ => {
                    let _ = self.kv.delete(&key);
                }
            }
        }
        live
    }

    fn known_districts(&self) -> BTreeSet<String> {
        self.status.districts.keys().cloned().collect()
    }

    fn acquire_district_tokens(&mut self) -> Result<Vec<TokenEntry>, AttemptError> {
        let response = clever_client::list_district_tokens(self.settings, self.creds);
        let response = self.checked("token_listing", response)?;
        let listing = clever_wire::parse_district_tokens(&response.body)
            .map_err(|e| malformed("token_listing", response.status, &e.to_string()))?;
        for skipped in &listing.skipped {
            log::event(
                "warn",
                "listing_entry_skipped",
                json!({ "district": skipped.district_id, "reason": format!("{:?}", skipped.reason) }),
            );
        }
        let diff = lifecycle::diff_listing(
            &self.known_districts(),
            listing.tokens,
            &self.settings.districts,
        );
        for id in &diff.removed {
            self.remove_district(id);
        }
        let lifetime = self.timing.default_lifetime_ms;
        // One draw per cycle: every district of a listing refreshes together anyway.
        let fraction = self.refresh_fraction();
        Ok(diff
            .kept
            .into_iter()
            .map(|t| {
                TokenEntry::new(
                    t.district_id,
                    t.token,
                    t.scopes,
                    self.now,
                    lifetime,
                    fraction,
                )
            })
            .collect())
    }

    fn acquire_client_credentials(&mut self) -> Result<Vec<TokenEntry>, AttemptError> {
        let response = clever_client::client_credentials(self.settings, self.creds);
        let response = self.checked("client_credentials", response)?;
        let token = clever_wire::parse_token_response(&response.body)
            .map_err(|e| malformed("client_credentials", response.status, &e.to_string()))?;
        let lifetime = token
            .expires_in
            .map_or(self.timing.default_lifetime_ms, |s| s.saturating_mul(1000));
        for id in self.known_districts() {
            if id != APP_TOKEN_ID {
                self.remove_district(&id);
            }
        }
        Ok(vec![TokenEntry::new(
            APP_TOKEN_ID.to_string(),
            token.access_token,
            token.scopes,
            self.now,
            lifetime,
            self.refresh_fraction(),
        )])
    }

    /// Turns a transport failure or a non-2xx status into an [`AttemptError`], recording the
    /// rate-limit headers every Clever response carries.
    fn checked(
        &mut self,
        operation: &'static str,
        response: Result<Response, Failure>,
    ) -> Result<Response, AttemptError> {
        let response = response.map_err(|f| transport_error(operation, &f))?;
        let limits = self.record_rate_limit(&response);
        let outcome = classify_status(response.status);
        if outcome.is_success() {
            return Ok(response);
        }
        Err(AttemptError {
            outcome,
            code: outcome.code().to_string(),
            message: format!(
                "{operation}: {}",
                clever_wire::error_summary(response.status, &response.body)
            ),
            hint_ms: limits.retry_hint_ms(response.status, self.now),
            operation,
            status: Some(response.status),
            duration_ms: 0,
        })
    }

    fn record_rate_limit(&mut self, response: &Response) -> RateLimitInfo {
        let info = RateLimitInfo::from_headers(&response.headers, self.now);
        if let Some(b) = info.binding() {
            self.status.service.rate_limit = Some(b.clone());
        }
        info
    }

    fn remove_district(&mut self, id: &str) {
        let _ = self.kv.delete(&keys::token(id));
        self.status.districts.remove(id);
        log::event(
            "warn",
            "district_removed",
            json!({ "district": id, "reason": "no longer in Clever's listing or not allowed" }),
        );
    }

    fn succeeded(&mut self, entries: Vec<TokenEntry>, duration_ms: u64) -> UnixMillis {
        self.cycle
            .retry
            .record(&self.policy(), Outcome::Success, self.now, None, 0, 0.0);
        self.status.service.last_successful_auth = Some(self.now);
        self.status.service.credentials = Some(CredentialState::Accepted);
        self.status.service.consecutive_failures = 0;
        self.status.service.failing_since = None;
        self.status.service.rate_limited_until = None;
        self.status.service.rate_limited_since = None;
        self.status.service.last_error = None;
        log::event(
            "info",
            "tokens_acquired",
            json!({ "operation": "token_acquisition", "districts": entries.len(),
                    "grant": self.settings.grant.as_str(), "duration_ms": duration_ms }),
        );

        let mut kept = Vec::with_capacity(entries.len());
        self.cycle.pending_probes.clear();
        let only_changed = std::mem::take(&mut self.cycle.relist_for_failures);
        for entry in entries {
            // On an early re-listing, a district whose token is unchanged and whose last probe
            // passed needs no new probe: probing all of them again for one failing district
            // would be a stampede every cooldown.
            let verified = only_changed
                && self
                    .status
                    .districts
                    .get(&entry.district_id)
                    .is_some_and(|r| r.consecutive_failures == 0 && r.last_success.is_some())
                && self
                    .kv
                    .get::<TokenEntry>(&keys::token(&entry.district_id))
                    .ok()
                    .flatten()
                    .is_some_and(|old| old.token == entry.token);
            if let Err(e) = self.kv.put(&keys::token(&entry.district_id), &entry) {
                log::event(
                    "error",
                    "store_write_failed",
                    json!({ "district": entry.district_id, "error": e.to_string() }),
                );
                continue;
            }
            let record = DistrictRecord {
                district_id: entry.district_id.clone(),
                expires_at: Some(entry.expires_at),
                refresh_at: Some(entry.refresh_at),
                last_success: Some(self.now),
                ..Default::default()
            };
            self.status
                .districts
                .insert(entry.district_id.clone(), record);
            if !verified {
                self.cycle.pending_probes.push(entry.district_id.clone());
            }
            kept.push(entry);
        }
        lifecycle::next_due(self.now, &kept, None, false, &self.timing)
    }

    /// Checks the new token against the data API; a token Clever refuses is deleted.
    fn probe(
        &mut self,
        entry: &TokenEntry,
        record: &mut DistrictRecord,
        versions: &mut VersionProbe,
    ) {
        let district = (entry.district_id != APP_TOKEN_ID).then_some(entry.district_id.as_str());
        let started = clock::now();
        let result = clever_client::probe(self.settings, district, &entry.token);
        let duration_ms = clock::now().saturating_sub(started);
        let response = match result {
            Ok(r) => r,
            Err(f) => {
                let e = transport_error("probe", &f);
                record.consecutive_failures = 1;
                log::event(
                    "warn",
                    "probe_failed",
                    json!({ "district": entry.district_id, "operation": "probe", "error_code": e.code,
                            "error": e.message, "duration_ms": duration_ms }),
                );
                record.last_error = Some(ErrorRecord {
                    code: e.code,
                    message: e.message,
                    at: self.now,
                });
                return;
            }
        };
        let limits = self.record_rate_limit(&response);
        versions.observe(self.settings, &response);
        if (200..300).contains(&response.status) {
            return;
        }
        let unsupported = clever_wire::is_version_not_supported(response.status, &response.body);
        let code = if unsupported {
            "version_unsupported".to_string()
        } else if response.status == 401 {
            "token_revoked".to_string()
        } else {
            classify_status(response.status).code().to_string()
        };
        record.consecutive_failures = 1;
        record.last_error = Some(ErrorRecord {
            code: code.clone(),
            message: format!(
                "probe: {}",
                clever_wire::error_summary(response.status, &response.body)
            ),
            at: self.now,
        });
        if response.status == 429 {
            record.rate_limited_until = limits.wait_until(429);
        }
        log::event(
            "warn",
            "probe_failed",
            json!({ "district": entry.district_id, "operation": "probe", "status": response.status, "error_code": code, "duration_ms": duration_ms }),
        );
        if response.status == 401 {
            // Clever refused this token: it must never be served. The district stays listed
            // (as failing) until a new listing brings a new token.
            let _ = self.kv.delete(&keys::token(&entry.district_id));
            record.expires_at = None;
            record.refresh_at = None;
        }
    }

    fn failed(&mut self, e: AttemptError, tokens: &[TokenEntry]) -> UnixMillis {
        let decision = self.cycle.retry.record(
            &self.policy(),
            e.outcome,
            self.now,
            e.hint_ms,
            self.settings.rate_limit_max_wait_secs.saturating_mul(1000),
            entropy::random01(),
        );
        let error = ErrorRecord {
            code: e.code.clone(),
            message: e.message.clone(),
            at: self.now,
        };
        self.status.service.consecutive_failures =
            self.status.service.consecutive_failures.saturating_add(1);
        self.status.service.failing_since.get_or_insert(self.now);
        self.status.service.last_error = Some(error.clone());
        if e.outcome.is_bad_credentials() {
            self.status.service.credentials = Some(CredentialState::Rejected);
        }
        let rate_limited = matches!(e.outcome, Outcome::Transient(TransientKind::RateLimited));
        self.status.service.rate_limited_until = match decision {
            Decision::RetryAt(at) if rate_limited => Some(at),
            _ => None,
        };
        let rate_limited_until = self.status.service.rate_limited_until;
        if rate_limited_until.is_some() {
            self.status
                .service
                .rate_limited_since
                .get_or_insert(self.now);
        } else {
            self.status.service.rate_limited_since = None;
        }
        for token in tokens {
            let record = self
                .status
                .districts
                .entry(token.district_id.clone())
                .or_default();
            record.district_id = token.district_id.clone();
            record.consecutive_failures = record.consecutive_failures.saturating_add(1);
            record.last_error = Some(error.clone());
            record.rate_limited_until = rate_limited_until;
        }
        let attempt = self.cycle.retry.attempts();
        match decision {
            Decision::RetryAt(at) => {
                let delay = self.cycle.retry.last_delay();
                if rate_limited {
                    let bucket = self.status.service.rate_limit.clone().unwrap_or_default();
                    log::event(
                        "warn",
                        "rate_limited",
                        json!({
                            "operation": "token_acquisition",
                            "bucket": bucket.name,
                            "limit": bucket.limit,
                            "remaining": bucket.remaining,
                            "reset": bucket.reset_at,
                            "delay_ms": at.saturating_sub(self.now),
                            "delay_source": delay.map(|d| format!("{:?}", d.source)),
                        }),
                    );
                }
                log::event(
                    "warn",
                    "acquisition_retry",
                    json!({ "operation": e.operation, "attempt": attempt, "status": e.status, "error_code": e.code, "error": e.message, "delay_ms": at.saturating_sub(self.now), "duration_ms": e.duration_ms }),
                );
                at
            }
            Decision::GiveUp | Decision::Done => {
                log::event(
                    "error",
                    "acquisition_failed",
                    json!({ "operation": e.operation, "attempt": attempt, "status": e.status, "error_code": e.code, "error": e.message, "retryable": e.outcome.is_retryable(), "duration_ms": e.duration_ms }),
                );
                if e.outcome.pauses_acquisition() {
                    // The same credentials will be refused again (and a request the outbound
                    // policy denied, denied again): wait for new ones (a secrets generation
                    // change makes the refresher due at once) or, failing that, a long pause,
                    // so neither hammers Clever nor cycles.
                    return self
                        .now
                        .saturating_add(BAD_CREDENTIALS_PAUSE_MS.max(self.timing.cooldown_ms));
                }
                lifecycle::next_due(self.now, tokens, None, true, &self.timing)
            }
        }
    }
}

fn transport_error(operation: &'static str, f: &Failure) -> AttemptError {
    let outcome = match f {
        Failure::Timeout => Outcome::Transient(TransientKind::Timeout),
        Failure::Connection(_) => Outcome::Transient(TransientKind::Connection),
        Failure::Invalid(_) => Outcome::Permanent(PermanentKind::UnexpectedStatus(0)),
        Failure::Denied { .. } => classify_transport(TransportFailure::Denied),
    };
    let code = match f {
        Failure::Invalid(_) => "request_invalid".to_string(),
        _ => outcome.code().to_string(),
    };
    AttemptError {
        outcome,
        code,
        message: format!("{operation}: {f}"),
        hint_ms: None,
        operation,
        status: None,
        duration_ms: 0,
    }
}

/// A 2xx whose body cannot be used: retried like a server error, old tokens keep serving.
fn malformed(operation: &'static str, status: u16, detail: &str) -> AttemptError {
    AttemptError {
        outcome: Outcome::Transient(TransientKind::ServerError(status)),
        code: "malformed_response".into(),
        message: format!("Clever's response could not be used: {detail}"),
        hint_ms: None,
        operation,
        status: Some(status),
        duration_ms: 0,
    }
}

/// Collects the version signals of all probes in one cycle.
#[derive(Default)]
struct VersionProbe {
    seen: BTreeSet<String>,
    header: Option<String>,
    unsupported: bool,
    answered: bool,
}

impl VersionProbe {
    fn observe(&mut self, settings: &Settings, response: &Response) {
        self.answered = true;
        if let Some(name) = &settings.version_header {
            if let Some(v) = response
                .header(name)
                .and_then(|h| clever_wire::version_from_header(&h))
            {
                self.header = Some(v);
            }
        }
        if (200..300).contains(&response.status) {
            self.seen
                .extend(clever_wire::detect_versions(&response.body));
        }
        self.unsupported |= clever_wire::is_version_not_supported(response.status, &response.body);
    }

    fn finish(self, configured: &str, now: UnixMillis) -> Option<VersionRecord> {
        if !self.answered {
            return None;
        }
        let mut seen = self.seen.clone();
        seen.extend(self.header.clone());
        let check =
            clever_wire::check_version(configured, &self.seen, self.header, self.unsupported);
        let state = match check {
            VersionCheck::Match => VersionState::Match,
            VersionCheck::Mismatch { .. } => VersionState::Mismatch,
            VersionCheck::Unsupported { .. } => VersionState::Unsupported,
            VersionCheck::Unknown => VersionState::Unknown,
        };
        if matches!(state, VersionState::Mismatch | VersionState::Unsupported) {
            log::event(
                "error",
                "api_version_problem",
                json!({ "problem": if state == VersionState::Unsupported { "unsupported" } else { "mismatch" },
                        "configured": configured, "seen": seen }),
            );
        }
        Some(VersionRecord {
            configured: configured.to_string(),
            seen: seen.into_iter().collect(),
            state,
            at: now,
        })
    }
}
