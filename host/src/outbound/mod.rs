//! Outbound HTTP policy for the component's `wasi:http` calls: which hosts, which schemes, and
//! the TLS configuration (TLS ≥ 1.2, extra CA) and the pool of kept-alive connections, applied in wasmtime-wasi-http's
//! `send_request` hook. A 401 from the token endpoint is reported to the secrets room, which
//! re-reads the Clever credentials.

mod body_timeout;
mod connector;
mod policy;
mod send;
pub mod tls;

pub use policy::{Denied, Policy};
pub use send::Upstream;

use http::Request;
use std::future::Future;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// Called with the token endpoint's host when it answers 401.
pub type OnUnauthorized = Arc<dyn Fn() + Send + Sync>;

/// Process-wide outbound settings, shared by every instance.
pub struct Outbound {
    pub policy: Policy,
    /// The kept-alive upstream connections, opened with the host's TLS configuration.
    pub upstream: Upstream,
    /// `(host, path)` of the token endpoint, whose 401 means "credentials rejected".
    pub token_endpoint: Option<(String, String)>,
    pub on_unauthorized: Option<OnUnauthorized>,
}

/// The per-store hooks object wasmtime-wasi-http calls.
#[derive(Clone)]
pub struct OutboundHooks(pub Arc<Outbound>);

impl Outbound {
    /// Sends one request under the policy (scheme, allowed hosts), over the pool; a 401 from
    /// the token endpoint is reported. The component's wasi:http requests and the gateway's
    /// native forwarding both come through here.
    pub async fn send(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        self.send_over(&self.upstream, request, options).await
    }

    /// [`Outbound::send`] over `upstream`'s connections instead of the process's pool.
    pub async fn send_over(
        &self,
        upstream: &Upstream,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let https = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
        let authority = request.uri().authority().map(|a| a.as_str().to_string());
        let path = request.uri().path().to_string();
        if let Err(denied) = self.policy.check(https, authority.as_deref()) {
            tracing::warn!(operation = "outbound", reason = %denied, "outbound request refused");
            return Err(Error::InternalError(Some(format!(
                "{POLICY_REFUSAL}{denied}"
            ))));
        }
        let (response, _io) = send::send(request, options, upstream).await?;
        if response.status() == http::StatusCode::UNAUTHORIZED {
            let host = authority.as_deref().map(policy::host_of);
            let is_token_endpoint = self
                .token_endpoint
                .as_ref()
                .is_some_and(|(h, p)| Some(h) == host.as_ref() && path.starts_with(p.as_str()));
            if is_token_endpoint {
                if let Some(callback) = &self.on_unauthorized {
                    callback();
                }
            }
        }
        Ok(response)
    }
}

/// How a refusal by the policy begins (the component tells it from a connection failure by
/// this prefix: retrying cannot help).
pub const POLICY_REFUSAL: &str = "outbound policy: ";

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        _ = fut;
        let outbound = self.0.clone();
        Box::new(async move {
            let response = outbound.send(request, options).await?;
            // The pool's tasks drive the connection; nothing is left for wasi:http to drive.
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}
