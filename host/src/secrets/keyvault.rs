//! Azure Key Vault through the App Service managed identity.
//!
//! The SDK's own retry policy is switched off (its default made a fetch against an unreachable
//! vault take about 80 s): the poller retries with its own bounded, jittered backoff, and each
//! attempt has a deadline. TLS uses the host's outbound configuration (TLS ≥ 1.2, extra CA).

use super::source::{FetchError, FetchFuture, Fetched, SecretSource};
use super::transport::client_options;
use crate::telemetry::spans;
use anyhow::{Context, Result};
use azure_core::credentials::TokenCredential;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use clever_auth_core::secret::Secret;
use clever_auth_core::secrets_error as codes;
use std::sync::Arc;
use std::time::Duration;

pub struct KeyVaultSource {
    client: SecretClient,
    vault_host: String,
    attempt_timeout: Duration,
}

pub struct KeyVaultConfig<'a> {
    pub vault_url: &'a str,
    /// The managed identity (see `identity`), shared with Redis under Entra ID.
    pub credential: Arc<dyn TokenCredential>,
    pub verify_challenge_resource: bool,
    pub tls: Arc<rustls::ClientConfig>,
    pub attempt_timeout: Duration,
}

impl KeyVaultSource {
    pub fn new(config: KeyVaultConfig<'_>) -> Result<KeyVaultSource> {
        let url = url::Url::parse(config.vault_url)
            .with_context(|| format!("KEYVAULT_URL `{}` is not a URL", config.vault_url))?;
        if url.scheme() != "https" {
            anyhow::bail!("KEYVAULT_URL `{}` must be https", config.vault_url);
        }
        let vault_host = url.host_str().unwrap_or_default().to_string();
        let client = SecretClient::new(
            config.vault_url,
            config.credential,
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
