//! The native baseline: plain hyper serving `GET /health/clever-auth` with the body the
//! component produces, computed per request from the same records in the host's own
//! in-memory key-value store type, with settings read through the host's own config source.
//!
//! Per request it does what `components/clever-auth/src/health_handler.rs` does for the public
//! answer: read the settings and the credentials' presence, read and deserialise the
//! precomputed health record (the status snapshot only when it cannot answer) and the host's
//! secrets status, build the report with `clever_auth_core::health`, serialise it, and
//! answer with the same headers. What it leaves out is exactly the wasm layer: a fresh
//! instance, the WASI HTTP bridge, the component's copies across the boundary (and the
//! component's after-response check whether a refresh is due, which is not health work).

use crate::seed;
use anyhow::Context as _;
use bytes::Bytes;
use clever_auth_core::health::{
    self, CredentialPresence, Districts, HealthInputs, View, CONTENT_TYPE,
};
use clever_auth_core::health_summary::HealthSummary;
use clever_auth_core::secret::Secret;
use clever_auth_core::settings::{self, SettingError, CLIENT_ID, CLIENT_SECRET};
use clever_auth_core::status::{keys, HostInstance, HostSecretsStatus, StatusSnapshot};
use clever_auth_host::config::{ConfigSource, EnvProvider, Provider};
use clever_auth_host::keyvalue::{MemoryStore, DEFAULT_LABEL};
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE as CT};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpListener;

const HEALTH_PATH: &str = "/health/clever-auth";

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Districts in the seeded status snapshot.
    #[arg(long, default_value_t = 2)]
    districts: usize,
}

/// The development secrets provider as the host keeps it: values read once from the
/// environment, held in memory behind a lock, handed out as copies.
struct CachedEnvSecrets(Mutex<[Option<Secret>; 2]>);

impl CachedEnvSecrets {
    fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim()))
        };
        Self(Mutex::new([
            read("CLEVER_CLIENT_ID"),
            read("CLEVER_CLIENT_SECRET"),
        ]))
    }
}

impl Provider for CachedEnvSecrets {
    fn name(&self) -> &'static str {
        "secrets"
    }

    fn get(&self, key: &str) -> Result<Option<String>, String> {
        let slot = match key {
            CLIENT_ID => 0,
            CLIENT_SECRET => 1,
            _ => return Ok(None),
        };
        let values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(values[slot].as_ref().map(|s| s.expose().to_string()))
    }
}

struct State {
    config: ConfigSource,
    kv: MemoryStore,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen must be a loopback address (got {})",
        args.listen
    );
    // The same runtime the host's #[tokio::main] builds: multi-threaded, one worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let kv = MemoryStore::new([DEFAULT_LABEL.to_string()]);
    seed::seed(&kv, &seed::district_ids(args.districts), seed::now_ms())?;
    let state = Arc::new(State {
        config: ConfigSource::new(
            Arc::new(EnvProvider),
            Arc::new(CachedEnvSecrets::from_env()),
        ),
        kv,
    });
    precompute_with_configured_skew(&state);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(_) => continue,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, &req)) }
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn handle(state: &State, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    // The host's routing, then the component's handler.
    let path = req.uri().path();
    if path != HEALTH_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found"}"#.into(),
            false,
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let body = json!({"error": "method not allowed", "allow": "GET, HEAD"}).to_string();
        return plain(StatusCode::METHOD_NOT_ALLOWED, body, true);
    }
    let (code, body) = health_body(state);
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CT, HeaderValue::from_static(CONTENT_TYPE));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn plain(status: StatusCode, body: String, allow: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CT, HeaderValue::from_static("application/json"));
    if allow {
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    r
}

/// The seed's precomputed record assumes the default expiry margin; redone with the configured
/// one, as the component's status write does.
fn precompute_with_configured_skew(state: &State) {
    let skew_ms = settings::load(|key: &str| state.config.get(key))
        .map_or(30_000, |s| s.expiry_skew_secs.saturating_mul(1000));
    let snapshot: Option<StatusSnapshot> = state
        .kv
        .get(DEFAULT_LABEL, keys::STATUS)
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(snapshot) = snapshot {
        let summary = HealthSummary::compute(&snapshot, seed::now_ms(), skew_ms);
        if let Ok(bytes) = serde_json::to_vec(&summary) {
            state.kv.set(DEFAULT_LABEL, keys::HEALTH_SUMMARY, bytes);
        }
    }
}

/// `health_handler::health_body`, natively.
fn health_body(state: &State) -> (u16, String) {
    let now = seed::now_ms();
    let get = |key: &str| state.config.get(key);
    let (settings_errors, skew_ms) = match settings::load(get) {
        Ok(s) => (Vec::new(), s.expiry_skew_secs.saturating_mul(1000)),
        Err(errors) => (errors, 30_000),
    };
    let present = |key| matches!(get(key), Ok(Some(v)) if !v.trim().is_empty());
    let credentials = CredentialPresence {
        client_id: present(CLIENT_ID),
        client_secret: present(CLIENT_SECRET),
    };
    // The public answer, as the component gives it on the public listener: the precomputed
    // record, and the whole snapshot only when that record cannot answer.
    let summary: Option<HealthSummary> = state
        .kv
        .get(DEFAULT_LABEL, keys::HEALTH_SUMMARY)
        .and_then(|b| serde_json::from_slice::<HealthSummary>(&b).ok())
        .filter(|s| s.counts_at(now, skew_ms).is_some());
    let snapshot: Option<StatusSnapshot> = match summary {
        Some(_) => None,
        None => state
            .kv
            .get(DEFAULT_LABEL, keys::STATUS)
            .and_then(|b| serde_json::from_slice(&b).ok()),
    };
    let secrets: Option<HostSecretsStatus> = state
        .kv
        .get(DEFAULT_LABEL, keys::HOST_SECRETS)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let instance: Option<HostInstance> = state
        .kv
        .get(DEFAULT_LABEL, keys::HOST_INSTANCE)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let records: Vec<_> = snapshot
        .iter()
        .flat_map(|s| s.districts.values().cloned())
        .collect();
    let (service, districts) = match &summary {
        Some(s) => (
            Some(&s.service),
            Districts::Counted {
                counts: s.counts_at(now, skew_ms).unwrap_or_default(),
                latest_error: s.latest_error.as_ref(),
            },
        ),
        None => (
            snapshot.as_ref().map(|s| &s.service),
            Districts::Records(&records),
        ),
    };
    let settings_errors: Vec<SettingError> = settings_errors;
    let report = health::report(&HealthInputs {
        now,
        settings_errors: &settings_errors,
        credentials,
        service,
        districts,
        expiry_skew_ms: skew_ms,
        secrets: secrets.as_ref(),
        instance_id: instance.as_ref().and_then(|i| i.instance_id.as_deref()),
        view: View::Public,
    });
    (report.http_status(), report.body.to_string())
}
