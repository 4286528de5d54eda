//! `GET /health/clever-auth`, answered from the key-value store only: the public answer from
//! the small precomputed record, the detail (see `clever_auth_core::health_view`) from the full
//! status snapshot.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::kv::{self, Kv, KvError};
use crate::{clock, config};
use clever_auth_core::gateway::figures::{self, GatewayFigures};
use clever_auth_core::gateway::keys as gateway_keys;
use clever_auth_core::gateway::versions::{self, VersionObservation};
use clever_auth_core::health::{
    self, CredentialPresence, Districts, HealthInputs, View, CONTENT_TYPE,
};
use clever_auth_core::health_summary::HealthSummary;
use clever_auth_core::health_view;
use clever_auth_core::settings::SettingError;
use clever_auth_core::settings_check::SettingsCheck;
use clever_auth_core::status::{
    keys, CredentialState, HostDeadlineStatus, HostInstance, HostSecretsStatus, HostStoreStatus,
    StatusSnapshot,
};
use clever_auth_core::UnixMillis;
use serde_json::json;

const HEALTH_PATH: &str = "/health/clever-auth";
/// `output-stream.blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

pub fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let path_and_query = request.path_with_query().unwrap_or_default();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query.as_str(), None),
    };
    let (status, content_type, body, allow) = if path != HEALTH_PATH {
        let body = json!({"error": "not found", "path": path}).to_string();
        (404, "application/json", body, false)
    } else if !matches!(request.method(), Method::Get | Method::Head) {
        let body = json!({"error": "method not allowed", "allow": "GET, HEAD"}).to_string();
        (405, "application/json", body, true)
    } else {
        let header = request
            .headers()
            .get(health_view::DETAIL_HEADER)
            .into_iter()
            .next();
        let now = clock::now();
        let kv = Kv::open();
        let check = config::checked(kv.as_ref().ok(), now);
        // The opt-in is read live, not from the stored check: under Spin that record is shared
        // by every `spin up` on one Redis, and a process without the opt-in must never answer
        // the detail because another one has it. One host call.
        let setting = config::health_detail_setting();
        let view = health_view::decide(setting.as_deref(), header.as_deref(), query);
        let (code, body) = health_body(view, now, kv, &check);
        (code, CONTENT_TYPE, body, false)
    };
    let head = matches!(request.method(), Method::Head);
    respond(
        response_out,
        status,
        content_type,
        allow,
        if head { "" } else { &body },
    );
}

/// What the store holds for one health answer.
#[derive(Default)]
struct Stored {
    summary: Option<HealthSummary>,
    snapshot: Option<StatusSnapshot>,
    secrets: Option<HostSecretsStatus>,
    instance: Option<HostInstance>,
    deadlines: Option<HostDeadlineStatus>,
    store: Option<HostStoreStatus>,
    /// Since when this instance refreshes alone (its own status is the snapshot then).
    alone_since: Option<UnixMillis>,
    /// API versions seen on gateway traffic.
    observed: Option<VersionObservation>,
    /// Each district's gateway figures; read for the detail view only (their number grows
    /// with the districts).
    gateway: Vec<(String, GatewayFigures)>,
}

/// Reads what `view` needs: the public answer reads the small precomputed record, and the
/// whole snapshot only when that record cannot answer for `now` (see `health_summary`).
fn read_store(
    kv: Result<Kv, KvError>,
    view: View,
    now: UnixMillis,
    skew_ms: u64,
) -> Result<Stored, KvError> {
    let kv = kv?;
    let public = view == View::Public;
    let (mut stored, status) = first_read(&kv, public)?;
    if !public {
        stored.gateway = gateway_figures(&kv);
    }
    // While this instance refreshes alone its own status is the current one; the shared
    // copy stops at the outage.
    if stored.store.as_ref().is_some_and(|s| !s.reachable) {
        if let Some(own) = crate::solo::load(&kv) {
            stored.alone_since = Some(own.since);
            stored.snapshot = Some(own.status);
            return Ok(stored);
        }
    }
    if public {
        stored.summary =
            kv::parse::<HealthSummary>(status).filter(|s| s.counts_at(now, skew_ms).is_some());
        if stored.summary.is_none() {
            stored.snapshot = kv.get(keys::STATUS)?;
        }
    } else {
        stored.snapshot = kv::parse(status);
    }
    Ok(stored)
}

