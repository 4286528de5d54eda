//! A real `redis-server` (Debian's package) on a free loopback port, with persistence off (the
//! spec allows no token on disk), in a temporary directory, stopped when dropped. It can
//! require a password (`requirepass`, what an access key is) or ACL users (what Entra ID
//! users are); the harness then logs in as an admin user of its own.
//!
//! Without `redis-server` a test skips loudly, except under `CI=true`, where it fails: `.ci/run`
//! installs the package.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    auth: RedisAuth,
    /// The harness's own login (user, password) when the server wants one.
    admin: Option<(String, String)>,
    /// One connection for the harness's commands, so they add one AUTH in all to the
    /// server's count (`command_calls("auth")` then counts the host's).
    harness: Mutex<Option<redis::Connection>>,
}

/// Who may log in.
#[derive(Debug, Clone, Default)]
pub struct RedisAuth {
    /// The default user's password (`requirepass`): an access key.
    pub requirepass: Option<String>,
    /// The default user is off: only ACL users log in (as under Entra ID).
    pub default_user_off: bool,
}

const ADMIN_USER: &str = "clever-auth-test-admin";

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
        Self::start_with(RedisAuth::default()).await
    }

    /// Starts a server that wants credentials as `auth` says.
    pub async fn start_with(auth: RedisAuth) -> Result<Option<RedisServer>> {
        let Some(binary) = redis_binary() else {
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let admin = (auth.requirepass.is_some() || auth.default_user_off).then(|| {
            (
                ADMIN_USER.to_string(),
                format!("admin-{}", crate::fake_support::util::random_hex(16)),
            )
        });
        let mut server = RedisServer {
            port,
            binary,
            dir: tempfile::tempdir()?,
            child: None,
            auth,
            admin,
            harness: Mutex::new(None),
        };
        server.spawn().await?;
        Ok(Some(server))
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            // No RDB snapshots, no append-only file: nothing reaches the disk.
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"]);
        if let Some((user, password)) = &self.admin {
            command.args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ]);
        }
        if let Some(password) = &self.auth.requirepass {
            command.args(["--requirepass", password]);
        }
        if self.auth.default_user_off {
            command.args(["--user", "default", "off"]);
        }
        let child = command
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

    /// A client of the harness: the admin user when the server wants a login.
    pub fn client(&self) -> Result<redis::Client> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(self.url())?;
        if let Some((user, password)) = &self.admin {
            let redis = info
                .redis_settings()
                .clone()
                .set_username(user)
                .set_password(password);
            info = info.set_redis_settings(redis);
        }
        Ok(redis::Client::open(info)?)
    }

    /// Runs `cmd` on the harness's connection, made (again) when there is none.
    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut held = self.harness.lock().unwrap_or_else(PoisonError::into_inner);
        let mut c = match held.take() {
            Some(c) => c,
            None => self
                .client()?
                .get_connection_with_timeout(Duration::from_secs(2))?,
        };
        let answer = cmd.query(&mut c);
        // A connection that failed is dropped; one that carried a refusal is kept.
        if !matches!(&answer, Err(e) if e.is_io_error() || e.is_connection_dropped()) {
            *held = Some(c);
        }
        Ok(answer?)
    }

    /// Runs one command as the admin, e.g. `["ACL", "SETUSER", …]`, `["CONFIG", "SET", …]`.
    pub fn command(&self, args: &[&str]) -> Result<redis::Value> {
        let (name, rest) = args.split_first().context("an empty command")?;
        let mut cmd = redis::cmd(name);
        for a in rest {
            cmd.arg(*a);
        }
        self.query(&cmd)
    }

    /// How many times `command` (e.g. `auth`) has been called since the start, failed calls
    /// included (`INFO commandstats`). The harness's own AUTH is one, when it first connects.
    pub fn command_calls(&self, command: &str) -> Result<u64> {
        let info: String = self.query(redis::cmd("INFO").arg("commandstats"))?;
        let prefix = format!("cmdstat_{command}:calls=");
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// The connections logged in as `user`, by client id (`CLIENT LIST`).
    pub fn client_ids_of(&self, user: &str) -> Result<Vec<u64>> {
        let list: String = self.query(redis::cmd("CLIENT").arg("LIST"))?;
        let wanted = format!("user={user}");
        Ok(list
            .lines()
            .filter(|l| l.split(' ').any(|f| f == wanted))
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .filter_map(|id| id.parse().ok())
            .collect())
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
        *self.harness.lock().unwrap_or_else(PoisonError::into_inner) = None;
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
        let keys: Vec<String> = self.query(redis::cmd("KEYS").arg("*"))?;
        let mut out = Vec::new();
        for k in keys {
            let v: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&k))?;
            out.push((k, v.unwrap_or_default()));
        }
        out.sort();
        Ok(out)
    }
}
