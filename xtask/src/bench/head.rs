//! What every report starts with: the source measured, the machine and the run's options.

use super::options::Options;
use super::servers::HostFlags;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// What every report starts with: the build, the machine and the run's options.
pub(super) fn report_head(
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

pub(super) fn git_rev(root: &Path) -> String {
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
