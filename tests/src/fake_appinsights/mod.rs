//! A fake **Application Insights ingestion endpoint** (the "breeze" track API): HTTPS on
//! loopback with a test CA, `POST /v2/track` and `/v2.1/track`, gzip or plain JSON (an array of
//! envelopes, or one envelope per line), answering like the real service
//! (`{"itemsReceived":n,"itemsAccepted":n,"errors":[]}`). It keeps every accepted envelope for
//! assertions, can answer every upload with a scripted status (503, …), and can go down
//! (connections refused) and come back on the same port.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use clever_auth_tests::fake_appinsights::FakeAppInsights;
//!
//! let ai = FakeAppInsights::start().await?;
//! let dir = tempfile::tempdir()?;
//! let ca = ai.write_ca_pem(dir.path())?;
//! // Host: APPLICATIONINSIGHTS_CONNECTION_STRING=ai.connection_string(), --extra-ca ca.
//! let requests = ai
//!     .wait_for(Duration::from_secs(10), "a Request", |e| {
//!         e.iter().any(|e| FakeAppInsights::kind(e) == Some("Request"))
//!     })
//!     .await?;
//! # let _ = requests; Ok(()) }
//! ```

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use flate2::read::GzDecoder;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::fake_azure::server::{Endpoint, Handler, Reply, Resp};
use crate::fake_clever::tls::make_test_tls_for;
use crate::fake_support::response::{finish, status_code, JSON};
use crate::fake_support::util::lock;
use crate::fake_support::wait::wait_for_log;

/// The instrumentation key of every test connection string.
pub const TEST_INSTRUMENTATION_KEY: &str = "00000000-0000-0000-0000-000000000000";

/// Uploads larger than this (uncompressed or not) are refused with 413, as the service does.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One upload as the fake saw it.
#[derive(Clone, Debug)]
pub struct TrackRequest {
    pub path: String,
    pub gzip: bool,
    /// Envelopes in the upload (0 when it could not be read).
    pub items: usize,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    envelopes: Vec<Value>,
    requests: Vec<TrackRequest>,
    /// Answer every upload with this status instead of accepting it.
    forced_status: Option<u16>,
}

struct Core {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

impl Core {
    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
}

pub struct FakeAppInsights {
    core: Arc<Core>,
    endpoint: Endpoint,
    ca_pem: String,
}

impl FakeAppInsights {
    /// Listens on `127.0.0.1` (a free port) with a fresh test CA.
    pub async fn start() -> anyhow::Result<Self> {
        let tls = make_test_tls_for(
            "clever-auth fake Application Insights test CA",
            "localhost",
            &["localhost", "127.0.0.1", "::1"],
        )?;
        let core = Arc::new(Core {
            state: Mutex::new(State::default()),
            changes: watch::Sender::new(0),
        });
        let handler_core = core.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(handler_core.clone(), req)));
        let endpoint = Endpoint::bind(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            Some(TlsAcceptor::from(tls.server_config.clone())),
            handler,
            false,
        )?;
        Ok(Self {
            core,
            endpoint,
            ca_pem: tls.ca_pem,
        })
    }

    /// `https://127.0.0.1:<port>/`
    pub fn ingestion_endpoint(&self) -> String {
        format!("https://{}/", self.endpoint.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// `InstrumentationKey=00000000-…;IngestionEndpoint=https://127.0.0.1:<port>/`
    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={TEST_INSTRUMENTATION_KEY};IngestionEndpoint={}",
            self.ingestion_endpoint()
        )
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA (PEM) that signed the fake's certificate to `dir`.
    pub fn write_ca_pem(&self, dir: impl AsRef<Path>) -> anyhow::Result<PathBuf> {
        let path = dir.as_ref().join("fake-appinsights-ca.pem");
        std::fs::write(&path, &self.ca_pem).with_context(|| {
            format!(
                "writing the fake Application Insights CA to {}",
                path.display()
            )
        })?;
        Ok(path)
    }

    /// Every accepted envelope, in arrival order.
    pub fn envelopes(&self) -> Vec<Value> {
        lock(&self.core.state).envelopes.clone()
    }

    /// Every upload, accepted or not.
    pub fn requests(&self) -> Vec<TrackRequest> {
        lock(&self.core.state).requests.clone()
    }

    /// Forgets the envelopes and uploads seen so far.
    pub fn clear(&self) {
        {
            let mut state = lock(&self.core.state);
            state.envelopes.clear();
            state.requests.clear();
        }
        self.core.changed();
    }

    /// `Some(503)`: answer every upload with that status (nothing is kept); `None`: accept.
    pub fn set_status(&self, status: Option<u16>) {
        lock(&self.core.state).forced_status = status;
        self.core.changed();
    }

    /// `true`: connections are refused (open ones reset); `false`: listens again.
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        self.endpoint.set_down(down).await
    }

    /// `Request`, `RemoteDependency`, `Message`, `Exception`, `Event`, `Metric` for an
    /// envelope named `Microsoft.ApplicationInsights.<kind>`.
    pub fn kind(envelope: &Value) -> Option<&str> {
        envelope["name"]
            .as_str()?
            .strip_prefix("Microsoft.ApplicationInsights.")
    }

    /// The envelopes of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.envelopes()
            .into_iter()
            .filter(|e| Self::kind(e) == Some(kind))
            .collect()
    }

    /// Waits until `done` holds for the accepted envelopes; returns them. The error lists the
    /// last ones.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl FnMut(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let changes = self.core.changes.subscribe();
        wait_for_log(
            changes,
            timeout,
            "the fake Application Insights was dropped",
            || self.envelopes(),
            summary,
            done,
        )
        .await
        .with_context(|| format!("waiting for {what}"))
    }

    /// Waits until at least `n` uploads arrived (accepted or not).
    pub async fn wait_for_uploads(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let changes = self.core.changes.subscribe();
        wait_for_log(
            changes,
            timeout,
            "the fake Application Insights was dropped",
            || self.requests(),
            |r| format!("{} {} items={}", r.path, r.status, r.items),
            |all| all.len() >= n,
        )
        .await
        .with_context(|| format!("waiting for {n} uploads"))?;
        Ok(())
    }
}

