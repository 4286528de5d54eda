//! The Key Vault fake: HTTPS on loopback with a test CA, the bearer challenge, versioned
//! secrets, scripted faults and a request log.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio_rustls::TlsAcceptor;

use super::log::{impl_log_record, RequestLog};
use super::script::{Fault, FaultScript, SecretMatch};
use super::server::{Endpoint, Handler, Reply, Resp};
use super::util::{bounded, lock, random_guid, random_hex, unix_secs_now};
use super::{Outcome, DEFAULT_TOKEN_PREFIX, KEYVAULT_RESOURCE};
use crate::fake_clever::tls::make_test_tls_for;
use crate::fake_support::request::Arrival;
use crate::fake_support::request::{fault_label, outcome_label, status_of};
use crate::fake_support::response::{finish, status_code, JSON};
use crate::fake_support::script::apply_fault;
use crate::fake_support::util::OnDrop;

/// Which bearer tokens the vault accepts (anything else gets the 401 challenge again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenPolicy {
    /// Tokens starting with this prefix, e.g. those the identity fake issues
    /// ([`super::DEFAULT_TOKEN_PREFIX`], the default).
    Prefix(String),
    /// Exactly this token.
    Exact(String),
    /// Any non-empty bearer token.
    AnyBearer,
    /// No token at all (every request is challenged): a revoked identity.
    RejectAll,
}

impl TokenPolicy {
    fn accepts(&self, token: &str) -> bool {
        !token.is_empty()
            && match self {
                Self::Prefix(prefix) => token.starts_with(prefix.as_str()),
                Self::Exact(expected) => token == expected,
                Self::AnyBearer => true,
                Self::RejectAll => false,
            }
    }
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self::Prefix(DEFAULT_TOKEN_PREFIX.to_string())
    }
}

/// Start-up settings; most can be changed at run time through [`FakeKeyVault`].
#[derive(Clone, Debug)]
pub struct FakeKeyVaultConfig {
    /// Where to listen; the default `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// The vault name: the host is `<name>.vault.azure.net` (in the certificate and in ids).
    pub vault_name: String,
    /// The tenant named in the challenge's `authorization` URL.
    pub tenant_id: String,
    /// The challenge's `resource` (the SDK asks the identity endpoint for this audience).
    pub resource: String,
    pub token_policy: TokenPolicy,
    /// Secrets to create at start (one version each).
    pub secrets: Vec<(String, String)>,
    /// Bind, learn the port, but do not listen until [`FakeKeyVault::set_down`]`(false)`.
    pub start_down: bool,
    /// Print one line per finished request to stderr.
    pub echo_requests: bool,
}

impl Default for FakeKeyVaultConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            vault_name: "clever-test".to_string(),
            tenant_id: "00000000-0000-4000-8000-00000000fa4e".to_string(),
            resource: KEYVAULT_RESOURCE.to_string(),
            token_policy: TokenPolicy::default(),
            secrets: Vec::new(),
            start_down: false,
            echo_requests: false,
        }
    }
}

/// Key Vault secret names: 1–127 characters, ASCII letters, digits and `-`.
pub fn is_valid_secret_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// One version of a secret, as the fake holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretVersionInfo {
    /// 32 lowercase hex characters, the last segment of the secret id.
    pub version: String,
    pub value: String,
    pub enabled: bool,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub updated: u64,
}

/// The `Authorization` a request presented. The token itself is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultAuthSeen {
    /// No `Authorization` header (the SDK's first, challenge-seeking request).
    Missing,
    /// `Bearer` with a token the vault accepts.
    Accepted,
    /// `Bearer` with a token the vault rejects.
    Rejected,
    /// Another scheme or an undecodable header.
    NotBearer,
}

