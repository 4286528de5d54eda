//! Runs the real `clever-auth-host` binary with the real component on an ephemeral port.

use crate::paths;
use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a host may take to compile the component and bind.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables a test host never inherits from the machine running the tests.
const SCRUBBED_PREFIXES: [&str; 2] = ["CLEVER_", "KEYVAULT_"];
const SCRUBBED: [&str; 4] = [
    "PORT",
    "WEBSITES_PORT",
    "RUST_LOG",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
];

#[derive(Default, Clone)]
pub struct HostOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Do not pass `--listen 127.0.0.1:0` (to test PORT handling).
    pub no_listen_flag: bool,
    /// Do not pass `--health-detail`: the listener gives the public health answer, as in
    /// production. Most tests assert on per-district checks, so the detail is the default.
    pub public_health: bool,
}

impl HostOptions {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The listener gives the public health answer (see [`HostOptions::public_health`]).
    pub fn public_health(mut self) -> Self {
        self.public_health = true;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
}

/// Every line the host printed, stdout and stderr, in arrival order.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    pub(crate) fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Polls until a line printed after the first `from` lines satisfies `pred` (pass
    /// `lines().len()` taken before the action under test, so an old line cannot satisfy the
    /// wait); the error shows what was printed.
    pub async fn wait_for_line(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().iter().skip(from).find(|l| pred(l)) {
                return Ok(line.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no line {what} within {timeout:?}:\n{}", self.text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct HostProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The gateway listener (`None` when the test turned it off).
    pub gateway_addr: Option<SocketAddr>,
    pub output: Output,
}

fn command(opts: &HostOptions) -> Command {
    let mut cmd = Command::new(paths::host_binary());
    for (key, _) in std::env::vars() {
        if SCRUBBED.contains(&key.as_str()) || SCRUBBED_PREFIXES.iter().any(|p| key.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    if !opts.args.iter().any(|a| a == "--component") {
        cmd.arg("--component").arg(paths::component());
    }
    cmd.args(["--log-format", "json"]);
    if !opts.no_listen_flag {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !opts.public_health {
        cmd.arg("--health-detail");
    }
    // Tests run hosts side by side: each gets its own gateway port unless it chose one.
    let gateway_chosen = opts.args.iter().any(|a| a.starts_with("--gateway-listen"))
        || opts
            .env
            .iter()
            .any(|(k, _)| k == "CLEVER_AUTH_GATEWAY_LISTEN");
    if !gateway_chosen {
        cmd.args(["--gateway-listen", "127.0.0.1:0"]);
    }
    cmd.args(&opts.args);
    cmd.envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl HostProcess {
    pub async fn start(opts: HostOptions) -> Result<HostProcess> {
        paths::require_artifacts();
        let mut child = command(&opts)
            .spawn()
            .context("spawning clever-auth-host")?;
        let output = Output::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let gateway_seen: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let gateway_note = gateway_seen.clone();
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let out = output.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = addr_of(&line, "gateway listening") {
                    if let Ok(mut g) = gateway_note.lock() {
                        *g = Some(addr);
                    }
                }
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                out.push(line);
            }
        });
        let err = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                err.push(line);
            }
        });
        let addr = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                let status = child.wait().await.ok();
                // Let the readers drain what the host printed before it died.
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "host exited before listening ({status:?}):\n{}",
                    output.text()
                );
            }
            Err(_) => bail!(
                "host did not start listening within {START_TIMEOUT:?}:\n{}",
                output.text()
            ),
        };
        // The gateway binds before the main listener announces itself, so its line came first.
        let gateway_addr = gateway_seen.lock().ok().and_then(|g| *g);
        Ok(HostProcess {
            child,
            addr,
            gateway_addr,
            output,
        })
    }

    /// Runs the host to completion (for start-up failures) and returns its status and output.
    pub async fn run_to_exit(opts: HostOptions) -> Result<(ExitStatus, String)> {
        paths::require_artifacts();
        let out = tokio::time::timeout(START_TIMEOUT, command(&opts).output())
            .await
            .map_err(|_| anyhow!("host did not exit within {START_TIMEOUT:?}"))??;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status, text))
    }

    /// The host's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the gateway listener (panics when the test turned the gateway off).
    pub fn gateway_url(&self, path: &str) -> String {
        let addr = self
            .gateway_addr
            .expect("the host was started without a gateway");
        format!("http://{addr}{path}")
    }

    /// SIGKILL, as a crashed or evicted instance dies: no drain, no last write. Waits for the
    /// process to be gone.
    pub async fn kill(self) -> Result<ExitStatus> {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10))
            .await
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub async fn terminate(self) -> Result<ExitStatus> {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20))
            .await
    }

    async fn signal_and_wait(
        mut self,
        signal: nix::sys::signal::Signal,
        within: Duration,
    ) -> Result<ExitStatus> {
        let pid = self.child.id().context("host already reaped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid, signal)?;
        tokio::time::timeout(within, self.child.wait())
            .await
            .map_err(|_| anyhow!("host still running {within:?} after {signal}"))?
            .map_err(Into::into)
    }
}

/// The `addr` of the host's JSON `listening` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    addr_of(line, "listening")
}

/// The `addr` of a JSON log line whose message is `message`.
fn addr_of(line: &str, message: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != message {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

/// A memory figure of a process from `/proc/<pid>/status`, in KiB: `VmRSS` (resident now) or
/// `VmHWM` (its peak).
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} line for process {pid}"))
}
