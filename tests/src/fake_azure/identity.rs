//! The App Service managed identity endpoint fake: plain HTTP on loopback (as App Service's
//! own endpoint is), `x-identity-header` check, tokens with `expires_on` as a string.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::log::{impl_log_record, RequestLog};
use super::script::{Fault, FaultScript, SecretMatch};
use super::server::{Endpoint, Handler, Reply, Resp};
use super::util::{bounded, lock, random_guid, random_hex, unix_secs_now};
use super::{Outcome, DEFAULT_TOKEN_PREFIX, IDENTITY_API_VERSION};
use crate::fake_support::request::Arrival;
use crate::fake_support::request::{fault_label, outcome_label, status_of};
use crate::fake_support::response::{finish, status_code, JSON};
use crate::fake_support::script::apply_fault;
use crate::fake_support::util::OnDrop;

/// The path of the token endpoint, as on App Service.
const TOKEN_PATH: &str = "/msi/token";

/// Start-up settings; most can be changed at run time through [`FakeIdentityEndpoint`].
#[derive(Clone, Debug)]
pub struct FakeIdentityConfig {
    /// Where to listen; the default `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// The value `x-identity-header` must carry (`IDENTITY_HEADER`); random by default.
    pub header_secret: String,
    /// Tokens are `<prefix><n>`, n counting from 1.
    pub token_prefix: String,
    /// `expires_on` is now + this.
    pub token_lifetime: Duration,
    /// When set, tokens are shaped like JWTs whose payload's `oid` claim is this (what Azure
    /// names the identity's Redis user after): `<prefix><n>.<base64url claims>.fake`. They
    /// still start with the prefix, so the vault fake's default policy accepts them.
    pub object_id: Option<String>,
    /// The `client_id` reported for the system-assigned identity (no `client_id` asked for).
    pub system_client_id: String,
    /// User-assigned client ids that exist; `None` accepts any. Others get the 400
    /// "identity not assigned".
    pub user_assigned_client_ids: Option<Vec<String>>,
    /// Answer 400 without `metadata: true` (the SDK always sends it; App Service does not
    /// insist).
    pub require_metadata: bool,
    /// Bind, learn the port, but do not listen until [`FakeIdentityEndpoint::set_down`]`(false)`.
    pub start_down: bool,
    /// Print one line per finished request to stderr.
    pub echo_requests: bool,
}

impl Default for FakeIdentityConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            header_secret: random_hex(32),
            token_prefix: DEFAULT_TOKEN_PREFIX.to_string(),
            token_lifetime: Duration::from_secs(24 * 3600),
            object_id: None,
            system_client_id: random_guid(),
            user_assigned_client_ids: None,
            require_metadata: false,
            start_down: false,
            echo_requests: false,
        }
    }
}

/// What the request's `x-identity-header` was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityHeaderSeen {
    Missing,
    Wrong,
    Valid,
}

/// One request as the identity endpoint saw it.
#[derive(Clone, Debug)]
pub struct IdentityRequest {
    /// Arrival order, from 0 (not reset by [`FakeIdentityEndpoint::clear_requests`]).
    pub seq: u64,
    pub at: Instant,
    /// Arrival time as Unix epoch milliseconds.
    pub unix_ms: u64,
    pub method: String,
    pub path_and_query: String,
    pub api_version: Option<String>,
    /// `resource` query parameter, e.g. `https://vault.azure.net`.
    pub resource: Option<String>,
    /// `client_id` query parameter (a user-assigned identity).
    pub client_id: Option<String>,
    /// Whether `metadata: true` was sent.
    pub metadata: bool,
    pub identity_header: IdentityHeaderSeen,
    /// `x-ms-client-request-id` as sent by the client.
    pub client_request_id: Option<String>,
    /// The `n` of the token issued (`<prefix><n>`), on success.
    pub token_serial: Option<u64>,
    pub fault: Option<Fault>,
    pub outcome: Outcome,
}

impl IdentityRequest {
    /// The status sent, if a response was sent.
    pub fn status(&self) -> Option<u16> {
        status_of(self.outcome)
    }

    /// One line without the header secret, for logs and assertion messages.
    pub fn summary(&self) -> String {
        let outcome = outcome_label(self.outcome);
        let header = match self.identity_header {
            IdentityHeaderSeen::Missing => "no identity header",
            IdentityHeaderSeen::Wrong => "wrong identity header",
            IdentityHeaderSeen::Valid => "identity header ok",
        };
        let token = self
            .token_serial
            .map(|n| format!(" token#{n}"))
            .unwrap_or_default();
        let fault = fault_label(self.fault.as_ref());
        format!(
            "#{} {} {} -> {outcome} ({header}){token}{fault}",
            self.seq, self.method, self.path_and_query
        )
    }
}

