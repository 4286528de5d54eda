//! The refresher's run: decide what is due, ask for the calls, interpret the answers, and say
//! when the next run is due.

use super::cycle::{
    Cycle, SecretsView, BAD_CREDENTIALS_PAUSE_MS, CREDENTIALS_RECHECK_MS, RECHECK_MS,
};
use super::io::{Action, HttpResult, LogEvent, Reply, Request, TransportError};
use super::listing::{removable, Pages};
use super::probes::{verdict, VersionProbe};
use crate::alerts;
use crate::backoff::{
    classify_status, Decision, Outcome, PermanentKind, RetryPolicy, TransientKind,
};
use crate::clever_wire;
use crate::lifecycle::{diff_listing, Timing, TokenEntry, APP_TOKEN_ID};
use crate::ratelimit::RateLimitInfo;
use crate::settings::{Grant, Settings};
use crate::status::{CredentialState, ErrorRecord, RelistRequest, StatusSnapshot, VersionState};
use crate::UnixMillis;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How often the early re-listing after a failed probe doubles its wait (32 s becomes at
/// most 68 min at the default cooldown; it never passes the tokens' own refresh point).
const RELIST_BACKOFF_DOUBLINGS: u32 = 7;

/// Everything a run starts from, apart from the stored records.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub now: UnixMillis,
    pub settings: Settings,
    pub secrets: SecretsView,
    pub relist: Option<RelistRequest>,
    /// Two independent draws in `0..1`: retry jitter and refresh jitter.
    pub random: [f64; 2],
}

/// What a run leaves behind: the records to save and when to run again.
#[derive(Debug, Clone)]
pub struct Finished {
    pub cycle: Cycle,
    pub status: StatusSnapshot,
    /// `poll_timeout`: the next instant anything is due.
    pub next_due_at: UnixMillis,
}

/// A failed acquisition attempt, in the terms the retry policy and the health report use.
#[derive(Debug)]
struct AttemptError {
    outcome: Outcome,
    code: String,
    message: String,
    hint_ms: Option<u64>,
    operation: &'static str,
    status: Option<u16>,
}

#[derive(Debug)]
enum Phase {
    Listing(Pages),
    ClientCredentials,
    Probing {
        batch: Vec<String>,
        next: usize,
        versions: VersionProbe,
        failed: Vec<(String, Option<UnixMillis>)>,
    },
    Done,
}

pub struct Machine {
    settings: Settings,
    timing: Timing,
    secrets: SecretsView,
    relist: Option<RelistRequest>,
    random: [f64; 2],
    started: UnixMillis,
    cycle: Cycle,
    status: StatusSnapshot,
    tokens: BTreeMap<String, TokenEntry>,
    queue: VecDeque<Action>,
    awaiting_reply: bool,
    phase: Phase,
}

