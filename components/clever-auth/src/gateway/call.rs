//! One gateway request as a sequence of turns, whoever carries the bytes: the component's own
//! wasi:http handler (under Spin) or the native host through the `clever:auth/gateway` export.
//! The carrier asks [`Call::start`], sends each [`Attempt`] it is given, reports what came
//! back with [`Call::sent`], passes Clever's body on when told to deliver, and ends with
//! [`Call::finish`]. Every rule deciding what happens lives in `clever_auth_core::gateway`;
//! this module reads the store, waits, and logs.

use super::first_read::{self, Limits};
use super::{pause, permits, token};
use crate::http_out::Failure;
use crate::kv::Kv;
use crate::{clock, config, entropy, log};
use clever_auth_core::backoff::RetryPolicy;
use clever_auth_core::gateway::budget::{self, BudgetRecord, Meter};
use clever_auth_core::gateway::figures::GatewayFigures;
use clever_auth_core::gateway::outcome::{self, Next, Progress, Upstream};
use clever_auth_core::gateway::pacing::{self, Gate, PaceRecord};
use clever_auth_core::gateway::{
    headers, keys, target, versions, ErrorCode, GatewayError, SOURCE_HEADER,
};
use clever_auth_core::ratelimit::RateLimitInfo;
use clever_auth_core::secret::AccessToken;
use clever_auth_core::settings::Settings;
use clever_auth_core::UnixMillis;
use serde_json::json;

pub type Header = (String, Vec<u8>);

/// One request to send to Clever.
pub struct Attempt {
    pub method: target::Method,
    pub url: url::Url,
    /// The caller's headers as forwarded; the token goes in `token`, never in here.
    pub headers: Vec<Header>,
    pub token: AccessToken,
    pub timeout_ms: u64,
}

impl Attempt {
    /// The headers to send, `Authorization` included.
    pub fn headers_with_token(&self) -> Vec<Header> {
        let mut all = self.headers.clone();
        all.push((
            "authorization".into(),
            format!("Bearer {}", self.token.expose()).into_bytes(),
        ));
        all
    }
}

pub enum Step {
    Send(Attempt),
    /// An answer of the gateway's own.
    Answer(GatewayError),
    /// Pass Clever's answer on with these headers, masking echoes of `token` in its body.
    Deliver {
        headers: Vec<Header>,
        token: AccessToken,
    },
}

/// Clever's answer to an attempt, without its body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<Header>,
}

/// What passing Clever's body on showed.
pub struct BodyReport {
    /// The first bytes of the body (at most [`versions::OBSERVE_LIMIT`]).
    pub prefix: Vec<u8>,
    /// `prefix` is the whole body.
    pub complete: bool,
    /// The body did not reach the client whole (Clever or the client went away).
    pub broken: bool,
    /// Echoes of the token masked.
    pub masked: u64,
}

/// The `gateway_request` event: one per request. The native host logs it from the record
/// `finish` returns; under Spin the component writes it on stderr ([`RequestEvent::log`]).
pub struct RequestEvent {
    pub district: Option<String>,
    pub method: String,
    pub path: Option<String>,
    pub status: u16,
    pub attempts: u32,
    pub waited_ms: u64,
    pub duration_ms: u64,
    pub error_code: Option<&'static str>,
}

impl RequestEvent {
    pub fn log(&self) {
        let level = if self.status >= 500 { "warn" } else { "info" };
        log::event(
            level,
            "gateway_request",
            json!({
                "district": self.district,
                "method": self.method,
                "path": self.path,
                "status": self.status,
                "attempts": self.attempts,
                "waited_ms": self.waited_ms,
                "duration_ms": self.duration_ms,
                "error_code": self.error_code,
            }),
        );
    }
}

/// What one request did, for its `gateway_request` event.
#[derive(Default)]
struct Trace {
    district: Option<String>,
    /// The configured API version, once the settings were read.
    api_version: Option<String>,
    path: Option<String>,
    attempts: u32,
    waited_ms: u64,
}

