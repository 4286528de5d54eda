//! `cargo xtask bench`: builds everything in release, then measures, on loopback only and
//! bounded in time and requests:
//!
//! 1. the health endpoint under closed-loop load at 1, 64 and 256 connections, served by the
//!    host (each instance mode it offers) and by the native baseline, alternately, while the
//!    fake Clever rotates tokens and injects 503s and 429s (short token lifetimes, so refreshes
//!    happen under load); the host's memory idle and under load;
//! 2. start-up to first token (median of several runs) and one token hand-out from the cache;
//! 3. many districts: the spread of the per-district probes of each refresh cycle (from the
//!    fake's request log), one failing district's isolation in health, and health latency.
//!
//! Writes a markdown report and its JSON twin.

#[path = "bench_abuse.rs"]
pub mod abuse;
#[path = "bench_gateway.rs"]
mod bench_gateway;
#[path = "bench_scale.rs"]
mod bench_scale;
#[path = "bench_spin.rs"]
mod bench_spin;

use crate::procs::{self, Proc};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const HEALTH: &str = "/health/clever-auth";
const CONNECTIONS: [usize; 3] = [1, 64, 256];
const HOST_START_TIMEOUT: Duration = Duration::from_secs(90);

/// Token lifetimes short enough that the host refreshes during every measured point
/// (lifetime 6 s, refresh at 50 %: every 3 s), retries quick, waits capped.
const MATRIX_SETTINGS: [(&str, &str); 7] = [
    ("CLEVER_TOKEN_LIFETIME_SECS", "6"),
    ("CLEVER_REFRESH_FRACTION", "0.5"),
    ("CLEVER_EXPIRY_SKEW_SECS", "1"),
    ("CLEVER_RETRY_BASE_MS", "100"),
    ("CLEVER_RETRY_MAX_DELAY_MS", "1000"),
    ("CLEVER_HTTP_TIMEOUT_MS", "2000"),
    ("CLEVER_RATE_LIMIT_MAX_WAIT_SECS", "2"),
];

/// Many districts: a cycle every 4 s (lifetime 8 s, refresh at 50 %).
const SCALE_SETTINGS: [(&str, &str); 7] = [
    ("CLEVER_TOKEN_LIFETIME_SECS", "8"),
    ("CLEVER_REFRESH_FRACTION", "0.5"),
    ("CLEVER_EXPIRY_SKEW_SECS", "1"),
    ("CLEVER_RETRY_BASE_MS", "100"),
    ("CLEVER_RETRY_MAX_DELAY_MS", "2000"),
    ("CLEVER_HTTP_TIMEOUT_MS", "5000"),
    ("CLEVER_RATE_LIMIT_MAX_WAIT_SECS", "2"),
];

/// What the fake is told during the matrix, one command every [`FAULT_EVERY`], round robin:
/// new tokens, a failed listing (retried after 100 ms), a rate-limited listing (Retry-After
/// 1 s), a failed probe (that district warns until the next cycle).
const FAULTS: [&str; 4] = [
    "rotate all",
    "fail tokens 1 status:503",
    "fail tokens 1 throttle:1",
    "fail data 1 status:503",
];
const FAULT_EVERY: Duration = Duration::from_millis(1500);

pub struct Options {
    pub secs: f64,
    pub warmup_secs: f64,
    pub out: PathBuf,
    pub districts: usize,
    pub gen_threads: usize,
    pub max_requests: u64,
    pub first_token_runs: u32,
    /// Rounds of each gateway point (direct, gateway, nginx in turn each round).
    pub gateway_rounds: u32,
    /// Run one part only (`scale10k`, `spin`, `gateway`).
    pub only: Option<String>,
}

/// The release artifacts, copied out of the shared target directory right after the build
/// so another build there cannot swap them mid-run.
struct Bins {
    host: PathBuf,
    fake: PathBuf,
    bench: PathBuf,
    component: PathBuf,
}

/// What the host binary offers (detected from its `--help`, so the harness works with hosts
/// from before and after those flags).
struct HostFlags {
    instance_modes: Vec<Option<&'static str>>,
    component_cache: bool,
}

