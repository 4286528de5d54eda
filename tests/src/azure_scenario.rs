//! The production wiring in miniature: the host reads the Clever credentials from the fake
//! Key Vault through the fake App Service identity endpoint, and authenticates to the fake
//! Clever with them.

use crate::fake_azure::{
    FakeIdentityConfig, FakeIdentityEndpoint, FakeKeyVault, FakeKeyVaultConfig, Fault, SecretMatch,
};
use crate::fake_clever::FakeClever;
use crate::host_process::{HostOptions, HostProcess};
use crate::scenario::{self, two_districts, Health, FAST_SETTINGS};
use anyhow::Result;
use std::path::PathBuf;

pub const ID_SECRET: &str = "clever-client-id";
pub const SECRET_SECRET: &str = "clever-client-secret";

pub struct AzureScenario {
    pub clever: FakeClever,
    pub vault: FakeKeyVault,
    pub identity: FakeIdentityEndpoint,
    pub host: HostProcess,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct AzureOptions {
    pub vault_down: bool,
    /// `IDENTITY_HEADER` the host gets; `None` = the right one.
    pub identity_header: Option<String>,
    pub env: Vec<(String, String)>,
    /// The fake Clever's configuration [default: two districts].
    pub clever: Option<crate::fake_clever::FakeCleverConfig>,
    /// More CAs (PEM) the host trusts besides the vault's, e.g. a fake Application Insights'.
    pub extra_ca_pems: Vec<String>,
    /// The vault holds no secret of this name (as before an operator has put it there).
    pub omit_secret: Option<&'static str>,
    /// The client secret the vault holds, when it is not the one Clever accepts.
    pub vault_client_secret: Option<String>,
    /// Every vault request meets this fault, from before the host's first read.
    pub vault_fault: Option<Fault>,
    /// Every identity-endpoint request meets this fault, from before the host's first read.
    pub identity_fault: Option<Fault>,
    /// The listener gives the public health answer (the gateway listener keeps the detail).
    pub public_health: bool,
    /// More secrets the vault holds from the start (name, value), e.g. the store key.
    pub vault_secrets: Vec<(String, String)>,
}

impl AzureScenario {
    pub async fn start(opts: AzureOptions) -> Result<AzureScenario> {
        let clever = FakeClever::start(opts.clever.clone().unwrap_or_else(two_districts)).await?;
        let vault = FakeKeyVault::start(FakeKeyVaultConfig {
            secrets: [
                (ID_SECRET, clever.client_id()),
                (
                    SECRET_SECRET,
                    opts.vault_client_secret
                        .clone()
                        .unwrap_or_else(|| clever.client_secret()),
                ),
            ]
            .into_iter()
            .filter(|(name, _)| Some(*name) != opts.omit_secret)
            .map(|(name, value)| (name.to_string(), value))
            .chain(opts.vault_secrets.iter().cloned())
            .collect(),
            start_down: opts.vault_down,
            ..Default::default()
        })
        .await?;
        let identity = FakeIdentityEndpoint::start(FakeIdentityConfig::default()).await?;
        if let Some(fault) = &opts.vault_fault {
            vault.set_persistent_fault(SecretMatch::Any, fault.clone());
        }
        if let Some(fault) = &opts.identity_fault {
            identity.set_persistent_fault(fault.clone());
        }
        let dir = tempfile::tempdir()?;
        let ca: PathBuf = vault.write_ca_pem(dir.path())?;
        if !opts.extra_ca_pems.is_empty() {
            let mut bundle = std::fs::read_to_string(&ca)?;
            for pem in &opts.extra_ca_pems {
                bundle.push('\n');
                bundle.push_str(pem);
            }
            std::fs::write(&ca, bundle)?;
        }
        let header = opts
            .identity_header
            .clone()
            .unwrap_or_else(|| identity.header_secret());
        let mut host = HostOptions {
            public_health: opts.public_health,
            ..Default::default()
        }
        .args(&["--allow-loopback-http", "--extra-ca", &ca.to_string_lossy()])
        .env("KEYVAULT_URL", vault.url())
        // The fake listens on 127.0.0.1, not on <name>.vault.azure.net.
        .env("KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false")
        .env("IDENTITY_ENDPOINT", &identity.endpoint())
        .env("IDENTITY_HEADER", &header)
        .env("CLEVER_TOKEN_URL", &clever.token_url())
        .env("CLEVER_API_BASE_URL", clever.api_base_url())
        .env("CLEVER_AUTH_SECRETS_REREAD_MIN_SECS", "0");
        for (k, v) in FAST_SETTINGS {
            host = host.env(k, v);
        }
        for (k, v) in &opts.env {
            host = host.env(k, v);
        }
        let host = HostProcess::start(host).await?;
        Ok(AzureScenario {
            clever,
            vault,
            identity,
            host,
            _dir: dir,
        })
    }

    pub async fn health(&self) -> Result<Health> {
        scenario::health(&self.host).await
    }

    pub async fn wait_health(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&Health) -> bool,
    ) -> Result<Health> {
        scenario::wait_health(&self.host, timeout, pred).await
    }
}