/// One line per envelope for error messages.
pub fn summary(envelope: &Value) -> String {
    let kind = FakeAppInsights::kind(envelope).unwrap_or("?");
    let data = &envelope["data"]["baseData"];
    let name = match kind {
        "Metric" => data["metrics"][0]["name"].as_str(),
        "Message" => data["message"].as_str(),
        _ => data["name"].as_str(),
    };
    format!("{kind} {}", name.unwrap_or(""))
}

async fn handle(core: Arc<Core>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if !matches!(path.as_str(), "/v2/track" | "/v2.1/track") {
        return Reply::Respond(answer(StatusCode::NOT_FOUND, json!({"error": "not found"})));
    }
    if req.method() != Method::POST {
        return Reply::Respond(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method not allowed"}),
        ));
    }
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Reply::Respond(record(&core, path, gzip, 0, StatusCode::PAYLOAD_TOO_LARGE))
        }
    };
    let envelopes = match parse(&body, gzip) {
        Ok(envelopes) => envelopes,
        Err(e) => {
            let resp = answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
            record(&core, path, gzip, 0, StatusCode::BAD_REQUEST);
            return Reply::Respond(resp);
        }
    };
    let n = envelopes.len();
    let forced = lock(&core.state).forced_status;
    if let Some(status) = forced {
        let status = status_code(status);
        record(&core, path, gzip, n, status);
        return Reply::Respond(answer(
            status,
            json!({"itemsReceived": n, "itemsAccepted": 0, "errors": []}),
        ));
    }
    lock(&core.state).envelopes.extend(envelopes);
    Reply::Respond(record(&core, path, gzip, n, StatusCode::OK))
}

/// Logs the upload and builds the service's answer for `status`.
fn record(core: &Core, path: String, gzip: bool, items: usize, status: StatusCode) -> Resp {
    lock(&core.state).requests.push(TrackRequest {
        path,
        gzip,
        items,
        status: status.as_u16(),
    });
    core.changed();
    let accepted = if status == StatusCode::OK { items } else { 0 };
    answer(
        status,
        json!({"itemsReceived": items, "itemsAccepted": accepted, "errors": []}),
    )
}

fn answer(status: StatusCode, body: Value) -> Resp {
    finish(
        Response::builder().status(status),
        Some(JSON),
        Bytes::from(body.to_string()),
        Vec::new(),
        r#"{"error":"fake response"}"#,
    )
}

/// The envelopes of an upload: a JSON array, or one JSON object per line.
fn parse(body: &[u8], gzip: bool) -> anyhow::Result<Vec<Value>> {
    let mut text = Vec::new();
    if gzip {
        GzDecoder::new(body)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut text)
            .context("the body is not gzip")?;
        anyhow::ensure!(text.len() <= MAX_BODY, "the body is too large");
    } else {
        text = body.to_vec();
    }
    if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&text) {
        return Ok(items);
    }
    std::str::from_utf8(&text)
        .context("the body is not UTF-8")?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).context("a line is not JSON"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_lines_are_both_read() -> anyhow::Result<()> {
        assert_eq!(parse(br#"[{"a":1},{"b":2}]"#, false)?.len(), 2);
        assert_eq!(parse(b"{\"a\":1}\n{\"b\":2}\n", false)?.len(), 2);
        assert!(parse(b"not json", false).is_err());
        Ok(())
    }
}
