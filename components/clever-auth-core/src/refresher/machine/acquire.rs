//! Acquisition: the token listing (paged) or the client-credentials grant, and what a
//! success or a failure of it does to the cycle, the tokens and the status.

use super::{malformed, AttemptError, Machine, Phase};
use crate::backoff::{Decision, Outcome, TransientKind};
use crate::clever_wire;
use crate::lifecycle::{diff_listing, TokenEntry, APP_TOKEN_ID};
use crate::refresher::io::{Action, HttpResult, Request};
use crate::refresher::listing::{removable, Pages};
use crate::refresher::BAD_CREDENTIALS_PAUSE_MS;
use crate::status::{CredentialState, ErrorRecord};
use crate::UnixMillis;
use serde_json::json;
use std::collections::BTreeSet;

impl Machine {
    pub(super) fn on_listing_page(
        &mut self,
        now: UnixMillis,
        mut pages: Pages,
        result: HttpResult,
    ) {
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

    pub(super) fn on_client_credentials(&mut self, now: UnixMillis, result: HttpResult) {
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
}
