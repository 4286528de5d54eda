//! The gateway: `GET`/`HEAD` `/clever/{district}/{version}/{path…}` is sent to
//! `{clever_api_base_url}/{version}/{path…}` with the district's token, and Clever's answer
//! comes back with the token never leaving. Every rule deciding what happens lives in
//! `clever_auth_core::gateway`; this module only executes: reads the store, sends, waits,
//! streams.

mod pause;
mod respond;
mod token;

use crate::bindings::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use crate::http_out::{self, Failure, Streaming};
use crate::kv::Kv;
use crate::{clock, config, entropy, log};
use clever_auth_core::backoff::RetryPolicy;
use clever_auth_core::gateway::echo::EchoMask;
use clever_auth_core::gateway::figures::GatewayFigures;
use clever_auth_core::gateway::outcome::{self, Next, Progress, Upstream};
use clever_auth_core::gateway::pacing::{self, Gate, PaceRecord};
use clever_auth_core::gateway::{headers, keys, target, versions, ErrorCode, GatewayError};
use clever_auth_core::ratelimit::RateLimitInfo;
use clever_auth_core::secret::AccessToken;
use clever_auth_core::settings::Settings;
use clever_auth_core::UnixMillis;
use serde_json::json;

pub use target::PREFIX;

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

enum Answer {
    Own(GatewayError),
    /// Clever's answer, the headers passed on, and the token the request carried.
    Clever(Streaming, Vec<(String, Vec<u8>)>, AccessToken),
}

pub fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let started = clock::now();
    let method = method_name(&request.method());
    let head = method == "HEAD";
    let mut trace = Trace::default();
    let answer = match serve(&request, &method, started, &mut trace) {
        Ok(a) => a,
        Err(e) => Answer::Own(e),
    };
    drop(request);
    let (status, error_code, observed) = match answer {
        Answer::Own(e) => {
            respond::error(out, &e, head);
            (e.status(), Some(e.code.as_str()), None)
        }
        Answer::Clever(upstream, headers, token) => {
            let status = upstream.status;
            let identity = upstream
                .header("content-encoding")
                .is_none_or(|v| v.trim().eq_ignore_ascii_case("identity"));
            let mut mask = EchoMask::new(token.expose().as_bytes());
            let passed = respond::pass(out, upstream, &headers, head, &mut mask);
            if mask.masked() > 0 {
                // The value itself never appears: the district and how often is enough to act.
                log::event(
                    "warn",
                    "gateway_echo_masked",
                    json!({ "district": trace.district, "masked": mask.masked() }),
                );
            }
            let observed = (identity && !head)
                .then(|| versions::observe(status, &passed.prefix, passed.complete, clock::now()))
                .flatten();
            let code = passed.broken.then_some("body_interrupted");
            (status, code, observed)
        }
    };
    finish(&trace, &method, status, error_code, observed, started);
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Patch => "PATCH".into(),
        Method::Options => "OPTIONS".into(),
        Method::Connect => "CONNECT".into(),
        Method::Trace => "TRACE".into(),
        Method::Other(o) => o.chars().take(16).collect(),
    }
}

