//! Runs the project's own `spin.toml` and `runtime-config.toml` under a real `spin up`, pointed at
//! a fake Clever through `SPIN_VARIABLE_*`, from a temporary copy of the project (so every file
//! Spin writes lands where a test can search it).
//!
//! Spin is found through `SPIN_BIN`, else `spin` on `PATH`, else `../shared/tools/spin/spin`
//! next to the workspace. Without Spin a test skips loudly, except under `CI=true`, where a
//! missing Spin fails the run.

use crate::fake_clever::FakeClever;
use crate::host_process::Output;
use crate::http_client;
use crate::paths;
use crate::scenario::{Health, HEALTH};
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long `spin up` may take to load (and, on a cold wasmtime cache, compile) the component.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the component goes inside the copy: `spin.toml`'s `source`, unchanged.
const COMPONENT_IN_APP: &str = "target/wasm32-wasip2/release/clever_auth.wasm";

/// Settings scaled down for tests, as `SPIN_VARIABLE_*` names: retries 100, 200, 400, 800,
/// 1600 ms (wider than the host tests' 40 ms base, since each step needs a health poll and
/// a fresh instance under Spin), an exact refresh point (no jitter), no expiry skew.
pub const SPIN_FAST_SETTINGS: [(&str, &str); 6] = [
    ("clever_retry_base_ms", "100"),
    ("clever_retry_max_delay_ms", "1600"),
    ("clever_http_timeout_ms", "2000"),
    ("clever_rate_limit_max_wait_secs", "10"),
    ("clever_expiry_skew_secs", "0"),
    ("clever_refresh_jitter", "0"),
];

/// The opt-in to the per-district health detail on Spin's listener, as `cargo xtask run --spin`
/// sets it. [`SpinOptions::against`] includes it (most tests read the detail); a test of the
/// public default takes it out with [`SpinOptions::without_var`].
pub const HEALTH_DETAIL_OPT_IN: (&str, &str) = ("clever_health_detail", "always");

/// The Spin binary, or `None` (with a message) when this machine has none and CI is not set.
/// Panics under `CI=true` without Spin: a Spin test never skips silently in CI.
pub fn spin_binary() -> Option<PathBuf> {
    let found = locate_spin();
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        assert!(
            !ci,
            "CI=true but no Spin found: set SPIN_BIN, put `spin` on PATH or provide ../shared/tools/spin/spin"
        );
        eprintln!(
            "SKIPPED: no Spin found (SPIN_BIN, PATH, ../shared/tools/spin/spin); this Spin test did not run"
        );
    }
    found
}

fn locate_spin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPIN_BIN").filter(|p| !p.is_empty()) {
        // An explicit choice that does not exist is a mistake, not a reason to look elsewhere.
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SPIN_BIN={} is not a file", p.display());
        return Some(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("spin"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let shared = paths::workspace_root().join("../shared/tools/spin/spin");
        shared.is_file().then_some(shared)
    })
}

/// What to run: which of the project's manifest / runtime-config pair, and with what.
#[derive(Clone)]
pub struct SpinOptions {
    pub manifest: &'static str,
    pub runtime_config: &'static str,
    /// Variable name (lower case, as in `spin.toml`) and value, passed as `SPIN_VARIABLE_*`.
    pub variables: Vec<(String, String)>,
    /// TOML appended to the copied runtime config (e.g. a `[[client_tls]]` for a test CA).
    pub runtime_config_extra: String,
    /// Files written into the copy's directory before start (e.g. a CA bundle).
    pub files: Vec<(String, String)>,
    /// Replacements (`from`, `to`) in the copied manifest, for tests of what a changed
    /// manifest does; each `from` must occur in the project's manifest.
    pub manifest_edits: Vec<(String, String)>,
    /// TOML appended to the copied manifest (e.g. a second component in the app).
    pub manifest_extra: String,
    /// Files copied into the copy's directory before start (name in the app, source), e.g. a
    /// second component's `.wasm`.
    pub copies: Vec<(String, PathBuf)>,
    /// The same for the copied runtime config (e.g. the vault URL).
    pub runtime_config_edits: Vec<(String, String)>,
    /// More environment for `spin up` (e.g. `SSL_CERT_FILE`, `IDENTITY_ENDPOINT`).
    pub env: Vec<(String, String)>,
}

