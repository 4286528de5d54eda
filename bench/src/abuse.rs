//! Abusive clients around one well-behaved one: S slowloris connections (a request head that
//! never ends, a header line every few hundred ms) and N clients that pipeline requests (health,
//! or `--attack-path`, e.g. a large gateway page) with a tiny receive window and never read,
//! each reconnecting as soon as the server drops it (so the attack stays attached for the whole
//! window, as a real one would). Meanwhile one keep-alive client requests `--path` (health by
//! default) back to back; its latencies, the attackers' reconnects and the watched server's RSS
//! are printed as one JSON line. Loopback only.

use crate::proc_stat;
use anyhow::{ensure, Context as _};
use hdrhistogram::Histogram;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Health requests each non-reader pipelines: far more answer than its socket buffers hold.
const PIPELINED: usize = 64;
const TRICKLE_EVERY: Duration = Duration::from_millis(500);

#[derive(clap::Args)]
pub struct Args {
    /// The server, `127.0.0.1:PORT`.
    #[arg(long)]
    addr: SocketAddr,
    /// Slowloris connections kept attached.
    #[arg(long, default_value_t = 1000)]
    slowloris: usize,
    /// Clients that request health and never read, kept attached.
    #[arg(long, default_value_t = 64)]
    non_readers: usize,
    /// What the well-behaved client requests.
    #[arg(long, default_value = "/health/clever-auth")]
    path: String,
    /// What the slowloris and non-reading clients request [default: --path].
    #[arg(long)]
    attack_path: Option<String>,
    /// Pause between the well-behaved client's requests, ms (0: back to back). Gateway calls
    /// need one: Clever (and the fake) allow a token 1,200 requests a minute.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Seconds for the attack to attach before measuring.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// The server process: its peak VmRSS over the window is reported.
    #[arg(long)]
    watch_pid: Option<u32>,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.addr.ip().is_loopback(),
        "{} is not loopback",
        args.addr
    );
    ensure!(args.secs > 0.0, "--secs must be positive");
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(args))?;
    println!("{result}");
    Ok(())
}

#[derive(Default)]
struct Counters {
    slowloris_closed: AtomicU64,
    non_readers_closed: AtomicU64,
    connect_failures: AtomicU64,
}

async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let attack_path = args.attack_path.as_deref().unwrap_or(&args.path);
    let head_start: Arc<str> = format!("GET {attack_path} HTTP/1.1\r\nHost: bench\r\n").into();
    let request = get_request(&args.path);
    let mut tasks = Vec::new();
    for _ in 0..args.slowloris {
        tasks.push(tokio::spawn(slowloris(
            args.addr,
            head_start.clone(),
            stop.clone(),
            counters.clone(),
        )));
    }
    let pipelined: Arc<[u8]> = get_request(attack_path).repeat(PIPELINED).into();
    for _ in 0..args.non_readers {
        tasks.push(tokio::spawn(non_reader(
            args.addr,
            pipelined.clone(),
            stop.clone(),
            counters.clone(),
        )));
    }
    let rss_before = args
        .watch_pid
        .and_then(|p| proc_stat::status_kib(&p.to_string(), "VmRSS"));
    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs)).await;

    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0u64;
    let mut non_2xx = 0u64;
    let mut peak_rss = rss_before.unwrap_or(0);
    let mut client = None;
    let window = Duration::from_secs_f64(args.secs);
    let started = Instant::now();
    let mut last_sample = Instant::now();
    while started.elapsed() < window {
        if client.is_none() {
            client = TcpStream::connect(args.addr).await.ok();
        }
        let Some(stream) = client.as_mut() else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), one_request(stream, &request)).await {
            Ok(Ok(status)) => {
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                latency_us.saturating_record(us.max(1));
                non_2xx += u64::from(!(200..300).contains(&status));
            }
            _ => {
                errors += 1;
                client = None;
            }
        }
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
        if last_sample.elapsed() >= Duration::from_millis(50) {
            last_sample = Instant::now();
            if let Some(kib) = args
                .watch_pid
                .and_then(|p| proc_stat::status_kib(&p.to_string(), "VmRSS"))
            {
                peak_rss = peak_rss.max(kib);
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.abort();
    }
    let q = |p: f64| latency_us.value_at_quantile(p);
    Ok(json!({
        "slowloris": args.slowloris,
        "non_readers": args.non_readers,
        "requests": latency_us.len(),
        "errors": errors,
        "non_2xx": non_2xx,
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "max_us": latency_us.max(),
        "rss_before_kib": rss_before,
        "rss_peak_kib": peak_rss,
        "slowloris_closed_by_server": counters.slowloris_closed.load(Ordering::SeqCst),
        "non_readers_closed_by_server": counters.non_readers_closed.load(Ordering::SeqCst),
        "connect_failures": counters.connect_failures.load(Ordering::SeqCst),
        "secs": started.elapsed().as_secs_f64(),
    }))
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// One GET on a kept-alive connection; reads the whole answer (Content-Length).
async fn one_request(stream: &mut TcpStream, request: &[u8]) -> anyhow::Result<u16> {
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(128 * 1024);
    let mut chunk = [0u8; 64 * 1024];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .context("no content-length")?;
            break (end + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "closed mid-answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = std::str::from_utf8(buf.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

async fn slowloris(
    addr: SocketAddr,
    head_start: Arc<str>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut line = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            counters.connect_failures.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream.write_all(head_start.as_bytes()).await.is_err() {
            counters.slowloris_closed.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { break },
                () = tokio::time::sleep(TRICKLE_EVERY) => {
                    line += 1;
                    if stream.write_all(format!("X-{line}: y\r\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        }
        counters.slowloris_closed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn non_reader(
    addr: SocketAddr,
    pipelined: Arc<[u8]>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    while !stop.load(Ordering::SeqCst) {
        let connected = async {
            let socket = TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            socket.connect(addr).await
        };
        let Ok(mut stream) = connected.await else {
            counters.connect_failures.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = stream.write_all(&pipelined).await;
        // Never reads; waits for the server to drop the connection (a write then fails).
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(b"\r\n").await.is_err() {
                break;
            }
        }
        counters.non_readers_closed.fetch_add(1, Ordering::SeqCst);
    }
}