fn serve(
    request: &IncomingRequest,
    method: &str,
    started: UnixMillis,
    trace: &mut Trace,
) -> Result<Answer, GatewayError> {
    let method = target::check_method(method)?;
    let target = target::parse(&request.path_with_query().unwrap_or_default())?;
    trace.district = Some(target.district.clone());
    trace.path = Some(target.log_path());
    let forwarded = headers::request_headers(&request.headers().entries())?;
    let kv = Kv::open().map_err(|e| {
        GatewayError::new(ErrorCode::NoValidToken, e.to_string()).retry_after(5_000)
    })?;
    let settings = config::checked(Some(&kv), started)
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
    trace.api_version = Some(settings.api_version.clone());
    let deadline = started.saturating_add(settings.gateway_deadline_ms);
    let district = target.district.as_str();
    let skew_ms = settings.expiry_skew_secs.saturating_mul(1000);

    let mut token = match token::usable(&kv, district, skew_ms) {
        Some(t) => t,
        None => {
            if token::unknown(&kv, &settings, district) {
                return Err(unknown_district(district));
            }
            token::request_relist(&kv, district, "no_usable_token");
            obtain(&kv, &settings, district, None, deadline, trace)?
        }
    };
    let url = target.upstream_url(&settings.api_base_url);
    let url = url::Url::parse(&url)
        .map_err(|e| GatewayError::bad_request(format!("the upstream URL cannot be built: {e}")))?;
    let policy = RetryPolicy {
        max_retries: settings.retry_max,
        base_ms: settings.retry_base_ms,
        multiplier: 2.0,
        max_delay_ms: settings.retry_max_delay_ms,
        jitter: settings.retry_jitter,
    };
    let max_hold_ms = settings.rate_limit_max_wait_secs.saturating_mul(1000);
    let mut progress = Progress::default();
    loop {
        let now = clock::now();
        let pace = kv.get::<PaceRecord>(&keys::pace(district)).ok().flatten();
        match pacing::gate(pace.as_ref(), now, deadline) {
            Gate::Go => {}
            Gate::WaitUntil(at) => wait(at, trace),
            Gate::Refuse(e) => return Err(e),
        }
        let now = clock::now();
        let timeout_ms = outcome::attempt_timeout_ms(now, deadline, settings.http_timeout_ms);
        if timeout_ms == 0 {
            return Err(GatewayError::new(
                ErrorCode::UpstreamTimeout,
                "the request's deadline passed before Clever answered",
            ));
        }
        let mut headers = forwarded.clone();
        headers.push((
            "authorization".into(),
            format!("Bearer {}", token.expose()).into_bytes(),
        ));
        trace.attempts += 1;
        let sent = http_out::send_streaming(http_out::Request {
            method: match method {
                target::Method::Get => Method::Get,
                target::Method::Head => Method::Head,
            },
            url: &url,
            headers,
            body: None,
            timeout_ms,
        });
        let now = clock::now();
        // Only an attempt that is not the whole story is worth an event of its own (the
        // request's `gateway_request` event counts the attempts): each event is a host call
        // and a JSON line the host parses.
        let plain = trace.attempts == 1 && sent.as_ref().is_ok_and(|r| r.status < 400);
        if !plain {
            log::event(
                "debug",
                "gateway_attempt",
                json!({ "district": district, "attempt": trace.attempts, "timeout_ms": timeout_ms,
                    "status": sent.as_ref().ok().map(|r| r.status),
                    "error": sent.as_ref().err().map(ToString::to_string),
                    "elapsed_ms": now.saturating_sub(started) }),
            );
        }
        let (response, failure) = match sent {
            Ok(r) => (Some(r), Upstream::Connection),
            Err(Failure::Timeout) => (None, Upstream::Timeout),
            Err(Failure::Connection(_)) => (None, Upstream::Connection),
            // Refused before sending (outbound policy, a URL wasi:http rejects): retrying
            // cannot help.
            Err(other) => {
                return Err(GatewayError::new(
                    ErrorCode::UpstreamUnreachable,
                    format!("the request to Clever was not sent: {other}"),
                ))
            }
        };
        let limits = response
            .as_ref()
            .map(|r| RateLimitInfo::from_headers(&r.headers, now))
            .unwrap_or_default();
        if let Some(r) = &response {
            if let Some(hold) = pacing::after_response(r.status, &limits, now, max_hold_ms) {
                let _ = kv.put(&keys::pace(district), &hold);
            }
        }
        let upstream = match &response {
            Some(r) => Upstream::Answered {
                status: r.status,
                limits: &limits,
            },
            None => failure,
        };
        let next = outcome::after_attempt(
            upstream,
            progress,
            &policy,
            now,
            deadline,
            entropy::random01(),
        );
        match next {
            Next::Deliver => {
                let Some(r) = response else {
                    return Err(GatewayError::new(
                        ErrorCode::UpstreamUnreachable,
                        "Clever could not be reached",
                    ));
                };
                let passed = headers::response_headers(&r.headers, method == target::Method::Head);
                return Ok(Answer::Clever(r, passed, token));
            }
            Next::ReplayWithNewToken => {
                if let Some(r) = response {
                    r.finish();
                }
                log::event(
                    "warn",
                    "gateway_token_refused",
                    json!({ "district": district, "status": 401 }),
                );
                token::drop_refused(&kv, district, &token);
                let relist_asked_at = token::request_relist(&kv, district, "token_refused");
                progress.replayed = true;
                let refused = token::Refused {
                    token: &token,
                    relist_asked_at,
                };
                token = obtain(&kv, &settings, district, Some(&refused), deadline, trace)?;
            }
            Next::RetryAt(at) => {
                if let Some(r) = response {
                    r.finish();
                }
                progress.retries += 1;
                wait(at, trace);
            }
            Next::Fail(e) => {
                if let Some(r) = response {
                    r.finish();
                }
                return Err(e);
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

fn wait(at: UnixMillis, trace: &mut Trace) {
    let before = clock::now();
    pause::until(at);
    trace.waited_ms = trace
        .waited_ms
        .saturating_add(clock::now().saturating_sub(before));
}

/// The request's event, its figures for health, and what its body said about API versions.
fn finish(
    trace: &Trace,
    method: &str,
    status: u16,
    error_code: Option<&str>,
    observed: Option<versions::VersionObservation>,
    started: UnixMillis,
) {
    let now = clock::now();
    if let Ok(kv) = Kv::open() {
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
        if let Some(o) = &observed {
            let previous = kv
                .get::<versions::VersionObservation>(keys::VERSIONS)
                .ok()
                .flatten();
            let _ = kv.put(keys::VERSIONS, o);
            // The same event as the probes', once per change: the log alert and the
            // api_version_problems counter see real traffic at once.
            let configured = trace.api_version.as_deref().unwrap_or_default();
            if versions::changed(previous.as_ref(), o) {
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
    let level = if status >= 500 { "warn" } else { "info" };
    log::event(
        level,
        "gateway_request",
        json!({
            "district": trace.district,
            "method": method,
            "path": trace.path,
            "status": status,
            "attempts": trace.attempts,
            "waited_ms": trace.waited_ms,
            "duration_ms": now.saturating_sub(started),
            "error_code": error_code,
        }),
    );
}
