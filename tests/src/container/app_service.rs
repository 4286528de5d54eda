//! The image started as App Service starts it, against the fakes: `PORT` set and no
//! `--listen`, a read-only root, Key Vault over TLS through the managed identity endpoint
//! (App Service's is plain HTTP on a private address), and Clever over TLS.
//!
//! The fakes listen on podman's bridge address; the container resolves the vault's real name
//! (`<vault>.vault.azure.net`, so the SDK's challenge check stays on) and `clever.test` to it.
//! Both fakes' CAs reach the host through its documented extra-CA setting,
//! `CLEVER_AUTH_EXTRA_CA`, as a file mounted read-only.

use super::podman::{self, Container};
use crate::fake_azure::{
    FakeIdentityConfig, FakeIdentityEndpoint, FakeKeyVault, FakeKeyVaultConfig,
};
use crate::fake_clever::{FakeClever, FakeCleverConfig};
use crate::http_client;
use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// The port App Service would set in `PORT`; not the image's default 8080, so a host that
/// ignored `PORT` would fail the checks.
pub const PORT: u16 = 8181;
pub const GATEWAY_PORT: u16 = 8081;
pub const CLEVER_HOST: &str = "clever.test";
const CA_DIR_IN_CONTAINER: &str = "/run/clever-auth-ca";
/// Every token the fakes issue starts with one of these (the vault fake accepts the identity
/// fake's default prefix only), so a scan finds tokens it never saw.
pub const CLEVER_TOKEN_PREFIX: &str = "fake-clever-tok-";
pub const MI_TOKEN_PREFIX: &str = crate::fake_azure::DEFAULT_TOKEN_PREFIX;
/// The extra-CA bundle inside the container (every fake's CA).
pub const EXTRA_CA_IN_CONTAINER: &str = "/run/clever-auth-ca/extra-ca.pem";

pub struct AppService {
    pub clever: FakeClever,
    pub vault: FakeKeyVault,
    pub identity: FakeIdentityEndpoint,
    pub gateway_ip: IpAddr,
    pub image: String,
    dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct Options {
    pub vault_down: bool,
    /// More secrets in the vault (`redis-access-key`, `clever-auth-store-key`).
    pub extra_secrets: Vec<(String, String)>,
    /// More CAs in the extra-CA bundle (a Redis's).
    pub extra_ca_pem: Vec<String>,
}

impl AppService {
    pub async fn start(image: &str, opts: Options) -> Result<AppService> {
        podman::ensure_bridge_up(image)?;
        let gateway_ip = podman::bridge_gateway()?;
        let clever = FakeClever::start(FakeCleverConfig {
            addr: SocketAddr::new(gateway_ip, 0),
            tls: true,
            tls_names: vec![CLEVER_HOST.into()],
            // Random credentials: a value found in a log or a layer can only have come from
            // this run.
            client_id: format!("cid-{}", crate::fake_support::util::random_hex(12)),
            client_secret: format!("csecret-{}", crate::fake_support::util::random_hex(24)),
            district_ids: vec!["d-alpha".into(), "d-beta".into()],
            generated_districts: 0,
            token_prefix: CLEVER_TOKEN_PREFIX.into(),
            ..Default::default()
        })
        .await?;
        let vault = FakeKeyVault::start(FakeKeyVaultConfig {
            addr: SocketAddr::new(gateway_ip, 0),
            secrets: [
                ("clever-client-id".to_string(), clever.client_id()),
                ("clever-client-secret".to_string(), clever.client_secret()),
            ]
            .into_iter()
            .chain(opts.extra_secrets.iter().cloned())
            .collect(),
            start_down: opts.vault_down,
            ..Default::default()
        })
        .await?;
        let identity = FakeIdentityEndpoint::start(FakeIdentityConfig {
            addr: SocketAddr::new(gateway_ip, 0),
            ..Default::default()
        })
        .await?;

        let dir = tempfile::tempdir()?;
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir(&ca_dir)?;
        let mut bundle = vault.ca_pem().to_string();
        bundle.push('\n');
        bundle.push_str(clever.ca_pem().context("the fake Clever has no CA")?);
        for ca in &opts.extra_ca_pem {
            bundle.push('\n');
            bundle.push_str(ca);
        }
        std::fs::write(ca_dir.join("extra-ca.pem"), bundle)?;
        // The host runs as uid 10001: the mount must be readable by it.
        make_world_readable(&ca_dir)?;
        Ok(AppService {
            clever,
            vault,
            identity,
            gateway_ip,
            image: image.to_string(),
            dir,
        })
    }

