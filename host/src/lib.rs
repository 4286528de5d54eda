//! clever-auth-host: the native wasmtime host for the clever-auth component.
//!
//! Rooms, one capability each: `config` (wasi:config), `keyvalue` (wasi:keyvalue), `server`
//! (HTTP in, routing, instance per request), `scheduler` (the refresher export), `runtime`
//! (engine and component), `cli`, `logging`, `shutdown`, `telemetry` (Application Insights).

pub mod bindings;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod keyvalue;
pub mod logging;
pub mod outbound;
pub mod redact;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod telemetry;

use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;

/// Loads the component, binds, starts the secrets poller and the scheduler, and serves until
/// SIGTERM/SIGINT. Health is served at once; secrets and tokens follow in the background.
pub async fn run(cli: cli::Cli) -> Result<()> {
    let shutdown = shutdown::watch();
    let addr = cli.listen_addr().map_err(anyhow::Error::msg)?;
    let source_kind = cli.secrets_source();
    refuse_secrets_in_settings(source_kind)?;
    let tls = outbound::tls::client_config(cli.extra_ca.as_deref())?;
    let store_setting = cli.store_setting().map_err(anyhow::Error::msg)?;
    let kv = keyvalue::MemoryStore::new([keyvalue::DEFAULT_LABEL.to_string()]);
    record_instance(&kv);
    telemetry::metrics::watch_tokens(kv.clone());
    let redis_credentials = redis_credentials(&cli, &store_setting, source_kind);
    let stores = open_store(
        &store_setting,
        kv.clone(),
        cli.extra_ca.as_deref(),
        redis_credentials.clone(),
    )?;

    // App Service's identity header authenticates to the identity endpoint: masked from the
    // start, before any request could echo it.
    if let Ok(h) = std::env::var("IDENTITY_HEADER") {
        redact::pin(redact::Pin::IdentityHeader, &h);
    }
    let entra = redis_credentials
        .as_ref()
        .is_some_and(|c| c.mode() == keyvalue::store_auth::StoreAuth::Entra);
    let identity = (entra || source_kind == config::SecretsSource::Keyvault)
        .then(|| {
            secrets::managed_identity(
                cli.managed_identity_client_id.as_deref(),
                &tls,
                AZURE_ATTEMPT_TIMEOUT,
            )
        })
        .transpose()?;
    let source = secret_source(&cli, source_kind, &tls, identity.as_ref())?;
    let cache = source
        .as_ref()
        .map(|s| secrets::Secrets::new(s.provider(), s.location(), kv.clone()));
    let mut config = config::ConfigSource::from_env(
        cache
            .clone()
            .map(|c| Arc::new(secrets::CachedSecrets(c)) as Arc<dyn config::Provider>),
    );
    let wake = scheduler::Wake::default();
    let mut redis_login = None;
    if stores.is_shared() {
        let holder = store_key(&cli, source.as_ref(), wake.clone())?;
        config = config.with_store_keys(holder);
        if let Some(credentials) = &redis_credentials {
            let settings = secrets::redis_auth::RedisAuthSettings {
                user: cli.store_user.clone().filter(|u| !u.trim().is_empty()),
                vault: secrets::redis_key::VaultTiming {
                    every: Duration::from_secs(cli.secrets_refresh_secs.max(1)),
                    reread_min_gap: Duration::from_secs(cli.secrets_reread_min_secs),
                },
                attempt_timeout: AZURE_ATTEMPT_TIMEOUT,
            };
            redis_login = secrets::redis_auth::start(
                credentials,
                source.as_ref(),
                identity.as_ref(),
                settings,
            )
            .map_err(anyhow::Error::msg)?;
        }
    }

    let reread = Arc::new(tokio::sync::Notify::new());
    let outbound = Arc::new(outbound_policy(&cli, &config, tls, reread.clone()));
    tracing::info!(
        allowed_hosts = ?outbound.policy.allowed_hosts().collect::<Vec<_>>(),
        allow_loopback_http = cli.allow_loopback_http,
        tls_min = "1.2",
        "outbound policy"
    );
    let shared = Arc::new(state::Shared {
        config,
        kv: stores,
        outbound,
    });
    let started = std::time::Instant::now();
    let cache_dir = cli.component_cache_dir();
    let (mut runtime, origin) =
        runtime::Runtime::load(&cli.component, cache_dir.as_deref(), shared)?;
    runtime.deadlines = cli.call_deadlines();
    tracing::info!(
        component = %cli.component.display(),
        load_ms = started.elapsed().as_millis() as u64,
        origin = origin.as_str(),
        instance_mode = ?cli.instance_mode,
        "component loaded"
    );
    let listener = server::bind(addr).await?;
    let gateway_listener = match cli.gateway_listen {
        cli::GatewayListen::On(addr) => Some(server::bind(addr).await?),
        cli::GatewayListen::Off => None,
    };
    match &gateway_listener {
        Some(l) => {
            let local = l.local_addr()?;
            tracing::info!(
                addr = %local,
                gateway = format!("http://{local}/clever/{{district}}/{{version}}/{{path}}"),
                "gateway listening"
            );
        }
        None => tracing::info!("gateway off"),
    }
    // Announced last: whoever waits for this line finds the gateway's above it.
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, health = format!("http://{local}{}", server::routing::HEALTH_PATH), "listening");

    let poller = match (source, cache) {
        (Some(source), Some(cache)) => {
            // Key Vault names the secrets by settings; the development provider by variable.
            let (client_id, client_secret) = match source.provider() {
                "env" => ("CLEVER_CLIENT_ID".into(), "CLEVER_CLIENT_SECRET".into()),
                _ => (
                    cli.keyvault_secret_client_id.clone(),
                    cli.keyvault_secret_client_secret.clone(),
                ),
            };
            let names = secrets::SecretNames {
                client_id,
                client_secret,
            };
            let timing = secrets::Timing {
                refresh_every: Duration::from_secs(cli.secrets_refresh_secs.max(1)),
                reread_min_gap: Duration::from_secs(cli.secrets_reread_min_secs),
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(30),
            };
            let on_change = {
                let wake = wake.clone();
                move || wake.now()
            };
            Some(secrets::spawn(
                source, names, cache, reread, on_change, timing,
            ))
        }
        _ => None,
    };
    let scheduler =
        (!cli.no_scheduler).then(|| tokio::spawn(scheduler::run(runtime.clone(), wake)));
    if scheduler.is_none() {
        tracing::info!("scheduler off: refreshes run only after health requests, as under Spin");
    }
    // One shutdown signal, watched by both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let drain = Duration::from_secs(cli.drain_secs);
    let gateway = match gateway_listener {
        Some(l) => {
            let shared = server::Listener::new(
                cli.gateway_listener_limits(),
                server::routing::Routes::Gateway,
                runtime.clone(),
                cli.instance_mode,
                // Loopback only: the per-district detail is safe here.
                server::HealthView::Detail,
            );
            let served = server::threads::serve_on_threads(
                l,
                cli.gateway_threads(),
                shared,
                &runtime.shared.outbound.upstream,
                stopped.clone(),
                drain,
            )?;
            Some(tokio::spawn(served))
        }
        None => None,
    };
    let upstream = runtime.shared.outbound.upstream.clone();
    let public = server::Listener::new(
        cli.listener_limits(),
        server::routing::Routes::Health,
        runtime,
        cli.instance_mode,
        if cli.health_detail {
            server::HealthView::Detail
        } else {
            server::HealthView::Public
        },
    );
    let result = server::serve(listener, public, upstream, until_stopped(stopped), drain).await;
    if let Some(gateway) = gateway {
        match gateway.await {
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "gateway listener failed"),
            Err(e) => tracing::error!(error = %e, "gateway listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    for task in [scheduler, poller, redis_login].into_iter().flatten() {
        task.abort();
    }
    tracing::info!("stopped");
    result
}