/// One request as the vault saw it.
#[derive(Clone, Debug)]
pub struct VaultRequest {
    /// Arrival order, from 0 (not reset by [`FakeKeyVault::clear_requests`]).
    pub seq: u64,
    /// Arrival time on the monotonic clock.
    pub at: Instant,
    /// Arrival time as Unix epoch milliseconds.
    pub unix_ms: u64,
    pub method: String,
    /// Path and query, e.g. `/secrets/clever-client-id/?api-version=2025-07-01`.
    pub path_and_query: String,
    pub api_version: Option<String>,
    /// The `{name}` of `/secrets/{name}[/{version}]`.
    pub secret: Option<String>,
    /// The `{version}` segment, when the client asked for one.
    pub requested_version: Option<String>,
    /// The version in a `200` answer.
    pub served_version: Option<String>,
    pub auth: VaultAuthSeen,
    /// `x-ms-client-request-id` as sent by the client.
    pub client_request_id: Option<String>,
    /// The scripted fault applied to this request, if any.
    pub fault: Option<Fault>,
    pub outcome: Outcome,
}

impl VaultRequest {
    /// The status sent, if a response was sent.
    pub fn status(&self) -> Option<u16> {
        status_of(self.outcome)
    }

    /// Whether an `Authorization` header was present (any scheme).
    pub fn auth_present(&self) -> bool {
        self.auth != VaultAuthSeen::Missing
    }

    /// Whether a bearer token the vault accepts was presented.
    pub fn auth_valid(&self) -> bool {
        self.auth == VaultAuthSeen::Accepted
    }

    /// Time from `earlier`'s arrival to this one's (zero if `earlier` came later).
    pub fn since(&self, earlier: &VaultRequest) -> Duration {
        self.at.saturating_duration_since(earlier.at)
    }

    /// One line without credentials, for logs and assertion messages.
    pub fn summary(&self) -> String {
        let outcome = outcome_label(self.outcome);
        let auth = match self.auth {
            VaultAuthSeen::Missing => "no auth",
            VaultAuthSeen::Accepted => "bearer valid",
            VaultAuthSeen::Rejected => "bearer invalid",
            VaultAuthSeen::NotBearer => "not bearer",
        };
        let version = self
            .served_version
            .as_deref()
            .map(|v| format!(" version={v}"))
            .unwrap_or_default();
        let fault = fault_label(self.fault.as_ref());
        let request_id = self
            .client_request_id
            .as_deref()
            .map(|id| format!(" request-id={id}"))
            .unwrap_or_default();
        format!(
            "#{} {} {} -> {outcome} ({auth}){version}{fault}{request_id}",
            self.seq, self.method, self.path_and_query
        )
    }
}

impl_log_record!(VaultRequest);

struct VaultState {
    /// Versions oldest first; the last one is "the" secret. Deleted secrets are removed.
    secrets: BTreeMap<String, Vec<SecretVersionInfo>>,
    token_policy: TokenPolicy,
    tenant_id: String,
    resource: String,
    /// Applied to every request, the challenge included, before anything else.
    response_delay: Duration,
}

impl VaultState {
    fn set_secret(&mut self, name: &str, value: &str) -> String {
        let now = unix_secs_now();
        let version = random_hex(32);
        self.secrets
            .entry(name.to_string())
            .or_default()
            .push(SecretVersionInfo {
                version: version.clone(),
                value: value.to_string(),
                enabled: true,
                created: now,
                updated: now,
            });
        version
    }
}

struct VaultCore {
    state: Mutex<VaultState>,
    script: Mutex<FaultScript>,
    log: RequestLog<VaultRequest>,
    vault_host: String,
}

/// A running fake Key Vault. Cheap to clone; all clones control the same server, which stops
/// when the last clone is dropped or on [`FakeKeyVault::shutdown`].
#[derive(Clone)]
pub struct FakeKeyVault {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<VaultCore>,
    endpoint: Endpoint,
    url: String,
    ca_pem: String,
    ca_der: Vec<u8>,
}

