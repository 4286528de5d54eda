//! A fake Clever: a real HTTP/1.1 server on loopback (TLS optional) that answers like Clever's
//! OAuth host and data API, can be scripted per test, and records every request.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use clever_auth_tests::fake_clever::{FakeClever, FakeCleverConfig, Route};
//!
//! let fake = FakeClever::start(FakeCleverConfig::default()).await?;
//! fake.fail_next(Route::TokenList, 2, 503);
//! // ... point the component at fake.token_url() / fake.api_base_url() ...
//! let seen = fake.wait_for_requests(Route::TokenList, 3, Duration::from_secs(5)).await?;
//! assert_eq!(seen[2].status(), Some(200));
//! # Ok(()) }
//! ```
//!
//! One base URL serves both hosts: `/oauth/tokens`, `/oauth/tokeninfo` (clever.com) and
//! `/{version}/...` (api.clever.com).

mod config;
mod log;
mod routes;
mod script;
mod server;
mod shared;
mod state;
pub(crate) mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use crate::fake_support::request::Outcome;
pub use config::{FakeCleverConfig, MultiBucketStyle, RateLimitBucket, RateLimitConfig};
pub use log::{AuthScheme, AuthSeen, RequestRecord};
pub use script::{Fault, RetryAfter, Route, RouteMatch};
pub use state::DistrictInfo;

use shared::Core;
use state::{lock, random_hex, random_u64, State};

/// A running fake Clever. Cheap to clone; all clones control the same server, which stops
/// when the last clone is dropped or on [`FakeClever::shutdown`].
#[derive(Clone)]
pub struct FakeClever {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    addr: SocketAddr,
    base_url: String,
    ca_pem: Option<String>,
    ca_der: Option<Vec<u8>>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Synchronous and runtime-free, so dropping outside tokio is fine too.
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for FakeClever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeClever")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl FakeClever {
    /// Binds, creates the initial districts and starts serving. Must run inside a tokio
    /// runtime, which then drives the server.
    pub async fn start(config: FakeCleverConfig) -> anyhow::Result<Self> {
        let tls = if config.tls {
            Some(tls::make_test_tls(&config.tls_names)?)
        } else {
            None
        };
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding the fake Clever to {}", config.addr))?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}");