    /// A scratch directory that lives as long as this.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the image with App Service's settings plus `extra` podman arguments (before the
    /// image name).
    pub fn run(&self, extra: &[String]) -> Result<Container> {
        let mut args: Vec<String> = vec![
            "--read-only".into(),
            "-p".into(),
            format!("127.0.0.1::{PORT}"),
        ];
        for host in self.hosts() {
            args.extend(["--add-host".into(), host]);
        }
        args.extend(self.mount_and_env(&[("PORT".into(), PORT.to_string())]));
        args.extend(extra.iter().cloned());
        args.push(self.image.clone());
        Container::run(&args, &self.secret_env())
    }

    /// `name:address` entries: the vault's real name and Clever's, both at the fakes.
    pub fn hosts(&self) -> Vec<String> {
        vec![
            format!("{}:{}", self.vault.vault_host(), self.gateway_ip),
            format!("{CLEVER_HOST}:{}", self.gateway_ip),
        ]
    }

    /// The CA mount and `-e` arguments: the vault through the managed identity, Clever at the
    /// fake, the fakes' CAs through the extra-CA setting, then `settings`.
    pub fn mount_and_env(&self, settings: &[(String, String)]) -> Vec<String> {
        let clever_base = format!("https://{CLEVER_HOST}:{}", self.clever.addr().port());
        let mut args: Vec<String> = vec![
            "-v".into(),
            format!(
                "{}:{CA_DIR_IN_CONTAINER}:ro",
                self.dir.path().join("ca").display()
            ),
        ];
        let mut env: Vec<(String, String)> = vec![
            ("KEYVAULT_URL".into(), self.vault.url_by_name()),
            ("IDENTITY_ENDPOINT".into(), self.identity.endpoint()),
            ("CLEVER_AUTH_EXTRA_CA".into(), EXTRA_CA_IN_CONTAINER.into()),
            (
                "CLEVER_TOKEN_URL".into(),
                format!("{clever_base}/oauth/tokens"),
            ),
            ("CLEVER_API_BASE_URL".into(), clever_base),
        ];
        env.extend(settings.iter().cloned());
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args
    }

    /// What the platform passes the container that must stay off command lines.
    pub fn secret_env(&self) -> Vec<(String, String)> {
        vec![("IDENTITY_HEADER".into(), self.identity.header_secret())]
    }

    /// Every value that must never appear in a log or a layer, by a name that can be shown.
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (
                "the Clever client secret".into(),
                self.clever.client_secret(),
            ),
            ("the identity header".into(), self.identity.header_secret()),
            ("a Clever token (prefix)".into(), CLEVER_TOKEN_PREFIX.into()),
            (
                "a managed identity token (prefix)".into(),
                MI_TOKEN_PREFIX.into(),
            ),
        ];
        for token in self.clever.issued_tokens() {
            out.push(("an issued Clever token".into(), token));
        }
        out
    }
}

/// GET the public health on the published port: status code and `status` field.
pub async fn health(at: SocketAddr) -> Result<(u16, String)> {
    let reply = http_client::get(&format!("http://{at}/health/clever-auth")).await?;
    let status = reply.json()?["status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((reply.status, status))
}

/// Polls health until `want` holds; the last answer, or an error naming the last seen.
pub async fn wait_health(
    at: SocketAddr,
    timeout: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match health(at).await {
            Ok((code, status)) if want(code, &status) => return Ok((code, status)),
            Ok((code, status)) => format!("{code} {status}"),
            Err(e) => format!("{e:#}"),
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "health never reached the expected state within {timeout:?} (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Finds which of `secrets` occur in `text`; only the names, never the values.
pub fn leaked_in(text: &str, secrets: &[(String, String)]) -> Vec<String> {
    secrets
        .iter()
        .filter(|(_, value)| !value.is_empty() && text.contains(value.as_str()))
        .map(|(name, _)| name.clone())
        .collect()
}

pub fn make_world_readable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}