impl std::fmt::Debug for FakeKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKeyVault")
            .field("url", &self.inner.url)
            .field("vault_host", &self.inner.core.vault_host)
            .finish_non_exhaustive()
    }
}

impl FakeKeyVault {
    /// Makes the test CA and certificate, binds and starts serving (unless
    /// `config.start_down`). Must run inside a tokio runtime, which then drives the server.
    pub async fn start(config: FakeKeyVaultConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.vault_name.is_empty()
                && config
                    .vault_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "vault name {:?}: letters, digits and '-' only",
            config.vault_name
        );
        let vault_host = format!("{}.vault.azure.net", config.vault_name);
        let tls = make_test_tls_for(
            "clever-auth fake Key Vault test CA",
            &vault_host,
            &["127.0.0.1", "localhost", "::1", &vault_host],
        )
        .context("making the fake Key Vault's test certificate")?;

        let mut state = VaultState {
            secrets: BTreeMap::new(),
            token_policy: config.token_policy,
            tenant_id: config.tenant_id,
            resource: config.resource,
            response_delay: Duration::ZERO,
        };
        for (name, value) in &config.secrets {
            state.set_secret(name, value);
        }
        let core = Arc::new(VaultCore {
            state: Mutex::new(state),
            script: Mutex::new(FaultScript::default()),
            log: RequestLog::new(config.echo_requests.then_some("fake-keyvault")),
            vault_host,
        });
        let handler_core = core.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(handler_core.clone(), req)));
        let endpoint = Endpoint::bind(
            config.addr,
            Some(TlsAcceptor::from(tls.server_config.clone())),
            handler,
            config.start_down,
        )
        .context("starting the fake Key Vault")?;
        let url = format!("https://{}/", endpoint.addr());
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                endpoint,
                url,
                ca_pem: tls.ca_pem,
                ca_der: tls.ca_der,
            }),
        })
    }

    /// Stops for good: closes the listener and every connection. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.endpoint.shutdown().await;
    }

    // ----- addresses and TLS -----

    /// `https://127.0.0.1:PORT/`, the vault URL to configure (with
    /// `verify_challenge_resource` off, as `127.0.0.1` is not under `vault.azure.net`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// `https://<name>.vault.azure.net:PORT/`: the URL for a client that resolves
    /// [`Self::vault_host`] to `127.0.0.1` and keeps challenge verification on.
    pub fn url_by_name(&self) -> String {
        format!(
            "https://{}:{}/",
            self.inner.core.vault_host,
            self.inner.endpoint.addr().port()
        )
    }

    /// `<name>.vault.azure.net` (in the certificate, and the host of secret ids).
    pub fn vault_host(&self) -> &str {
        &self.inner.core.vault_host
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.endpoint.addr()
    }

    pub fn port(&self) -> u16 {
        self.inner.endpoint.addr().port()
    }

    /// PEM of the CA that signed the server certificate; trust it in clients.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// DER of the same CA.
    pub fn ca_der(&self) -> &[u8] {
        &self.inner.ca_der
    }

    /// Writes the CA PEM to `<dir>/fake-keyvault-ca.pem` and returns the path.
    pub fn write_ca_pem(&self, dir: impl AsRef<Path>) -> anyhow::Result<PathBuf> {
        let path = dir.as_ref().join("fake-keyvault-ca.pem");
        std::fs::write(&path, &self.inner.ca_pem)
            .with_context(|| format!("writing the fake Key Vault CA to {}", path.display()))?;
        Ok(path)
    }

    // ----- secrets -----

    /// Creates a new version (the new current value) and returns its version id. Names the
    /// real vault would refuse are stored too but can never be fetched; see
    /// [`is_valid_secret_name`].
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        lock(&self.inner.core.state).set_secret(name, value)
    }

    /// All versions, oldest first (empty for an unknown or deleted secret).
    pub fn secret_versions(&self, name: &str) -> Vec<SecretVersionInfo> {
        lock(&self.inner.core.state)
            .secrets
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The current (latest) version.
    pub fn current_version(&self, name: &str) -> Option<SecretVersionInfo> {
        lock(&self.inner.core.state)
            .secrets
            .get(name)
            .and_then(|versions| versions.last().cloned())
    }

    /// The id the vault reports for a version: `https://<vault host>/secrets/<name>/<version>`.
    pub fn secret_id(&self, name: &str, version: &str) -> String {
        secret_id(&self.inner.core.vault_host, name, version)
    }

    /// Names of the secrets that exist.
    pub fn secret_names(&self) -> Vec<String> {
        lock(&self.inner.core.state)
            .secrets
            .keys()
            .cloned()
            .collect()
    }

    /// Disables the current version: fetching it gets `403 Forbidden` (`SecretDisabled`).
    /// Returns whether the secret exists.
    pub fn disable_secret(&self, name: &str) -> bool {
        self.set_enabled(name, false)
    }

    /// Re-enables the current version. Returns whether the secret exists.
    pub fn enable_secret(&self, name: &str) -> bool {
        self.set_enabled(name, true)
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> bool {
        let mut state = lock(&self.inner.core.state);
        match state.secrets.get_mut(name).and_then(|v| v.last_mut()) {
            Some(current) => {
                current.enabled = enabled;
                current.updated = unix_secs_now();
                true
            }
            None => false,
        }
    }

    /// Deletes every version: fetching gets `404 SecretNotFound`. Returns whether it existed.
    pub fn delete_secret(&self, name: &str) -> bool {
        lock(&self.inner.core.state).secrets.remove(name).is_some()
    }

    // ----- authentication -----

    pub fn set_token_policy(&self, policy: TokenPolicy) {
        lock(&self.inner.core.state).token_policy = policy;
    }

    /// The `WWW-Authenticate` value of the challenge.
    pub fn challenge(&self) -> String {
        challenge_header(&lock(&self.inner.core.state))
    }

    // ----- outage and faults -----

    /// `true`: stop listening (connecting is refused) and reset every open connection.
    /// `false`: listen again on the same port. Returns once in effect.
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        self.inner.endpoint.set_down(down).await
    }

    pub fn is_down(&self) -> bool {
        self.inner.endpoint.is_down()
    }

    /// Delays every answer (the challenge included) by this much; `Duration::ZERO` turns it
    /// off. Faults add their own delays on top.
    pub fn set_response_delay(&self, delay: Duration) {
        lock(&self.inner.core.state).response_delay = delay;
    }

    /// Queues one fault for the next matching authenticated request.
    pub fn push_fault(&self, target: impl Into<SecretMatch>, fault: Fault) {
        lock(&self.inner.core.script).push(target.into(), fault);
    }

    /// Queues the same fault for the next `n` matching authenticated requests.
    pub fn push_faults(&self, target: impl Into<SecretMatch>, n: usize, fault: Fault) {
        let target = target.into();
        let mut script = lock(&self.inner.core.script);
        for _ in 0..n {
            script.push(target.clone(), fault.clone());
        }
    }

    /// From now on, every matching authenticated request without a queued fault gets this one
    /// (a secret-specific fault wins over one for [`SecretMatch::Any`]).
    pub fn set_persistent_fault(&self, target: impl Into<SecretMatch>, fault: Fault) {
        lock(&self.inner.core.script).set_persistent(target.into(), fault);
    }

    /// Removes the persistent fault set for exactly this target; returns whether there was one.
    pub fn clear_persistent_fault(&self, target: impl Into<SecretMatch>) -> bool {
        lock(&self.inner.core.script).clear_persistent(&target.into())
    }

    /// Drops every queued and persistent fault (not the outage or the response delay).
    pub fn clear_faults(&self) {
        lock(&self.inner.core.script).clear();
    }

    /// Queued faults not yet consumed.
    pub fn queued_faults(&self) -> usize {
        lock(&self.inner.core.script).queued()
    }

    // ----- request log -----

    /// Every recorded request, in arrival order.
    pub fn requests(&self) -> Vec<VaultRequest> {
        self.inner.core.log.snapshot()
    }

    /// Recorded requests for one secret.
    pub fn requests_for(&self, secret: &str) -> Vec<VaultRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.secret.as_deref() == Some(secret))
            .collect()
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
    ) -> anyhow::Result<Vec<VaultRequest>> {
        let log = &self.inner.core.log;
        log.wait_for_count(n, timeout, "Key Vault requests").await
    }

    /// Waits until at least `n` requests were answered with `status`; returns those.
    pub async fn wait_for_status(
        &self,
        status: u16,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<VaultRequest>> {
        let all = self
            .wait_for_log(timeout, |all| {
                all.iter().filter(|r| r.status() == Some(status)).count() >= n
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| r.status() == Some(status))
            .collect())
    }

    /// Waits until `done` holds for the whole log; returns the log at that moment.
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        done: impl FnMut(&[VaultRequest]) -> bool,
    ) -> anyhow::Result<Vec<VaultRequest>> {
        self.inner
            .core
            .log
            .wait_for(timeout, "a Key Vault log condition", done)
            .await
    }
}