/// What a request needs once its target, settings and first token are known.
struct Ready {
    kv: Kv,
    settings: Settings,
    district: String,
    method: target::Method,
    url: url::Url,
    forwarded: Vec<Header>,
    token: AccessToken,
    deadline: UnixMillis,
    policy: RetryPolicy,
    max_hold_ms: u64,
    progress: Progress,
    /// Pace and budget as read with the token, for the first attempt (unless a wait for the
    /// token came between); later attempts read them afresh.
    first_limits: Option<Limits>,
    /// The district's budget as read before the last attempt, and the permits it took.
    budget: Option<BudgetRecord>,
    metered: Vec<Meter>,
    /// Permits come from this instance's reserved balance ([`permits::take`]).
    batches: bool,
}

/// How the request ended, for `finish`.
enum End {
    Own { status: u16, code: &'static str },
    Clever { status: u16, identity: bool },
}

pub struct Call {
    method: String,
    path_with_query: String,
    headers: Vec<Header>,
    started: UnixMillis,
    trace: Trace,
    ready: Option<Ready>,
    end: Option<End>,
}

impl Call {
    pub fn new(method: String, path_with_query: String, headers: Vec<Header>) -> Call {
        Call {
            method,
            path_with_query,
            headers,
            started: clock::now(),
            trace: Trace::default(),
            ready: None,
            end: None,
        }
    }

    pub fn head(&self) -> bool {
        self.method == "HEAD"
    }

    pub fn start(&mut self) -> Step {
        match self.prepare() {
            Ok(ready) => {
                self.ready = Some(ready);
                self.attempt()
            }
            Err(e) => self.answer(e),
        }
    }

