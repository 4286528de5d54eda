//! The processes the bench talks to: the fake Clever, the host, the native baseline and a
//! loopback Redis, how each is started, and reading their health.

use super::build::Bins;
use crate::procs::{self, Proc};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub(super) const HEALTH: &str = "/health/clever-auth";
pub(super) const HOST_START_TIMEOUT: Duration = Duration::from_secs(90);

/// What the host binary offers (detected from its `--help`, so the harness works with hosts
/// from before and after those flags).
pub(super) struct HostFlags {
    pub(super) instance_modes: Vec<Option<&'static str>>,
    pub(super) component_cache: bool,
}

impl HostFlags {
    pub(super) fn detect(host: &Path) -> Result<HostFlags> {
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

pub(super) struct Fake {
    pub(super) proc: Proc,
    pub(super) url: String,
    pub(super) districts: Vec<String>,
}

impl Fake {
    pub(super) fn command(&mut self, line: &str) -> Result<String> {
        self.proc.command(line)
    }
}

pub(super) fn start_fake(bins: &Bins, districts: usize) -> Result<Fake> {
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

pub(super) struct Server {
    pub(super) label: String,
    pub(super) proc: Proc,
    pub(super) addr: SocketAddr,
}

pub(super) fn host_command(
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
pub(super) fn listening_addr(line: &str) -> Option<SocketAddr> {
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
pub(super) fn start_host(
    bins: &Bins,
    fake_url: &str,
    settings: &[(&str, &str)],
    mode: Option<&str>,
) -> Result<Server> {
    start_host_with_gateway(bins, fake_url, settings, mode).map(|(server, _)| server)
}

/// [`start_host`], also returning the gateway listener's address (hosts before the gateway
/// have none).
pub(super) fn start_host_with_gateway(
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

pub(super) fn start_baseline(
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

pub(super) fn health(server: &Server) -> Result<(u16, Value)> {
    let (status, body) = procs::http_get(server.addr, HEALTH)?;
    let body = serde_json::from_str(&body)
        .with_context(|| format!("{} answered health with non-JSON: {body}", server.label))?;
    Ok((status, body))
}

/// Polls health every 50 ms until `done` holds; returns the matching answer.
pub(super) fn wait_health(
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

/// A loopback `redis-server` as the tests run it: a free port, nothing on disk.
pub(super) struct Redis {
    pub(super) proc: Proc,
    pub(super) addr: SocketAddr,
}

/// Runs in `dir` (it writes nothing there with persistence off, but needs a directory).
pub(super) fn start_redis(dir: &Path) -> Result<Redis> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    std::fs::create_dir_all(dir)?;
    let proc = Proc::spawn(
        "redis-server",
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir),
        false,
    )
    .context("redis-server (apt-get install redis-server)")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "redis-server did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Redis { proc, addr })
}
