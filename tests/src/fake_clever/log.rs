//! The request log: what arrived, when, with which credentials (fingerprinted), and what the
//! fake did about it. Tests assert on it to see what the component under test really did.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::script::{Fault, Route, RouteMatch};
use super::state::lock;
use crate::fake_support::request::{fault_label, outcome_label, status_of, Outcome};

/// The authentication scheme of the `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    /// No `Authorization` header.
    Missing,
    /// `Basic` (client id/secret).
    Basic,
    /// `Bearer` (an access token).
    Bearer,
    /// Any other scheme, or a header that could not be decoded.
    Unsupported,
}

/// What the request presented as credentials. Raw secrets and tokens are never stored: only a
/// salted fingerprint, which [`super::FakeClever::fingerprint`] reproduces for a known value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSeen {
    pub scheme: AuthScheme,
    /// Whether the credentials were valid when the request arrived (Basic: the current client
    /// id/secret; Bearer: a live, unrevoked token).
    pub valid: bool,
    /// Fingerprint of `client_id:client_secret` (Basic) or of the token (Bearer).
    pub fingerprint: Option<String>,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Arrival order, from 0 (not reset by [`super::FakeClever::clear_requests`]).
    pub seq: u64,
    /// Arrival time on the monotonic clock.
    pub at: Instant,
    /// Arrival time as Unix epoch milliseconds.
    pub unix_ms: u64,
    pub method: String,
    /// Path and query, e.g. `/oauth/tokens?owner_type=district`.
    pub path_and_query: String,
    pub route: Route,
    /// The version path segment of a data request (`v3.0`).
    pub api_version: Option<String>,
    /// The district the request concerned: the `district` query parameter of the listing, the
    /// `{id}` of `/districts/{id}`, or else the district owning the presented token.
    pub district: Option<String>,
    /// The district owning the presented bearer token, also for rotated or revoked tokens.
    pub token_district: Option<String>,
    pub auth: AuthSeen,
    /// The scripted fault applied to this request, if any.
    pub fault: Option<Fault>,
    pub outcome: Outcome,
}

impl RequestRecord {
    /// The status sent, if a response was sent.
    pub fn status(&self) -> Option<u16> {
        status_of(self.outcome)
    }

    /// Whether this record matches a route/district target.
    pub fn matches(&self, target: &RouteMatch) -> bool {
        target.matches(self.route, self.district.as_deref())
    }

    /// Time from `earlier`'s arrival to this one's (zero if `earlier` came later).
    pub fn since(&self, earlier: &RequestRecord) -> Duration {
        self.at.saturating_duration_since(earlier.at)
    }

    /// A one-line summary without credentials, for logs and assertion messages.
    pub fn summary(&self) -> String {
        let outcome = outcome_label(self.outcome);
        let auth = match self.auth.scheme {
            AuthScheme::Missing => "no auth".to_string(),
            scheme => format!(
                "{} {}",
                format!("{scheme:?}").to_lowercase(),
                if self.auth.valid { "valid" } else { "invalid" }
            ),
        };
        let fault = fault_label(self.fault.as_ref());
        format!(
            "#{} {} {} -> {} ({}){}",
            self.seq, self.method, self.path_and_query, outcome, auth, fault
        )
    }
}

#[derive(Debug)]
pub(crate) struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
    next_seq: Mutex<u64>,
    // Bumped on every change so waiters wake without polling.
    changes: watch::Sender<u64>,
}

impl RequestLog {
    pub(crate) fn new() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            next_seq: Mutex::new(0),
            changes: watch::Sender::new(0),
        }
    }

    /// Appends a record (its `seq` is assigned here) and returns the seq.
    pub(crate) fn push(&self, mut record: RequestRecord) -> u64 {
        let seq = {
            let mut next = lock(&self.next_seq);
            let seq = *next;
            *next += 1;
            seq
        };
        record.seq = seq;
        lock(&self.records).push(record);
        self.changes.send_modify(|v| *v += 1);
        seq
    }

    pub(crate) fn set_fault(&self, seq: u64, fault: &Fault) {
        if let Some(r) = lock(&self.records).iter_mut().find(|r| r.seq == seq) {
            r.fault = Some(fault.clone());
        }
    }

    /// Sets the outcome; with `only_if_pending`, a decided outcome is kept. Returns the
    /// updated record when it changed.
    pub(crate) fn set_outcome(
        &self,
        seq: u64,
        outcome: Outcome,
        only_if_pending: bool,
    ) -> Option<RequestRecord> {
        let updated = {
            let mut records = lock(&self.records);
            let record = records.iter_mut().find(|r| r.seq == seq)?;
            if only_if_pending && record.outcome != Outcome::Pending {
                return None;
            }
            record.outcome = outcome;
            record.clone()
        };
        self.changes.send_modify(|v| *v += 1);
        Some(updated)
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        lock(&self.records).clone()
    }

    pub(crate) fn clear(&self) {
        lock(&self.records).clear();
        self.changes.send_modify(|v| *v += 1);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
