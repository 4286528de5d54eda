//! Where secret values come from: one small async trait, one implementation per source.

use clever_auth_core::secret::Secret;
use std::future::Future;
use std::pin::Pin;

/// One secret as fetched, with what the audit log may say about it.
pub struct Fetched {
    pub value: Secret,
    /// The version (Key Vault: last path segment of the secret id).
    pub version: Option<String>,
    pub status: Option<u16>,
    pub client_request_id: Option<String>,
}

/// Why a fetch failed. Never carries a secret value.
#[derive(Debug, Clone)]
pub struct FetchError {
    /// Stable code for health and alerts: one of [`clever_auth_core::secrets_error`]'s.
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
    pub client_request_id: Option<String>,
}

pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>>;

pub trait SecretSource: Send + Sync {
    /// `keyvault`, `env`.
    fn provider(&self) -> &'static str;
    /// Where the values come from, for logs and health (e.g. the vault host).
    fn location(&self) -> String;
    fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a>;
}

/// DEVELOPMENT ONLY: secrets from environment variables (`CLEVER_CLIENT_ID`, …).
pub struct EnvSource;

impl SecretSource for EnvSource {
    fn provider(&self) -> &'static str {
        "env"
    }

    fn location(&self) -> String {
        "environment variables".into()
    }

    fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Fetched {
                    value: Secret::new(v.trim()),
                    version: None,
                    status: None,
                    client_request_id: None,
                }),
                _ => Err(FetchError {
                    code: clever_auth_core::secrets_error::SECRET_NOT_FOUND.into(),
                    message: format!("environment variable {name} is not set"),
                    status: None,
                    client_request_id: None,
                }),
            }
        })
    }
}