/// The host's records, the versions seen and the view's status record (the public summary, or
/// the whole snapshot for the detail), in one `wasi:keyvalue/batch.get-many`: one `MGET` on
/// the native host's Redis where a `GET` each made two round trips (the host's own records are
/// answered from the process). Spin 4.0.2's Redis provider fails every get-many, so then they
/// are read one by one, and a store that does not answer fails those reads too.
fn first_read(kv: &Kv, public: bool) -> Result<(Stored, Option<Vec<u8>>), KvError> {
    let status_key = if public {
        keys::HEALTH_SUMMARY
    } else {
        keys::STATUS
    };
    let wanted = [
        keys::HOST_SECRETS,
        keys::HOST_INSTANCE,
        keys::HOST_DEADLINES,
        keys::HOST_STORE,
        gateway_keys::VERSIONS,
        status_key,
    ]
    .map(String::from);
    let values = match kv.get_many(&wanted) {
        Ok(values) => values,
        Err(_) => wanted
            .iter()
            .map(|k| kv.bucket().get(k).map_err(kv::describe))
            .collect::<Result<_, _>>()?,
    };
    let Ok([secrets, instance, deadlines, store, observed, status]) =
        <[Option<Vec<u8>>; 6]>::try_from(values)
    else {
        return Err(KvError("get-many answered another number of values".into()));
    };
    let stored = Stored {
        secrets: kv::parse(secrets),
        instance: kv::parse(instance),
        deadlines: kv::parse(deadlines),
        store: kv::parse(store),
        observed: kv::parse(observed),
        ..Default::default()
    };
    Ok((stored, status))
}

/// Builds the report. A store that cannot be read is itself a `fail`, reported in the body.
fn health_body(
    view: View,
    now: UnixMillis,
    kv: Result<Kv, KvError>,
    check: &SettingsCheck,
) -> (u16, String) {
    let mut settings_errors = check.errors();
    let skew_ms = check.expiry_skew_ms;
    let api_version = check.api_version.clone();
    let mut stored = read_store(kv, view, now, skew_ms).unwrap_or_else(|e| {
        // Surfaced through the same "named problem" channel as settings.
        settings_errors.push(SettingError {
            setting: "key_value_stores",
            message: e.to_string(),
        });
        Stored::default()
    });
    // Credentials Clever accepted at the last acquisition are there: reading them again on
    // every health request would cost two vault round trips under Spin's Key Vault provider.
    // Only when that is not known (missing, rejected, nothing acquired yet) are they read.
    let accepted = stored
        .summary
        .as_ref()
        .map(|s| &s.service)
        .or(stored.snapshot.as_ref().map(|s| &s.service))
        .is_some_and(|s| s.credentials == Some(CredentialState::Accepted));
    let credentials = if accepted {
        CredentialPresence {
            client_id: true,
            client_secret: true,
        }
    } else {
        config::credential_presence()
    };
    // API versions seen on gateway traffic count like the probes' (the newer wins).
    let observed = stored.observed.take();
    for service in [
        stored.summary.as_mut().map(|s| &mut s.service),
        stored.snapshot.as_mut().map(|s| &mut s.service),
    ]
    .into_iter()
    .flatten()
    {
        service.api_version = versions::merge(
            service.api_version.as_ref(),
            observed.as_ref(),
            &api_version,
        );
    }
    let records: Vec<_> = stored
        .snapshot
        .iter()
        .flat_map(|s| s.districts.values().cloned())
        .collect();
    let (service, districts) = match &stored.summary {
        Some(summary) => (
            Some(&summary.service),
            Districts::Counted {
                counts: summary.counts_at(now, skew_ms).unwrap_or_default(),
                latest_error: summary.latest_error.as_ref(),
            },
        ),
        None => (
            stored.snapshot.as_ref().map(|s| &s.service),
            Districts::Records(&records),
        ),
    };
    let report = health::report(&HealthInputs {
        now,
        settings_errors: &settings_errors,
        credentials,
        service,
        districts,
        expiry_skew_ms: skew_ms,
        secrets: stored.secrets.as_ref(),
        instance_id: stored
            .instance
            .as_ref()
            .and_then(|i| i.instance_id.as_deref()),
        view,
    });
    let report = health::with_host_deadlines(report, now, stored.deadlines.as_ref());
    let report = health::with_host_store(report, now, stored.store.as_ref(), stored.alone_since);
    let status = report.http_status();
    let mut body = report.body;
    figures::annotate(&mut body, &stored.gateway, now);
    (status, body.to_string())
}

