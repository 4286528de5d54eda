//! A closed-loop HTTP/1.1 load generator: C keep-alive connections, each sending its next
//! request as soon as the previous answer is read, for a warm-up and then a measured window,
//! bounded by time and by a request count. Latencies go to HDR histograms (one per connection,
//! merged at the end). Loopback targets only.

use crate::proc_stat;
use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HOST;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Longest latency the histograms track exactly (µs); longer ones are recorded as this.
const MAX_TRACKED_US: u64 = 60_000_000;
/// How often the watched server's resident memory is sampled.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

#[derive(clap::Args)]
pub struct Args {
    /// Target, `http://127.0.0.1:PORT/path` (loopback only).
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections, each sending requests back to back.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Unrecorded warm-up before the window, seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Stop the window early after this many requests.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A server process to watch during the window: its CPU time and peak VmRSS are reported.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// An extra request header, `Name: value` (repeatable): e.g. the bearer token a direct
    /// run against an upstream needs.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
}

struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

/// `Name: value` into a header pair.
fn parse_header(
    line: &str,
) -> anyhow::Result<(hyper::header::HeaderName, hyper::header::HeaderValue)> {
    let (name, value) = line
        .split_once(':')
        .with_context(|| format!("--header {line:?} is not `Name: value`"))?;
    Ok((name.trim().parse()?, value.trim().parse()?))
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// targets are supported (got {url})");
        }
        let host = uri.host().context("the URL has no host")?;
        let ip: IpAddr = match host {
            "localhost" => Ipv4Addr::LOCALHOST.into(),
            h => h
                .trim_matches(['[', ']'])
                .parse()
                .with_context(|| format!("{h:?} is not an IP address"))?,
        };
        // Load goes to this machine only.
        anyhow::ensure!(ip.is_loopback(), "{ip} is not a loopback address");
        let port = uri.port_u16().unwrap_or(80);
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            authority: uri
                .authority()
                .map_or_else(|| format!("{ip}:{port}"), ToString::to_string),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), ToString::to_string),
            headers: Vec::new(),
        })
    }
}

/// What one connection saw during the measured window.
struct ConnResult {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    body_bytes: Option<usize>,
    finished: Instant,
}

struct Plan {
    target: Target,
    record_from: Instant,
    deadline: Instant,
    max_requests: u64,
    issued: AtomicU64,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let mut target = Target::parse(&args.url)?;
    target.headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        args.secs > 0.0 && args.warmup_secs >= 0.0,
        "--secs must be positive"
    );
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(args, target))?;
    println!("{result}");
    Ok(())
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn run(args: Args, target: Target) -> anyhow::Result<Value> {
    let connections = args.connections.max(1);
    // Every connection is open before the clock starts.
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(&target).await?);
    }
    let start = Instant::now();
    let record_from = start + Duration::from_secs_f64(args.warmup_secs);
    let plan = Arc::new(Plan {
        target,
        record_from,
        deadline: record_from + Duration::from_secs_f64(args.secs),
        max_requests: args.max_requests.max(1),
        issued: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        tasks.spawn(connection(plan.clone(), sender));
    }

    tokio::time::sleep_until(record_from.into()).await;
    let pid = args.watch_pid.map(|p| p.to_string());
    let gen_cpu0 = proc_stat::cpu_time("self");
    let server_cpu0 = pid.as_deref().and_then(proc_stat::cpu_time);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = pid.clone().map(|pid| {
        let done = done.clone();
        tokio::spawn(async move {
            let mut max_kib = 0;
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = proc_stat::status_kib(&pid, "VmRSS") {
                    max_kib = max_kib.max(kib);
                }
                tokio::time::sleep(RSS_SAMPLE_EVERY).await;
            }
            max_kib
        })
    });

    let mut latency = Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_US, 3)?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = 0;
    let mut body_bytes = None;
    let mut end = record_from;
    while let Some(joined) = tasks.join_next().await {
        let r = joined.context("a connection task panicked")??;
        latency.add(&r.latency_us)?;
        for (status, n) in r.statuses {
            *statuses.entry(status).or_default() += n;
        }
        errors += r.errors;
        body_bytes = body_bytes.or(r.body_bytes);
        end = end.max(r.finished);
    }
    let gen_cpu1 = proc_stat::cpu_time("self");
    let server_cpu1 = pid.as_deref().and_then(proc_stat::cpu_time);
    done.store(true, Ordering::Relaxed);
    let rss_max_kib = match sampler {
        Some(task) => Some(task.await?),
        None => None,
    };

    let window = end.saturating_duration_since(record_from).as_secs_f64();
    let answered: u64 = statuses.values().sum();
    let ok: u64 = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let cpu_secs = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let gen_cpu = cpu_secs(gen_cpu0, gen_cpu1);
    let server_cpu = cpu_secs(server_cpu0, server_cpu1);
    let q = |p: f64| latency.value_at_quantile(p);
    Ok(json!({
        "connections": connections,
        "threads": args.threads.max(1),
        "window_secs": window,
        "requests": answered,
        "ok_2xx": ok,
        "non_2xx": answered - ok,
        "errors": errors,
        "statuses": statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "rps": if window > 0.0 { answered as f64 / window } else { 0.0 },
        "latency_us": {
            "p50": q(0.50),
            "p90": q(0.90),
            "p99": q(0.99),
            "p999": q(0.999),
            "max": latency.max(),
            "mean": latency.mean(),
        },
        "body_bytes": body_bytes,
        "generator_cpu_secs": gen_cpu,
        "server_cpu_secs": server_cpu,
        "server_rss_max_kib": rss_max_kib,
    }))
}

