//! App Service's sidecar layout as the deploy files describe it: `deploy/sidecar.bicep` gives
//! clever-auth its variables by naming app settings of `deploy/main.bicep`, and the site's
//! containers share one `localhost`. The rehearsal (tests/tests/sidecar_pod_e2e.rs) reads the
//! layout from those files, so a drift between them and the test fails the test.

use crate::bicep::{self, SiteContainer};
use crate::markdown;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Variables the rehearsal points at the fakes itself (`AppService::mount_and_env`).
const SET_BY_THE_REHEARSAL: [&str; 3] = ["KEYVAULT_URL", "CLEVER_TOKEN_URL", "CLEVER_API_BASE_URL"];

#[derive(Debug)]
pub struct SidecarLayout {
    /// clever-auth's variables whose app settings have a value in main.bicep (a literal or a
    /// parameter's default), with that value.
    pub clever_auth_env: Vec<(String, String)>,
    /// Where clever-auth's health listener binds (its `CLEVER_AUTH_LISTEN`).
    pub health_listen: SocketAddr,
    /// The clever-auth sitecontainer's `targetPort`.
    pub clever_auth_port: u16,
    /// The main container's port: the one App Service routes the site's traffic to.
    pub sync_port: u16,
    /// The path App Service's health check asks for (main.bicep's `healthPath`).
    pub health_path: String,
}

impl SidecarLayout {
    pub fn from_deploy_files() -> Result<SidecarLayout> {
        let main = markdown::read("deploy/main.bicep")?;
        let sidecar = markdown::read("deploy/sidecar.bicep")?;
        let settings: BTreeMap<String, String> = bicep::app_settings(&main).into_iter().collect();
        let main_params = bicep::string_param_defaults(&main);
        let containers = bicep::site_containers(&sidecar);
        let find = |name: &str| -> Result<&SiteContainer> {
            containers
                .iter()
                .find(|c| c.name == name)
                .with_context(|| format!("deploy/sidecar.bicep has no {name:?} sitecontainer"))
        };
        let clever_auth = find("clever-auth")?;
        let sync = containers
            .iter()
            .find(|c| c.is_main)
            .context("deploy/sidecar.bicep has no main container")?;

        let mut clever_auth_env = Vec::new();
        for (var, setting) in &clever_auth.environment {
            let expr = settings.get(setting).with_context(|| {
                format!("sidecar.bicep maps {var} to {setting}, which main.bicep does not set")
            })?;
            if SET_BY_THE_REHEARSAL.contains(&var.as_str()) {
                continue;
            }
            let value = bicep::literal(expr, |v| bicep::string_var(&main, v))
                .or_else(|| main_params.get(expr.trim()).cloned());
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                clever_auth_env.push((var.clone(), value));
            }
        }
        let listen = clever_auth_env
            .iter()
            .find(|(var, _)| var == "CLEVER_AUTH_LISTEN")
            .map(|(_, v)| v.clone())
            .context("the sidecar layout gives clever-auth no CLEVER_AUTH_LISTEN value")?;
        let sidecar_params = bicep::string_param_defaults(&sidecar);
        let port = |written: &str| -> Result<u16> {
            let value = sidecar_params.get(written).map_or(written, String::as_str);
            value
                .parse()
                .with_context(|| format!("targetPort {written:?} ({value:?}) is not a port"))
        };
        let health_path =
            bicep::string_var(&main, "healthPath").context("main.bicep has no healthPath")?;
        if !health_path.starts_with('/') {
            bail!("main.bicep's healthPath {health_path:?} is not a path");
        }
        Ok(SidecarLayout {
            health_listen: listen
                .parse()
                .with_context(|| format!("CLEVER_AUTH_LISTEN {listen:?}"))?,
            clever_auth_port: port(&clever_auth.target_port)?,
            sync_port: port(&sync.target_port)?,
            clever_auth_env,
            health_path,
        })
    }
}