impl Machine {
    /// Starts a run from the stored cycle, status and tokens. Call only when [`Cycle::due`]
    /// said so (and holding the lease); a run that finds nothing to do still finishes cleanly.
    pub fn start(
        inputs: Inputs,
        cycle: Cycle,
        status: StatusSnapshot,
        tokens: Vec<TokenEntry>,
    ) -> Machine {
        let Inputs {
            now,
            settings,
            secrets,
            relist,
            random,
        } = inputs;
        let timing = Timing::from_settings(&settings);
        let mut m = Machine {
            timing,
            secrets,
            relist,
            random,
            started: now,
            cycle,
            status,
            tokens: BTreeMap::new(),
            queue: VecDeque::new(),
            awaiting_reply: false,
            phase: Phase::Done,
            settings,
        };
        m.cycle.spacing_ms = m.settings.retry_base_ms;
        m.status.service.last_run_at = Some(now);
        m.status.service.credentials_checked_at = Some(now);
        // Expired tokens are deleted so they can never be handed out; their district records
        // stay for the health report.
        for t in tokens {
            if t.usable(now, m.timing.skew_ms) {
                m.tokens.insert(t.district_id.clone(), t);
            } else {
                m.queue.push_back(Action::DeleteToken(t.district_id));
            }
        }
        let Some(fingerprint) = secrets.fingerprint else {
            m.status.service.credentials = Some(CredentialState::Missing);
            m.cycle.credentials_seen = false;
            return m;
        };
        let changed = m.cycle.credentials_changed(&secrets);
        if changed && m.cycle.credentials_seen {
            m.log(
                "info",
                "credentials_changed",
                json!({ "generation": secrets.generation }),
            );
        }
        let acquire = m.acquisition_due(now, fingerprint, changed);
        if changed {
            // New (or returned) credentials get a fresh retry budget: the old schedule was
            // theirs. Also when this run does not acquire (a server hint still holds it back):
            // the change is recorded below, so no later run would see it.
            m.cycle.retry.reset();
            m.cycle.rejected_fingerprint = None;
        }
        m.cycle.secrets_generation = secrets.generation;
        m.cycle.credentials_fingerprint = Some(fingerprint);
        m.cycle.credentials_seen = true;
        if m.status
            .service
            .credentials
            .is_none_or(|c| c == CredentialState::Missing)
            || (changed && m.status.service.credentials == Some(CredentialState::Rejected))
        {
            m.status.service.credentials = Some(CredentialState::Present);
        }
        if acquire {
            m.cycle.listing_started_at = Some(now);
            match m.settings.grant {
                Grant::DistrictTokens => {
                    m.phase = Phase::Listing(Pages::default());
                    m.queue
                        .push_back(Action::Http(Request::ListPage { url: None }));
                }
                Grant::ClientCredentials => {
                    m.phase = Phase::ClientCredentials;
                    m.queue.push_back(Action::Http(Request::ClientCredentials));
                }
            }
        } else {
            m.start_probes(now);
        }
        m
    }

    /// The token endpoint may be called now.
    fn acquisition_due(&self, now: UnixMillis, fingerprint: u64, changed: bool) -> bool {
        let c = &self.cycle;
        if changed {
            return true;
        }
        if c.rejected_fingerprint == Some(fingerprint) && now < c.refresh_due_at {
            return false;
        }
        if now < c.not_before {
            return false;
        }
        if let Some(at) = c.retry.next_attempt_at() {
            return now >= at;
        }
        now >= c.refresh_due_at
            || c.relist_at(self.relist.as_ref())
                .is_some_and(|at| now >= at)
    }

    /// An acquisition became due during this run (the credentials are unchanged: a change is
    /// acted on at the start of a run).
    fn acquisition_waiting(&self, now: UnixMillis) -> bool {
        let c = &self.cycle;
        if now < c.not_before {
            return false;
        }
        match c.retry.next_attempt_at() {
            Some(at) => now >= at,
            None => now >= c.refresh_due_at,
        }
    }

