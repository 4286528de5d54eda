//! `cargo xtask bench`: builds everything in release, then measures, on loopback only and
//! bounded in time and requests:
//!
//! 1. the health endpoint under closed-loop load at 1, 64 and 256 connections, served by the
//!    host (each instance mode it offers) and by the native baseline, alternately, while the
//!    fake Clever rotates tokens and injects 503s and 429s (short token lifetimes, so refreshes
//!    happen under load); the host's memory idle and under load;
//! 2. start-up to first token (median of several runs) and one token hand-out from the cache;
//! 3. many districts: the spread of the per-district probes of each refresh cycle (from the
//!    fake's request log), one failing district's isolation in health, and health latency.
//!
//! Writes a markdown report and its JSON twin.
//!
//! One file per part of the run: `build` (the release artifacts), `servers` (starting the fake,
//! the host and the baseline, and reading health), `load` (the load generators), `matrix`,
//! `startup` and `many_districts` (parts 1 to 3), `fake_log` (what the fake's request log
//! says), `stats`, `head` (what every report starts with) and `report` (the Markdown). This
//! file runs the parts in order and writes the report.

#[path = "../bench_abuse.rs"]
pub mod abuse;
#[path = "../bench_clever_calls.rs"]
mod bench_clever_calls;
#[path = "../bench_gateway.rs"]
mod bench_gateway;
#[path = "../bench_scale.rs"]
mod bench_scale;
#[path = "../bench_scaleout.rs"]
mod bench_scaleout;
#[path = "../bench_spin.rs"]
mod bench_spin;
mod build;
mod fake_log;
mod head;
mod load;
mod many_districts;
mod matrix;
mod options;
mod report;
mod servers;
mod startup;
mod stats;

pub use options::Options;

use anyhow::{bail, Context, Result};
use build::{build_release, Bins};
use head::report_head;
use load::machine;
use many_districts::scale;
use matrix::matrix;
use report::{render, render_matrix};
use serde_json::{json, Value};
use servers::{start_fake, HostFlags};
use startup::{first_token, handout};
use std::path::Path;
use std::time::Instant;

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    let out_dir = opts
        .out
        .parent()
        .map_or_else(|| root.join("target/bench"), Path::to_path_buf);
    std::fs::create_dir_all(&out_dir)?;
    if opts.only.as_deref() == Some("container") {
        // The image builds its own release host; no local release build is needed.
        return crate::image::bench(root, &out_dir, opts.first_token_runs.max(1));
    }
    let machine_before = machine();
    let started = Instant::now();
    let bins = build_release(root, &out_dir)?;
    if let Some(other) = &opts.component {
        std::fs::copy(other, &bins.component)
            .with_context(|| format!("copying the component {}", other.display()))?;
        eprintln!("xtask bench: measuring the component {}", other.display());
    }
    let build_secs = started.elapsed().as_secs_f64();
    eprintln!("xtask bench: release build took {build_secs:.0} s");
    let flags = HostFlags::detect(&bins.host)?;
    if opts.only.as_deref() == Some("scale10k") {
        return bench_scale::only(&bins, opts, &out_dir);
    }
    if opts.only.as_deref() == Some("spin") {
        return spin_only(&bins, &flags, opts, &out_dir, machine_before, build_secs);
    }
    if opts.only.as_deref() == Some("gateway") {
        return bench_gateway::only(&bins, opts, &out_dir);
    }
    if opts.only.as_deref() == Some("scaleout") {
        return bench_scaleout::only(&bins, opts, &out_dir);
    }

    let mut report = report_head(root, build_secs, opts, &flags, machine_before);

    let mut fake = start_fake(&bins, 2)?;
    report["matrix"] = matrix(&bins, &flags, opts, &mut fake, &out_dir)?;
    fake.command("clear")?;
    report["first_token"] = first_token(&bins, &flags, &fake.url, opts, &out_dir)?;
    drop(fake);
    report["handout"] = handout(&bins, opts)?;
    report["scale"] = scale(&bins, opts, &out_dir)?;
    report["scale_10k"] = bench_scale::run(&bins, opts, &out_dir)?;
    report["gateway"] = bench_gateway::run(&bins, opts, &out_dir)?;
    report["abuse"] = abuse::run(
        &bins,
        &abuse::AbuseOptions {
            secs: opts.secs,
            ..Default::default()
        },
    )?;
    report["machine_after"] = machine();
    report["total_secs"] = json!(started.elapsed().as_secs_f64());

    let markdown = render(&report);
    print!("{markdown}");
    std::fs::write(&opts.out, &markdown)
        .with_context(|| format!("writing {}", opts.out.display()))?;
    let json_path = opts.out.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    eprintln!(
        "xtask bench: wrote {} and {}",
        opts.out.display(),
        json_path.display()
    );
    Ok(())
}

/// `cargo xtask bench --only spin`: the health matrix alone (host in each instance mode, the
/// native baseline, `spin up`), written to `spin.md` and `spin.json` in the bench directory.
/// Unlike the full bench, a machine without Spin is an error here.
fn spin_only(
    bins: &Bins,
    flags: &HostFlags,
    opts: &Options,
    out_dir: &Path,
    machine_before: Value,
    build_secs: f64,
) -> Result<()> {
    crate::spin::find_spin(&crate::workspace_root()?)?;
    let root = crate::workspace_root()?;
    let mut fake = start_fake(bins, 2)?;
    let mut report = report_head(&root, build_secs, opts, flags, machine_before);
    report["matrix"] = matrix(bins, flags, opts, &mut fake, out_dir)?;
    report["machine_after"] = machine();
    let points = report["matrix"]["points"].as_array();
    if !points.is_some_and(|p| p.iter().any(|p| p["server"] == bench_spin::LABEL)) {
        bail!("no Spin point was measured");
    }
    let md = render_matrix(&report);
    print!("{md}");
    let path = out_dir.join("spin.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(out_dir.join("spin.md"), md)?;
    eprintln!(
        "xtask bench: wrote {} and {}",
        out_dir.join("spin.md").display(),
        path.display()
    );
    Ok(())
}