impl HostFlags {
    fn detect(host: &Path) -> Result<HostFlags> {
        let out = Command::new(host)
            .arg("--help")
            .output()
            .context("running clever-auth-host --help")?;
        let help = String::from_utf8_lossy(&out.stdout);
        Ok(HostFlags {
            instance_modes: if help.contains("--instance-mode") {
                vec![Some("fresh"), Some("reuse")]
            } else {
                vec![None]
            },
            component_cache: help.contains("--component-cache"),
        })
    }
}

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    let out_dir = opts
        .out
        .parent()
        .map_or_else(|| root.join("target/bench"), Path::to_path_buf);
    std::fs::create_dir_all(&out_dir)?;
    let machine_before = machine();
    let started = Instant::now();
    let bins = build_release(root, &out_dir)?;
    let build_secs = started.elapsed().as_secs_f64();
    eprintln!("xtask bench: release build took {build_secs:.0} s");
    let flags = HostFlags::detect(&bins.host)?;
    if opts.only.as_deref() == Some("scale10k") {
        return bench_scale::only(&bins, opts, &out_dir);
    }
    if opts.only.as_deref() == Some("spin") {
        return bench_spin::only(&bins, &flags, opts, &out_dir, machine_before, build_secs);
    }
    if opts.only.as_deref() == Some("gateway") {
        return bench_gateway::only(&bins, opts, &out_dir);
    }

    let mut report = report_head(root, build_secs, opts, &flags, machine_before);

    let mut fake = start_fake(&bins, 2)?;
    report["matrix"] = matrix(&bins, &flags, opts, &mut fake, &out_dir)?;
    fake.command("clear")?;
    report["first_token"] = first_token(&bins, &flags, &fake.url, opts, &out_dir)?;
    drop(fake);
    report["handout"] = handout(&bins, opts)?;
    report["scale"] = scale(&bins, opts, &out_dir)?;
    report["scale_10k"] = bench_scale::run(&bins, opts, &out_dir)?;
    report["gateway"] = bench_gateway::run(&bins, opts, &out_dir)?;
    report["abuse"] = abuse::run(
        &bins,
        &abuse::AbuseOptions {
            secs: opts.secs,
            ..Default::default()
        },
    )?;
    report["machine_after"] = machine();
    report["total_secs"] = json!(started.elapsed().as_secs_f64());

    let markdown = render(&report);
    print!("{markdown}");
    std::fs::write(&opts.out, &markdown)
        .with_context(|| format!("writing {}", opts.out.display()))?;
    let json_path = opts.out.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    eprintln!(
        "xtask bench: wrote {} and {}",
        opts.out.display(),
        json_path.display()
    );
    Ok(())
}

// ----- build -----

fn build_release(root: &Path, out_dir: &Path) -> Result<Bins> {
    let component = crate::build(root, true)?;
    // Separate invocations, so each package's dependency features stay what they are alone
    // (the host and its wasmtime are not rebuilt with the fakes' features).
    crate::run(crate::cargo(root).args(["build", "--release", "-p", "clever-auth-bench"]))?;
    crate::run(crate::cargo(root).args([
        "build",
        "--release",
        "-p",
        "clever-auth-tests",
        "--bin",
        "fake-clever",
    ]))?;
    let release = crate::target_dir(root).join("release");
    let bin_dir = out_dir.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = bin_dir.join(name);
        std::fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(to)
    };
    Ok(Bins {
        host: copy(&release.join("clever-auth-host"), "clever-auth-host")?,
        fake: copy(&release.join("fake-clever"), "fake-clever")?,
        bench: copy(&release.join("clever-auth-bench"), "clever-auth-bench")?,
        component: copy(&component, "clever_auth.wasm")?,
    })
}

// ----- processes -----

struct Fake {
    proc: Proc,
    url: String,
    districts: Vec<String>,
}

impl Fake {
    fn command(&mut self, line: &str) -> Result<String> {
        self.proc.command(line)
    }
}

fn start_fake(bins: &Bins, districts: usize) -> Result<Fake> {
    let mut proc = Proc::spawn(
        "fake-clever",
        Command::new(&bins.fake).args([
            "--addr",
            "127.0.0.1:0",
            "--districts",
            &districts.to_string(),
            "--quiet",
        ]),
        true,
    )?;
    let url = proc.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("listening on ").map(str::to_string)
    })?;
    let mut ids = Vec::with_capacity(districts);
    while ids.len() < districts {
        ids.push(proc.wait_line(Duration::from_secs(30), |l| {
            l.strip_prefix("district ").map(str::to_string)
        })?);
    }
    Ok(Fake {
        proc,
        url,
        districts: ids,
    })
}

/// Settings and development credentials for the host and the baseline alike; the machine's
/// own CLEVER_* / KEYVAULT_* variables are not inherited.
fn service_env(cmd: &mut Command, fake_url: &str, settings: &[(&str, &str)]) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CLEVER_")
            || k.starts_with("KEYVAULT_")
            || matches!(&*k, "PORT" | "WEBSITES_PORT" | "RUST_LOG")
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CLEVER_CLIENT_ID", "demo-client-id")
        .env("CLEVER_CLIENT_SECRET", "demo-client-secret")
        .env("CLEVER_TOKEN_URL", format!("{fake_url}/oauth/tokens"))
        .env("CLEVER_API_BASE_URL", fake_url);
    for (k, v) in settings {
        cmd.env(k, v);
    }
}

struct Server {
    label: String,
    proc: Proc,
    addr: SocketAddr,
}