fn secret_id(vault_host: &str, name: &str, version: &str) -> String {
    format!("https://{vault_host}/secrets/{name}/{version}")
}

fn challenge_header(state: &VaultState) -> String {
    format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"{}\"",
        state.tenant_id, state.resource
    )
}

/// Headers every answer carries.
struct Common {
    client_request_id: Option<HeaderValue>,
}

async fn handle(core: Arc<VaultCore>, req: Request<Incoming>) -> Reply {
    let Arrival {
        at,
        unix_ms,
        method,
        uri,
        path_and_query,
        query,
    } = Arrival::of(&req);
    let api_version = query
        .iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| bounded(v));
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let (is_secret_path, secret, requested_version) = match segments.as_slice() {
        ["secrets", name] => (true, Some(bounded(name)), None),
        ["secrets", name, version] => (true, Some(bounded(name)), Some(bounded(version))),
        _ => (false, None, None),
    };
    let client_request_id_value = req.headers().get("x-ms-client-request-id").cloned();
    let client_request_id = client_request_id_value
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(bounded);

    let (auth, delay) = {
        let state = lock(&core.state);
        // The token lives only in this block; the log keeps the verdict.
        let auth = match req.headers().get(header::AUTHORIZATION) {
            None => VaultAuthSeen::Missing,
            Some(value) => match value.to_str().ok().and_then(|v| v.trim().split_once(' ')) {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    if state.token_policy.accepts(token.trim()) {
                        VaultAuthSeen::Accepted
                    } else {
                        VaultAuthSeen::Rejected
                    }
                }
                _ => VaultAuthSeen::NotBearer,
            },
        };
        (auth, state.response_delay)
    };

    let seq = core.log.push(VaultRequest {
        seq: 0,
        at,
        unix_ms,
        method: method.to_string(),
        path_and_query,
        api_version: api_version.clone(),
        secret: secret.clone(),
        requested_version: requested_version.clone(),
        served_version: None,
        auth,
        client_request_id,
        fault: None,
        outcome: Outcome::Pending,
    });
    // Marks the request abandoned if its future is dropped before an outcome was decided
    // (client hung up mid-delay, or the fake went down).
    let guard_core = core.clone();
    let _guard = OnDrop(move || guard_core.log.finish(seq, Outcome::Abandoned, true));
    let common = Common {
        client_request_id: client_request_id_value,
    };

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let reply = if auth != VaultAuthSeen::Accepted {
        Reply::Respond(unauthorized(&core, &common, auth))
    } else {
        let fault = lock(&core.script).take(secret.as_deref());
        if let Some(f) = &fault {
            core.log.update(seq, |r| r.fault = Some(f.clone()));
        }
        let request = Req {
            method: &method,
            is_secret_path,
            secret: secret.as_deref(),
            requested_version: requested_version.as_deref(),
            api_version: api_version.as_deref(),
            seq,
        };
        apply(&core, &common, &request, fault).await
    };
    core.log.finish(seq, reply.outcome(), false);
    reply
}

