//! The refresher's run: decide what is due, ask for the calls, interpret the answers, and say
//! when the next run is due. This module holds the run itself (start, dispatch of answers,
//! finish); `acquire` the listing / client-credentials calls, `probe` the token probes,
//! `alerting` the alerts.

mod acquire;
mod alerting;
mod probe;

use super::cycle::{Cycle, SecretsView, CREDENTIALS_RECHECK_MS, RECHECK_MS};
use super::io::{transport_outcome, Action, HttpResult, LogEvent, Reply, Request};
use super::listing::Pages;
use super::probes::VersionProbe;
use crate::backoff::{classify_status, Outcome, RetryPolicy, TransientKind};
use crate::clever_wire;
use crate::lifecycle::{Timing, TokenEntry};
use crate::ratelimit::RateLimitInfo;
use crate::settings::{Grant, Settings};
use crate::status::{CredentialState, RelistRequest, StatusSnapshot};
use crate::UnixMillis;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};

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
