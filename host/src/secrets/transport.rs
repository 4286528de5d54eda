//! The HTTP transport of the Azure SDK clients (Key Vault, the managed identity): the host's
//! TLS, a deadline per attempt, no SDK retries (the callers retry on their own schedule), each
//! request traced and its credentials pinned in the scrubber.

use crate::telemetry::spans;
use anyhow::{Context, Result};
use azure_core::http::{
    AsyncRawResponse, ClientOptions, HttpClient, Request, RetryOptions, Transport,
};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub(super) fn client_options(
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
    dependency: spans::Dependency,
) -> Result<ClientOptions> {
    let mut tls = (**tls).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .context("building the Azure SDK HTTP client")?;
    Ok(ClientOptions {
        retry: RetryOptions::none(),
        transport: Some(Transport::new(Arc::new(Traced {
            inner: http,
            dependency,
        }))),
        ..Default::default()
    })
}

/// The SDK's transport, each request in a client span (→ an Application Insights dependency):
/// method, host, port, path and status, never the query (the identity endpoint's) or a header
/// (the identity header, bearer tokens).
#[derive(Debug)]
struct Traced {
    inner: reqwest::Client,
    dependency: spans::Dependency,
}

#[async_trait::async_trait]
impl HttpClient for Traced {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        register_credentials(request);
        let url = request.url();
        let span = spans::client(
            self.dependency,
            request.method().as_str(),
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port(),
            url.path(),
        );
        let result = self
            .inner
            .execute_request(request)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(response) => spans::record_client_status(&span, u16::from(response.status())),
            // The kind only: the SDK's messages may quote the URL with its query.
            Err(e) => {
                let kind = format!("{:?}", e.kind());
                spans::record_client_error(&span, &kind, &kind)
            }
        }
        result
    }
}

/// The managed-identity access token (the bearer sent to Key Vault) and the identity header
/// (sent to the identity endpoint) are the current credentials of their kind: pinned in the
/// scrubber before the request leaves, so nothing the host emits afterwards can show them.
fn register_credentials(request: &Request) {
    use azure_core::http::headers::{HeaderName, AUTHORIZATION};
    const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-identity-header");
    let headers = request.headers();
    if let Some(auth) = headers.get_optional_str(&AUTHORIZATION) {
        let token = auth.split_once(' ').map_or(auth, |(_, t)| t);
        crate::redact::pin(crate::redact::Pin::ManagedIdentityToken, token);
    }
    if let Some(value) = headers.get_optional_str(&IDENTITY_HEADER) {
        crate::redact::pin(crate::redact::Pin::IdentityHeader, value);
    }
}