struct Req<'a> {
    method: &'a Method,
    is_secret_path: bool,
    secret: Option<&'a str>,
    requested_version: Option<&'a str>,
    api_version: Option<&'a str>,
    seq: u64,
}

async fn apply(core: &VaultCore, common: &Common, req: &Req<'_>, fault: Option<Fault>) -> Reply {
    let normal = async { normal(core, common, req) };
    apply_fault(
        fault,
        normal,
        |fault| fault_reply(core, common, req, fault),
        |status, content_type, body| build(common, status, content_type, body, Vec::new()),
    )
    .await
}

fn fault_reply(core: &VaultCore, common: &Common, req: &Req<'_>, fault: Fault) -> Resp {
    match fault {
        Fault::Status(status) => status_reply(core, common, status, req.secret),
        Fault::Forbidden => forbidden(common, req.secret),
        Fault::NotFound => secret_not_found(common, req.secret.unwrap_or("(none)")),
        Fault::Throttled { retry_after_secs } => error_reply(
            common,
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. \
                 Reason: VaultRequestTypeLimitReached",
            vec![(header::RETRY_AFTER, retry_after_secs.to_string())],
        ),
        Fault::MalformedJson => build(
            common,
            StatusCode::OK,
            Some(JSON),
            Bytes::from_static(b"{\"value\":\"trunc"),
            Vec::new(),
        ),
        Fault::Delay(_)
        | Fault::DelayThen(..)
        | Fault::Hang
        | Fault::Reset
        | Fault::Custom { .. } => unreachable!("apply_fault plays these itself"),
    }
}

