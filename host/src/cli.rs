//! Command-line interface. Every flag can also be set through its environment variable, which
//! is how App Service passes settings to a container.

use crate::config::SecretsSource;
use crate::keyvalue::store_auth::StoreAuth;
use crate::logging::LogFormat;
use crate::server::InstanceMode;
use crate::telemetry;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Runs the clever-auth WebAssembly component: serves GET /health/clever-auth, keeps a valid
/// Clever token per district in memory and refreshes it before it expires.
///
/// Component settings (clever_token_url, clever_api_version, …) are read from environment
/// variables of the same name in upper case; see README.md for the full table.
#[derive(Debug, Parser)]
#[command(name = "clever-auth-host", version, about, long_about)]
pub struct Cli {
    /// The component to run (.wasm).
    #[arg(
        long,
        env = "CLEVER_AUTH_COMPONENT",
        default_value = "target/wasm32-wasip2/release/clever_auth.wasm"
    )]
    pub component: PathBuf,

    /// Directory of the precompiled component, reused by later starts when it matches the
    /// component and this host's engine [default: $XDG_CACHE_HOME/clever-auth, else
    /// ~/.cache/clever-auth]. Ignored when writable by other users.
    #[arg(long, env = "CLEVER_AUTH_COMPONENT_CACHE")]
    pub component_cache: Option<PathBuf>,

    /// Always compile the component at start; read and write no precompiled artifact.
    #[arg(
        long,
        env = "CLEVER_AUTH_NO_COMPONENT_CACHE",
        conflicts_with = "component_cache"
    )]
    pub no_component_cache: bool,

    /// Compile the component into the cache directory, print the artifact's path, and exit
    /// (used when building the container image).
    #[arg(long, conflicts_with = "no_component_cache")]
    pub precompile: bool,

    /// How requests meet instances: `reuse` keeps instances (the component holds no state
    /// between requests) and hands each to one request at a time, about 3x the throughput of
    /// `fresh`, which instantiates the component for every request (see docs/benchmarks.md).
    #[arg(long, env = "CLEVER_AUTH_INSTANCE_MODE", value_enum, default_value_t = InstanceMode::Reuse)]
    pub instance_mode: InstanceMode,

    /// Address to listen on [default: 0.0.0.0:$PORT, else 0.0.0.0:$WEBSITES_PORT, else 0.0.0.0:8080].
    #[arg(long, env = "CLEVER_AUTH_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Address of the Clever gateway's listener (GET/HEAD /clever/{district}/{version}/...),
    /// loopback only: sync code next to the host calls Clever through it without holding a
    /// token. It also answers GET /health/clever-auth with the per-district detail. `off`
    /// disables it.
    #[arg(
        long,
        env = "CLEVER_AUTH_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8081",
        value_parser = parse_gateway_listen
    )]
    pub gateway_listen: GatewayListen,

    /// Where the component's records (tokens, the refresher's lease and schedule) live:
    /// `memory` (this process only: one instance), or a Redis every instance of the
    /// deployment shares so they act as one Clever client: `redis://127.0.0.1:6379[/db]` on
    /// loopback, `rediss://host:port[/db]` (TLS) anywhere else. The URL must not hold a
    /// password: see --store-auth.
    #[arg(
        long,
        env = "CLEVER_AUTH_STORE",
        default_value = "memory",
        hide_env_values = true
    )]
    pub store: String,

    /// How the host authenticates to a Redis store. `access-key`: Redis's access key, read
    /// through the secrets provider (Key Vault secret `redis-access-key`, re-read every
    /// --secrets-refresh-secs and soon after Redis refuses it; CLEVER_AUTH_REDIS_ACCESS_KEY with
    /// --secrets env). `entra`: a Microsoft Entra ID token of the managed identity (scope
    /// https://redis.azure.com/.default), refreshed before it expires; the identity must be a
    /// Redis user. `none`: no AUTH (a loopback Redis without a password). [default: access-key
    /// for rediss://, or when CLEVER_AUTH_REDIS_ACCESS_KEY is set with --secrets env; else none]
    #[arg(long, env = "CLEVER_AUTH_STORE_AUTH", value_enum)]
    pub store_auth: Option<StoreAuth>,

    /// The Redis user the host authenticates as [default: `default` with an access key; under
    /// entra, the managed identity's object id, read from its token].
    #[arg(long, env = "CLEVER_AUTH_STORE_USER")]
    pub store_user: Option<String>,

    /// Where the Clever client id and secret come from [default: keyvault when KEYVAULT_URL
    /// is set, else none]. `env` (CLEVER_CLIENT_ID, CLEVER_CLIENT_SECRET) is for local
    /// development only.
    #[arg(long, env = "CLEVER_AUTH_SECRETS", value_enum)]
    pub secrets: Option<SecretsSource>,

    /// Key Vault URL, e.g. https://my-vault.vault.azure.net/
    #[arg(long, env = "KEYVAULT_URL")]
    pub keyvault_url: Option<String>,

    /// Key Vault secret holding the Clever client id.
    #[arg(
        long,
        env = "KEYVAULT_SECRET_CLIENT_ID",
        default_value = "clever-client-id"
    )]
    pub keyvault_secret_client_id: String,

    /// Key Vault secret holding the Clever client secret.
    #[arg(
        long,
        env = "KEYVAULT_SECRET_CLIENT_SECRET",
        default_value = "clever-client-secret"
    )]
    pub keyvault_secret_client_secret: String,

    /// Client id of a user-assigned managed identity (default: the system-assigned one).
    #[arg(long, env = "MANAGED_IDENTITY_CLIENT_ID")]
    pub managed_identity_client_id: Option<String>,

    /// Check that Key Vault's authentication challenge names a vault resource matching the
    /// vault host (the SDK's default). Turn off only for a local look-alike on 127.0.0.1.
    #[arg(long, env = "KEYVAULT_VERIFY_CHALLENGE_RESOURCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub keyvault_verify_challenge_resource: bool,

    /// Re-read the secrets this often, to notice rotation.
    #[arg(long, env = "CLEVER_AUTH_SECRETS_REFRESH_SECS", default_value_t = 300)]
    pub secrets_refresh_secs: u64,

    /// After Clever answers 401, re-read the secrets at once, but at most once per this many
    /// seconds.
    #[arg(
        long,
        env = "CLEVER_AUTH_SECRETS_REREAD_MIN_SECS",
        default_value_t = 30
    )]
    pub secrets_reread_min_secs: u64,

    /// PEM bundle of extra CA certificates trusted for outbound TLS (private or test CAs).
    #[arg(long, env = "CLEVER_AUTH_EXTRA_CA")]
    pub extra_ca: Option<PathBuf>,

    /// Allow plain http to loopback addresses (tests, the local demo). Everything else is
    /// https only.
    #[arg(long, env = "CLEVER_AUTH_ALLOW_LOOPBACK_HTTP")]
    pub allow_loopback_http: bool,

    /// Extra hosts the component may call, comma-separated (the hosts of clever_token_url and
    /// clever_api_base_url are always allowed).
    #[arg(long, env = "CLEVER_AUTH_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Log output: JSON lines (App Service collects them) or human-readable text.
    /// The level comes from RUST_LOG (default: info).
    #[arg(long, env = "CLEVER_AUTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Do not drive the refresher on a schedule: refreshes then run only after health
    /// requests, exactly as under `spin up` (useful to reproduce Spin behaviour locally).
    #[arg(long, env = "CLEVER_AUTH_NO_SCHEDULER")]
    pub no_scheduler: bool,

    /// Serve the per-district health detail on `--listen` (district ids, the secrets source,
    /// rate-limit state, full error text). Off: that listener gives the public answer only.
    /// Only for a listener that untrusted clients cannot reach.
    #[arg(long, env = "CLEVER_AUTH_HEALTH_DETAIL")]
    pub health_detail: bool,

    /// On SIGTERM/SIGINT, how long open connections may take to finish.
    #[arg(long, env = "CLEVER_AUTH_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Open connections at once on the listener; beyond it a new connection is closed at
    /// once. Keep the process's file-descriptor limit above it.
    #[arg(long, env = "CLEVER_AUTH_MAX_CONNECTIONS", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// A request head (request line and headers) must arrive whole within this many
    /// milliseconds; also bounds how long a kept-alive connection waits for its next request.
    #[arg(long, env = "CLEVER_AUTH_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// A connection with no request in progress and no traffic for this many milliseconds is
    /// closed.
    #[arg(long, env = "CLEVER_AUTH_IDLE_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,

    /// A client must take a response's bytes within this many milliseconds of their being
    /// ready, or the connection is closed.
    #[arg(long, env = "CLEVER_AUTH_WRITE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout_ms: u64,

    /// Gateway requests inside the component at once (the public listener's limit is 64);
    /// more wait for a turn. A call holds its place until its answer is written, so a client
    /// that stops reading holds one until the write deadline: the default leaves 32 places
    /// with 64 such clients attached. Each call in flight costs about 0.9 MiB: measured peak
    /// RSS streaming 1 MB pages at 256 connections is ≈122 MiB at 64, ≈135 MiB at 96, ≈144 MiB
    /// at 128. At most 160: the engine's pool holds 256 instances for both listeners and the
    /// refresher.
    #[arg(long, env = "CLEVER_AUTH_GATEWAY_MAX_IN_FLIGHT", default_value_t = 96, value_parser = clap::value_parser!(u32).range(1..=160))]
    pub gateway_max_in_flight: u32,

    /// Threads serving the gateway listener, each with its own event loop, its own pool of
    /// connections to Clever and, on a shared store, its own Redis connection (a request never
    /// changes thread). 0: one per CPU the process may use.
    #[arg(long, env = "CLEVER_AUTH_GATEWAY_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub gateway_threads: u16,

    /// Largest request head (request line and headers) in bytes; a larger one is answered 431.
    #[arg(long, env = "CLEVER_AUTH_MAX_REQUEST_HEAD_BYTES", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub max_request_head_bytes: u32,

    /// A health request's answer (body included) must come from the component within this
    /// many milliseconds, or the call is stopped, its instance dropped, and the client gets a
    /// 503 `component_deadline`.
    #[arg(long, env = "CLEVER_AUTH_HEALTH_DEADLINE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub health_deadline_ms: u64,

    /// A refresher call (run-due), or a health call that refreshes after answering, must end
    /// within this many milliseconds, or it is stopped and its instance dropped.
    #[arg(long, env = "CLEVER_AUTH_REFRESH_DEADLINE_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub refresh_deadline_ms: u64,

    /// A gateway request's answer head must come from the component within this many
    /// milliseconds, or the call is stopped, its instance dropped, and the client gets a 504
    /// `upstream_timeout`. Keep it above the component's `clever_gateway_deadline_ms` (default
    /// 30000), within which the gateway itself waits on Clever.
    #[arg(long, env = "CLEVER_AUTH_GATEWAY_CALL_DEADLINE_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_call_deadline_ms: u64,

    /// Application Insights connection string (InstrumentationKey=…;IngestionEndpoint=https://…).
    /// When set, requests, dependencies, log records, alerts and clever_auth.* metrics are
    /// exported; an unusable value is a warning at start-up and the service runs without
    /// telemetry.
    #[arg(
        long = "appinsights-connection-string",
        env = "APPLICATIONINSIGHTS_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub appinsights_connection_string: Option<String>,

    /// Advanced (tests, local look-alikes): export telemetry every this many milliseconds
    /// instead of the production intervals (spans and log records every 5 s, metrics every
    /// 60 s).
    #[arg(
        long,
        env = "CLEVER_AUTH_TELEMETRY_INTERVAL_MS",
        hide_short_help = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub telemetry_interval_ms: Option<u64>,
}