fn host_command(
    bins: &Bins,
    fake_url: &str,
    settings: &[(&str, &str)],
    extra: &[String],
) -> Command {
    let mut cmd = Command::new(&bins.host);
    cmd.args(["--listen", "127.0.0.1:0"]);
    // Hosts from before the gateway (a "before" build) have no such flag.
    if help_mentions(&bins.host, "--gateway-listen") {
        cmd.args(["--gateway-listen", "127.0.0.1:0"]);
    }
    cmd.args(["--secrets", "env", "--log-format", "json"])
        .arg("--allow-loopback-http")
        .arg("--component")
        .arg(&bins.component)
        .args(extra);
    service_env(&mut cmd, fake_url, settings);
    cmd
}

/// Whether `host --help` mentions `flag`.
fn help_mentions(host: &Path, flag: &str) -> bool {
    Command::new(host)
        .arg("--help")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

/// The `addr` of the host's JSON `listening` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    message_addr(line, "listening")
}

/// The `addr` of a host JSON line whose message is `message`.
fn message_addr(line: &str, message: &str) -> Option<SocketAddr> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != message {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

/// Starts the host and waits until its health says `pass`.
fn start_host(
    bins: &Bins,
    fake_url: &str,
    settings: &[(&str, &str)],
    mode: Option<&str>,
) -> Result<Server> {
    start_host_with_gateway(bins, fake_url, settings, mode).map(|(server, _)| server)
}

/// [`start_host`], also returning the gateway listener's address (hosts before the gateway
/// have none).
fn start_host_with_gateway(
    bins: &Bins,
    fake_url: &str,
    settings: &[(&str, &str)],
    mode: Option<&str>,
) -> Result<(Server, Option<SocketAddr>)> {
    let mut extra = Vec::new();
    if let Some(mode) = mode {
        extra.extend(["--instance-mode".to_string(), mode.to_string()]);
    }
    let label = match mode {
        Some(m) => format!("host ({m})"),
        None => "host".to_string(),
    };
    let mut proc = Proc::spawn(
        &label,
        &mut host_command(bins, fake_url, settings, &extra),
        false,
    )?;
    // The gateway announces itself before the main listener does.
    let mut gateway = None;
    let addr = proc.wait_line(HOST_START_TIMEOUT, |line| {
        if let Some(addr) = message_addr(line, "gateway listening") {
            gateway = Some(addr);
        }
        listening_addr(line)
    })?;
    proc.quiet();
    let server = Server { label, proc, addr };
    wait_health(&server, HOST_START_TIMEOUT, |status, body| {
        status == 200 && body["status"] == "pass"
    })?;
    Ok((server, gateway))
}

fn start_baseline(
    bins: &Bins,
    fake_url: &str,
    settings: &[(&str, &str)],
    districts: usize,
) -> Result<Server> {
    let mut cmd = Command::new(&bins.bench);
    cmd.args([
        "baseline",
        "--listen",
        "127.0.0.1:0",
        "--districts",
        &districts.to_string(),
    ]);
    service_env(&mut cmd, fake_url, settings);
    let mut proc = Proc::spawn("baseline", &mut cmd, false)?;
    let addr = proc.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("listening ").and_then(|a| a.parse().ok())
    })?;
    proc.quiet();
    let server = Server {
        label: "baseline".into(),
        proc,
        addr,
    };
    wait_health(&server, Duration::from_secs(10), |status, body| {
        status == 200 && body["status"] == "pass"
    })?;
    Ok(server)
}

fn health(server: &Server) -> Result<(u16, Value)> {
    let (status, body) = procs::http_get(server.addr, HEALTH)?;
    let body = serde_json::from_str(&body)
        .with_context(|| format!("{} answered health with non-JSON: {body}", server.label))?;
    Ok((status, body))
}