fn normal(core: &VaultCore, common: &Common, req: &Req<'_>) -> Resp {
    if !req.is_secret_path {
        return error_reply(
            common,
            StatusCode::NOT_FOUND,
            "NotFound",
            "The fake Key Vault only serves /secrets/{name}[/{version}].",
            Vec::new(),
        );
    }
    if req.method != Method::GET {
        return error_reply(
            common,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The fake Key Vault only answers GET on secrets.",
            Vec::new(),
        );
    }
    if req.api_version.is_none_or(str::is_empty) {
        return error_reply(
            common,
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The api-version query parameter is required.",
            Vec::new(),
        );
    }
    let Some(name) = req.secret.filter(|n| is_valid_secret_name(n)) else {
        return error_reply(
            common,
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!(
                "The request URI contains an invalid name: {}",
                req.secret.unwrap_or_default()
            ),
            Vec::new(),
        );
    };
    let (found, vault_host) = {
        let state = lock(&core.state);
        let versions = state.secrets.get(name);
        let found = match req.requested_version {
            None => versions.and_then(|v| v.last()).cloned(),
            Some(wanted) => versions
                .and_then(|v| v.iter().find(|s| s.version == wanted))
                .cloned(),
        };
        (found, core.vault_host.clone())
    };
    let Some(found) = found else {
        let shown = match req.requested_version {
            Some(version) => format!("{name}/{version}"),
            None => name.to_string(),
        };
        return secret_not_found(common, &shown);
    };
    if !found.enabled {
        return error_body(
            common,
            StatusCode::FORBIDDEN,
            json!({"error": {
                "code": "Forbidden",
                "message": "Operation get is not allowed on a disabled secret.",
                "innererror": {"code": "SecretDisabled"}
            }}),
            "Forbidden",
            Vec::new(),
        );
    }
    core.log
        .update(req.seq, |r| r.served_version = Some(found.version.clone()));
    let body = json!({
        "value": found.value,
        "id": secret_id(&vault_host, name, &found.version),
        "attributes": {
            "enabled": true,
            "created": found.created,
            "updated": found.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90
        },
        "tags": {}
    });
    build(
        common,
        StatusCode::OK,
        Some(JSON),
        Bytes::from(body.to_string()),
        Vec::new(),
    )
}