impl Default for SpinOptions {
    fn default() -> Self {
        SpinOptions {
            manifest: "spin.toml",
            runtime_config: "runtime-config.toml",
            variables: Vec::new(),
            runtime_config_extra: String::new(),
            files: Vec::new(),
            manifest_edits: Vec::new(),
            manifest_extra: String::new(),
            copies: Vec::new(),
            runtime_config_edits: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl SpinOptions {
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }

    /// Drops every value given for variable `name`, so the manifest's default applies.
    pub fn without_var(mut self, name: &str) -> Self {
        self.variables.retain(|(k, _)| k != name);
        self
    }

    /// The fake's credentials and origins, [`SPIN_FAST_SETTINGS`], the health detail's opt-in
    /// ([`HEALTH_DETAIL_OPT_IN`]), then `extra` on top.
    pub fn against(fake: &FakeClever, extra: &[(&str, &str)]) -> Self {
        let mut opts = SpinOptions::default()
            .var("clever_client_id", &fake.client_id())
            .var("clever_client_secret", &fake.client_secret())
            .var("clever_oauth_base_url", fake.base_url())
            .var("clever_api_base_url", fake.api_base_url());
        let opt_in = [HEALTH_DETAIL_OPT_IN];
        for (k, v) in SPIN_FAST_SETTINGS.iter().chain(&opt_in).chain(extra) {
            opts = opts.var(k, v);
        }
        opts
    }
}

/// The runtime config for several `spin up` processes on one Redis, and the URL it ships with
/// (replaced in the copy by the test server's).
pub const REDIS_RUNTIME_CONFIG: &str = "runtime-config.redis.toml";
const REDIS_URL_LINE: &str = r#"url = "redis://127.0.0.1:6379""#;

/// The test consumer (`tests/consumer`) as a second component of the app: its own route, and
/// only clever-auth as an outbound host (service chaining names a component
/// `<id>.spin.internal`).
const CONSUMER_MANIFEST: &str = r#"
[[trigger.http]]
route = "/consumer/..."
component = "consumer"

[component.consumer]
source = "consumer.wasm"
allowed_outbound_hosts = ["http://clever-auth.spin.internal"]
"#;

impl SpinOptions {
    /// `runtime-config.redis.toml` pointed at `redis_url`, with `store_key` as
    /// SPIN_VARIABLE_CLEVER_STORE_KEY (none: the variable stays unset).
    pub fn on_redis(mut self, redis_url: &str, store_key: Option<&str>) -> Self {
        self.runtime_config = REDIS_RUNTIME_CONFIG;
        self.runtime_config_edits
            .push((REDIS_URL_LINE.into(), format!(r#"url = "{redis_url}""#)));
        match store_key {
            Some(key) => self.var("clever_store_key", key),
            None => self.without_var("clever_store_key"),
        }
    }

    /// The test consumer beside clever-auth, under `/consumer/…`.
    pub fn with_consumer(mut self) -> Self {
        let consumer = paths::test_consumer();
        assert!(
            consumer.is_file(),
            "missing {}: run the tests with `cargo xtask test`, which builds it",
            consumer.display()
        );
        self.manifest_extra.push_str(CONSUMER_MANIFEST);
        self.copies.push(("consumer.wasm".into(), consumer));
        self
    }
}

/// A running `spin up` of a temporary copy of the project's app.
pub struct SpinApp {
    child: Child,
    /// `spin up` leads its own process group, which holds its `spin trigger http` child.
    pgid: u32,
    pub addr: SocketAddr,
    pub output: Output,
    /// The copy: manifest, runtime config, component, and Spin's `.spin/` state directory.
    pub app_dir: PathBuf,
    /// `HOME` of the Spin process (Spin writes its wasmtime cache there).
    pub home_dir: PathBuf,
    // Removed on drop, after the process is gone.
    _tmp: tempfile::TempDir,
}

impl SpinApp {
    /// Copies the app, starts `spin up` on a free loopback port and waits until it serves.
    pub async fn start(spin: &Path, opts: SpinOptions) -> Result<SpinApp> {
        paths::require_component();
        let tmp = tempfile::Builder::new()
            .prefix("clever-auth-spin-")
            .tempdir()?;
        let app_dir = tmp.path().join("app");
        let component = app_dir.join(COMPONENT_IN_APP);
        std::fs::create_dir_all(component.parent().context("component dir")?)?;
        std::fs::copy(paths::component(), &component).context("copying the component")?;
        let root = paths::workspace_root();
        let manifest = edited(
            &root,
            opts.manifest,
            &opts.manifest_edits,
            &opts.manifest_extra,
        )?;
        std::fs::write(app_dir.join(opts.manifest), manifest)?;
        for (name, from) in &opts.copies {
            std::fs::copy(from, app_dir.join(name))
                .with_context(|| format!("copying {} into the app", from.display()))?;
        }
        let rc = edited(
            &root,
            opts.runtime_config,
            &opts.runtime_config_edits,
            &opts.runtime_config_extra,
        )?;
        std::fs::write(app_dir.join(opts.runtime_config), rc)?;
        for (name, text) in &opts.files {
            std::fs::write(app_dir.join(name), text)?;
        }
        let home_dir = tmp.path().join("home");
        std::fs::create_dir_all(&home_dir)?;

        // A port picked here may be taken before Spin binds it: try a few.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            match launch(spin, &opts, &app_dir, &home_dir, port).await {
                Ok((child, output)) => {
                    return Ok(SpinApp {
                        pgid: child.id().context("spin up already exited")?,
                        child,
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        output,
                        app_dir,
                        home_dir,
                        _tmp: tmp,
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("spin up did not start")))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn health(&self) -> Result<Health> {
        let reply = http_client::get(&self.url(HEALTH)).await?;
        Ok(Health {
            status: reply.status,
            body: reply.json()?,
        })
    }

    /// Polls health every `every` until `pred` holds; the error shows the last body and logs.
    pub async fn poll_until(
        &self,
        every: Duration,
        timeout: Duration,
        pred: impl Fn(&Health) -> bool,
    ) -> Result<Health> {
        crate::scenario::poll_health(|| self.health(), every, timeout, pred, || self.logs()).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Spin's own output and the component's stderr as Spin echoed it.
    pub fn logs(&self) -> String {
        self.output.text()
    }

    /// What the component wrote to `.spin/logs/` (Spin's files, read now).
    pub fn log_files(&self) -> String {
        let dir = self.app_dir.join(".spin/logs");
        files_under(&dir)
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every file under the copy (Spin's `.spin/` included) and Spin's `HOME`.
    pub fn written_files(&self) -> Vec<PathBuf> {
        let mut all = files_under(&self.app_dir);
        all.extend(files_under(&self.home_dir));
        all
    }

    /// Ctrl-C to the process group, as a terminal delivers it (`spin up` runs the app in a
    /// child `spin trigger http`); then a bounded wait for both. The copy stays until drop, so
    /// what Spin wrote can be searched after it stopped.
    pub async fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.signal_group(nix::sys::signal::Signal::SIGINT);
        let status = match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => bail!("spin up did not exit within 10 s of Ctrl-C"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.group_alive() {
            if Instant::now() > deadline {
                bail!("spin trigger outlived spin up by 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(status)
    }

    fn signal_group(&self, signal: nix::sys::signal::Signal) {
        if let Ok(pgid) = i32::try_from(self.pgid) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
        }
    }

    fn group_alive(&self) -> bool {
        i32::try_from(self.pgid).is_ok_and(|pgid| {
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok()
        })
    }
}

impl Drop for SpinApp {
    /// A failed test must not leave `spin trigger http` running: the whole group goes.
    fn drop(&mut self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The project's file `name` with each `(from, to)` replaced (every `from` must be there, so a
/// renamed line fails loudly) and `extra` appended.
fn edited(root: &Path, name: &str, edits: &[(String, String)], extra: &str) -> Result<String> {
    let mut text =
        std::fs::read_to_string(root.join(name)).with_context(|| format!("reading {name}"))?;
    for (from, to) in edits {
        assert!(text.contains(from.as_str()), "{from} not in {name}");
        text = text.replace(from.as_str(), to);
    }
    text.push('\n');
    text.push_str(extra);
    Ok(text)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn launch(
    spin: &Path,
    opts: &SpinOptions,
    app_dir: &Path,
    home_dir: &Path,
    port: u16,
) -> Result<(Child, Output)> {
    let mut cmd = Command::new(spin);
    for (key, _) in std::env::vars() {
        if [
            "SPIN_",
            "CLEVER_",
            "AZURE_",
            "IDENTITY_",
            "MSI_",
            "SSL_CERT_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(app_dir)
        .env("HOME", home_dir)
        .env_remove("RUNTIME_CONFIG_FILE")
        .env_remove("SPIN_LOG_DIR")
        .args(["up", "--from", opts.manifest])
        .args(["--runtime-config-file", opts.runtime_config])
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    for (name, value) in &opts.variables {
        cmd.env(
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value,
        );
    }
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("spawning spin up")?;
    let output = Output::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let out = output.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("Serving http://") {
                    let _ = tx.send(());
                }
                out.push(line);
            }
        });
    }
    drop(tx);
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let kill_group = || {
        if let Some(pgid) = pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    let deadline = Instant::now() + START_TIMEOUT;
    tokio::select! {
        got = rx.recv() => {
            if got.is_none() {
                kill_group();
                let status = child.wait().await.ok();
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!("spin up exited before serving ({status:?}):\n{}", output.text());
            }
        }
        status = child.wait() => {
            kill_group();
            tokio::time::sleep(Duration::from_millis(100)).await;
            bail!("spin up exited before serving ({:?}):\n{}", status.ok(), output.text());
        }
        () = tokio::time::sleep_until(deadline.into()) => {
            kill_group();
            bail!("spin up did not serve within {START_TIMEOUT:?}:\n{}", output.text());
        }
    }
    Ok((child, output))
}

/// Every regular file below `dir` (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// The files among `files` that contain any of `needles` (bytes, so binary files count too),
/// with the needle's index. A file that cannot be read is an error: a search that silently
/// skipped files would prove nothing.
pub fn files_containing(files: &[PathBuf], needles: &[String]) -> Result<Vec<(PathBuf, usize)>> {
    let mut hits = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, needle) in needles.iter().enumerate() {
            if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push((file.clone(), i));
            }
        }
    }
    Ok(hits)
}

/// A fake Clever and the project's app under `spin up` pointed at it.
pub struct SpinScenario {
    pub fake: FakeClever,
    pub app: SpinApp,
    /// When `spin up` said it serves.
    pub serving_at: Instant,
}

impl SpinScenario {
    /// `spin up` against `fake` with [`SpinOptions::against`]; `None` when Spin is absent
    /// outside CI (the test then returns early, having said so).
    pub async fn launch(fake: FakeClever, extra: &[(&str, &str)]) -> Result<Option<SpinScenario>> {
        let opts = SpinOptions::against(&fake, extra);
        SpinScenario::launch_opts(fake, opts).await
    }

    pub async fn launch_opts(fake: FakeClever, opts: SpinOptions) -> Result<Option<SpinScenario>> {
        let Some(spin) = spin_binary() else {
            return Ok(None);
        };
        let app = SpinApp::start(&spin, opts).await?;
        Ok(Some(SpinScenario {
            fake,
            app,
            serving_at: Instant::now(),
        }))
    }

    pub async fn health(&self) -> Result<Health> {
        self.app.health().await
    }

    /// Polls health every `every` until `pred` holds; the error shows the last body and logs.
    pub async fn poll_until(
        &self,
        every: Duration,
        timeout: Duration,
        pred: impl Fn(&Health) -> bool,
    ) -> Result<Health> {
        self.app.poll_until(every, timeout, pred).await
    }

    /// Polls health every `every` for `duration`, ignoring the answers (refreshes ride on them).
    pub async fn poll_for(&self, every: Duration, duration: Duration) -> Result<()> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.health().await?;
            tokio::time::sleep(every).await;
        }
        Ok(())
    }

    /// Polls health every `every` until the fake saw `n` requests on `route`.
    pub async fn poll_until_requests(
        &self,
        every: Duration,
        timeout: Duration,
        route: crate::fake_clever::Route,
        n: usize,
    ) -> Result<Vec<crate::fake_clever::RequestRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.fake.requests_for(route);
            if seen.len() >= n {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {n} {route:?} requests within {timeout:?}\n{}",
                    seen.len(),
                    self.app.logs()
                );
            }
            self.health().await?;
            tokio::time::sleep(every).await;
        }
    }
}
