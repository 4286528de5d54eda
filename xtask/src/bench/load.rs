//! Load generators: the bench binary's closed-loop load against one server, and the machine's
//! own load while it runs.

use super::bench_spin;
use super::build::Bins;
use super::options::Options;
use super::servers::{Server, HEALTH};
use crate::procs;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::process::{Command, Stdio};

pub(super) fn load(
    bins: &Bins,
    server: &Server,
    connections: usize,
    opts: &Options,
) -> Result<Value> {
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

/// Runs one of the bench binary's generators and parses the JSON line it ends with.
pub(super) fn run_generator(cmd: &mut Command, what: &str) -> Result<Value> {
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
pub(super) fn machine() -> Value {
    json!({ "loadavg_1m": procs::loadavg(), "compilers_running": procs::builds_running() })
}
