//! Azure Key Vault through the App Service managed identity.
//!
//! The SDK's own retry policy is switched off (its default made a fetch against an unreachable
//! vault take about 80 s): the poller retries with its own bounded, jittered backoff, and each
//! attempt has a deadline. TLS uses the host's outbound configuration (TLS ≥ 1.2, extra CA).

use super::source::{FetchError, FetchFuture, Fetched, SecretSource};
use crate::telemetry::spans;
use anyhow::{Context, Result};
use azure_core::http::{
    AsyncRawResponse, ClientOptions, HttpClient, Request, RetryOptions, Transport,
};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use clever_auth_core::secret::Secret;
use clever_auth_core::secrets_error as codes;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub struct KeyVaultSource {
    client: SecretClient,
    vault_host: String,
    attempt_timeout: Duration,
}

pub struct KeyVaultConfig<'a> {
    pub vault_url: &'a str,
    pub managed_identity_client_id: Option<&'a str>,
    pub verify_challenge_resource: bool,
    pub tls: Arc<rustls::ClientConfig>,
    pub attempt_timeout: Duration,
}

fn client_options(
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
        .context("building the Key Vault HTTP client")?;
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

impl KeyVaultSource {
    pub fn new(config: KeyVaultConfig<'_>) -> Result<KeyVaultSource> {
        let url = url::Url::parse(config.vault_url)
            .with_context(|| format!("KEYVAULT_URL `{}` is not a URL", config.vault_url))?;
        if url.scheme() != "https" {
            anyhow::bail!("KEYVAULT_URL `{}` must be https", config.vault_url);
        }
        let vault_host = url.host_str().unwrap_or_default().to_string();
        let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: config
                .managed_identity_client_id
                .map(|id| UserAssignedId::ClientId(id.to_string())),
            client_options: client_options(
                &config.tls,
                config.attempt_timeout,
                spans::Dependency::ManagedIdentity,
            )?,
        }))
        .context("creating the managed identity credential")?;
        let client = SecretClient::new(
            config.vault_url,
            credential,
            Some(SecretClientOptions {
                client_options: client_options(
                    &config.tls,
                    config.attempt_timeout,
                    spans::Dependency::KeyVault,
                )?,
                verify_challenge_resource: Some(config.verify_challenge_resource),
                ..Default::default()
            }),
        )
        .context("creating the Key Vault client")?;
        Ok(KeyVaultSource {
            client,
            vault_host,
            attempt_timeout: config.attempt_timeout,
        })
    }
}

/// Maps the SDK's error to one of the stable codes that health and alerts tell apart
/// (`FetchError::code`); Key Vault's own code, when it gave one, leads the message instead.
fn error_from(e: &azure_core::Error) -> FetchError {
    use azure_core::error::ErrorKind;
    let (code, status, vault_code) = match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            let code = match status {
                401 | 403 => codes::VAULT_FORBIDDEN,
                404 => codes::SECRET_NOT_FOUND,
                429 => codes::VAULT_THROTTLED,
                _ => codes::VAULT_ERROR,
            };
            (code, Some(status), error_code.clone())
        }
        ErrorKind::Credential => (codes::IDENTITY_UNAVAILABLE, None, None),
        ErrorKind::Connection | ErrorKind::Io => (codes::VAULT_UNREACHABLE, None, None),
        _ => (codes::VAULT_ERROR, None, None),
    };
    // The SDK's top-level text is generic; the cause is further down the chain. Its messages
    // name URLs and status texts, never secret values.
    let mut message = match vault_code {
        Some(c) => format!("Key Vault {c}: {e}"),
        None => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if message.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| message.is_char_boundary(*i))
            .unwrap_or(0);
        message.truncate(cut);
    }
    FetchError {
        code: code.into(),
        message,
        status,
        client_request_id: None,
    }
}

impl SecretSource for KeyVaultSource {
    fn provider(&self) -> &'static str {
        "keyvault"
    }

    fn location(&self) -> String {
        self.vault_host.clone()
    }

    fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let call = self.client.get_secret(name, None);
            let response = match tokio::time::timeout(self.attempt_timeout, call).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(error_from(&e)),
                Err(_) => {
                    return Err(FetchError {
                        code: codes::VAULT_UNREACHABLE.into(),
                        message: format!(
                            "Key Vault did not answer within {:?}",
                            self.attempt_timeout
                        ),
                        status: None,
                        client_request_id: None,
                    })
                }
            };
            let status = u16::from(response.status());
            let client_request_id = ["x-ms-client-request-id", "x-ms-request-id"]
                .iter()
                .find_map(|h| {
                    response
                        .headers()
                        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(h))
                        .map(str::to_string)
                });
            let secret = response.into_model().map_err(|e| error_from(&e))?;
            let version = secret
                .id
                .as_deref()
                .and_then(|id| id.trim_end_matches('/').rsplit('/').next())
                .map(str::to_string);
            let value = secret.value.ok_or_else(|| FetchError {
                code: codes::SECRET_NOT_FOUND.into(),
                message: format!("secret {name} has no value"),
                status: Some(status),
                client_request_id: client_request_id.clone(),
            })?;
            Ok(Fetched {
                value: Secret::new(value),
                version,
                status: Some(status),
                client_request_id,
            })
        })
    }
}