    fn prepare(&mut self) -> Result<Ready, GatewayError> {
        let method = target::check_method(&self.method)?;
        let target = target::parse(&self.path_with_query)?;
        self.trace.district = Some(target.district.clone());
        self.trace.path = Some(target.log_path());
        let forwarded = headers::request_headers(&std::mem::take(&mut self.headers))?;
        let kv = Kv::open().map_err(|e| {
            GatewayError::new(ErrorCode::NoValidToken, e.to_string()).retry_after(5_000)
        })?;
        let settings = config::checked(Some(&kv), self.started)
            .settings()
            .map_err(|errors| {
                GatewayError::new(
                    ErrorCode::NoValidToken,
                    format!(
                        "the service's settings are invalid ({}); see the health endpoint",
                        errors
                            .iter()
                            .map(|e| e.setting)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .retry_after(5_000)
            })?;
        self.trace.api_version = Some(settings.api_version.clone());
        let deadline = self.started.saturating_add(settings.gateway_deadline_ms);
        let district = target.district.clone();
        let skew_ms = settings.expiry_skew_secs.saturating_mul(1000);
        let first = first_read::read(&kv, &district);
        let batches = first.shared_store;
        let (token, first_limits) = match token::usable(&kv, &district, skew_ms, first.tokens) {
            Some(t) => (t, first.limits),
            None => {
                if token::unknown(&kv, &settings, &district) {
                    return Err(unknown_district(&district));
                }
                token::request_relist(&kv, &district, "no_usable_token");
                let t = obtain(&kv, &settings, &district, None, deadline, &mut self.trace)?;
                // Waiting for the token made them old.
                (t, None)
            }
        };
        let url = target.upstream(&settings.api_base_url).map_err(|e| {
            GatewayError::bad_request(format!("the upstream URL cannot be built: {e}"))
        })?;
        let policy = RetryPolicy {
            max_retries: settings.retry_max,
            base_ms: settings.retry_base_ms,
            multiplier: 2.0,
            max_delay_ms: settings.retry_max_delay_ms,
            jitter: settings.retry_jitter,
        };
        let max_hold_ms = settings.rate_limit_max_wait_secs.saturating_mul(1000);
        Ok(Ready {
            kv,
            settings,
            district,
            method,
            url,
            forwarded,
            token,
            deadline,
            policy,
            max_hold_ms,
            progress: Progress::default(),
            first_limits,
            budget: None,
            metered: Vec::new(),
            batches,
        })
    }

    /// The next attempt, once the district's pace and its shared budget allow it.
    fn attempt(&mut self) -> Step {
        let Some(r) = self.ready.as_mut() else {
            return self.answer(out_of_turn());
        };
        // Each hold ends at a reset in the future and the deadline bounds them all; the cap
        // only guards against a store that answers nonsense.
        let mut admitted = false;
        let mut read = r.first_limits.take();
        for _ in 0..MAX_HOLDS {
            // What was read with the token serves the first pass only: a hold makes it old.
            let (pace, budget_read) = match read.take() {
                Some(l) => (l.pace, Some(l.budget)),
                None => (
                    r.kv.get::<PaceRecord>(&keys::pace(&r.district))
                        .ok()
                        .flatten(),
                    None,
                ),
            };
            match pacing::gate(pace.as_ref(), clock::now(), r.deadline) {
                Gate::Go => {}
                Gate::WaitUntil(at) => {
                    wait(at, &mut self.trace);
                    continue;
                }
                Gate::Refuse(e) => return self.answer(e),
            }
            let record = budget_read.unwrap_or_else(|| {
                r.kv.get::<BudgetRecord>(&keys::budget(&r.district))
                    .ok()
                    .flatten()
            });
            match take_permits(r, record) {
                Gate::Go => {
                    admitted = true;
                    break;
                }
                Gate::WaitUntil(at) => wait(at, &mut self.trace),
                Gate::Refuse(e) => return self.answer(e),
            }
        }
        let Some(r) = self.ready.as_ref() else {
            return self.answer(out_of_turn());
        };
        if !admitted {
            return self.answer(GatewayError::new(
                ErrorCode::RateLimited,
                "this district's Clever rate limit kept the request waiting too often",
            ));
        }
        let timeout_ms =
            outcome::attempt_timeout_ms(clock::now(), r.deadline, r.settings.http_timeout_ms);
        if timeout_ms == 0 {
            return self.answer(GatewayError::new(
                ErrorCode::UpstreamTimeout,
                "the request's deadline passed before Clever answered",
            ));
        }
        self.trace.attempts += 1;
        Step::Send(Attempt {
            method: r.method,
            url: r.url.clone(),
            headers: r.forwarded.clone(),
            token: r.token.clone(),
            timeout_ms,
        })
    }

    /// What Clever answered to the last attempt (or why it did not); the next step.
    pub fn sent(&mut self, sent: Result<Reply, Failure>) -> Step {
        let Some(r) = self.ready.as_mut() else {
            return self.answer(out_of_turn());
        };
        let district = r.district.as_str();
        let now = clock::now();
        // Only an attempt that is not the whole story is worth an event of its own (the
        // request's `gateway_request` event counts the attempts): each event is a host call
        // and a JSON line the host parses.
        let plain = self.trace.attempts == 1 && sent.as_ref().is_ok_and(|r| r.status < 400);
        if !plain {
            log::event(
                "debug",
                "gateway_attempt",
                json!({ "district": district, "attempt": self.trace.attempts,
                    "status": sent.as_ref().ok().map(|r| r.status),
                    "error": sent.as_ref().err().map(ToString::to_string),
                    "elapsed_ms": now.saturating_sub(self.started) }),
            );
        }
        let (reply, failure) = match sent {
            Ok(reply) => (Some(reply), Upstream::Connection),
            Err(Failure::Timeout) => (None, Upstream::Timeout),
            Err(Failure::Connection(_)) => (None, Upstream::Connection),
            // Refused before sending (outbound policy, a URL wasi:http rejects): retrying
            // cannot help.
            Err(other) => {
                return self.answer(GatewayError::new(
                    ErrorCode::UpstreamUnreachable,
                    format!("the request to Clever was not sent: {other}"),
                ))
            }
        };
        let limits = reply
            .as_ref()
            .map(|r| RateLimitInfo::from_headers(&r.headers, now))
            .unwrap_or_default();
        if let Some(reply) = &reply {
            if let Some(hold) = pacing::after_response(reply.status, &limits, now, r.max_hold_ms) {
                let _ = r.kv.put(&keys::pace(district), &hold);
            }
            let metered = std::mem::take(&mut r.metered);
            permits::learn(&r.kv, district, r.budget.as_ref(), &metered, &limits);
        } else {
            for key in budget::after_failure(&std::mem::take(&mut r.metered)) {
                let _ = r.kv.delete(&key);
            }
        }
        let upstream = match &reply {
            Some(reply) => Upstream::Answered {
                status: reply.status,
                limits: &limits,
            },
            None => failure,
        };
        let next = outcome::after_attempt(
            upstream,
            r.progress,
            &r.policy,
            now,
            r.deadline,
            entropy::random01(),
        );
        match next {
            Next::Deliver => {
                let Some(reply) = reply else {
                    return self.answer(GatewayError::new(
                        ErrorCode::UpstreamUnreachable,
                        "Clever could not be reached",
                    ));
                };
                let head = self.method == "HEAD";
                let mut passed = headers::response_headers(&reply.headers, head);
                passed.push((SOURCE_HEADER.into(), b"clever".to_vec()));
                let identity = reply
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
                    .is_none_or(|(_, v)| {
                        String::from_utf8_lossy(v)
                            .trim()
                            .eq_ignore_ascii_case("identity")
                    });
                self.end = Some(End::Clever {
                    status: reply.status,
                    identity,
                });
                Step::Deliver {
                    headers: passed,
                    token: r.token.clone(),
                }
            }
            Next::ReplayWithNewToken => {
                log::event(
                    "warn",
                    "gateway_token_refused",
                    json!({ "district": district, "status": 401 }),
                );
                token::drop_refused(&r.kv, district, &r.token);
                let relist_asked_at = token::request_relist(&r.kv, district, "token_refused");
                r.progress.replayed = true;
                let refused = token::Refused {
                    token: &r.token,
                    relist_asked_at,
                };
                match obtain(
                    &r.kv,
                    &r.settings,
                    district,
                    Some(&refused),
                    r.deadline,
                    &mut self.trace,
                ) {
                    Ok(t) => {
                        r.token = t;
                        self.attempt()
                    }
                    Err(e) => self.answer(e),
                }
            }
            Next::RetryAt(at) => {
                r.progress.retries += 1;
                wait(at, &mut self.trace);
                self.attempt()
            }
            Next::Fail(e) => self.answer(e),
        }
    }

    fn answer(&mut self, e: GatewayError) -> Step {
        self.end = Some(End::Own {
            status: e.status(),
            code: e.code.as_str(),
        });
        Step::Answer(e)
    }

    /// The request's figures for health and what its body said about API versions; returns
    /// its event. `body` is none for an own answer and for HEAD.
    pub fn finish(&mut self, body: Option<BodyReport>) -> RequestEvent {
        let (status, error_code, observed) = match self.end {
            Some(End::Own { status, code }) => (status, Some(code), None),
            Some(End::Clever { status, identity }) => {
                let masked = body.as_ref().map_or(0, |b| b.masked);
                if masked > 0 {
                    // The value itself never appears: the district and how often is enough.
                    log::event(
                        "warn",
                        "gateway_echo_masked",
                        json!({ "district": self.trace.district, "masked": masked }),
                    );
                }
                let observed = body
                    .as_ref()
                    .filter(|_| identity && !self.head())
                    .and_then(|b| versions::observe(status, &b.prefix, b.complete, clock::now()));
                let code = body
                    .as_ref()
                    .is_some_and(|b| b.broken)
                    .then_some("body_interrupted");
                (status, code, observed)
            }
            None => (500, Some("component_error"), None),
        };
        self.record(status, error_code, observed)
    }

    fn record(
        &mut self,
        status: u16,
        error_code: Option<&'static str>,
        observed: Option<versions::VersionObservation>,
    ) -> RequestEvent {
        let trace = &self.trace;
        let now = clock::now();
        let opened;
        let kv = match &self.ready {
            Some(r) => Some(&r.kv),
            None => {
                opened = Kv::open().ok();
                opened.as_ref()
            }
        };
        if let Some(kv) = kv {
            record_figures(kv, trace, status, observed.as_ref(), now);
        }
        RequestEvent {
            district: self.trace.district.take(),
            method: std::mem::take(&mut self.method),
            path: self.trace.path.take(),
            status,
            attempts: self.trace.attempts,
            waited_ms: self.trace.waited_ms,
            duration_ms: now.saturating_sub(self.started),
            error_code,
        }
    }
}

/// The district's figures for health, and the versions real traffic showed.
fn record_figures(
    kv: &Kv,
    trace: &Trace,
    status: u16,
    observed: Option<&versions::VersionObservation>,
    now: UnixMillis,
) {
    if let Some(d) = &trace.district {
        let key = keys::figures(d);
        let mut f = kv
            .get::<GatewayFigures>(&key)
            .ok()
            .flatten()
            .unwrap_or_default();
        f.record(status, now);
        let _ = kv.put(&key, &f);
    }
    if let Some(o) = observed {
        let last = kv
            .get::<versions::VersionObservation>(keys::VERSIONS_SHARED_HERE)
            .ok()
            .flatten();
        if !versions::worth_sharing(last.as_ref(), o) {
            return;
        }
        let _ = kv.put(keys::VERSIONS, o);
        let _ = kv.put(keys::VERSIONS_SHARED_HERE, o);
        // The same event as the probes', once per change: the log alert and the
        // api_version_problems counter see real traffic at once.
        let configured = trace.api_version.as_deref().unwrap_or_default();
        if versions::changed(last.as_ref(), o) {
            if let Some(problem) = versions::problem(o, configured) {
                log::event(
                    "error",
                    "api_version_problem",
                    json!({ "problem": problem, "configured": configured, "seen": o.seen,
                            "operation": "gateway" }),
                );
            }
        }
    }
}

fn obtain(
    kv: &Kv,
    settings: &Settings,
    district: &str,
    refused: Option<&token::Refused<'_>>,
    deadline: UnixMillis,
    trace: &mut Trace,
) -> Result<AccessToken, GatewayError> {
    match token::wait_for_new(kv, settings, district, refused, deadline, &mut trace.waited_ms) {
        Ok(t) => Ok(t),
        Err(token::Missing::Unknown) => Err(unknown_district(district)),
        Err(token::Missing::TimedOut) => Err(GatewayError::new(
            ErrorCode::NoValidToken,
            format!(
                "no valid token for district {district} arrived within the request's deadline; see the health endpoint"
            ),
        )
        .retry_after(settings.retry_base_ms.max(1_000))),
    }
}

fn unknown_district(district: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::UnknownDistrict,
        format!("district {district} has not authorised this application (or is not allowed by clever_districts)"),
    )
}

/// A carrier that reports an attempt before starting, or after the answer.
fn out_of_turn() -> GatewayError {
    GatewayError::new(
        ErrorCode::UpstreamUnreachable,
        "the gateway was driven out of turn (an attempt reported before it was started)",
    )
}

/// Holds in a row before a request gives up (see [`Call::attempt`]).
const MAX_HOLDS: usize = 16;

/// Takes the permits the district's budget calls for. A store that cannot count lets the
/// call go: Clever's own 429 still paces it.
fn take_permits(r: &mut Ready, record: Option<BudgetRecord>) -> Gate {
    let now = clock::now();
    r.budget = record;
    r.metered = budget::meters(r.budget.as_ref(), &r.district, now);
    let taken: Vec<(Meter, Option<i64>)> = r
        .metered
        .iter()
        .map(|m| (m.clone(), permits::take(&r.kv, m, r.batches)))
        .collect();
    budget::verdict(&taken, now, r.deadline)
}

fn wait(at: UnixMillis, trace: &mut Trace) {
    let before = clock::now();
    pause::until(at);
    trace.waited_ms = trace
        .waited_ms
        .saturating_add(clock::now().saturating_sub(before));
}
