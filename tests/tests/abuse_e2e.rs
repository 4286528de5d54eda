//! Slow and abusive clients against the real host and component over loopback: slowloris
//! connections (a request head that never ends), clients that ask for health or gateway pages
//! and never read them, more connections than the cap, oversized heads, idle keep-alive
//! connections, and a refresher call that overruns its deadline, on the public listener and
//! the gateway's. Limits are scaled down so each test runs in seconds; the bench
//! (`cargo xtask bench-abuse`) runs the full-size attack.

use anyhow::{Context, Result};
use clever_auth_tests::fake_clever::{FakeClever, FakeCleverConfig, Fault, Route};
use clever_auth_tests::host_process::status_kib;
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
async fn slowloris(addr: SocketAddr, path: &str, give_up: Duration) -> Result<Duration> {
    let mut stream = TcpStream::connect(addr).await?;
    let started = Instant::now();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
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

/// A client that asks for `path` many times on one connection with a tiny receive window and
/// never reads. Returns the connection, so the caller decides when to look.
async fn non_reader(addr: SocketAddr, path: &str, requests: usize) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stream = socket.connect(addr).await?;
    let pipelined = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(requests);
    stream.write_all(pipelined.as_bytes()).await?;
    Ok(stream)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// A host started with `args`, its districts' tokens in place.
async fn launch_ready(fake: FakeClever, args: &[&str]) -> Result<Scenario> {
    let s = Scenario::launch_with(fake, &[], args).await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    Ok(s)
}

/// A host under the scaled-down limits the attack tests share.
/// Gateway threads of the attacked host: pinned, since each thread's event loop holds a socket of
/// its own (its copy of tokio's signal socket) that the counts below must allow for.
const GATEWAY_THREADS: usize = 2;

async fn launch_for_attack(fake: FakeClever) -> Result<Scenario> {
    let header = HEADER_TIMEOUT.as_millis().to_string();
    let write = WRITE_TIMEOUT.as_millis().to_string();
    let threads = GATEWAY_THREADS.to_string();
    launch_ready(
        fake,
        &[
            "--gateway-threads",
            &threads,
            "--header-read-timeout-ms",
            &header,
            "--write-timeout-ms",
            &write,
            "--idle-timeout-ms",
            "10000",
            "--max-connections",
            "400",
        ],
    )
    .await
}

/// A host whose listeners each take `cap` connections, with timeouts too long to matter.
async fn launch_capped(cap: usize) -> Result<Scenario> {
    let fake = FakeClever::start(scenario::two_districts()).await?;
    let cap = cap.to_string();
    launch_ready(
        fake,
        &[
            "--max-connections",
            &cap,
            "--idle-timeout-ms",
            "20000",
            "--header-read-timeout-ms",
            "20000",
        ],
    )
    .await
}

/// A connection to `addr` that sends `path`'s request is closed at once, unanswered.
async fn assert_refused(addr: SocketAddr, path: &str) -> Result<()> {
    let mut extra = TcpStream::connect(addr).await?;
    let started = Instant::now();
    let _ = extra
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let got = tokio::time::timeout(Duration::from_secs(2), read_to_close(&mut extra))
        .await
        .context("a connection beyond the cap was kept open")?;
    assert_eq!(got, 0, "a connection beyond the cap was served");
    assert!(started.elapsed() < Duration::from_millis(1500));
    Ok(())
}

/// Slowloris connections and non-reading clients attached to one listener.
struct Attack {
    started: Instant,
    attached: usize,
    lorises: Vec<tokio::task::JoinHandle<Result<Duration>>>,
    readers: Vec<TcpStream>,
    /// What a non-reader asked for in all: each must be cut short of it.
    asked_bytes: usize,
}

impl Attack {
    /// `slowloris` connections starting a request for `path`, and `non_readers` clients
    /// pipelining `pipelined` requests for `reader_path` (answers of `answer_bytes` each).
    async fn attach(
        addr: SocketAddr,
        path: &'static str,
        slowloris_count: usize,
        reader_path: &str,
        non_readers: usize,
        pipelined: usize,
        answer_bytes: usize,
    ) -> Result<Attack> {
        let started = Instant::now();
        let lorises = (0..slowloris_count)
            .map(|_| tokio::spawn(slowloris(addr, path, HEADER_TIMEOUT + MARGIN * 3)))
            .collect();
        let mut readers = Vec::new();
        for _ in 0..non_readers {
            readers.push(non_reader(addr, reader_path, pipelined).await?);
        }
        Ok(Attack {
            started,
            attached: slowloris_count + non_readers,
            lorises,
            readers,
            asked_bytes: pipelined * answer_bytes,
        })
    }

    /// Waits until the host holds at least 90 % of the attacking connections at once on top of
    /// the `before` sockets it had: on a loaded machine the first non-readers can reach their
    /// write deadline before the last slowloris is accepted.
    async fn wait_attached(&self, pid: u32, before: usize) -> Result<()> {
        let waiting = Instant::now();
        loop {
            let open = open_sockets(pid)?;
            if open >= before + self.attached * 9 / 10 {
                return Ok(());
            }
            anyhow::ensure!(
                waiting.elapsed() < HEADER_TIMEOUT,
                "the attack was not attached: {open} sockets, {before} before + {} attackers",
                self.attached
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every slowloris is closed by the header timeout (not before, not long after); every
    /// non-reader loses its connection once its answers stall for the write deadline, cut
    /// short of what it asked for; the host's sockets fall back to `settle_to`.
    async fn assert_shed(self, pid: u32, settle_to: usize) -> Result<()> {
        for loris in self.lorises {
            let open_for = loris.await??;
            assert!(
                // The host's clock starts at accept, a little before connect() returns here.
                open_for >= HEADER_TIMEOUT - Duration::from_millis(50)
                    && open_for <= HEADER_TIMEOUT + MARGIN,
                "a slowloris was closed after {open_for:?}"
            );
        }
        let settled = Instant::now();
        loop {
            let now_open = open_sockets(pid)?;
            if now_open <= settle_to {
                break;
            }
            anyhow::ensure!(
                settled.elapsed() < Duration::from_secs(30),
                "{now_open} sockets still open (expected at most {settle_to})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for mut reader in self.readers {
            let got = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut reader))
                .await
                .context("a non-reading client's connection was never closed")?;
            assert!(
                got < self.asked_bytes,
                "a non-reader received all {got} bytes"
            );
        }
        Ok(())
    }
}

/// What the host did while a well-behaved client kept calling during an attack.
struct Watched {
    latencies: Vec<Duration>,
    peak_sockets: usize,
    rss_before: u64,
    peak_rss: u64,
}

impl Watched {
    fn new(rss_before: u64) -> Watched {
        Watched {
            latencies: Vec::new(),
            peak_sockets: 0,
            rss_before,
            peak_rss: rss_before,
        }
    }

    fn sample(&mut self, pid: u32, took: Duration) -> Result<()> {
        self.latencies.push(took);
        self.peak_sockets = self.peak_sockets.max(open_sockets(pid)?);
        self.peak_rss = self.peak_rss.max(status_kib(pid, "VmRSS")?);
        Ok(())
    }

    /// The well-behaved client's p99 stayed under a second (an
    /// upper bound only: a loaded 2-core machine; the bench measures the real figure) and the
    /// host's memory grew by less than 64 MiB.
    fn assert_served_through(mut self, what: &str, attack: &Attack) {
        self.latencies.sort();
        let (p50, p99) = (
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
        );
        eprintln!(
            "{what} under attack: {} requests, p50 {p50:?}, p99 {p99:?}; host sockets at peak {}; RSS {} KiB -> peak {} KiB",
            self.latencies.len(),
            self.peak_sockets,
            self.rss_before,
            self.peak_rss,
        );
        assert!(p99 < Duration::from_millis(1000), "p99 {p99:?}");
        let growth = self.peak_rss.saturating_sub(self.rss_before);
        assert!(
            growth < 64 * 1024,
            "RSS grew by {growth} KiB under {} connections",
            attack.attached
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_well_behaved_client_gets_health_through_slowloris_and_non_reading_clients() -> Result<()>
{
    let s = launch_for_attack(
        FakeClever::start(FakeCleverConfig {
            // ≈ 30 KB of health: a non-reader's pipelined answers overflow the socket buffers.
            generated_districts: 100,
            ..Default::default()
        })
        .await?,
    )
    .await?;
    let pid = s.host.pid().context("host pid")?;
    let url = s.host.url(HEALTH);
    let body_len = http_client::get(&url).await?.body.len();
    let sockets_before = open_sockets(pid)?;
    let mut watched = Watched::new(status_kib(pid, "VmRSS")?);
    let attack = Attack::attach(s.host.addr, HEALTH, 200, HEALTH, 16, 40, body_len).await?;
    attack.wait_attached(pid, sockets_before).await?;

    // The well-behaved client, while everything above is attached.
    let mut client = KeepAlive::connect(&url).await?;
    while attack.started.elapsed() < HEADER_TIMEOUT {
        let started = Instant::now();
        let reply = client.get().await?;
        watched.sample(pid, started.elapsed())?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The whole report (its length varies by a few bytes with the timestamps).
        assert!(reply.json()?["checks"]["clever:districtTokens"].is_array());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watched.assert_served_through("health", &attack);
    // Back to the listeners, the well-behaved client, at most a refresher connection or two,
    // the gateway threads' signal sockets and the connections to Clever kept alive for reuse
    // (each one the fake accepted may still be open, idle in the host's pool).
    let kept_alive = usize::try_from(s.fake.accepted_connections()).unwrap_or(usize::MAX);
    attack
        .assert_shed(pid, 6 + GATEWAY_THREADS + kept_alive)
        .await?;
    assert_eq!(client.get().await?.status, 200);
    Ok(())
}

/// The gateway's loopback listener has the public listener's limits: slowloris connections and
/// sync clients that ask for large pages and never read them are shed on their deadlines (the
/// pages stop streaming), while a well-behaved sync job's gateway calls and health on the public
/// listener go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_listener_sheds_slowloris_and_non_readers_while_sync_calls_go_on() -> Result<()>
{
    const PAGE: &str = "/clever/d-alpha/v3.0/districts/d-alpha/schools";
    /// 1 MiB an answer, 8 MiB asked for per connection: far more than its socket buffers hold.
    const BIG: &str = "/clever/d-alpha/v3.0/bytes/1048576";
    const BIG_BYTES: usize = 1 << 20;
    let s = launch_for_attack(FakeClever::start(scenario::two_districts()).await?).await?;
    let pid = s.host.pid().context("host pid")?;
    let gateway = s.host.gateway_addr.context("no gateway listener")?;
    let page_url = s.host.gateway_url(PAGE);
    // One call of each kind first, so instances (and any kept upstream connection) exist
    // before the baseline is taken.
    assert_eq!(http_client::get(&page_url).await?.status, 200);
    let big = http_client::get(&s.host.gateway_url(BIG)).await?;
    assert_eq!((big.status, big.body.len()), (200, BIG_BYTES));
    let sockets_before = open_sockets(pid)?;
    let upstream_before = s.fake.accepted_connections();
    let mut watched = Watched::new(status_kib(pid, "VmRSS")?);
    let attack = Attack::attach(gateway, PAGE, 200, BIG, 16, 8, BIG_BYTES).await?;
    attack.wait_attached(pid, sockets_before).await?;

    let mut sync_job = KeepAlive::connect(&page_url).await?;
    let mut health = KeepAlive::connect(&s.host.url(HEALTH)).await?;
    while attack.started.elapsed() < HEADER_TIMEOUT {
        let started = Instant::now();
        let reply = sync_job.get().await?;
        watched.sample(pid, started.elapsed())?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let page = reply.json()?;
        assert_eq!(page["tokenDistrict"], "d-alpha", "{page}");
        assert_eq!(health.get().await?.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watched.assert_served_through("gateway calls", &attack);
    // The non-readers' connections go: back to the sockets before the attack, the two clients
    // and the connections to Clever opened meanwhile, idle in the host's pool (a page the
    // host took whole from Clever leaves its connection reusable).
    let upstream_opened = s.fake.accepted_connections() - upstream_before;
    let pooled = usize::try_from(upstream_opened).unwrap_or(usize::MAX);
    attack.assert_shed(pid, sockets_before + 2 + pooled).await?;
    assert_eq!(sync_job.get().await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_gateway_readers_hold_gateway_places_until_the_write_deadline_only() -> Result<()> {
    const IN_FLIGHT: usize = 6;
    const WRITE: Duration = Duration::from_millis(3000);
    /// More than the socket buffers and the host's own buffers hold: the answer stalls.
    const BIG: &str = "/clever/d-alpha/v3.0/bytes/4194304";
    let s = launch_ready(
        FakeClever::start(scenario::two_districts()).await?,
        &[
            "--gateway-max-in-flight",
            &IN_FLIGHT.to_string(),
            "--write-timeout-ms",
            &WRITE.as_millis().to_string(),
            "--idle-timeout-ms",
            "20000",
            "--header-read-timeout-ms",
            "20000",
        ],
    )
    .await?;
    let gateway = s.host.gateway_addr.context("no gateway listener")?;
    let page = s
        .host
        .gateway_url("/clever/d-beta/v3.0/districts/d-beta/schools");
    let settle = Duration::from_millis(300);

    let mut stalled = Vec::new();
    for _ in 0..IN_FLIGHT - 1 {
        stalled.push(non_reader(gateway, BIG, 1).await?);
    }
    tokio::time::sleep(settle).await;
    let started = Instant::now();
    assert_eq!(http_client::get(&page).await?.status, 200);
    let below_limit = started.elapsed();
    assert!(
        below_limit < Duration::from_millis(1000),
        "a call with a place free took {below_limit:?}"
    );

    // The last place taken: the next call waits for the first write deadline.
    stalled.push(non_reader(gateway, BIG, 1).await?);
    tokio::time::sleep(settle).await;
    let started = Instant::now();
    assert_eq!(http_client::get(&s.host.url(HEALTH)).await?.status, 200);
    let health_took = started.elapsed();
    assert!(
        health_took < Duration::from_millis(1000),
        "health took {health_took:?}"
    );
    let started = Instant::now();
    let reply = http_client::get(&page).await?;
    let at_limit = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        at_limit >= Duration::from_millis(1000) && at_limit <= WRITE + MARGIN,
        "a call with every place held took {at_limit:?}"
    );
    Ok(())
}

/// Each listener has its own connection cap: sync clients filling the gateway's leave the
/// public listener (App Service's health probe) serving.
/// Each listener has its own connection cap: sync clients filling the gateway's leave the
/// public listener (App Service's health probe) serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_listener_at_its_cap_leaves_the_public_listener_serving() -> Result<()> {
    const CAP: usize = 10;
    const PAGE: &str = "/clever/d-beta/v3.0/districts/d-beta/schools";
    let s = launch_capped(CAP).await?;
    let gateway = s.host.gateway_addr.context("no gateway listener")?;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut client = KeepAlive::connect(&s.host.gateway_url(PAGE)).await?;
        assert_eq!(client.get().await?.status, 200);
        held.push(client);
    }
    // The gateway listener is full: the next connection there is closed unanswered...
    assert_refused(gateway, PAGE).await?;
    // ...while the public listener takes as many as its own cap allows.
    let mut probes = Vec::new();
    for _ in 0..CAP {
        let mut probe = KeepAlive::connect(&s.host.url(HEALTH)).await?;
        assert_eq!(probe.get().await?.status, 200);
        probes.push(probe);
    }
    assert_eq!(held[0].get().await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_connection_cap_new_connections_are_closed_at_once() -> Result<()> {
    const CAP: usize = 20;
    let s = launch_capped(CAP).await?;
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
        assert_refused(addr, HEALTH).await?;
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
    s.wait_log("connection cap reached").await?;
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