/// One connection's loop: send, read the whole answer, record, repeat.
async fn connection(
    plan: Arc<Plan>,
    mut sender: SendRequest<Empty<Bytes>>,
) -> anyhow::Result<ConnResult> {
    let mut result = ConnResult {
        latency_us: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)?,
        statuses: BTreeMap::new(),
        errors: 0,
        body_bytes: None,
        finished: plan.record_from,
    };
    loop {
        let t0 = Instant::now();
        if t0 >= plan.deadline {
            break;
        }
        let recording = t0 >= plan.record_from;
        if recording && plan.issued.fetch_add(1, Ordering::Relaxed) >= plan.max_requests {
            break;
        }
        let answer = match sender.ready().await {
            Ok(()) => {
                let mut req = Request::get(plan.target.path.as_str())
                    .header(HOST, plan.target.authority.as_str())
                    .body(Empty::<Bytes>::new())?;
                for (name, value) in &plan.target.headers {
                    req.headers_mut().insert(name.clone(), value.clone());
                }
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        read_to_end(resp.into_body()).await.map(|len| (status, len))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        };
        let elapsed = t0.elapsed();
        match answer {
            Ok((status, len)) => {
                if recording {
                    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                    result.latency_us.saturating_record(us.max(1));
                    *result.statuses.entry(status).or_default() += 1;
                    if (200..300).contains(&status) {
                        result.body_bytes = Some(len);
                    }
                }
            }
            Err(_) => {
                if recording {
                    result.errors += 1;
                }
                // The server closed the connection (or never answered): open a new one, and
                // do not spin if that fails too.
                match connect(&plan.target).await {
                    Ok(s) => sender = s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
    }
    result.finished = Instant::now();
    Ok(result)
}

/// Reads a body to its end, counting its bytes without keeping them (a 1 MB answer costs
/// the generator no copy).
async fn read_to_end(mut body: hyper::body::Incoming) -> anyhow::Result<usize> {
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len();
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_targets() {
        let t = Target::parse("http://127.0.0.1:8080/health/clever-auth").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(t.path, "/health/clever-auth");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert!(Target::parse("http://localhost:1/").is_ok());
        assert!(Target::parse("http://[::1]:1/").is_ok());
        assert!(Target::parse("http://10.0.0.1:80/").is_err());
        assert!(Target::parse("https://127.0.0.1/").is_err());
        assert!(Target::parse("http://example.com/").is_err());
    }

    #[test]
    fn extra_headers_parse() {
        let (name, value) = parse_header("Authorization: Bearer abc").expect("valid");
        assert_eq!(name, hyper::header::AUTHORIZATION);
        assert_eq!(value, "Bearer abc");
        assert!(parse_header("no colon").is_err());
    }
}