impl_log_record!(IdentityRequest);

struct IdentityState {
    header_secret: String,
    token_prefix: String,
    token_lifetime: Duration,
    object_id: Option<String>,
    system_client_id: String,
    user_assigned_client_ids: Option<Vec<String>>,
    require_metadata: bool,
    /// `false`: every token request gets the 400 "identity not assigned".
    assigned: bool,
    issued: u64,
    response_delay: Duration,
}

struct IdentityCore {
    state: Mutex<IdentityState>,
    script: Mutex<FaultScript>,
    log: RequestLog<IdentityRequest>,
}

/// A running fake App Service identity endpoint. Cheap to clone; all clones control the same
/// server, which stops when the last clone is dropped or on [`Self::shutdown`].
#[derive(Clone)]
pub struct FakeIdentityEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<IdentityCore>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for FakeIdentityEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIdentityEndpoint")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl FakeIdentityEndpoint {
    /// Binds and starts serving (unless `config.start_down`). Must run inside a tokio
    /// runtime, which then drives the server.
    pub async fn start(config: FakeIdentityConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            HeaderValue::from_str(&config.header_secret).is_ok()
                && !config.header_secret.is_empty(),
            "the identity header secret must be a non-empty header value"
        );
        let core = Arc::new(IdentityCore {
            state: Mutex::new(IdentityState {
                header_secret: config.header_secret,
                token_prefix: config.token_prefix,
                token_lifetime: config.token_lifetime,
                object_id: config.object_id,
                system_client_id: config.system_client_id,
                user_assigned_client_ids: config.user_assigned_client_ids,
                require_metadata: config.require_metadata,
                assigned: true,
                issued: 0,
                response_delay: Duration::ZERO,
            }),
            script: Mutex::new(FaultScript::default()),
            log: RequestLog::new(config.echo_requests.then_some("fake-identity")),
        });
        let handler_core = core.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(handler_core.clone(), req)));
        let endpoint = Endpoint::bind(config.addr, None, handler, config.start_down)
            .context("starting the fake identity endpoint")?;
        Ok(Self {
            inner: Arc::new(Inner { core, endpoint }),
        })
    }

    /// Stops for good. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.endpoint.shutdown().await;
    }

    /// `http://127.0.0.1:PORT/msi/token`: the value for `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.inner.endpoint.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.endpoint.addr()
    }

    /// The value for `IDENTITY_HEADER`.
    pub fn header_secret(&self) -> String {
        lock(&self.inner.core.state).header_secret.clone()
    }

    /// Changes the expected `x-identity-header` (the old value gets 401 from now on).
    pub fn set_header_secret(&self, secret: impl Into<String>) {
        lock(&self.inner.core.state).header_secret = secret.into();
    }

    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` for a child process's environment.
    pub fn env_vars(&self) -> [(String, String); 2] {
        [
            ("IDENTITY_ENDPOINT".to_string(), self.endpoint()),
            ("IDENTITY_HEADER".to_string(), self.header_secret()),
        ]
    }

    /// The `client_id` reported for the system-assigned identity.
    pub fn system_client_id(&self) -> String {
        lock(&self.inner.core.state).system_client_id.clone()
    }

    /// `false`: every token request gets `400` "identity not assigned" (what the SDK reports
    /// as "The requested identity has not been assigned to this resource").
    pub fn set_identity_assigned(&self, assigned: bool) {
        lock(&self.inner.core.state).assigned = assigned;
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        lock(&self.inner.core.state).token_lifetime = lifetime;
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        lock(&self.inner.core.state).issued
    }

    /// The token issued as number `serial` (see [`IdentityRequest::token_serial`]).
    pub fn token(&self, serial: u64) -> String {
        let state = lock(&self.inner.core.state);
        token_value(&state.token_prefix, state.object_id.as_deref(), serial)
    }

    /// `true`: stop listening (connecting is refused) and reset open connections; `false`:
    /// listen again on the same port. Returns once in effect.
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        self.inner.endpoint.set_down(down).await
    }

    pub fn is_down(&self) -> bool {
        self.inner.endpoint.is_down()
    }

    /// Delays every answer by this much; `Duration::ZERO` turns it off.
    pub fn set_response_delay(&self, delay: Duration) {
        lock(&self.inner.core.state).response_delay = delay;
    }

    /// Queues one fault for the next request that presents the right identity header.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.inner.core.script).push(SecretMatch::Any, fault);
    }

    /// Every request with the right identity header gets this fault until cleared.
    pub fn set_persistent_fault(&self, fault: Fault) {
        lock(&self.inner.core.script).set_persistent(SecretMatch::Any, fault);
    }

    /// Drops every queued and persistent fault.
    pub fn clear_faults(&self) {
        lock(&self.inner.core.script).clear();
    }

    /// Every recorded request, in arrival order.
    pub fn requests(&self) -> Vec<IdentityRequest> {
        self.inner.core.log.snapshot()
    }

    /// Forgets recorded requests (sequence numbers keep counting).
    pub fn clear_requests(&self) {
        self.inner.core.log.clear();
    }

    /// Waits until at least `n` requests have arrived; returns all of them.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<IdentityRequest>> {
        let log = &self.inner.core.log;
        log.wait_for_count(n, timeout, "identity requests").await
    }

    /// Waits until `done` holds for the whole log; returns the log at that moment.
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        done: impl FnMut(&[IdentityRequest]) -> bool,
    ) -> anyhow::Result<Vec<IdentityRequest>> {
        self.inner
            .core
            .log
            .wait_for(timeout, "an identity log condition", done)
            .await
    }
}

async fn handle(core: Arc<IdentityCore>, req: Request<Incoming>) -> Reply {
    let Arrival {
        at,
        unix_ms,
        method,
        uri,
        path_and_query,
        query,
    } = Arrival::of(&req);
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| bounded(v))
    };
    let api_version = param("api-version");
    let resource = param("resource");
    let client_id = param("client_id");
    let headers = req.headers();
    let metadata = headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let client_request_id = headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(bounded);

    let (identity_header, delay) = {
        let state = lock(&core.state);
        // Compared here and dropped: the log keeps only the verdict.
        let seen = match headers.get("x-identity-header") {
            None => IdentityHeaderSeen::Missing,
            Some(v) if v.as_bytes() == state.header_secret.as_bytes() => IdentityHeaderSeen::Valid,
            Some(_) => IdentityHeaderSeen::Wrong,
        };
        (seen, state.response_delay)
    };

    let seq = core.log.push(IdentityRequest {
        seq: 0,
        at,
        unix_ms,
        method: method.to_string(),
        path_and_query,
        api_version: api_version.clone(),
        resource: resource.clone(),
        client_id: client_id.clone(),
        metadata,
        identity_header,
        client_request_id,
        token_serial: None,
        fault: None,
        outcome: Outcome::Pending,
    });
    // Marks the request abandoned if its future is dropped before an outcome was decided
    // (client hung up mid-delay, or the fake went down).
    let guard_core = core.clone();
    let _guard = OnDrop(move || guard_core.log.finish(seq, Outcome::Abandoned, true));

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let reply = if uri.path() != TOKEN_PATH {
        Reply::Respond(error_reply(StatusCode::NOT_FOUND, "Not found."))
    } else if method != Method::GET {
        Reply::Respond(error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET is supported.",
        ))
    } else if identity_header != IdentityHeaderSeen::Valid {
        Reply::Respond(error_reply(
            StatusCode::UNAUTHORIZED,
            match identity_header {
                IdentityHeaderSeen::Missing => {
                    "Unauthorized: the X-IDENTITY-HEADER request header is missing."
                }
                _ => "Unauthorized: the X-IDENTITY-HEADER request header is invalid.",
            },
        ))
    } else {
        let fault = lock(&core.script).take(None);
        if let Some(f) = &fault {
            core.log.update(seq, |r| r.fault = Some(f.clone()));
        }
        let request = TokenReq {
            metadata,
            api_version: api_version.as_deref(),
            resource: resource.as_deref(),
            client_id: client_id.as_deref(),
            seq,
        };
        apply(&core, &request, fault).await
    };
    core.log.finish(seq, reply.outcome(), false);
    reply
}

struct TokenReq<'a> {
    metadata: bool,
    api_version: Option<&'a str>,
    resource: Option<&'a str>,
    client_id: Option<&'a str>,
    seq: u64,
}

async fn apply(core: &IdentityCore, req: &TokenReq<'_>, fault: Option<Fault>) -> Reply {
    apply_fault(
        fault,
        async { issue_token(core, req) },
        fault_reply,
        |status, content_type, body| build(status, content_type, body, Vec::new()),
    )
    .await
}

fn fault_reply(fault: Fault) -> Resp {
    match fault {
        Fault::Status(400) => not_assigned(),
        Fault::Status(status) => {
            let code = status_code(status);
            match code.as_u16() {
                204 | 304 => build(code, None, Bytes::new(), Vec::new()),
                _ => error_reply(code, code.canonical_reason().unwrap_or("Error")),
            }
        }
        Fault::Forbidden => error_reply(StatusCode::FORBIDDEN, "Forbidden."),
        Fault::NotFound => error_reply(StatusCode::NOT_FOUND, "Not found."),
        Fault::Throttled { retry_after_secs } => {
            let body = error_json(StatusCode::TOO_MANY_REQUESTS, "Too many requests.");
            build(
                StatusCode::TOO_MANY_REQUESTS,
                Some(JSON),
                Bytes::from(body.to_string()),
                vec![(header::RETRY_AFTER, retry_after_secs.to_string())],
            )
        }
        Fault::MalformedJson => build(
            StatusCode::OK,
            Some(JSON),
            Bytes::from_static(b"{\"access_token\":\"fake-mi-tok"),
            Vec::new(),
        ),
        Fault::Delay(_)
        | Fault::DelayThen(..)
        | Fault::Hang
        | Fault::Reset
        | Fault::Custom { .. } => unreachable!("apply_fault plays these itself"),
    }
}

fn issue_token(core: &IdentityCore, req: &TokenReq<'_>) -> Resp {
    let issued = {
        let mut state = lock(&core.state);
        if state.require_metadata && !req.metadata {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "Required metadata header not specified.",
            );
        }
        if req.api_version != Some(IDENTITY_API_VERSION) {
            return error_reply(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Unsupported or missing api-version {:?}; expected {IDENTITY_API_VERSION}.",
                    req.api_version.unwrap_or_default()
                ),
            );
        }
        let Some(resource) = req.resource.filter(|r| !r.is_empty()) else {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "The resource parameter is required.",
            );
        };
        let known_client = match (req.client_id, &state.user_assigned_client_ids) {
            (Some(id), Some(known)) => known.iter().any(|k| k == id),
            _ => true,
        };
        if !state.assigned || !known_client {
            return not_assigned();
        }
        state.issued += 1;
        let serial = state.issued;
        let expires_on = unix_secs_now().saturating_add(state.token_lifetime.as_secs());
        let client_id = req
            .client_id
            .map(str::to_string)
            .unwrap_or_else(|| state.system_client_id.clone());
        (
            serial,
            json!({
                "access_token": token_value(&state.token_prefix, state.object_id.as_deref(), serial),
                // A string, as App Service sends it: the SDK fails on a number.
                "expires_on": expires_on.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }),
        )
    };
    let (serial, body) = issued;
    core.log.update(req.seq, |r| r.token_serial = Some(serial));
    build(
        StatusCode::OK,
        Some(JSON),
        Bytes::from(body.to_string()),
        Vec::new(),
    )
}

fn token_value(prefix: &str, object_id: Option<&str>, serial: u64) -> String {
    use base64::Engine as _;
    match object_id {
        None => format!("{prefix}{serial}"),
        Some(oid) => {
            let claims = json!({ "oid": oid, "n": serial }).to_string();
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
            format!("{prefix}{serial}.{payload}.fake")
        }
    }
}

/// App Service's answer when the identity (or the asked-for user-assigned one) is not there.
fn not_assigned() -> Resp {
    error_reply(
        StatusCode::BAD_REQUEST,
        "Unable to load the proper Managed Identity. The requested identity has not been \
         assigned to this resource.",
    )
}

fn error_json(status: StatusCode, message: &str) -> Value {
    json!({
        "statusCode": status.as_u16(),
        "message": message,
        "correlationId": random_guid(),
    })
}

fn error_reply(status: StatusCode, message: &str) -> Resp {
    build(
        status,
        Some(JSON),
        Bytes::from(error_json(status, message).to_string()),
        Vec::new(),
    )
}

fn build(
    status: StatusCode,
    content_type: Option<&str>,
    body: Bytes,
    extra: Vec<(header::HeaderName, String)>,
) -> Resp {
    let builder = Response::builder().status(status);
    finish(builder, content_type, body, extra, "fake identity error")
}
