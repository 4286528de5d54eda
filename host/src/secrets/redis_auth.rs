//! Starts what keeps the shared Redis store's credential current, for the `--store-auth` mode
//! chosen: the access key from the secrets provider, or the managed identity's Entra ID token.

use super::redis_entra;
use super::redis_key::{self, VaultTiming};
use super::source::SecretSource;
use crate::keyvalue::store_auth::StoreAuth;
use crate::keyvalue::RedisCredentials;
use azure_core::credentials::TokenCredential;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct RedisAuthSettings {
    /// `--store-user`: the Redis user [default: `default`, or the identity's object id].
    pub user: Option<String>,
    pub vault: VaultTiming,
    pub attempt_timeout: Duration,
}

/// The env provider's key is read now (its absence is an error); Key Vault's key and Entra
/// tokens are read by the task returned, so neither delays the start.
pub fn start(
    credentials: &Arc<RedisCredentials>,
    source: Option<&Arc<dyn SecretSource>>,
    identity: Option<&Arc<dyn TokenCredential>>,
    settings: RedisAuthSettings,
) -> Result<Option<JoinHandle<()>>, String> {
    match credentials.mode() {
        StoreAuth::None => Ok(None),
        StoreAuth::AccessKey => {
            let user = settings
                .user
                .unwrap_or_else(|| redis_key::DEFAULT_USER.to_string());
            match source {
                Some(s) if s.provider() == "env" => {
                    redis_key::from_env(credentials, &user)?;
                    Ok(None)
                }
                Some(s) => Ok(Some(tokio::spawn(redis_key::poll_vault(
                    s.clone(),
                    credentials.clone(),
                    user,
                    settings.vault,
                )))),
                None => Err(format!(
                    "--store-auth access-key reads Redis's access key through a secrets provider: \
                     Key Vault secret `{}`, or {} with --secrets env",
                    redis_key::VAULT_NAME,
                    redis_key::ENV_NAME
                )),
            }
        }
        StoreAuth::Entra => {
            let identity = identity
                .cloned()
                .ok_or_else(|| "--store-auth entra needs the managed identity".to_string())?;
            Ok(Some(tokio::spawn(redis_entra::run(
                identity,
                credentials.clone(),
                settings.user,
                settings.attempt_timeout,
            ))))
        }
    }
}