/// The gateway listener's address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayListen {
    Off,
    On(SocketAddr),
}

/// `off`, or a loopback socket address: the gateway hands out Clever access with the
/// service's tokens, so it must never be reachable from another machine (App Service sidecars
/// share localhost with the main container).
fn parse_gateway_listen(value: &str) -> Result<GatewayListen, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(GatewayListen::Off);
    }
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| format!("`{value}` is not `off` or an address like 127.0.0.1:8081"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the gateway listens on 127.0.0.1 or [::1] only"
        ));
    }
    Ok(GatewayListen::On(addr))
}

impl Cli {
    /// `--store` parsed. Parsed here rather than by clap, whose error would repeat the value
    /// (and a mistyped URL may hold a password).
    pub fn store_setting(&self) -> Result<crate::keyvalue::runtime_config::StoreSetting, String> {
        crate::keyvalue::runtime_config::parse(&self.store)
    }

    /// What the telemetry exporter needs of the command line.
    pub fn telemetry_settings(&self) -> telemetry::Settings {
        telemetry::Settings {
            connection_string: self
                .appinsights_connection_string
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            intervals: telemetry::settings::Intervals::with_override(self.telemetry_interval_ms),
            extra_ca: self.extra_ca.clone(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Where precompiled components are kept, if anywhere.
    pub fn component_cache_dir(&self) -> Option<PathBuf> {
        if self.no_component_cache {
            return None;
        }
        self.component_cache
            .clone()
            .or_else(crate::runtime::precompiled::default_dir)
    }

    pub fn secrets_source(&self) -> SecretsSource {
        self.secrets.unwrap_or(if self.keyvault_url.is_some() {
            SecretsSource::Keyvault
        } else {
            SecretsSource::None
        })
    }

    /// The listener's limits on what its clients can hold.
    pub fn listener_limits(&self) -> crate::server::ListenerLimits {
        crate::server::ListenerLimits {
            max_connections: self.max_connections as usize,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_head_bytes: self.max_request_head_bytes as usize,
            ..crate::server::ListenerLimits::default()
        }
    }

    /// How many threads serve the gateway listener.
    pub fn gateway_threads(&self) -> usize {
        match self.gateway_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => usize::from(n),
        }
    }

    /// The gateway listener's limits: the public listener's, with its own admission count.
    pub fn gateway_listener_limits(&self) -> crate::server::ListenerLimits {
        crate::server::ListenerLimits {
            max_in_flight: self.gateway_max_in_flight as usize,
            ..self.listener_limits()
        }
    }

    /// The wall-clock bound on each component call.
    pub fn call_deadlines(&self) -> crate::runtime::deadline::CallDeadlines {
        crate::runtime::deadline::CallDeadlines {
            health: Duration::from_millis(self.health_deadline_ms),
            refresh: Duration::from_millis(self.refresh_deadline_ms),
            gateway: Duration::from_millis(self.gateway_call_deadline_ms),
        }
    }

    /// The listen address, honouring App Service's `PORT` / `WEBSITES_PORT`.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        if let Some(addr) = self.listen {
            return Ok(addr);
        }
        default_listen(|k| std::env::var(k).ok())
    }
}

