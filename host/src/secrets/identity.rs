//! The managed identity, one credential for the whole process: Key Vault and Redis (under
//! Entra ID) ask it for their tokens, so both use the same identity and the SDK's one cache.

use super::transport::client_options;
use crate::telemetry::spans;
use anyhow::{Context, Result};
use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use std::sync::Arc;
use std::time::Duration;

/// The system-assigned identity, or the user-assigned one of `client_id`. Each token request
/// has `attempt_timeout`.
pub fn managed_identity(
    client_id: Option<&str>,
    tls: &Arc<rustls::ClientConfig>,
    attempt_timeout: Duration,
) -> Result<Arc<dyn TokenCredential>> {
    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_string())),
        client_options: client_options(tls, attempt_timeout, spans::Dependency::ManagedIdentity)?,
    }))
    .context("creating the managed identity credential")?;
    Ok(credential)
}
