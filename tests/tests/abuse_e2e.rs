//! Slow and abusive clients against the real host and component over loopback: slowloris
//! connections (a request head that never ends), clients that ask for health and never read
//! it, more connections than the cap, oversized heads, idle keep-alive connections, and a
//! refresher call that overruns its deadline. Limits are scaled down so each test runs in
//! seconds; the bench (`cargo xtask bench --only abuse`) runs the full-size attack.

use anyhow::{Context, Result};
use clever_auth_tests::fake_clever::{FakeClever, FakeCleverConfig, Fault, Route};
use clever_auth_tests::http_client::{self, KeepAlive};
use clever_auth_tests::scenario::{self, Scenario, HEALTH};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HEADER_TIMEOUT: Duration = Duration::from_millis(1500);
const WRITE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Timers plus a loaded 2-core machine (others compile meanwhile).
const MARGIN: Duration = Duration::from_millis(1500);

/// The host's resident set, from /proc.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Open sockets of the host (its listener and client connections, outbound ones too).
fn open_sockets(pid: u32) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        if let Ok(target) = std::fs::read_link(entry?.path()) {
            n += usize::from(target.to_string_lossy().starts_with("socket:"));
        }
    }
    Ok(n)
}

/// Reads until the server closes (EOF or reset); returns the bytes read.
async fn read_to_close(stream: &mut TcpStream) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

/// A slowloris: starts a request head and keeps adding to it, never finishing it. Returns how
/// long after connecting the server closed it.
async fn slowloris(addr: SocketAddr, give_up: Duration) -> Result<Duration> {
    let mut stream = TcpStream::connect(addr).await?;
    let started = Instant::now();
    stream
        .write_all(b"GET /health/clever-auth HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let mut buf = [0u8; 1024];
    let mut n = 0u32;
    loop {
        // A header line now and then: bytes keep coming, so only the header timeout helps.
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ok(started.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                n += 1;
                if stream.write_all(format!("X-Slow-{n}: y\r\n").as_bytes()).await.is_err() {
                    return Ok(started.elapsed());
                }
            }
        }
        anyhow::ensure!(started.elapsed() < give_up, "still open after {give_up:?}");
    }
}