fn default_listen(var: impl Fn(&str) -> Option<String>) -> Result<SocketAddr, String> {
    for name in ["PORT", "WEBSITES_PORT"] {
        if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
            let port: u16 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}={value:?} is not a TCP port number"))?;
            return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
        }
    }
    Ok(SocketAddr::from(([0, 0, 0, 0], 8080)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gateway_threads_default_to_one_per_cpu() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cli = Cli::try_parse_from(["clever-auth-host"]).expect("no arguments parse");
        assert_eq!(cli.gateway_threads(), cpus);
        let cli = Cli::try_parse_from(["clever-auth-host", "--gateway-threads", "3"])
            .expect("an explicit count parses");
        assert_eq!(cli.gateway_threads(), 3);
        assert!(Cli::try_parse_from(["clever-auth-host", "--gateway-threads", "257"]).is_err());
    }

    #[test]
    fn limit_and_deadline_defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["clever-auth-host"]).expect("no arguments parse");
        assert_eq!(
            cli.listener_limits(),
            crate::server::ListenerLimits::default()
        );
        assert_eq!(
            cli.call_deadlines(),
            crate::runtime::deadline::CallDeadlines::default()
        );
        assert_eq!(cli.gateway_listener_limits().max_in_flight, 96);
        // Both listeners' admissions, plus the refresher, fit the engine's instance pool.
        let most = Cli::try_parse_from(["clever-auth-host", "--gateway-max-in-flight", "160"])
            .expect("the largest gateway admission parses");
        let both =
            most.listener_limits().max_in_flight + most.gateway_listener_limits().max_in_flight;
        assert!(both + 16 <= crate::runtime::engine::POOL_INSTANCES as usize);
        assert!(
            Cli::try_parse_from(["clever-auth-host", "--gateway-max-in-flight", "161"]).is_err()
        );
    }

    #[test]
    fn port_precedence_is_port_then_websites_port_then_8080() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_listen(env(&[])),
            Ok("0.0.0.0:8080".parse().expect("addr"))
        );
        assert_eq!(
            default_listen(env(&[("WEBSITES_PORT", "3000")])),
            Ok("0.0.0.0:3000".parse().expect("addr"))
        );
        assert_eq!(
            default_listen(env(&[("PORT", "80"), ("WEBSITES_PORT", "3000")])),
            Ok("0.0.0.0:80".parse().expect("addr"))
        );
        let err = default_listen(env(&[("PORT", "http")])).expect_err("invalid");
        assert!(err.contains("PORT=\"http\""), "{err}");
    }

    #[test]
    fn the_gateway_listens_on_loopback_only() {
        let on = |a: &str| GatewayListen::On(a.parse().expect("addr"));
        assert_eq!(
            parse_gateway_listen("127.0.0.1:8081"),
            Ok(on("127.0.0.1:8081"))
        );
        assert_eq!(parse_gateway_listen("[::1]:0"), Ok(on("[::1]:0")));
        assert_eq!(parse_gateway_listen("127.5.6.7:1"), Ok(on("127.5.6.7:1")));
        assert_eq!(parse_gateway_listen("off"), Ok(GatewayListen::Off));
        assert_eq!(parse_gateway_listen("OFF"), Ok(GatewayListen::Off));
        for bad in [
            "0.0.0.0:8081",
            "[::]:8081",
            "10.0.0.4:8081",
            "192.168.1.2:80",
        ] {
            let e = parse_gateway_listen(bad).expect_err(bad);
            assert!(e.contains("loopback"), "{e}");
        }
        assert!(parse_gateway_listen("localhost:8081").is_err());
        let cli = Cli::try_parse_from(["clever-auth-host"]).expect("defaults");
        assert_eq!(cli.gateway_listen, on("127.0.0.1:8081"));
        assert!(Cli::try_parse_from(["x", "--gateway-listen", "0.0.0.0:1"]).is_err());
    }
}