        let mut state = State::new(&config);
        for id in &config.district_ids {
            state.add_district(id.clone());
        }
        for _ in 0..config.generated_districts {
            state.add_district(random_hex(24));
        }
        let core = Arc::new(Core {
            state: Mutex::new(state),
            script: Mutex::new(script::FaultScript::default()),
            log: log::RequestLog::new(),
            salt: random_u64(),
            echo: config.echo_requests,
            accepted: Arc::default(),
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let acceptor = tls
            .as_ref()
            .map(|t| TlsAcceptor::from(t.server_config.clone()));
        let task = tokio::spawn(server::accept_loop(
            listener,
            acceptor,
            core.clone(),
            shutdown_rx,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                addr,
                base_url,
                ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
                ca_der: tls.map(|t| t.ca_der),
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Stops accepting, closes every connection (hanging requests included) and waits until
    /// the listening socket is closed. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    // ----- addresses and TLS -----

    /// `http://127.0.0.1:PORT` (or `https://…` with TLS), no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The district-token listing and `client_credentials` endpoint: `<base>/oauth/tokens`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/tokens", self.inner.base_url)
    }

    /// `<base>/oauth/tokeninfo`.
    pub fn tokeninfo_url(&self) -> String {
        format!("{}/oauth/tokeninfo", self.inner.base_url)
    }

    /// The data API base (same as [`Self::base_url`]); versions are path segments under it.
    pub fn api_base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn is_tls(&self) -> bool {
        self.inner.ca_pem.is_some()
    }

    /// PEM of the CA that signed the server certificate (TLS only); trust it in clients.
    pub fn ca_pem(&self) -> Option<&str> {
        self.inner.ca_pem.as_deref()
    }

    /// DER of the same CA.
    pub fn ca_der(&self) -> Option<&[u8]> {
        self.inner.ca_der.as_deref()
    }

    // ----- client credentials -----

    pub fn client_id(&self) -> String {
        lock(&self.inner.core.state).client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        lock(&self.inner.core.state).client_secret.clone()
    }

    /// Replaces the accepted client id/secret (a rotated secret): the old pair gets 401 from
    /// now on. Issued tokens stay valid.
    pub fn set_client_credentials(&self, client_id: impl Into<String>, secret: impl Into<String>) {
        let mut state = lock(&self.inner.core.state);
        state.client_id = client_id.into();
        state.client_secret = secret.into();
    }

    // ----- districts and their tokens -----

    /// All districts, ordered by id.
    pub fn districts(&self) -> Vec<DistrictInfo> {
        lock(&self.inner.core.state)
            .districts
            .values()
            .cloned()
            .collect()
    }

    pub fn district_ids(&self) -> Vec<String> {
        lock(&self.inner.core.state)
            .districts
            .keys()
            .cloned()
            .collect()
    }

    pub fn district(&self, id: &str) -> Option<DistrictInfo> {
        lock(&self.inner.core.state).districts.get(id).cloned()
    }

    /// The token currently listed for a district.
    pub fn district_token(&self, id: &str) -> Option<String> {
        self.district(id).map(|d| d.token)
    }

    /// Connects a district (a new token appears in the listing). An existing id is returned
    /// unchanged.
    pub fn add_district(&self, id: impl Into<String>) -> DistrictInfo {
        lock(&self.inner.core.state).add_district(id.into())
    }

    /// Connects `n` districts with random ids, e.g. for scale tests.
    pub fn generate_districts(&self, n: usize) -> Vec<DistrictInfo> {
        let mut state = lock(&self.inner.core.state);
        (0..n).map(|_| state.add_district(random_hex(24))).collect()
    }

    /// Disconnects a district: it leaves the listing and its token gets 401. Returns whether
    /// it existed.
    pub fn remove_district(&self, id: &str) -> bool {
        lock(&self.inner.core.state).remove_district(id)
    }

    /// Clever resetting a leaked token: the listing shows a new token and the old one gets
    /// 401. Returns the new token.
    pub fn rotate_token(&self, id: &str) -> Option<String> {
        lock(&self.inner.core.state).rotate_token(id)
    }

    /// Revokes a district's token without replacing it: it stays listed but every use gets
    /// 401 (until [`Self::rotate_token`]). Returns whether the district exists.
    pub fn revoke_token(&self, id: &str) -> bool {
        lock(&self.inner.core.state).revoke_token(id)
    }

    // ----- client_credentials tokens -----

    /// `expires_in` for tokens issued from now on.
    pub fn set_client_credentials_lifetime_secs(&self, secs: u64) {
        lock(&self.inner.core.state).client_credentials_lifetime_secs = secs;
    }

    /// Invalidates every issued `client_credentials` token; returns how many were live.
    pub fn revoke_client_credentials_tokens(&self) -> usize {
        let mut state = lock(&self.inner.core.state);
        let now = Instant::now();
        let live = state.app_tokens.values().filter(|exp| **exp > now).count();
        state.app_tokens.clear();
        live
    }

    // ----- API versions -----

    pub fn set_supported_versions<I, S>(&self, versions: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        lock(&self.inner.core.state).supported_versions =
            versions.into_iter().map(Into::into).collect();
    }

    pub fn set_version_not_supported_status(&self, status: u16) {
        lock(&self.inner.core.state).version_not_supported_status = status;
    }

    /// Sends the served version in this response header on data responses (`None`: no header).
    pub fn set_version_header(&self, name: Option<&str>) {
        lock(&self.inner.core.state).version_header = name.map(str::to_string);
    }

    /// Answers data requests as if this version were served, whatever the path says: it
    /// appears in `links[].uri` and the version header (`None`: echo the requested version).
    pub fn set_served_version(&self, version: Option<&str>) {
        lock(&self.inner.core.state).served_version = version.map(str::to_string);
    }

    /// Serves the district-token listing `n` districts per page, linked by
    /// `links[rel=next]` (`starting_after=<last id>`), as Clever pages its listings; `None`
    /// serves every district on one page (the default).
    pub fn set_listing_page_size(&self, n: Option<usize>) {
        lock(&self.inner.core.state).listing_page_size = n.map(|n| n.max(1));
    }

    // ----- rate limits -----

    /// Replaces the buckets (counters restart).
    pub fn set_rate_limit(&self, config: RateLimitConfig) {
        lock(&self.inner.core.state).set_rate_limit(config);
    }

    // ----- scripted faults -----

    /// Queues one fault for the next matching request.
    pub fn push_fault(&self, target: impl Into<RouteMatch>, fault: Fault) {
        lock(&self.inner.core.script).push(target.into(), fault);
    }

    /// Queues the same fault for the next `n` matching requests.
    pub fn push_faults(&self, target: impl Into<RouteMatch>, n: usize, fault: Fault) {
        let target = target.into();
        let mut script = lock(&self.inner.core.script);
        for _ in 0..n {
            script.push(target.clone(), fault.clone());
        }
    }

    /// The next `n` matching requests get `status` (e.g. a burst of 503s).
    pub fn fail_next(&self, target: impl Into<RouteMatch>, n: usize, status: u16) {
        self.push_faults(target, n, Fault::Status(status));
    }

    /// From now on, every matching request without a queued fault gets this one (replaces a
    /// persistent fault with the same target).
    pub fn set_persistent_fault(&self, target: impl Into<RouteMatch>, fault: Fault) {
        lock(&self.inner.core.script).set_persistent(target.into(), fault);
    }

    /// Removes the persistent fault set for exactly this target; returns whether there was one.
    pub fn clear_persistent_fault(&self, target: impl Into<RouteMatch>) -> bool {
        lock(&self.inner.core.script).clear_persistent(&target.into())
    }

    /// Drops every queued and persistent fault.
    pub fn clear_faults(&self) {
        lock(&self.inner.core.script).clear();
    }

    /// Queued faults not yet consumed.
    pub fn queued_faults(&self) -> usize {
        lock(&self.inner.core.script).queued()
    }

    // ----- request log -----

    /// TCP connections accepted so far: with keep-alive, far fewer than requests.
    pub fn accepted_connections(&self) -> u64 {
        self.inner
            .core
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every recorded request, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.core.log.snapshot()
    }

    /// Recorded requests matching a target, in arrival order.
    pub fn requests_for(&self, target: impl Into<RouteMatch>) -> Vec<RequestRecord> {
        let target = target.into();
        self.requests()
            .into_iter()
            .filter(|r| r.matches(&target))
            .collect()
    }

    pub fn request_count(&self, target: impl Into<RouteMatch>) -> usize {
        self.requests_for(target).len()
    }

    /// Forgets recorded requests (sequence numbers keep counting).
    pub fn clear_requests(&self) {
        self.inner.core.log.clear();
    }

    /// Waits until at least `n` requests matching `target` have arrived; returns all matching
    /// requests. Errs after `timeout` with a summary of what did arrive.
    pub async fn wait_for_requests(
        &self,
        target: impl Into<RouteMatch>,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RequestRecord>> {
        let target = target.into();
        let records = self
            .wait_for_log(timeout, |all| {
                all.iter().filter(|r| r.matches(&target)).count() >= n
            })
            .await
            .with_context(|| format!("waiting for {n} requests matching {target:?}"))?;
        Ok(records.into_iter().filter(|r| r.matches(&target)).collect())
    }

    /// Waits until `n` requests matching `target` have an outcome (answered, reset, hung or
    /// abandoned); returns all matching requests.
    pub async fn wait_for_outcomes(
        &self,
        target: impl Into<RouteMatch>,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RequestRecord>> {
        let target = target.into();
        let records = self
            .wait_for_log(timeout, |all| {
                all.iter()
                    .filter(|r| r.matches(&target) && r.outcome != Outcome::Pending)
                    .count()
                    >= n
            })
            .await
            .with_context(|| format!("waiting for {n} finished requests matching {target:?}"))?;
        Ok(records.into_iter().filter(|r| r.matches(&target)).collect())
    }

    /// Waits until `done` holds for the whole log; returns the log at that moment.
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        done: impl FnMut(&[RequestRecord]) -> bool,
    ) -> anyhow::Result<Vec<RequestRecord>> {
        // Subscribing before the first look means no change can slip in unseen.
        let changes = self.inner.core.log.subscribe();
        crate::fake_support::wait::wait_for_log(
            changes,
            timeout,
            "the fake Clever's request log was dropped",
            || self.requests(),
            RequestRecord::summary,
            done,
        )
        .await
    }

    /// Every token this fake handed out that it still knows: the districts' listed tokens, the
    /// ones rotated away or of removed districts, and the live `client_credentials` tokens.
    /// Leak searches take their needles from here, not from a scrubber's idea of a secret.
    pub fn issued_tokens(&self) -> Vec<String> {
        let state = lock(&self.inner.core.state);
        state
            .districts
            .values()
            .map(|d| d.token.clone())
            .chain(state.retired_tokens.keys().cloned())
            .chain(state.app_tokens.keys().cloned())
            .collect()
    }

    /// The fingerprint the log would show for a credential: a token, or `id:secret` for Basic.
    pub fn fingerprint(&self, credential: &str) -> String {
        state::fingerprint(self.inner.core.salt, credential)
    }
}