/// Each attempt to reach Key Vault or the managed identity ends after this.
const AZURE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a Redis store's connections authenticate with (`--store-auth`); `None` on the memory
/// store and for a Redis without a password.
fn redis_credentials(
    cli: &cli::Cli,
    setting: &keyvalue::runtime_config::StoreSetting,
    source: config::SecretsSource,
) -> Option<Arc<keyvalue::RedisCredentials>> {
    use keyvalue::store_auth::{self, StoreAuth};
    let keyvalue::runtime_config::StoreSetting::Redis { tls, .. } = setting else {
        return None;
    };
    let env_key = source == config::SecretsSource::Env && secrets::redis_key::env_key_given();
    let mode = store_auth::resolve(cli.store_auth, *tls, env_key);
    if env_key && mode != StoreAuth::AccessKey {
        tracing::warn!(
            store_auth = mode.as_str(),
            "{} is set but not used: --store-auth is not access-key",
            secrets::redis_key::ENV_NAME
        );
    }
    (mode != StoreAuth::None).then(|| keyvalue::RedisCredentials::new(mode))
}

/// The store named by `--store`. A Redis is connected lazily: one that is down now makes the
/// component's first store calls fail (and say so in health), not the start.
fn open_store(
    setting: &keyvalue::runtime_config::StoreSetting,
    local: keyvalue::MemoryStore,
    extra_ca: Option<&std::path::Path>,
    credentials: Option<Arc<keyvalue::RedisCredentials>>,
) -> Result<keyvalue::Stores> {
    use keyvalue::runtime_config::StoreSetting;
    let StoreSetting::Redis { url, tls, shown } = setting else {
        tracing::info!(store = "memory", "key-value store");
        return Ok(keyvalue::Stores::memory(local));
    };
    let client = match (tls, extra_ca) {
        (true, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--extra-ca {}: {e}", path.display()))?;
            redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        _ => redis::Client::open(url.as_str()),
    }
    .map_err(|e| anyhow::anyhow!("--store {shown}: {}", e.category()))?;
    let auth = credentials
        .as_ref()
        .map_or(keyvalue::store_auth::StoreAuth::None, |c| c.mode());
    let redis = keyvalue::RedisStore::new(client, credentials).map_err(anyhow::Error::msg)?;
    tracing::info!(
        store = "redis",
        url = %shown,
        auth = auth.as_str(),
        "key-value store shared by every instance"
    );
    Ok(keyvalue::Stores::shared(local, Arc::new(redis), "redis"))
}

/// The store key a shared store needs, from the secrets provider: the env provider's at once
/// (missing or malformed: a start-up error), Key Vault's in the background (`wake` runs the
/// refresher as soon as it is read).
fn store_key(
    cli: &cli::Cli,
    source: Option<&Arc<dyn secrets::SecretSource>>,
    wake: scheduler::Wake,
) -> Result<Arc<secrets::store_key::StoreKeyHolder>> {
    use secrets::store_key::{self as sk, StoreKeyHolder};
    match source.map(|s| s.provider()) {
        Some("env") => StoreKeyHolder::from_env().map_err(anyhow::Error::msg),
        Some(_) => {
            let holder = Arc::new(StoreKeyHolder::default());
            let source = source.cloned().ok_or_else(|| anyhow::anyhow!("no secrets source"))?;
            tokio::spawn(sk::poll_vault(
                source,
                holder.clone(),
                Duration::from_secs(cli.secrets_refresh_secs.max(1)),
                move || wake.now(),
            ));
            Ok(holder)
        }
        None => anyhow::bail!(
            "a shared store needs a store key, read through a secrets provider: use --secrets keyvault (Key Vault secret `{}`) or, for development, --secrets env ({})",
            sk::VAULT_CURRENT,
            sk::ENV_CURRENT
        ),
    }
}

/// Tells the component which App Service instance this is, for its health answer.
fn record_instance(kv: &keyvalue::MemoryStore) {
    use clever_auth_core::status::{keys, HostInstance};
    let record = HostInstance {
        instance_id: logging::instance_id().map(str::to_string),
    };
    if let Ok(bytes) = serde_json::to_vec(&record) {
        kv.set(keyvalue::DEFAULT_LABEL, keys::HOST_INSTANCE, bytes);
    }
}

/// Secret values belong in Key Vault, not in app settings: with any provider but the explicit
/// development one, their presence in the environment stops the host.
fn refuse_secrets_in_settings(source: config::SecretsSource) -> Result<()> {
    if source == config::SecretsSource::Env {
        tracing::warn!(
            secrets_provider = "env",
            "DEVELOPMENT secrets provider: Clever credentials are read from CLEVER_CLIENT_ID / CLEVER_CLIENT_SECRET; never use this in production"
        );
        return Ok(());
    }
    for name in [
        "CLEVER_CLIENT_ID",
        "CLEVER_CLIENT_SECRET",
        secrets::redis_key::ENV_NAME,
    ] {
        if std::env::var_os(name).is_some() {
            anyhow::bail!(
                "{name} is set in the environment, but secrets must come from Key Vault; remove it, or choose the development provider explicitly with --secrets env"
            );
        }
    }
    Ok(())
}

fn secret_source(
    cli: &cli::Cli,
    kind: config::SecretsSource,
    tls: &Arc<rustls::ClientConfig>,
    identity: Option<&Arc<dyn azure_core::credentials::TokenCredential>>,
) -> Result<Option<Arc<dyn secrets::SecretSource>>> {
    Ok(match kind {
        config::SecretsSource::None => None,
        config::SecretsSource::Env => Some(Arc::new(secrets::EnvSource)),
        config::SecretsSource::Keyvault => {
            let url = cli.keyvault_url.as_deref().ok_or_else(|| {
                anyhow::anyhow!("--secrets keyvault needs KEYVAULT_URL (or --keyvault-url)")
            })?;
            let credential = identity
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("--secrets keyvault needs the managed identity"))?;
            Some(Arc::new(secrets::KeyVaultSource::new(
                secrets::KeyVaultConfig {
                    vault_url: url,
                    credential,
                    verify_challenge_resource: cli.keyvault_verify_challenge_resource,
                    tls: tls.clone(),
                    attempt_timeout: AZURE_ATTEMPT_TIMEOUT,
                },
            )?))
        }
    })
}

fn outbound_policy(
    cli: &cli::Cli,
    config: &config::ConfigSource,
    tls: Arc<rustls::ClientConfig>,
    reread: Arc<tokio::sync::Notify>,
) -> outbound::Outbound {
    let token_url = config
        .setting_or_default("clever_token_url")
        .unwrap_or_default();
    let api_url = config
        .setting_or_default("clever_api_base_url")
        .unwrap_or_default();
    let policy = outbound::Policy::new(
        [token_url.as_str(), api_url.as_str()],
        cli.allowed_hosts.iter().map(String::as_str),
        cli.allow_loopback_http,
    );
    let token_endpoint = url::Url::parse(&token_url).ok().and_then(|u| {
        Some((
            u.host_str()?.trim_matches(['[', ']']).to_ascii_lowercase(),
            u.path().to_string(),
        ))
    });
    outbound::Outbound {
        policy,
        upstream: outbound::Upstream::new(tls),
        token_endpoint,
        on_unauthorized: Some(Arc::new(move || reread.notify_one())),
    }
}
