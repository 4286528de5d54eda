//! Spin as a server in `cargo xtask bench`: the project's own `spin.toml` and
//! `runtime-config.toml` under `spin up`, pointed at the bench's fake Clever with the matrix's
//! settings, measured side by side with the host and the native baseline.
//!
//! `spin up` runs the app in a child process (`spin trigger http`): the load generator watches
//! that child's CPU, and the whole process group is killed when the bench is done with it.

use super::build::Bins;
use super::servers::{wait_health, Server, HEALTH, HOST_START_TIMEOUT};
use crate::procs::Proc;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const LABEL: &str = "spin up";

/// A `spin up` serving the app; its process group dies with it.
pub struct SpinServer {
    pub server: Server,
}

impl Drop for SpinServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.server.proc.pid())])
            .status();
    }
}

/// Starts `spin up` against `fake_url` (settings as `SPIN_VARIABLE_*`) and waits for `pass`;
/// `None`, with a note, when this machine has no Spin.
pub fn start(
    bins: &Bins,
    fake_url: &str,
    settings: &[(&str, &str)],
    out_dir: &Path,
) -> Result<Option<SpinServer>> {
    let root = crate::workspace_root()?;
    let spin = match crate::spin::find_spin(&root) {
        Ok(spin) => spin,
        Err(e) => {
            eprintln!("xtask bench: Spin left out: {e:#}");
            return Ok(None);
        }
    };
    // A copy of the app, so the bench's component (copied out of the build) is what runs and
    // Spin's `.spin/` state lands in the bench's directory.
    let app = out_dir.join("spin-app");
    let _ = std::fs::remove_dir_all(&app);
    let wasm = app.join("target/wasm32-wasip2/release/clever_auth.wasm");
    std::fs::create_dir_all(wasm.parent().context("component dir")?)?;
    std::fs::copy(&bins.component, &wasm)?;
    for file in ["spin.toml", "runtime-config.toml"] {
        std::fs::copy(root.join(file), app.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = crate::spin::spin_up_against(
        &spin,
        &app,
        &app.join("runtime-config.toml"),
        fake_url,
        &listen,
        true,
    );
    for (k, v) in settings {
        cmd.env(format!("SPIN_VARIABLE_{k}"), v);
    }
    cmd.process_group(0);
    let mut proc = Proc::spawn(LABEL, &mut cmd, false)?;
    proc.wait_line(HOST_START_TIMEOUT, |l| {
        l.starts_with("Serving http://").then_some(())
    })?;
    proc.quiet();
    let addr: SocketAddr = listen.parse()?;
    let spin = SpinServer {
        server: Server {
            label: LABEL.to_string(),
            proc,
            addr,
        },
    };
    // Under Spin, the polls themselves drive the first acquisition.
    wait_health(&spin.server, HOST_START_TIMEOUT, |status, body| {
        status == 200 && body["status"] == "pass"
    })?;
    Ok(Some(spin))
}

/// The process whose CPU a load point charges to `server`: for Spin the `spin trigger http`
/// child that runs the component, otherwise the server itself.
pub fn cpu_pid(server: &Server) -> u32 {
    let pid = server.proc.pid();
    if server.label != LABEL {
        return pid;
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(pid)
}

/// How often Spin's health is polled between its own load points.
const KEEP_POLLED_EVERY: Duration = Duration::from_millis(250);

/// Polls the health of the Spin app at `addr` until `stop`, as a health checker would. Spin has no scheduler: left
/// without requests while the other servers are measured, its tokens (6 s lifetime in the
/// matrix) expired, and its next point began with a second of `503`s while they were acquired
/// again. The host's scheduler keeps its tokens fresh without requests; this does it for Spin.
pub fn keep_polled(addr: SocketAddr, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let _ = crate::procs::http_get(addr, HEALTH);
        std::thread::sleep(KEEP_POLLED_EVERY);
    }
}

/// A `/proc/PID/status` figure of the process [`cpu_pid`] names (for Spin, the
/// `spin trigger http` child that holds the instances).
pub fn vm_kib(server: &Server, field: &str) -> Option<u64> {
    crate::procs::status_kib(cpu_pid(server), field)
}

/// What the report says about the Spin rows.
pub const NOTE: &str = "`spin up` (Spin 4.0.2, the project's spin.toml and runtime-config.toml): a new instance per request, no scheduler (refreshes ride on the load's own polls, and on a health poll every 250 ms between its points, as a health checker's), server CPU and memory measured on its `spin trigger http` child.";
