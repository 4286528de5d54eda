//! Fakes for the Azure pieces the host talks to in production: an HTTPS **Key Vault** (secrets
//! only) and the **App Service managed identity endpoint**. Both are real servers on loopback
//! that answer like the services as `azure_security_keyvault_secrets` 1.0.1 and
//! `azure_identity` 1.0.0 (`ManagedIdentityCredential`, App Service source) use them, can be
//! scripted per test, can be taken down and brought back on the same port, and record every
//! request (never a token value).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use clever_auth_tests::fake_azure::{
//!     FakeIdentityConfig, FakeIdentityEndpoint, FakeKeyVault, FakeKeyVaultConfig, Fault,
//! };
//!
//! let identity = FakeIdentityEndpoint::start(FakeIdentityConfig::default()).await?;
//! let vault = FakeKeyVault::start(FakeKeyVaultConfig::default()).await?;
//! vault.set_secret("clever-client-id", "demo-client-id");
//! let dir = tempfile::tempdir()?;
//! let ca = vault.write_ca_pem(dir.path())?;
//! // Host environment: KEYVAULT_URL=vault.url(), IDENTITY_ENDPOINT=identity.endpoint(),
//! // IDENTITY_HEADER=identity.header_secret(), SSL_CERT_FILE / extra CA = ca.
//! vault.push_fault("clever-client-id", Fault::Throttled { retry_after_secs: 2 });
//! vault.set_down(true).await?; // connections refused, same port
//! vault.set_down(false).await?;
//! let seen = vault.wait_for_requests(3, Duration::from_secs(10)).await?;
//! # let _ = (seen, ca); Ok(()) }
//! ```
//!
//! Key Vault wire protocol (as the SDK speaks it):
//! `GET {vault}/secrets/{name}/?api-version=…` (also without the trailing slash, and
//! `/secrets/{name}/{version}`), `accept: application/json`. A request without a bearer token
//! gets the `401` challenge with `WWW-Authenticate: Bearer authorization="…", resource="…"`;
//! with an accepted bearer token, the secret bundle `{"value","id","attributes":{…}}`.
//!
//! Managed identity: `GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]` with
//! `x-identity-header`; the answer carries `expires_on` as a **string** of Unix seconds.

mod identity;
mod keyvault;
mod log;
mod script;
pub(crate) mod server;

pub use identity::{FakeIdentityConfig, FakeIdentityEndpoint, IdentityHeaderSeen, IdentityRequest};
pub use keyvault::{
    is_valid_secret_name, FakeKeyVault, FakeKeyVaultConfig, SecretVersionInfo, TokenPolicy,
    VaultAuthSeen, VaultRequest,
};
pub use script::{Fault, SecretMatch};

/// What became of a request (shared with the fake Clever).
pub use crate::fake_clever::Outcome;

/// The token prefix the identity fake issues and the vault fake accepts by default.
pub const DEFAULT_TOKEN_PREFIX: &str = "fake-mi-token-";

/// The audience Key Vault names in its challenge, and the `resource` the SDK then asks the
/// identity endpoint for.
pub const KEYVAULT_RESOURCE: &str = "https://vault.azure.net";

/// The App Service managed identity protocol version the SDK sends.
pub const IDENTITY_API_VERSION: &str = "2019-08-01";

pub(crate) mod util {
    pub(crate) use crate::fake_support::util::{lock, random_hex, unix_secs_now};

    /// A random id in GUID form (request and correlation ids).
    pub(crate) fn random_guid() -> String {
        let h = random_hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Client-chosen header text kept in the log, bounded so a hostile client cannot grow it.
    pub(crate) fn bounded(s: &str) -> String {
        s.chars().take(256).collect()
    }
}
