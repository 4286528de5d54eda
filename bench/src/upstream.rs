//! A fast stand-in for Clever's data API, the upstream of the gateway bench: answers
//! `GET /{version}/bytes/{n}` with `n` bytes of one shared buffer (no copy per request),
//! `GET /{version}/schools` with a page of Clever's shape (about 1 KB, with `uri`s), and
//! the refresher's probes (`/{version}/districts/{id}`, `/{version}/me`) with a minimal
//! record. A bearer token must be present (any value: it measures proxies, not Clever).
//! Every answer carries Clever's rate-limit headers (one fixed window of a minute, a limit no
//! bench reaches), since the gateway meters its calls by them: without them it would measure
//! an unmetered gateway that Clever never sees.
//!
//! The fake Clever would be the bottleneck here: one thread, and a request log that grows
//! with every request.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Largest body served; 1 MB is what the bench asks for.
const MAX_BYTES: usize = 4 << 20;
/// Calls per window in the rate-limit headers: far beyond what a bench sends in a minute.
const RATE_LIMIT: u64 = 1_000_000_000;
const WINDOW_SECS: u64 = 60;

/// Calls in the current window: (window start, count), shared by every connection.
static WINDOW: std::sync::Mutex<(u64, u64)> = std::sync::Mutex::new((0, 0));

/// `X-Ratelimit-Limit`, `-Remaining` and `-Reset` as Clever sends them.
fn rate_limit_headers() -> [(&'static str, String); 3] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = now / WINDOW_SECS * WINDOW_SECS;
    let used = {
        let mut w = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
        if w.0 != start {
            *w = (start, 0);
        }
        w.1 += 1;
        w.1
    };
    [
        ("x-ratelimit-limit", RATE_LIMIT.to_string()),
        (
            "x-ratelimit-remaining",
            RATE_LIMIT.saturating_sub(used).to_string(),
        ),
        ("x-ratelimit-reset", (start + WINDOW_SECS).to_string()),
    ]
}

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.listen.ip().is_loopback(), "--listen must be loopback");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(serve(args.listen))
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    let pattern: Bytes = (0..MAX_BYTES)
        .map(|i| b"0123456789abcdef"[i % 16])
        .collect::<Vec<u8>>()
        .into();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pattern = pattern.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let pattern = pattern.clone();
                async move { Ok::<_, Infallible>(answer(&req, &pattern)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(req: &Request<B>, pattern: &Bytes) -> Response<Full<Bytes>> {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !bearer {
        return reply(
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error":"unauthorized"}"#.into(),
        );
    }
    let segments: Vec<&str> = req.uri().path().split('/').skip(1).collect();
    match segments.as_slice() {
        [_, "bytes", n] => match n.parse::<usize>() {
            Ok(n) if n <= MAX_BYTES => {
                reply(StatusCode::OK, "application/octet-stream", pattern.slice(..n))
            }
            _ => reply(StatusCode::BAD_REQUEST, "text/plain", "bad size".into()),
        },
        [v, "schools"] => reply(StatusCode::OK, "application/json", schools_page(v).into()),
        [v, "districts", id] => reply(
            StatusCode::OK,
            "application/json",
            format!(r#"{{"data":{{"id":"{id}","name":"Bench District"}},"links":[{{"rel":"self","uri":"/{v}/districts/{id}"}}]}}"#).into(),
        ),
        [v, "me"] => reply(
            StatusCode::OK,
            "application/json",
            format!(r#"{{"data":{{"id":"bench","type":"district"}},"links":[{{"rel":"self","uri":"/{v}/me"}}]}}"#).into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "application/json", r#"{"error":"not found"}"#.into()),
    }
}

/// A page of Clever's shape, about 1 KB: records with their `uri`s and the page's `links`, so
/// the gateway looks for API versions in it as it does in Clever's answers.
fn schools_page(version: &str) -> String {
    let records: Vec<String> = (1..=4)
        .map(|i| {
            format!(
                r#"{{"data":{{"id":"bench-school-{i}","district":"bench","name":"Bench School {i}","school_number":"{i:04}","low_grade":"Kindergarten","high_grade":"5","location":{{"city":"Bench","state":"CA"}}}},"uri":"/{version}/schools/bench-school-{i}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"data":[{}],"links":[{{"rel":"self","uri":"/{version}/schools?limit=4"}},{{"rel":"next","uri":"/{version}/schools?limit=4&starting_after=bench-school-4"}}]}}"#,
        records.join(",")
    )
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in rate_limit_headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    response
}
