//! podman as this project's machines can run it, and one running container.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The image under test; `cargo xtask image --check` sets it. Without it the container tests
/// pass without doing anything, so that `cargo xtask test` never builds an image.
pub const IMAGE_ENV: &str = "CLEVER_AUTH_CONTAINER_IMAGE";
/// The base the runtime stage was built on, for the size check.
pub const RUNTIME_BASE_ENV: &str = "CLEVER_AUTH_CONTAINER_RUNTIME_BASE";

/// The image to test, or `None` (with a note on stderr) when none was named.
pub fn image_under_test(test: &str) -> Option<String> {
    let image = std::env::var(IMAGE_ENV).ok().filter(|v| !v.is_empty());
    if image.is_none() {
        eprintln!("{test}: skipped, {IMAGE_ENV} is not set (run `cargo xtask image --check`)");
    }
    image
}

/// The image with the sidecar rehearsal's tools (Python's requests), made by
/// `cargo xtask image --check`.
pub const TOOLS_IMAGE_ENV: &str = "CLEVER_AUTH_CONTAINER_TOOLS_IMAGE";

/// The tools image; an error when the image under test is named without it.
pub fn tools_image() -> Result<String> {
    std::env::var(TOOLS_IMAGE_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{IMAGE_ENV} is set but {TOOLS_IMAGE_ENV} is not (cargo xtask image --check sets both)"))
}

pub fn podman() -> Command {
    Command::new("podman")
}

/// Runs podman; its stdout on success, else an error with its stderr.
pub fn run(args: &[&str]) -> Result<String> {
    checked(podman().args(args))
}

/// Runs a podman command; its stdout on success, else an error with its stderr.
pub fn checked(cmd: &mut Command) -> Result<String> {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "podman {} failed ({}): {}",
            args.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("podman not found: apt-get install podman runc")
        } else {
            anyhow::Error::from(e).context("starting podman")
        }
    })
}

/// `--runtime runc` and explicit ulimits: crun refuses this machine's cgroup layout, and the
/// OCI runtime refuses podman's default ulimits here. nofile is the hard limit this process
/// has; nproc at 65536 or at the hard limit was refused, 32768 works.
pub fn runtime_args() -> Result<Vec<String>> {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .context("reading the open-files limit")?;
    Ok(vec![
        "--runtime".into(),
        "runc".into(),
        "--ulimit".into(),
        format!("nofile={hard}:{hard}"),
        "--ulimit".into(),
        "nproc=32768:32768".into(),
    ])
}

/// The address containers on podman's default bridge reach this machine at.
pub fn bridge_gateway() -> Result<std::net::IpAddr> {
    let text = run(&[
        "network",
        "inspect",
        "podman",
        "--format",
        "{{range .Subnets}}{{.Gateway}} {{end}}",
    ])?;
    let first = text
        .split_whitespace()
        .find(|g| g.parse::<std::net::Ipv4Addr>().is_ok())
        .with_context(|| format!("podman's default network has no IPv4 gateway: {text:?}"))?;
    Ok(first.parse()?)
}

/// The bridge interface exists only once a container has used it; a throw-away container
/// brings it up so that the fakes can bind its address.
pub fn ensure_bridge_up(image: &str) -> Result<()> {
    let ip = bridge_gateway()?;
    if std::net::TcpListener::bind((ip, 0)).is_ok() {
        return Ok(());
    }
    let mut args = vec!["run".to_string(), "--rm".into()];
    args.extend(runtime_args()?);
    args.extend(["--entrypoint".into(), "/bin/true".into(), image.to_string()]);
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("{ip} (podman's bridge) is still not bindable"))?;
    Ok(())
}

/// A detached container, force-removed when dropped.
pub struct Container {
    pub id: String,
    /// When `podman run` was started.
    pub started: Instant,
}

impl Container {
    /// `podman run -d <args>`; `secret_env` are passed as `-e NAME` with the value in podman's
    /// own environment, so no secret is on a command line or in an error message.
    pub fn run(args: &[String], secret_env: &[(String, String)]) -> Result<Container> {
        Container::run_with(podman(), args, secret_env)
    }

    /// [`Container::run`] with a podman command of the caller's (its environment, say).
    pub fn run_with(
        mut cmd: Command,
        args: &[String],
        secret_env: &[(String, String)],
    ) -> Result<Container> {
        cmd.args(["run", "-d"]).args(runtime_args()?);
        for (name, value) in secret_env {
            cmd.args(["-e", name]).env(name, value);
        }
        cmd.args(args);
        let started = Instant::now();
        let out = output(&mut cmd)?;
        if !out.status.success() {
            bail!(
                "podman run failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Container { id, started })
    }

    pub fn inspect(&self, format: &str) -> Result<String> {
        run(&["inspect", "--format", format, &self.id])
    }

    /// The host's pid as this machine sees it.
    pub fn pid(&self) -> Result<i32> {
        let pid = self.inspect("{{.State.Pid}}")?;
        let pid: i32 = pid.parse().with_context(|| format!("pid {pid:?}"))?;
        anyhow::ensure!(pid > 0, "the container is not running");
        Ok(pid)
    }

    /// stdout and stderr of the container so far.
    pub fn logs(&self) -> Result<String> {
        let out = output(podman().args(["logs", &self.id]))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `result`, or its error with the container's last log lines (the host scrubs secrets
    /// from them, and the fakes' values are made up for this run).
    pub fn with_logs<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| {
            let logs = self.logs().unwrap_or_else(|l| format!("(no logs: {l:#})"));
            let tail: Vec<&str> = logs.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            e.context(format!("container log tail:\n{}", tail.join("\n")))
        })
    }

    /// Where `container_port` is published on this machine.
    pub fn published(&self, container_port: u16) -> Result<SocketAddr> {
        let text = run(&["port", &self.id, &format!("{container_port}/tcp")])?;
        let first = text.lines().next().unwrap_or_default().trim();
        first
            .parse()
            .with_context(|| format!("`podman port` said {text:?}"))
    }

    /// `podman healthcheck run`: the image's HEALTHCHECK, once. True when healthy.
    pub fn healthcheck(&self) -> Result<(bool, String)> {
        let out = output(podman().args(["healthcheck", "run", &self.id]))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string();
        Ok((out.status.success(), said))
    }

    /// `podman stop -t <timeout>`; how long it took.
    pub fn stop(&self, timeout: Duration) -> Result<Duration> {
        let at = Instant::now();
        run(&["stop", "-t", &timeout.as_secs().to_string(), &self.id])?;
        Ok(at.elapsed())
    }

    pub fn exit_code(&self) -> Result<i32> {
        let code = self.inspect("{{.State.ExitCode}}")?;
        code.parse().with_context(|| format!("exit code {code:?}"))
    }

    /// A TCP connection to `127.0.0.1:port` inside the container's network namespace: what a
    /// sidecar sharing its `localhost` (App Service's sidecar layout) would open. The socket
    /// belongs to this process, outside the container, so it outlives the container's processes.
    pub fn connect_localhost(&self, port: u16) -> Result<std::net::TcpStream> {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.pid()?))
            .context("opening the container's network namespace")?;
        // setns changes the calling thread only: a thread of its own, ended right after.
        std::thread::spawn(move || -> Result<std::net::TcpStream> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("entering the container's network namespace (needs root)")?;
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    }

    /// Sends a signal to the host process from outside the container (inside it, the host is
    /// pid 1, which ignores SIGSTOP).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()?), signal)
            .with_context(|| format!("sending {signal} to the container's host"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.id]).output();
    }
}