    /// The next thing to do; `None` when the run is over (call [`Machine::finish`]).
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.awaiting_reply {
            return None;
        }
        let action = self.queue.pop_front()?;
        if matches!(action, Action::Http(_)) {
            self.awaiting_reply = true;
        }
        Some(action)
    }

    /// The result of the last [`Action::Http`], received at `now`.
    pub fn on_http(&mut self, now: UnixMillis, result: HttpResult) {
        self.awaiting_reply = false;
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Listing(pages) => self.on_listing_page(now, pages, result),
            Phase::ClientCredentials => self.on_client_credentials(now, result),
            Phase::Probing {
                batch,
                next,
                versions,
                failed,
            } => self.on_probe(now, batch, next, versions, failed, result),
            Phase::Done => {}
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

    fn log(&mut self, level: &'static str, event: &'static str, fields: serde_json::Value) {
        self.queue.push_back(Action::Log(LogEvent {
            level,
            event,
            fields,
        }));
    }

    /// Turns a transport failure or a non-2xx status into an [`AttemptError`], recording the
    /// rate-limit headers every Clever response carries.
    fn checked(
        &mut self,
        operation: &'static str,
        now: UnixMillis,
        result: HttpResult,
    ) -> Result<Reply, AttemptError> {
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                let (outcome, code) = transport_outcome(&e);
                return Err(AttemptError {
                    outcome,
                    code: code.into(),
                    message: format!("{operation}: {e}"),
                    hint_ms: None,
                    operation,
                    status: None,
                });
            }
        };
        let limits = self.record_rate_limit(&reply, now);
        let outcome = classify_status(reply.status);
        if outcome.is_success() {
            return Ok(reply);
        }
        Err(AttemptError {
            outcome,
            code: outcome.code().to_string(),
            message: format!(
                "{operation}: {}",
                clever_wire::error_summary(reply.status, &reply.body)
            ),
            hint_ms: limits.retry_hint_ms(reply.status, now),
            operation,
            status: Some(reply.status),
        })
    }

    fn record_rate_limit(&mut self, reply: &Reply, now: UnixMillis) -> RateLimitInfo {
        let info = RateLimitInfo::from_headers(&reply.headers, now);
        if let Some(b) = info.binding() {
            self.status.service.rate_limit = Some(b.clone());
        }
        info
    }

    fn on_listing_page(&mut self, now: UnixMillis, mut pages: Pages, result: HttpResult) {
        let reply = match self.checked("token_listing", now, result) {
            Ok(r) => r,
            Err(e) => return self.failed(now, e),
        };
        let listing = match clever_wire::parse_district_tokens(&reply.body) {
            Ok(l) => l,
            Err(e) => {
                return self.failed(
                    now,
                    malformed("token_listing", reply.status, &e.to_string()),
                )
            }
        };
        if !listing.tokens.is_empty() {
            // Clever just listed districts: an earlier empty answer is not confirmed by the
            // next empty one (found by the simulation, seed 18).
            self.cycle.empty_listing_seen = false;
        }
        for skipped in &listing.skipped {
            self.log(
                "warn",
                "listing_entry_skipped",
                json!({ "district": skipped.district_id, "reason": format!("{:?}", skipped.reason) }),
            );
        }
        match pages.add(&self.settings.token_url, listing) {
            Err(detail) => self.failed(now, malformed("token_listing", reply.status, &detail)),
            Ok(Some(url)) => {
                self.phase = Phase::Listing(pages);
                self.queue
                    .push_back(Action::Http(Request::ListPage { url: Some(url) }));
            }
            Ok(None) => self.listing_complete(now, pages),
        }
    }

    fn listing_complete(&mut self, now: UnixMillis, mut pages: Pages) {
        let known: BTreeSet<String> = self.status.districts.keys().cloned().collect();
        let listed = std::mem::take(&mut pages.tokens);
        let diff = diff_listing(&known, listed, &self.settings.districts);
        let removed = removable(&known, &diff.kept, &pages);
        let wipes_all = !known.is_empty() && diff.kept.is_empty() && removed.len() == known.len();
        if wipes_all && !self.cycle.empty_listing_seen {
            // One empty answer must not wipe every token: a second listing confirms it. The
            // answer itself was a success: the retry schedule starts afresh.
            let policy = self.policy();
            self.cycle
                .retry
                .record(&policy, Outcome::Success, now, None, 0, 0.0);
            self.cycle.empty_listing_seen = true;
            let again = now.saturating_add(self.settings.retry_base_ms);
            self.cycle.refresh_due_at = again;
            self.cycle.not_before = again;
            self.log(
                "warn",
                "listing_unconfirmed",
                json!({ "districts": known.len(), "confirm_at": again,
                        "reason": "the listing would remove every district; asking again before deleting" }),
            );
            return self.start_probes(now);
        }
        self.cycle.empty_listing_seen = false;
        for id in &removed {
            self.remove_district(id);
        }
        let lifetime = self.timing.default_lifetime_ms;
        let fraction = self.refresh_fraction();
        let entries = diff
            .kept
            .into_iter()
            .map(|t| TokenEntry::new(t.district_id, t.token, t.scopes, now, lifetime, fraction))
            .collect();
        self.succeeded(now, entries, pages.pages);
    }

    fn on_client_credentials(&mut self, now: UnixMillis, result: HttpResult) {
        let reply = match self.checked("client_credentials", now, result) {
            Ok(r) => r,
            Err(e) => return self.failed(now, e),
        };
        let token = match clever_wire::parse_token_response(&reply.body) {
            Ok(t) => t,
            Err(e) => {
                return self.failed(
                    now,
                    malformed("client_credentials", reply.status, &e.to_string()),
                )
            }
        };
        let lifetime = token
            .expires_in
            .map_or(self.timing.default_lifetime_ms, |s| s.saturating_mul(1000));
        let others: Vec<String> = self
            .status
            .districts
            .keys()
            .filter(|id| *id != APP_TOKEN_ID)
            .cloned()
            .collect();
        for id in &others {
            self.remove_district(id);
        }
        let fraction = self.refresh_fraction();
        let entry = TokenEntry::new(
            APP_TOKEN_ID.to_string(),
            token.access_token,
            token.scopes,
            now,
            lifetime,
            fraction,
        );
        self.succeeded(now, vec![entry], 1);
    }

    /// The refresh point of a new cycle's tokens: the configured fraction, drawn up to
    /// `refresh_jitter` of it earlier when jitter is configured (it is off by default).
    fn refresh_fraction(&self) -> f64 {
        let jitter = self.settings.refresh_jitter * self.random[1].clamp(0.0, 1.0);
        self.timing.refresh_fraction * (1.0 - jitter)
    }

    fn remove_district(&mut self, id: &str) {
        self.queue.push_back(Action::DeleteToken(id.to_string()));
        self.tokens.remove(id);
        self.status.districts.remove(id);
        self.cycle.probe_failing.remove(id);
        self.cycle.pending_probes.retain(|p| p != id);
        self.log(
            "warn",
            "district_removed",
            json!({ "district": id, "reason": "no longer in Clever's complete listing or not allowed" }),
        );
    }

    fn succeeded(&mut self, now: UnixMillis, entries: Vec<TokenEntry>, pages: usize) {
        let policy = self.policy();
        self.cycle
            .retry
            .record(&policy, Outcome::Success, now, None, 0, 0.0);
        let service = &mut self.status.service;
        service.last_successful_auth = Some(now);
        service.credentials = Some(CredentialState::Accepted);
        service.consecutive_failures = 0;
        service.failing_since = None;
        service.rate_limited_until = None;
        service.rate_limited_since = None;
        service.last_error = None;
        self.cycle.rejected_fingerprint = None;
        let duration_ms = now.saturating_sub(self.cycle.listing_started_at.unwrap_or(now));
        self.log(
            "info",
            "tokens_acquired",
            json!({ "operation": "token_acquisition", "districts": entries.len(), "pages": pages,
                    "grant": self.settings.grant.as_str(), "duration_ms": duration_ms }),
        );
        let only_changed = std::mem::take(&mut self.cycle.relist_for_failures);
        self.cycle.pending_probes.clear();
        let mut refresh_due = None::<UnixMillis>;
        for entry in entries {
            let id = entry.district_id.clone();
            let failing = self.cycle.probe_failing.contains(&id);
            // On an early re-listing, a district whose token is unchanged and whose last probe
            // passed needs no new probe: probing all of them again for one failing district
            // would be a stampede every cooldown.
            let verified = only_changed
                && !failing
                && self
                    .tokens
                    .get(&id)
                    .is_some_and(|old| old.token == entry.token);
            let record = self.status.districts.entry(id.clone()).or_default();
            record.district_id = id.clone();
            record.expires_at = Some(entry.expires_at);
            record.refresh_at = Some(entry.refresh_at);
            record.last_success = Some(now);
            if record.rate_limited_until.is_some_and(|t| t <= now) {
                record.rate_limited_until = None;
            }
            if !failing {
                // A probe's verdict stands until the next probe; only the acquisition's own
                // failures are cleared by a successful acquisition.
                record.consecutive_failures = 0;
                record.last_error = None;
            }
            refresh_due = Some(refresh_due.map_or(entry.refresh_at, |r| r.min(entry.refresh_at)));
            if !verified {
                self.cycle.pending_probes.push(id.clone());
            }
            self.tokens.insert(id, entry.clone());
            self.queue.push_back(Action::PutToken(entry));
        }
        self.cycle.refresh_due_at =
            refresh_due.unwrap_or(now.saturating_add(self.timing.cooldown_ms));
        self.cycle.not_before = now.saturating_add(self.settings.retry_base_ms);
        self.start_probes(now);
    }

    fn failed(&mut self, now: UnixMillis, e: AttemptError) {
        let policy = self.policy();
        let max_wait_ms = self.settings.rate_limit_max_wait_secs.saturating_mul(1000);
        let decision = self.cycle.retry.record(
            &policy,
            e.outcome,
            now,
            e.hint_ms,
            max_wait_ms,
            self.random[0],
        );
        let error = ErrorRecord {
            code: e.code.clone(),
            message: e.message.clone(),
            at: now,
        };
        let rate_limited = matches!(e.outcome, Outcome::Transient(TransientKind::RateLimited));
        let attempt = self.cycle.retry.attempts();
        let duration_ms = now.saturating_sub(self.cycle.listing_started_at.unwrap_or(now));
        // The next call: the retry's instant, or after giving up the cooldown (never `now`:
        // a permanent error must not be repeated back to back), never before a server hint.
        let hint_at = e.hint_ms.map(|h| now.saturating_add(h));
        let next = match decision {
            Decision::RetryAt(at) => at,
            Decision::GiveUp | Decision::Done if e.outcome.is_bad_credentials() => {
                // The same credentials will be refused again: wait for new ones (a changed
                // generation or fingerprint is due at once) or, failing that, a long pause.
                self.cycle.rejected_fingerprint = self.secrets.fingerprint;
                now.saturating_add(BAD_CREDENTIALS_PAUSE_MS.max(self.timing.cooldown_ms))
            }
            // The same request will be denied again until the configuration changes (under
            // Spin, a restart): the long pause, not the cooldown loop.
            Decision::GiveUp | Decision::Done if e.outcome.is_configuration_error() => {
                now.saturating_add(BAD_CREDENTIALS_PAUSE_MS.max(self.timing.cooldown_ms))
            }
            Decision::GiveUp | Decision::Done => now.saturating_add(self.timing.cooldown_ms),
        }
        .max(hint_at.unwrap_or(0));
        self.cycle.refresh_due_at = next;
        self.cycle.not_before = next;

        let service = &mut self.status.service;
        service.consecutive_failures = service.consecutive_failures.saturating_add(1);
        service.failing_since.get_or_insert(now);
        service.last_error = Some(error.clone());
        if e.outcome.is_bad_credentials() {
            service.credentials = Some(CredentialState::Rejected);
        }
        if rate_limited {
            service.rate_limited_until = Some(next);
            // The stretch of rate limiting lasts across retries and cycles until Clever
            // answers otherwise, so `rate_limited_prolonged` can fire.
            service.rate_limited_since.get_or_insert(now);
        } else {
            service.rate_limited_until = None;
            service.rate_limited_since = None;
        }
        let rate_limited_until = service.rate_limited_until;
        let ids: Vec<String> = self.tokens.keys().cloned().collect();
        for id in ids {
            let record = self.status.districts.entry(id.clone()).or_default();
            record.district_id = id;
            record.consecutive_failures = record.consecutive_failures.saturating_add(1);
            record.last_error = Some(error.clone());
            record.rate_limited_until = rate_limited_until.max(record.rate_limited_until);
        }
        match decision {
            Decision::RetryAt(at) => {
                if rate_limited {
                    let bucket = self.status.service.rate_limit.clone().unwrap_or_default();
                    let delay = self.cycle.retry.last_delay();
                    self.log(
                        "warn",
                        "rate_limited",
                        json!({
                            "operation": "token_acquisition",
                            "bucket": bucket.name,
                            "limit": bucket.limit,
                            "remaining": bucket.remaining,
                            "reset": bucket.reset_at,
                            "delay_ms": at.saturating_sub(now),
                            "delay_source": delay.map(|d| format!("{:?}", d.source)),
                        }),
                    );
                }
                self.log(
                    "warn",
                    "acquisition_retry",
                    json!({ "operation": e.operation, "attempt": attempt, "status": e.status, "error_code": e.code, "error": e.message, "delay_ms": at.saturating_sub(now), "duration_ms": duration_ms }),
                );
            }
            Decision::GiveUp | Decision::Done => {
                self.log(
                    "error",
                    "acquisition_failed",
                    json!({ "operation": e.operation, "attempt": attempt, "status": e.status, "error_code": e.code, "error": e.message, "retryable": e.outcome.is_retryable(), "next_attempt_in_ms": next.saturating_sub(now), "duration_ms": duration_ms }),
                );
            }
        }
        self.start_probes(now);
    }

    /// Queues the next batch of pending probes: districts still holding a usable token and
    /// not held back by their own rate limit (those wait their turn in the queue).
    fn start_probes(&mut self, now: UnixMillis) {
        let size = self.settings.probe_batch.max(1) as usize;
        let mut batch = Vec::new();
        let mut held = Vec::new();
        for id in std::mem::take(&mut self.cycle.pending_probes) {
            let Some(token) = self.tokens.get(&id) else {
                continue;
            };
            if !token.usable(now, self.timing.skew_ms) {
                continue;
            }
            let limited = self
                .status
                .districts
                .get(&id)
                .and_then(|r| r.rate_limited_until)
                .is_some_and(|t| t > now);
            if batch.len() < size && !limited {
                batch.push(id);
            } else {
                held.push(id);
            }
        }
        self.cycle.pending_probes = held;
        if batch.is_empty() {
            self.phase = Phase::Done;
            return;
        }
        self.phase = Phase::Probing {
            batch,
            next: 0,
            versions: VersionProbe::default(),
            failed: Vec::new(),
        };
        self.queue_probe();
    }

    fn queue_probe(&mut self) {
        let Phase::Probing { batch, next, .. } = &self.phase else {
            return;
        };
        let id = batch[*next].clone();
        if let Some(t) = self.tokens.get(&id) {
            let token = t.token.clone();
            self.queue.push_back(Action::Http(Request::Probe {
                district_id: id,
                token,
            }));
        }
    }

    fn on_probe(
        &mut self,
        now: UnixMillis,
        batch: Vec<String>,
        next: usize,
        mut versions: VersionProbe,
        mut failed: Vec<(String, Option<UnixMillis>)>,
        result: HttpResult,
    ) {
        let id = batch[next].clone();
        if let Ok(reply) = &result {
            self.record_rate_limit(reply, now);
            versions.observe(&self.settings, reply);
        }
        let verdict = verdict(&result, now);
        let record = self.status.districts.entry(id.clone()).or_default();
        record.district_id = id.clone();
        match verdict {
            Ok(()) => {
                record.consecutive_failures = 0;
                record.last_error = None;
                record.rate_limited_until = None;
                self.cycle.probe_failing.remove(&id);
            }
            Err(f) => {
                record.consecutive_failures = record.consecutive_failures.saturating_add(1);
                record.last_error = Some(ErrorRecord {
                    code: f.code.clone(),
                    message: f.message.clone(),
                    at: now,
                });
                record.rate_limited_until = f.rate_limited_until;
                if f.revoked {
                    // Clever refused this token: it must never be served. The district stays
                    // listed (as failing) until a new listing brings a new token.
                    record.expires_at = None;
                    record.refresh_at = None;
                }
                self.cycle.probe_failing.insert(id.clone());
                failed.push((id.clone(), f.rate_limited_until));
                let duration_ms = 0;
                self.log(
                    "warn",
                    "probe_failed",
                    json!({ "district": id, "operation": "probe", "status": f.status, "error_code": f.code, "error": f.message, "duration_ms": duration_ms }),
                );
                if f.revoked {
                    self.tokens.remove(&id);
                    self.queue.push_back(Action::DeleteToken(id.clone()));
                }
            }
        }
        if next + 1 < batch.len() && self.acquisition_waiting(now) {
            // The acquisition's time came while probing (a retry's exact instant, or the
            // refresh point): the rest of the batch waits, so the acquisition is late by at
            // most one probe.
            let rest = batch[next + 1..].to_vec();
            self.cycle.pending_probes.splice(0..0, rest);
        } else if next + 1 < batch.len() {
            self.phase = Phase::Probing {
                batch,
                next: next + 1,
                versions,
                failed,
            };
            return self.queue_probe();
        }
        if let Some(v) = versions.finish(&self.settings.api_version, now) {
            if matches!(v.state, VersionState::Mismatch | VersionState::Unsupported) {
                self.log(
                    "error",
                    "api_version_problem",
                    json!({ "problem": if v.state == VersionState::Unsupported { "unsupported" } else { "mismatch" },
                            "configured": v.configured, "seen": v.seen }),
                );
            }
            self.status.service.api_version = Some(v);
        }
        if !failed.is_empty() {
            // A failing probe is worth a fresh listing soon, not at the 75 % point, but not
            // before the cooldown (doubled with each further failure of the same district, so
            // a district that keeps failing does not cost a listing every cooldown), nor before
            // a district's own rate limit has passed.
            let held = failed
                .iter()
                .filter_map(|(_, until)| *until)
                .max()
                .unwrap_or(0);
            let streak = failed
                .iter()
                .filter_map(|(id, _)| self.status.districts.get(id))
                .map(|r| r.consecutive_failures)
                .max()
                .unwrap_or(1);
            let backoff = self
                .timing
                .cooldown_ms
                .saturating_mul(1 << streak.saturating_sub(1).min(RELIST_BACKOFF_DOUBLINGS));
            let relist = now.saturating_add(backoff).max(held);
            if relist < self.cycle.refresh_due_at && !self.cycle.retry.is_pending() {
                self.cycle.refresh_due_at = relist;
                self.cycle.relist_for_failures = true;
            }
        }
        self.phase = Phase::Done;
    }

    /// Ends the run: alerts evaluated, and the next instant anything is due.
    pub fn finish(mut self, now: UnixMillis) -> (Finished, Vec<Action>) {
        let now = now.max(self.started);
        self.update_alerts(now);
        let c = &self.cycle;
        let next_due_at = if self.secrets.fingerprint.is_none() {
            now.saturating_add(RECHECK_MS)
        } else {
            let acquisition = c
                .retry
                .next_attempt_at()
                .unwrap_or(c.refresh_due_at)
                .max(c.not_before);
            let mut next = acquisition;
            if let Some(at) = c.relist_at(self.relist.as_ref()) {
                next = next.min(at);
            }
            if c.rejected_fingerprint.is_some() {
                next = next.min(now.saturating_add(CREDENTIALS_RECHECK_MS));
            }
            if !c.pending_probes.is_empty() {
                let paced = now.saturating_add(self.settings.probe_pace_ms.max(1));
                let free = c
                    .pending_probes
                    .iter()
                    .map(|id| {
                        self.status
                            .districts
                            .get(id)
                            .and_then(|r| r.rate_limited_until)
                            .unwrap_or(0)
                    })
                    .min()
                    .unwrap_or(0);
                next = next.min(paced.max(free));
            }
            // Whatever was due has just been done: the next run is strictly later.
            next.max(now.saturating_add(1))
        };
        self.cycle.next_due_at = next_due_at;
        let logs = self.queue.drain(..).collect();
        (
            Finished {
                cycle: self.cycle,
                status: self.status,
                next_due_at,
            },
            logs,
        )
    }

    /// Raises and clears alerts against the snapshot about to be saved; each change is logged.
    fn update_alerts(&mut self, now: UnixMillis) {
        let thresholds = alerts::Thresholds {
            auth_failing_ms: self.settings.alert_auth_failing_secs.saturating_mul(1000),
            rate_limited_ms: self.settings.alert_rate_limited_secs.saturating_mul(1000),
            skew_ms: self.settings.expiry_skew_secs.saturating_mul(1000),
        };
        let current = alerts::evaluate(&self.status, &self.status.alerts, now, &thresholds);
        let changes = alerts::transitions(&self.status.alerts, &current);
        for a in changes.raised {
            self.log(
                "error",
                "alert_raised",
                json!({ "alert": a.alert, "district": a.district, "since": a.since }),
            );
        }
        for a in changes.cleared {
            self.log(
                "info",
                "alert_cleared",
                json!({ "alert_cleared": a.alert, "district": a.district, "since": a.since,
                        "duration_ms": now.saturating_sub(a.since) }),
            );
        }
        self.status.alerts = current;
    }
}

/// How a transport failure counts for the retry policy, and its health code.
pub(super) fn transport_outcome(e: &TransportError) -> (Outcome, &'static str) {
    match e {
        TransportError::Timeout => {
            let o = Outcome::Transient(TransientKind::Timeout);
            (o, o.code())
        }
        TransportError::Connection(_) => {
            let o = Outcome::Transient(TransientKind::Connection);
            (o, o.code())
        }
        TransportError::Invalid(_) => (
            Outcome::Permanent(PermanentKind::UnexpectedStatus(0)),
            "request_invalid",
        ),
        TransportError::Denied { .. } => {
            let o = crate::backoff::classify_transport(crate::backoff::TransportFailure::Denied);
            (o, o.code())
        }
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
    }
}