/// Polls health every 50 ms until `done` holds; returns the matching answer.
fn wait_health(
    server: &Server,
    timeout: Duration,
    done: impl Fn(u16, &Value) -> bool,
) -> Result<(u16, Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = health(server);
        if let Ok((status, body)) = &last {
            if done(*status, body) {
                return Ok((*status, body.clone()));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{}: health did not get there within {timeout:?}; last: {last:?}\n{}",
                server.label,
                server.proc.tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- load -----

fn load(bins: &Bins, server: &Server, connections: usize, opts: &Options) -> Result<Value> {
    let machine = machine();
    eprintln!(
        "xtask bench: {} at {connections} connections ({} s + {} s warm-up)",
        server.label, opts.secs, opts.warmup_secs
    );
    let mut result = run_generator(
        Command::new(&bins.bench)
            .args(["load", "--url", &format!("http://{}{HEALTH}", server.addr)])
            .args(["--connections", &connections.to_string()])
            .args(["--secs", &opts.secs.to_string()])
            .args(["--warmup-secs", &opts.warmup_secs.to_string()])
            .args(["--threads", &opts.gen_threads.to_string()])
            .args(["--max-requests", &opts.max_requests.to_string()])
            .args(["--watch-pid", &bench_spin::cpu_pid(server).to_string()]),
        "load generator",
    )?;
    result["server"] = json!(server.label);
    result["machine"] = machine;
    Ok(result)
}

/// What every report starts with: the build, the machine and the run's options.
fn report_head(
    root: &Path,
    build_secs: f64,
    opts: &Options,
    flags: &HostFlags,
    machine_before: Value,
) -> Value {
    json!({
        "git": git_rev(root),
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "release_build_secs": build_secs,
        "secs_per_point": opts.secs,
        "warmup_secs": opts.warmup_secs,
        "generator_threads": opts.gen_threads,
        "max_requests_per_point": opts.max_requests,
        "instance_mode_flag": flags.instance_modes.iter().any(Option::is_some),
        "component_cache_flag": flags.component_cache,
        "machine_before": machine_before,
    })
}

/// Runs one of the bench binary's generators and parses the JSON line it ends with.
fn run_generator(cmd: &mut Command, what: &str) -> Result<Value> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running the {what}"))?;
    if !out.status.success() {
        bail!(
            "the {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .with_context(|| format!("the {what} printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("the {what}'s JSON"))
}

/// The 1-minute load average and how many compilers run (others' builds) right now.
fn machine() -> Value {
    json!({ "loadavg_1m": procs::loadavg(), "compilers_running": procs::builds_running() })
}

// ----- 1. the matrix -----

fn matrix(
    bins: &Bins,
    flags: &HostFlags,
    opts: &Options,
    fake: &mut Fake,
    out_dir: &Path,
) -> Result<Value> {
    let mut hosts = Vec::new();
    for mode in &flags.instance_modes {
        hosts.push(start_host(bins, &fake.url, &MATRIX_SETTINGS, *mode)?);
    }
    let baseline = start_baseline(bins, &fake.url, &MATRIX_SETTINGS, fake.districts.len())?;
    let spin = bench_spin::start(bins, &fake.url, &MATRIX_SETTINGS, out_dir)?;
    // Let start-up work (compilation threads, first refreshes) settle before "idle".
    std::thread::sleep(Duration::from_secs(1));
    let idle: Vec<Value> = hosts
        .iter()
        .chain([&baseline])
        .chain(spin.as_ref().map(|s| &s.server))
        .map(|s| json!({ "server": s.label, "vm_rss_kib": bench_spin::vm_kib(s, "VmRSS") }))
        .collect();

    // Faults and rotations run on their own thread for the whole matrix.
    let stop = AtomicBool::new(false);
    let fake_proc = Mutex::new(&mut fake.proc);
    let mut points = Vec::new();
    let (result, sent) = std::thread::scope(|scope| {
        let driver = scope.spawn(|| {
            let mut sent = Vec::new();
            for line in FAULTS.iter().cycle() {
                std::thread::sleep(FAULT_EVERY);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut proc = fake_proc.lock().unwrap_or_else(PoisonError::into_inner);
                if proc.command(line).is_ok() {
                    sent.push(line.to_string());
                }
            }
            sent
        });
        if let Some(addr) = spin.as_ref().map(|s| s.server.addr) {
            let stop = &stop;
            scope.spawn(move || bench_spin::keep_polled(addr, stop));
        }
        let result = (|| -> Result<()> {
            for (i, &c) in CONNECTIONS.iter().enumerate() {
                let mut servers: Vec<&Server> = hosts
                    .iter()
                    .chain([&baseline])
                    .chain(spin.as_ref().map(|s| &s.server))
                    .collect();
                // Alternate who goes first, so a drift in the machine's load hits both sides.
                if i % 2 == 1 {
                    servers.reverse();
                }
                for s in servers {
                    points.push(load(bins, s, c, opts)?);
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        (result, driver.join().unwrap_or_default())
    });
    result?;

    let hwm: Vec<Value> = hosts
        .iter()
        .chain([&baseline])
        .chain(spin.as_ref().map(|s| &s.server))
        .map(|s| {
            json!({
                "server": s.label,
                "vm_hwm_kib": bench_spin::vm_kib(s, "VmHWM"),
                "vm_rss_kib_end": bench_spin::vm_kib(s, "VmRSS"),
            })
        })
        .collect();
    let log_path = out_dir.join("matrix-fake-log.jsonl");
    fake.command(&format!("log-dump {}", log_path.display()))?;
    let log = read_log(&log_path)?;
    Ok(json!({
        "districts": fake.districts.len(),
        "settings": MATRIX_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "points": points,
        "idle": idle,
        "end": hwm,
        "fake_commands_sent": sent,
        "fake_log": summarize_matrix_log(&log),
    }))
}

fn read_log(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the fake's log {}", path.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).context("a log line"))
        .collect()
}

fn summarize_matrix_log(log: &[Value]) -> Value {
    let count = |route: &str, status: Option<u64>| {
        log.iter()
            .filter(|r| r["route"] == route && status.is_none_or(|s| r["status"] == s))
            .count()
    };
    json!({
        "listings": count("TokenList", None),
        "listings_200": count("TokenList", Some(200)),
        "listings_503": count("TokenList", Some(503)),
        "listings_429": count("TokenList", Some(429)),
        "probes": count("Data", None),
        "probes_503": count("Data", Some(503)),
        "probes_401": count("Data", Some(401)),
    })
}

// ----- 2. first token and hand-out -----

fn first_token(
    bins: &Bins,
    flags: &HostFlags,
    fake_url: &str,
    opts: &Options,
    out_dir: &Path,
) -> Result<Value> {
    let runs = opts.first_token_runs.max(1);
    let summary = |results: &[(Duration, Duration)]| {
        let mut tokens: Vec<f64> = results.iter().map(|(_, t)| t.as_secs_f64() * 1e3).collect();
        let mut listening: Vec<f64> = results.iter().map(|(l, _)| l.as_secs_f64() * 1e3).collect();
        json!({
            "runs": results.len(),
            "token_ms": tokens.clone(),
            "listening_ms": listening.clone(),
            "token_median_ms": median(&mut tokens),
            "listening_median_ms": median(&mut listening),
        })
    };
    eprintln!("xtask bench: first token, {runs} runs");
    let cold = crate::first_token_runs(&bins.host, &bins.component, fake_url, runs, &[])?;
    let mut result = json!({ "cold": summary(&cold) });
    if flags.component_cache {
        let dir = out_dir.join("component-cache");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let args = vec!["--component-cache".to_string(), dir.display().to_string()];
        // One run fills the cache; the measured runs find it.
        crate::first_token_runs(&bins.host, &bins.component, fake_url, 1, &args)?;
        let cached = crate::first_token_runs(&bins.host, &bins.component, fake_url, runs, &args)?;
        result["cached"] = summary(&cached);
    }
    Ok(result)
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn handout(bins: &Bins, opts: &Options) -> Result<Value> {
    let mut results = Vec::new();
    for districts in [2, opts.districts.max(1)] {
        let out = Command::new(&bins.bench)
            .args([
                "handout",
                "--iters",
                "2000000",
                "--districts",
                &districts.to_string(),
            ])
            .output()
            .context("running the hand-out benchmark")?;
        if !out.status.success() {
            bail!(
                "the hand-out benchmark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().context("no output")?;
        results.push(serde_json::from_str::<Value>(line)?);
    }
    Ok(Value::Array(results))
}

// ----- 3. many districts -----

fn scale(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<Value> {
    let n = opts.districts.max(2);
    eprintln!("xtask bench: {n} districts");
    let mut fake = start_fake(bins, n)?;
    let started = Instant::now();
    let host = start_host(bins, &fake.url, &SCALE_SETTINGS, None)?;
    let first_pass_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = host.proc.vm_kib("VmRSS");

    let host_load = load(bins, &host, 64, opts)?;
    let load_rss = host_load["server_rss_max_kib"].clone();
    let baseline = start_baseline(bins, &fake.url, &SCALE_SETTINGS, n)?;
    let baseline_load = load(bins, &baseline, 64, opts)?;
    drop(baseline);

    let isolation = isolation(&host, &mut fake)?;

    // Enough complete cycles in the log to say something about their spread.
    let log_path = out_dir.join("scale-fake-log.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    let cycles = loop {
        fake.command(&format!("log-dump {}", log_path.display()))?;
        let cycles = probe_cycles(&read_log(&log_path)?, n);
        if cycles.len() >= 5 || Instant::now() > deadline {
            break cycles;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let hwm = host.proc.vm_kib("VmHWM");
    Ok(json!({
        "districts": n,
        "settings": SCALE_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "first_pass_secs": first_pass_secs,
        "host_idle_rss_kib": idle_rss,
        "host_load_rss_max_kib": load_rss,
        "host_vm_hwm_kib": hwm,
        "host_64": host_load,
        "baseline_64": baseline_load,
        "isolation": isolation,
        "cycles": cycles,
    }))
}

/// One district's probes fail (503) until cleared: only that district may degrade in health.
fn isolation(host: &Server, fake: &mut Fake) -> Result<Value> {
    let victim = fake.districts[fake.districts.len() / 2].clone();
    let district_status = |body: &Value, id: &str| -> Option<String> {
        body["checks"]["clever:districtTokens"]
            .as_array()?
            .iter()
            .find(|c| c["componentId"] == id)?["status"]
            .as_str()
            .map(str::to_string)
    };
    // The public answer has counts only: one district warning is the victim.
    let one_warns = |b: &Value| b["districts"]["warn"] == 1 && b["checks"].is_null();
    fake.command(&format!("fault data status:503 {victim}"))?;
    let faulted_at = Instant::now();
    let (http, body) = wait_health(host, Duration::from_secs(30), |_, b| {
        one_warns(b) || district_status(b, &victim).as_deref() == Some("warn")
    })?;
    let degraded_after = faulted_at.elapsed().as_secs_f64();
    let checks = body["checks"]["clever:districtTokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut others_not_pass: Vec<String> = checks
        .iter()
        .filter(|c| c["componentId"] != victim.as_str() && c["status"] != "pass")
        .filter_map(|c| c["componentId"].as_str().map(str::to_string))
        .collect();
    if one_warns(&body) && body["districts"]["fail"] != 0 {
        others_not_pass.push(format!("{} failing", body["districts"]["fail"]));
    }
    fake.command("clear")?;
    let cleared_at = Instant::now();
    wait_health(host, Duration::from_secs(30), |_, b| {
        (b["checks"].is_null() && b["districts"]["pass"] == b["districts"]["total"])
            || district_status(b, &victim).as_deref() == Some("pass")
    })?;
    Ok(json!({
        "victim": victim,
        "degraded_after_secs": degraded_after,
        "http_status_while_degraded": http,
        "overall_while_degraded": body["status"],
        "victim_status": "warn",
        "districts_checked": if checks.is_empty() { body["districts"]["total"].clone() } else { json!(checks.len()) },
        "others_not_pass": others_not_pass,
        "isolated": others_not_pass.is_empty() && http == 200,
        "recovered_after_secs": cleared_at.elapsed().as_secs_f64(),
    }))
}

/// The refresh cycles in the fake's log: each successful listing and the data probes that
/// follow it until the next listing.
fn probe_cycles(log: &[Value], districts: usize) -> Vec<Value> {
    let t_ms = |r: &Value| r["t_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let listings: Vec<f64> = log
        .iter()
        .filter(|r| r["route"] == "TokenList" && r["status"] == 200)
        .map(t_ms)
        .collect();
    let mut cycles = Vec::new();
    for (i, &start) in listings.iter().enumerate() {
        let end = listings.get(i + 1).copied().unwrap_or(f64::INFINITY);
        let probes: Vec<&Value> = log
            .iter()
            .filter(|r| r["route"] == "Data" && (start..end).contains(&t_ms(r)))
            .collect();
        if probes.len() < districts {
            // The last cycle may still be running when the log was dumped.
            continue;
        }
        let times: Vec<f64> = probes.iter().map(|r| t_ms(r)).collect();
        let first = times.first().copied().unwrap_or(start);
        let last = times.last().copied().unwrap_or(start);
        let mut distinct: Vec<&str> = probes
            .iter()
            .filter_map(|r| r["district"].as_str())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        cycles.push(json!({
            "listing_at_ms": start,
            "probes": probes.len(),
            "distinct_districts": distinct.len(),
            "failed_probes": probes.iter().filter(|r| r["status"] != 200).count(),
            "first_probe_after_listing_ms": first - start,
            "probe_span_ms": last - first,
            "max_in_100ms": max_in_window(&times, 100.0),
        }));
    }
    cycles
}

/// The most timestamps (ms, sorted) in any window of `width` ms.
fn max_in_window(times: &[f64], width: f64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

// ----- report -----

fn git_rev(root: &Path) -> String {
    let out = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let rev = out(&["rev-parse", "--short", "HEAD"]);
    if out(&["status", "--porcelain"]).is_empty() {
        rev
    } else {
        format!("{rev}+changes")
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ms(us: &Value) -> String {
    format!("{:.3}", num(us) / 1000.0)
}

fn mib(kib: &Value) -> String {
    kib.as_f64()
        .map_or_else(|| "—".into(), |k| format!("{:.1} MiB", k / 1024.0))
}

fn point_row(p: &Value, ratio: Option<f64>) -> String {
    let requests = num(&p["requests"]);
    let per_req = |secs: &Value| {
        secs.as_f64()
            .filter(|_| requests > 0.0)
            .map_or_else(|| "—".into(), |s| format!("{:.0}", s * 1e6 / requests))
    };
    let gen_pct = p["generator_cpu_secs"].as_f64().map_or_else(
        || "—".into(),
        |s| format!("{:.0} %", s / num(&p["window_secs"]) * 100.0),
    );
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        p["server"].as_str().unwrap_or("?"),
        p["connections"],
        num(&p["rps"]),
        ms(&p["latency_us"]["p50"]),
        ms(&p["latency_us"]["p99"]),
        ms(&p["latency_us"]["p999"]),
        ms(&p["latency_us"]["max"]),
        p["non_2xx"],
        p["errors"],
        ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}")),
        per_req(&p["server_cpu_secs"]),
        gen_pct,
    )
}

const POINT_HEADER: &str = "| server | conns | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | errors | host/baseline | server CPU µs/req | generator CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/// The report's title, the machine and the health matrix (all `--only spin` writes).
fn render_matrix(r: &Value) -> String {
    let mut md = String::new();
    let m = &r["matrix"];
    let _ = writeln!(
        md,
        "## clever-auth benchmark ({})\n",
        r["git"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "{} cores; load average {} before, {} after; compilers running before: {}. Release build {:.0} s. Each point: {} s warm-up + {} s measured (at most {} requests), closed loop, keep-alive, generator on {} thread(s) on the same machine.\n",
        r["nproc"],
        r["machine_before"]["loadavg_1m"],
        r["machine_after"]["loadavg_1m"],
        r["machine_before"]["compilers_running"],
        num(&r["release_build_secs"]),
        r["warmup_secs"],
        r["secs_per_point"],
        r["max_requests_per_point"],
        r["generator_threads"],
    );
    let points = m["points"].as_array().cloned().unwrap_or_default();
    let loads: Vec<f64> = points
        .iter()
        .filter_map(|p| p["machine"]["loadavg_1m"].as_f64())
        .collect();
    let compilers = points
        .iter()
        .filter_map(|p| p["machine"]["compilers_running"].as_u64())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "Load average at the start of the points: {:.2}–{:.2}; at most {compilers} compiler processes of other builds running at a point's start. Host `--instance-mode`: {}; `--component-cache`: {}.\n",
        loads.iter().copied().fold(f64::INFINITY, f64::min),
        loads.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        if r["instance_mode_flag"] == true { "both modes measured" } else { "not offered by this host" },
        if r["component_cache_flag"] == true { "offered" } else { "not offered" },
    );
    let _ = writeln!(
        md,
        "### Health endpoint, {} districts, tokens refreshed every 3 s with faults\n",
        m["districts"]
    );
    md.push_str(POINT_HEADER);
    for p in &points {
        let baseline = points
            .iter()
            .find(|b| b["server"] == "baseline" && b["connections"] == p["connections"]);
        let ratio = match (p["server"].as_str(), baseline) {
            (Some(s), Some(b)) if s != "baseline" => Some(num(&p["rps"]) / num(&b["rps"])),
            _ => None,
        };
        md.push_str(&point_row(p, ratio));
    }
    if points.iter().any(|p| p["server"] == bench_spin::LABEL) {
        let _ = writeln!(md, "\n{}", bench_spin::NOTE);
    }
    let log = &m["fake_log"];
    let _ = writeln!(
        md,
        "\nDuring the matrix the fake saw {} listings ({} answered 200, {} 503, {} 429) and {} probes ({} 503, {} 401); commands sent: {}.\n",
        log["listings"], log["listings_200"], log["listings_503"], log["listings_429"],
        log["probes"], log["probes_503"], log["probes_401"],
        m["fake_commands_sent"].as_array().map_or(0, Vec::len),
    );

    md
}

fn render(r: &Value) -> String {
    let mut md = render_matrix(r);
    let m = &r["matrix"];
    let points = m["points"].as_array().cloned().unwrap_or_default();
    md.push_str("### Memory\n\n| process | VmRSS idle | VmRSS max at 256 conns | VmHWM |\n|---|---:|---:|---:|\n");
    let idle = m["idle"].as_array().cloned().unwrap_or_default();
    for i in &idle {
        let label = &i["server"];
        let under = points
            .iter()
            .find(|p| &p["server"] == label && p["connections"] == 256)
            .map_or(Value::Null, |p| p["server_rss_max_kib"].clone());
        let hwm = m["end"]
            .as_array()
            .and_then(|e| e.iter().find(|e| &e["server"] == label))
            .map_or(Value::Null, |e| e["vm_hwm_kib"].clone());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            label.as_str().unwrap_or("?"),
            mib(&i["vm_rss_kib"]),
            mib(&under),
            mib(&hwm)
        );
    }
    let s = &r["scale"];
    let _ = writeln!(
        md,
        "| host, {} districts | {} | {} (64 conns) | {} |\n",
        s["districts"],
        mib(&s["host_idle_rss_kib"]),
        mib(&s["host_load_rss_max_kib"]),
        mib(&s["host_vm_hwm_kib"])
    );

    md.push_str("### Start-up and token hand-out\n\n| figure | value |\n|---|---:|\n");
    let ft = &r["first_token"];
    let _ = writeln!(
        md,
        "| process start → first token, median of {} (listening at) | {:.0} ms ({:.0} ms) |",
        ft["cold"]["runs"],
        num(&ft["cold"]["token_median_ms"]),
        num(&ft["cold"]["listening_median_ms"])
    );
    if ft.get("cached").is_some() {
        let _ = writeln!(
            md,
            "| same with --component-cache, warm (listening at) | {:.0} ms ({:.0} ms) |",
            num(&ft["cached"]["token_median_ms"]),
            num(&ft["cached"]["listening_median_ms"])
        );
    }
    for h in r["handout"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| token hand-out from cache (store read + deserialise + hand_out), {} districts in store | {:.0} ns/op |",
            h["districts"],
            num(&h["ns_per_op"])
        );
    }

    let _ = writeln!(md, "\n### {} districts\n", s["districts"]);
    md.push_str("| figure | value |\n|---|---:|\n");
    let cycles = s["cycles"].as_array().cloned().unwrap_or_default();
    let mut spans: Vec<f64> = cycles.iter().map(|c| num(&c["probe_span_ms"])).collect();
    let max_100 = cycles
        .iter()
        .map(|c| c["max_in_100ms"].as_u64().unwrap_or(0))
        .max();
    let per_cycle: Vec<String> = cycles
        .iter()
        .map(|c| {
            format!(
                "{}/{:.0}/{}",
                c["probes"],
                num(&c["probe_span_ms"]),
                c["max_in_100ms"]
            )
        })
        .collect();
    let _ = writeln!(
        md,
        "| start → health pass (first cycle done) | {:.1} s |",
        num(&s["first_pass_secs"])
    );
    let _ = writeln!(
        md,
        "| complete refresh cycles in the log | {} |",
        cycles.len()
    );
    let _ = writeln!(
        md,
        "| probes per cycle / span ms / max in any 100 ms, each cycle | {} |",
        per_cycle.join(", ")
    );
    let max_span = spans.iter().copied().fold(f64::NAN, f64::max);
    let _ = writeln!(
        md,
        "| probe span of one cycle, median (max) | {:.0} ms ({:.0} ms) |",
        median(&mut spans).unwrap_or(f64::NAN),
        max_span
    );
    let _ = writeln!(
        md,
        "| most probes in any 100 ms window | {} |",
        max_100.unwrap_or(0)
    );
    let iso = &s["isolation"];
    let _ = writeln!(
        md,
        "| isolation: one district's probes fail (503) | {}: that district `warn` after {:.1} s, overall `{}` HTTP {}, {} of {} others not `pass`; `pass` again {:.1} s after the fault was cleared |",
        if iso["isolated"] == true { "isolated" } else { "NOT isolated" },
        num(&iso["degraded_after_secs"]),
        iso["overall_while_degraded"].as_str().unwrap_or("?"),
        iso["http_status_while_degraded"],
        iso["others_not_pass"].as_array().map_or(0, Vec::len),
        num(&iso["districts_checked"]) - 1.0,
        num(&iso["recovered_after_secs"]),
    );
    let (h, b) = (&s["host_64"], &s["baseline_64"]);
    let _ = writeln!(
        md,
        "| health at 64 conns, host: req/s, p50 / p99 ms, body | {:.0}, {} / {} ms, {} bytes |",
        num(&h["rps"]),
        ms(&h["latency_us"]["p50"]),
        ms(&h["latency_us"]["p99"]),
        h["body_bytes"]
    );
    let _ = writeln!(
        md,
        "| health at 64 conns, baseline: req/s, p50 / p99 ms, body | {:.0}, {} / {} ms, {} bytes |",
        num(&b["rps"]),
        ms(&b["latency_us"]["p50"]),
        ms(&b["latency_us"]["p99"]),
        b["body_bytes"]
    );
    let _ = writeln!(
        md,
        "| host/baseline throughput at 64 conns | {:.2} |",
        num(&h["rps"]) / num(&b["rps"])
    );
    bench_scale::render(&mut md, &r["scale_10k"]);
    md.push('\n');
    md.push_str(&bench_gateway::render(&r["gateway"]));
    md.push('\n');
    md.push_str(&abuse::render(&r["abuse"]));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts() {
        assert_eq!(max_in_window(&[], 100.0), 0);
        assert_eq!(max_in_window(&[0.0, 50.0, 99.0, 100.0, 150.0], 100.0), 3);
        assert_eq!(max_in_window(&[0.0, 200.0, 400.0], 100.0), 1);
    }

    #[test]
    fn cycles_group_probes_after_each_listing() {
        let rec = |t_ms: u64, route: &str, district: &str| json!({"t_us": t_ms * 1000, "route": route, "status": 200, "district": district});
        let log = vec![
            rec(0, "TokenList", ""),
            rec(10, "Data", "a"),
            rec(30, "Data", "b"),
            rec(1000, "TokenList", ""),
            rec(1005, "Data", "a"),
        ];
        let cycles = probe_cycles(&log, 2);
        assert_eq!(cycles.len(), 1, "the unfinished last cycle is left out");
        assert_eq!(cycles[0]["probes"], 2);
        assert_eq!(cycles[0]["probe_span_ms"], 20.0);
        assert_eq!(cycles[0]["max_in_100ms"], 2);
    }
}