/// A client that asks for health many times on one connection with a tiny receive window and
/// never reads. Returns the connection, so the caller decides when to look.
async fn non_reader(addr: SocketAddr, requests: usize) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stream = socket.connect(addr).await?;
    let one = b"GET /health/clever-auth HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut pipelined = Vec::with_capacity(one.len() * requests);
    for _ in 0..requests {
        pipelined.extend_from_slice(one);
    }
    stream.write_all(&pipelined).await?;
    Ok(stream)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_well_behaved_client_gets_health_through_slowloris_and_non_reading_clients() -> Result<()>
{
    const SLOWLORIS: usize = 200;
    const NON_READERS: usize = 16;
    const PIPELINED: usize = 40;
    let fake = FakeClever::start(FakeCleverConfig {
        // ≈ 30 KB of health: a non-reader's pipelined answers overflow the socket buffers.
        generated_districts: 100,
        ..Default::default()
    })
    .await?;
    let s = Scenario::launch_with(
        fake,
        &[],
        &[
            "--header-read-timeout-ms",
            &HEADER_TIMEOUT.as_millis().to_string(),
            "--write-timeout-ms",
            &WRITE_TIMEOUT.as_millis().to_string(),
            "--idle-timeout-ms",
            "10000",
            "--max-connections",
            "400",
        ],
    )
    .await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    let pid = s.host.pid().context("host pid")?;
    let addr = s.host.addr;
    let url = s.host.url(HEALTH);
    let body_len = http_client::get(&url).await?.body.len();
    let rss_before = rss_kib(pid)?;

    let attack_started = Instant::now();
    let lorises: Vec<_> = (0..SLOWLORIS)
        .map(|_| tokio::spawn(slowloris(addr, HEADER_TIMEOUT + MARGIN * 3)))
        .collect();
    let mut readers = Vec::new();
    for _ in 0..NON_READERS {
        readers.push(non_reader(addr, PIPELINED).await?);
    }

    // The well-behaved client, while everything above is attached.
    let mut client = KeepAlive::connect(&url).await?;
    let mut latencies = Vec::new();
    let mut peak_sockets = 0;
    let mut peak_rss = rss_before;
    while attack_started.elapsed() < HEADER_TIMEOUT {
        let started = Instant::now();
        let reply = client.get().await?;
        latencies.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The whole report (its length varies by a few bytes with the timestamps).
        assert!(reply.json()?["checks"]["clever:districtTokens"].is_array());
        peak_sockets = peak_sockets.max(open_sockets(pid)?);
        peak_rss = peak_rss.max(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    eprintln!(
        "health under attack: {} requests, p50 {p50:?}, p99 {p99:?}, max {:?}; host sockets at peak {peak_sockets}; RSS {rss_before} KiB -> peak {peak_rss} KiB",
        latencies.len(),
        latencies.last().copied().unwrap_or_default()
    );
    assert!(
        peak_sockets >= SLOWLORIS + NON_READERS,
        "the attack was not attached: {peak_sockets} sockets"
    );
    // Upper bound only: a loaded 2-core machine; the bench measures the real figure.
    assert!(p99 < Duration::from_millis(1000), "p99 {p99:?}");

    // Every slowloris is closed by the header timeout: not before, not long after.
    for loris in lorises {
        let open_for = loris.await??;
        assert!(
            // The host's clock starts at accept, a little before connect() returns here.
            open_for >= HEADER_TIMEOUT - Duration::from_millis(50)
                && open_for <= HEADER_TIMEOUT + MARGIN,
            "a slowloris was closed after {open_for:?}"
        );
    }

    // Every non-reader loses its connection once its answers stall for the write deadline,
    // although none of them ever reads: the host's sockets fall back to the listener, the
    // well-behaved client, at most a refresher connection or two and the kept-alive ones.
    let settled = Instant::now();
    loop {
        let now_open = open_sockets(pid)?;
        // Connections to Clever are kept alive for reuse: each one the fake accepted may
        // still be open, idle in the host's pool.
        let kept_alive = usize::try_from(s.fake.accepted_connections()).unwrap_or(usize::MAX);
        if now_open <= 6 + kept_alive {
            break;
        }
        anyhow::ensure!(
            settled.elapsed() < Duration::from_secs(30),
            "{now_open} sockets still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What each finally reads is cut short of the answers it asked for.
    let full = PIPELINED * body_len;
    for mut reader in readers {
        let got = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut reader))
            .await
            .context("a non-reading client's connection was never closed")?;
        assert!(got < full, "a non-reader received all {got} bytes");
    }
    let growth = peak_rss.saturating_sub(rss_before);
    assert!(
        growth < 64 * 1024,
        "RSS grew by {growth} KiB under {} connections",
        SLOWLORIS + NON_READERS
    );
    assert_eq!(client.get().await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_connection_cap_new_connections_are_closed_at_once() -> Result<()> {
    const CAP: usize = 20;
    let s = Scenario::launch_with(
        FakeClever::start(scenario::two_districts()).await?,
        &[],
        &[
            "--max-connections",
            &CAP.to_string(),
            "--idle-timeout-ms",
            "20000",
            "--header-read-timeout-ms",
            "20000",
        ],
    )
    .await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    let addr = s.host.addr;
    // Each held connection has been answered once, so the host has surely accepted it; it
    // then stays open, idle.
    let url = s.host.url(HEALTH);
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut client = KeepAlive::connect(&url).await?;
        assert_eq!(client.get().await?.status, 200);
        held.push(client);
    }
    for _ in 0..5 {
        let mut extra = TcpStream::connect(addr).await?;
        let started = Instant::now();
        let _ = extra
            .write_all(b"GET /health/clever-auth HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let got = tokio::time::timeout(Duration::from_secs(2), read_to_close(&mut extra))
            .await
            .context("a connection beyond the cap was kept open")?;
        assert_eq!(got, 0, "a connection beyond the cap was served");
        assert!(started.elapsed() < Duration::from_millis(1500));
    }
    // A held connection is served normally, and a freed place is taken by the next client.
    assert_eq!(held[0].get().await?.status, 200);
    drop(held.remove(0));
    let mut next = None;
    let started = Instant::now();
    while next.is_none() && started.elapsed() < Duration::from_secs(5) {
        next = http_client::get(&s.host.url(HEALTH)).await.ok();
    }
    assert_eq!(next.map(|r| r.status), Some(200));
    assert!(s.logs().contains("connection cap reached"), "{}", s.logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_huge_head_gets_431() -> Result<()>
{
    const IDLE: Duration = Duration::from_millis(700);
    let s = Scenario::launch_with(
        FakeClever::start(scenario::two_districts()).await?,
        &[],
        &[
            "--idle-timeout-ms",
            &IDLE.as_millis().to_string(),
            "--header-read-timeout-ms",
            "20000",
            "--max-request-head-bytes",
            "4096",
        ],
    )
    .await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    let addr = s.host.addr;

    // After one answered request the connection waits for the next: idle from then on.
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /health/clever-auth HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    // The answer carries a content-length, so the end of the body is known.
    let (body_start, length) = loop {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed before answering");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .context("no content-length")?;
            break (end + 4, length);
        }
    };
    while head.len() < body_start + length {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed mid-answer");
        head.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let rest = read_to_close(&mut stream).await;
    let idle_for = answered.elapsed();
    assert_eq!(rest, 0);
    assert!(
        idle_for >= IDLE && idle_for <= IDLE + MARGIN,
        "closed after {idle_for:?} idle"
    );

    // A head over the limit is refused with 431, not buffered.
    let mut big = TcpStream::connect(addr).await?;
    let filler = "a".repeat(8192);
    big.write_all(
        format!("GET /health/clever-auth HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// Issue 10 defect 2: nothing bounded a refresher call. A token endpoint that never answers,
/// with an HTTP timeout longer than the refresh deadline, used to hold `run-due` (and the
/// scheduler) for as long as the server liked.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresher_call_past_its_deadline_is_stopped_and_reported_in_health() -> Result<()> {
    const DEADLINE: Duration = Duration::from_millis(1500);
    let fake = FakeClever::start(scenario::two_districts()).await?;
    fake.set_persistent_fault(Route::TokenList, Fault::Hang);
    let started = Instant::now();
    let s = Scenario::launch_with(
        fake,
        &[("CLEVER_HTTP_TIMEOUT_MS", "60000")],
        // A health request may start the refresh before the scheduler does (Spin semantics)
        // and then carries it: both kinds of call get the same bound here.
        &[
            "--refresh-deadline-ms",
            &DEADLINE.as_millis().to_string(),
            "--health-deadline-ms",
            "1000",
        ],
    )
    .await?;
    let health = s
        .wait_health(Duration::from_secs(20), |h| {
            h.body["checks"]["host:deadlines"][0]["status"] == "warn"
        })
        .await?;
    let reported_after = started.elapsed();
    let check = &health.body["checks"]["host:deadlines"][0];
    assert!(
        check["output"]
            .as_str()
            .is_some_and(|o| o.contains("stopped after 1500 ms")),
        "{check}"
    );
    assert!(
        reported_after >= DEADLINE && reported_after <= DEADLINE + Duration::from_secs(10),
        "reported after {reported_after:?}"
    );
    let logs = s.logs();
    let overrun = logs
        .lines()
        .find(|l| l.contains("overran its deadline"))
        .context("no overrun log line")?;
    assert!(overrun.contains(r#""deadline_ms":1500"#), "{overrun}");
    Ok(())
}