fn unauthorized(core: &VaultCore, common: &Common, auth: VaultAuthSeen) -> Resp {
    let challenge = challenge_header(&lock(&core.state));
    let message = match auth {
        VaultAuthSeen::Rejected => {
            "AKV10032: Invalid token: the fake Key Vault does not accept this bearer token."
        }
        _ => "AKV10000: Request is missing a Bearer or PoP token.",
    };
    error_reply(
        common,
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        message,
        vec![(header::WWW_AUTHENTICATE, challenge)],
    )
}

fn forbidden(common: &Common, secret: Option<&str>) -> Resp {
    error_body(
        common,
        StatusCode::FORBIDDEN,
        json!({"error": {
            "code": "Forbidden",
            "message": format!(
                "The user, group or application does not have secrets get permission on key \
                 vault (fake). Secret: {}",
                secret.unwrap_or("(none)")
            ),
            "innererror": {"code": "AccessDenied"}
        }}),
        "Forbidden",
        Vec::new(),
    )
}

fn secret_not_found(common: &Common, shown: &str) -> Resp {
    error_reply(
        common,
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {shown} was not found in this key vault. If you recently \
             deleted this secret you may be able to recover it using the correct recovery \
             command."
        ),
        Vec::new(),
    )
}

fn status_reply(core: &VaultCore, common: &Common, status: u16, secret: Option<&str>) -> Resp {
    let code = status_code(status);
    match code.as_u16() {
        204 | 304 => build(common, code, None, Bytes::new(), Vec::new()),
        401 => unauthorized(core, common, VaultAuthSeen::Missing),
        403 => forbidden(common, secret),
        404 => secret_not_found(common, secret.unwrap_or("(none)")),
        _ => {
            let error_code = match code.as_u16() {
                400 => "BadParameter",
                409 => "Conflict",
                429 => "Throttled",
                500 => "InternalServerError",
                502 => "BadGateway",
                503 => "ServiceUnavailable",
                504 => "GatewayTimeout",
                _ => "Error",
            };
            let message = code.canonical_reason().unwrap_or("Error");
            error_reply(common, code, error_code, message, Vec::new())
        }
    }
}

fn error_reply(
    common: &Common,
    status: StatusCode,
    code: &str,
    message: &str,
    extra: Vec<(header::HeaderName, String)>,
) -> Resp {
    error_body(
        common,
        status,
        json!({"error": {"code": code, "message": message}}),
        code,
        extra,
    )
}

/// An error JSON body, with its code also in `x-ms-error-code` as Key Vault sends it.
fn error_body(
    common: &Common,
    status: StatusCode,
    body: Value,
    code: &str,
    mut extra: Vec<(header::HeaderName, String)>,
) -> Resp {
    extra.push((
        header::HeaderName::from_static("x-ms-error-code"),
        code.to_string(),
    ));
    build(
        common,
        status,
        Some(JSON),
        Bytes::from(body.to_string()),
        extra,
    )
}

fn build(
    common: &Common,
    status: StatusCode,
    content_type: Option<&str>,
    body: Bytes,
    extra: Vec<(header::HeaderName, String)>,
) -> Resp {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-ms-request-id", random_guid())
        .header("x-ms-keyvault-service-version", "1.9.0.0-fake");
    if let Some(id) = &common.client_request_id {
        builder = builder.header("x-ms-client-request-id", id.clone());
    }
    finish(builder, content_type, body, extra, "fake Key Vault error")
}
