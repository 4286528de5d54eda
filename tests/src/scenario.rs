//! A fake Clever and the real host wired to it: the set-up every Clever end-to-end test shares.

use crate::fake_clever::{FakeClever, FakeCleverConfig};

/// Two districts with fixed ids, as most tests want.
pub fn two_districts() -> FakeCleverConfig {
    FakeCleverConfig {
        district_ids: vec!["d-alpha".into(), "d-beta".into()],
        generated_districts: 0,
        ..Default::default()
    }
}

/// Whether a health body names a district of [`two_districts`], anywhere (the public answer
/// gives counts only).
pub fn names_a_district(body: &str) -> bool {
    body.contains("d-alpha") || body.contains("d-beta")
}
use crate::host_process::{HostOptions, HostProcess};
use crate::http_client;
use anyhow::{bail, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

pub const HEALTH: &str = "/health/clever-auth";
/// Health polling interval: short, so assertions see changes quickly.
const POLL: Duration = Duration::from_millis(20);

/// Settings scaled down for tests: the retry schedule is 40, 80, 160, 320, 640 ms, and the
/// refresh point is exact (no jitter), so schedules can be asserted.
pub const FAST_SETTINGS: [(&str, &str); 6] = [
    ("CLEVER_RETRY_BASE_MS", "40"),
    ("CLEVER_RETRY_MAX_DELAY_MS", "640"),
    ("CLEVER_HTTP_TIMEOUT_MS", "2000"),
    ("CLEVER_RATE_LIMIT_MAX_WAIT_SECS", "10"),
    ("CLEVER_EXPIRY_SKEW_SECS", "0"),
    ("CLEVER_REFRESH_JITTER", "0"),
];

pub struct Scenario {
    pub fake: FakeClever,
    pub host: HostProcess,
}

pub struct Health {
    pub status: u16,
    pub body: Value,
}

impl Health {
    pub fn district(&self, id: &str) -> Option<&Value> {
        self.body["checks"]["clever:districtTokens"]
            .as_array()?
            .iter()
            .find(|c| c["componentId"] == id)
    }

    pub fn district_ids(&self) -> Vec<String> {
        self.body["checks"]["clever:districtTokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["componentId"].as_str().map(String::from))
            .collect()
    }
}

impl Scenario {
    /// Starts the fake, then the host pointed at it with the fake's credentials (development
    /// secrets provider), [`FAST_SETTINGS`], and `env` on top.
    pub async fn start(fake: FakeCleverConfig, env: &[(&str, &str)]) -> Result<Scenario> {
        let fake = FakeClever::start(fake).await?;
        Scenario::launch(fake, env).await
    }

    /// Like [`Scenario::start`] with a fake the test has already scripted.
    pub async fn launch(fake: FakeClever, env: &[(&str, &str)]) -> Result<Scenario> {
        Scenario::launch_with(fake, env, &[]).await
    }

    /// Like [`Scenario::launch`], with extra host arguments.
    pub async fn launch_with(
        fake: FakeClever,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Scenario> {
        Scenario::launch_opts(fake, env, args, true).await
    }

    /// The general form: `loopback_http` passes `--allow-loopback-http` (the fake Clever
    /// speaks plain http unless started with TLS).
    pub async fn launch_opts(
        fake: FakeClever,
        env: &[(&str, &str)],
        args: &[&str],
        loopback_http: bool,
    ) -> Result<Scenario> {
        let host = HostProcess::start(host_options(&fake, env, args, loopback_http)).await?;
        Ok(Scenario { fake, host })
    }

    pub async fn health(&self) -> Result<Health> {
        health(&self.host).await
    }

    /// Polls health until `pred` holds; the error shows the last body.
    pub async fn wait_health(
        &self,
        timeout: Duration,
        pred: impl Fn(&Health) -> bool,
    ) -> Result<Health> {
        wait_health(&self.host, timeout, pred).await
    }

    pub async fn wait_status(&self, status: &str, timeout: Duration) -> Result<Health> {
        self.wait_health(timeout, |h| h.body["status"] == status)
            .await
    }

    /// Everything the host printed, for leak checks and event assertions.
    pub fn logs(&self) -> String {
        self.host.output.text()
    }

    /// The first line the host printed that holds `needle`, waiting up to [`LOG_WAIT`] for it:
    /// an answer (health, the gateway) can arrive before the host's log line has been read
    /// from its stderr, so asserting on [`Self::logs`] at once is a race.
    pub async fn wait_log(&self, needle: &str) -> Result<String> {
        self.host
            .output
            .wait_for_line(0, LOG_WAIT, &format!("holding {needle:?}"), |l| {
                l.contains(needle)
            })
            .await
    }
}

/// How long [`Scenario::wait_log`] waits for a line.
pub const LOG_WAIT: Duration = Duration::from_secs(5);

/// The host options [`Scenario::launch_opts`] uses: the fake's credentials (development
/// secrets provider), [`FAST_SETTINGS`], then `env` and `args`. Tests that run several hosts
/// against one fake start each with these.
pub fn host_options(
    fake: &FakeClever,
    env: &[(&str, &str)],
    args: &[&str],
    loopback_http: bool,
) -> HostOptions {
    let mut opts = HostOptions::default()
        .arg("--secrets")
        .arg("env")
        .env("CLEVER_CLIENT_ID", &fake.client_id())
        .env("CLEVER_CLIENT_SECRET", &fake.client_secret())
        .env("CLEVER_TOKEN_URL", &fake.token_url())
        .env("CLEVER_API_BASE_URL", fake.api_base_url());
    for (k, v) in FAST_SETTINGS.iter().chain(env) {
        opts = opts.env(k, v);
    }
    if loopback_http {
        opts = opts.arg("--allow-loopback-http");
    }
    for a in args {
        opts = opts.arg(a);
    }
    opts
}

/// One health answer from `host`. The detail view is paged; the further pages are fetched
/// and their district checks appended, so [`Health::district`] sees every district.
pub async fn health(host: &HostProcess) -> Result<Health> {
    let reply = http_client::get(&host.url(HEALTH)).await?;
    let mut body: Value = reply.json()?;
    let pages = body["districtsPage"]["pages"].as_u64().unwrap_or(1);
    for page in 2..=pages {
        let more: Value = http_client::get(&host.url(&format!("{HEALTH}?page={page}")))
            .await?
            .json()?;
        let rest = more["checks"]["clever:districtTokens"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(all) = body["checks"]["clever:districtTokens"].as_array_mut() {
            all.extend(rest);
        }
    }
    Ok(Health {
        status: reply.status,
        body,
    })
}

/// Polls `host`'s health until `pred` holds; the error shows the last body and the host's
/// output.
pub async fn wait_health(
    host: &HostProcess,
    timeout: Duration,
    pred: impl Fn(&Health) -> bool,
) -> Result<Health> {
    poll_health(|| health(host), POLL, timeout, pred, || host.output.text()).await
}

/// Asks `fetch` for health every `every` until `pred` holds; the error shows the last body and
/// the server's `output`.
pub async fn poll_health<F, Fut>(
    mut fetch: F,
    every: Duration,
    timeout: Duration,
    pred: impl Fn(&Health) -> bool,
    output: impl Fn() -> String,
) -> Result<Health>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Health>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let h = fetch().await?;
        if pred(&h) {
            return Ok(h);
        }
        if Instant::now() > deadline {
            bail!(
                "health never matched within {timeout:?}; last ({}): {:#}\n{}",
                h.status,
                h.body,
                output()
            );
        }
        tokio::time::sleep(every).await;
    }
}