/// Each district's gateway figures (only districts the gateway has served have any).
fn gateway_figures(kv: &Kv) -> Vec<(String, GatewayFigures)> {
    let Ok(keys) = kv.keys_with_prefix(gateway_keys::FIGURES_PREFIX) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| {
            let district = k.strip_prefix(gateway_keys::FIGURES_PREFIX)?.to_string();
            Some((district, kv.get::<GatewayFigures>(k).ok().flatten()?))
        })
        .collect()
}

/// Prepares the public answer's record from the snapshot just stored; called by the one
/// function that writes the status (`refresh::save`), so the two never disagree for long.
pub fn store_summary(kv: &Kv, snapshot: &StatusSnapshot) {
    let skew_ms = config::settings().map_or(30_000, |s| s.expiry_skew_secs.saturating_mul(1000));
    let summary = HealthSummary::compute(snapshot, clock::now(), skew_ms);
    if let Err(e) = kv.put(keys::HEALTH_SUMMARY, &summary) {
        crate::log::event(
            "error",
            "store_write_failed",
            json!({ "key": keys::HEALTH_SUMMARY, "error": e.to_string() }),
        );
    }
}

fn respond(out: ResponseOutparam, status: u16, content_type: &str, allow: bool, body: &str) {
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), content_type.as_bytes().to_vec()),
        ("cache-control".into(), b"no-store".to_vec()),
    ];
    // A known length lets the server send head and body as one message, with no chunked
    // framing and no separate end-of-body write. (HEAD writes no body: no length then.)
    if !body.is_empty() {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    if allow {
        headers.push(("allow".into(), b"GET, HEAD".to_vec()));
    }
    let fields = match Fields::from_list(&headers) {
        Ok(f) => f,
        Err(_) => Fields::new(),
    };
    let response = OutgoingResponse::new(fields);
    // Only fails for codes outside 100..=999, which these constants are not.
    let _ = response.set_status_code(status);
    let Ok(outgoing_body) = response.body() else {
        return;
    };
    // A body that fits one write is written before the response is handed over, so the server
    // finds head and body ready together and sends them in one segment. Handing the head over
    // first made Spin send it alone and the body after it: with Nagle's algorithm on Spin's
    // socket and the client's delayed ACK, every answer then waited about 40 ms.
    let body_first = body.len() <= WRITE_CHUNK;
    if body_first {
        write_body(&outgoing_body, body);
        ResponseOutparam::set(out, Ok(response));
    } else {
        ResponseOutparam::set(out, Ok(response));
        write_body(&outgoing_body, body);
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}

fn write_body(outgoing_body: &OutgoingBody, body: &str) {
    if let Ok(stream) = outgoing_body.write() {
        for chunk in body.as_bytes().chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The client went away; nothing useful left to do with this response.
                break;
            }
        }
    }
}
