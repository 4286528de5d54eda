//! A real `redis-server` (Debian's package) on a free loopback port, with persistence off (the
//! spec allows no token on disk), in a temporary directory, stopped when dropped.
//!
//! Without `redis-server` a test skips loudly, except under `CI=true`, where it fails: `.ci/run`
//! installs the package.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `redis-server`, or `None` (with a message) when this machine has none and CI is not set.
pub fn redis_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        assert!(
            !ci,
            "CI=true but no redis-server on PATH (apt-get install redis-server)"
        );
        eprintln!("SKIPPED: no redis-server on PATH; this Redis test did not run");
    }
    found
}

impl RedisServer {
    /// Starts a server, or `None` when [`redis_binary`] finds none.
    pub async fn start() -> Result<Option<RedisServer>> {
        let Some(binary) = redis_binary() else {
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = RedisServer {
            port,
            binary,
            dir: tempfile::tempdir()?,
            child: None,
        };
        server.spawn().await?;
        Ok(Some(server))
    }

    async fn spawn(&mut self) -> Result<()> {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            // No RDB snapshots, no append-only file: nothing reaches the disk.
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if self.ping().is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
            self.port
        )
    }

    /// `redis://127.0.0.1:PORT`, what `--store` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Result<redis::Client> {
        Ok(redis::Client::open(self.url())?)
    }

    fn ping(&self) -> Result<()> {
        let mut c = self
            .client()?
            .get_connection_with_timeout(Duration::from_millis(200))?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(())
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown). The port stays reserved for
    /// [`RedisServer::restart`] only by convention: nothing else in the test binds it.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port, empty (no persistence).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// Every key in the server with its value (strings only; we store nothing else).
    pub fn dump(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut c = self
            .client()?
            .get_connection_with_timeout(Duration::from_secs(2))?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c)?;
        let mut out = Vec::new();
        for k in keys {
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(&k).query(&mut c)?;
            out.push((k, v.unwrap_or_default()));
        }
        out.sort();
        Ok(out)
    }
}
