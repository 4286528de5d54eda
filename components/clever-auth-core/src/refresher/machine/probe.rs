//! Probing: each district's token checked against Clever in paced batches, and what a failed
//! probe or an API version problem does.

use super::{Machine, Phase, RELIST_BACKOFF_DOUBLINGS};
use crate::refresher::io::{Action, HttpResult, Request};
use crate::refresher::probes::{verdict, VersionProbe};
use crate::status::{ErrorRecord, VersionState};
use crate::UnixMillis;
use serde_json::json;

impl Machine {
    /// Queues the next batch of pending probes: districts still holding a usable token and
    /// not held back by their own rate limit (those wait their turn in the queue).
    pub(super) fn start_probes(&mut self, now: UnixMillis) {
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

    pub(super) fn on_probe(
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
}
