//! `GET /health/clever-auth`, answered from the key-value store only.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::{clock, config, kv::Kv};
use clever_auth_core::health::{self, HealthInputs, CONTENT_TYPE};
use clever_auth_core::settings::SettingError;
use clever_auth_core::status::{keys, HostSecretsStatus, StatusSnapshot};
use serde_json::json;

const HEALTH_PATH: &str = "/health/clever-auth";
/// `output-stream.blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

pub fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let (status, content_type, body, allow) = if path != HEALTH_PATH {
        let body = json!({"error": "not found", "path": path}).to_string();
        (404, "application/json", body, false)
    } else if !matches!(request.method(), Method::Get | Method::Head) {
        let body = json!({"error": "method not allowed", "allow": "GET, HEAD"}).to_string();
        (405, "application/json", body, true)
    } else {
        let (code, body) = health_body();
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

/// Builds the report. A store that cannot be read is itself a `fail`, reported in the body.
fn health_body() -> (u16, String) {
    let now = clock::now();
    let (settings_errors, skew_ms) = match config::settings() {
        Ok(s) => (Vec::new(), s.expiry_skew_secs.saturating_mul(1000)),
        // Unusable settings: assume the documented skew so the token checks still make sense.
        Err(errors) => (errors, 30_000),
    };
    let credentials = config::credential_presence();
    let read = Kv::open().and_then(|kv| {
        Ok((
            kv.get::<StatusSnapshot>(keys::STATUS)?,
            kv.get::<HostSecretsStatus>(keys::HOST_SECRETS)?,
        ))
    });
    let (snapshot, secrets, store_error) = match read {
        Ok((s, h)) => (s, h, None),
        Err(e) => (None, None, Some(e)),
    };
    let service = snapshot.as_ref().map(|s| &s.service);
    let districts: Vec<_> = snapshot
        .iter()
        .flat_map(|s| s.districts.values().cloned())
        .collect();
    let mut settings_errors = settings_errors;
    if let Some(e) = store_error {
        // Surfaced through the same "named problem" channel as settings.
        settings_errors.push(SettingError {
            setting: "key_value_stores",
            message: e.to_string(),
        });
    }
    let report = health::report(&HealthInputs {
        now,
        settings_errors: &settings_errors,
        credentials,
        service,
        districts: &districts,
        expiry_skew_ms: skew_ms,
        secrets: secrets.as_ref(),
    });
    (report.http_status(), report.body.to_string())
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
