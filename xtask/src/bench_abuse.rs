//! The bench's abuse section (issue 13, "Slow and abusive clients"): against a host with
//! `districts` districts (≈ 86 KB of health at 300), one well-behaved keep-alive client's health
//! latency (p50/p99) and the host's peak RSS, first on the unloaded host, then with
//! `slowloris` slowloris connections and `non_readers` clients that request health and never
//! read attached (each reconnecting when dropped), side by side (ratio loaded/unloaded). Then
//! the same on the gateway's loopback listener (when the host has one): a sync client's paced
//! gateway calls, with slowloris and clients that ask for 1 MiB pages and never read them.
//!
//! Run alone with `cargo xtask bench-abuse` (also against another build's host, for a
//! before/after: `--host-bin`, `--component`); `cargo xtask bench` runs it as its last section.

use super::build::{build_release, Bins};
use super::head::git_rev;
use super::load::{machine, run_generator};
use super::servers::{start_fake, start_host_with_gateway, Server, HEALTH};
use crate::procs;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::process::Command;

pub struct AbuseOptions {
    pub secs: f64,
    pub districts: usize,
    pub slowloris: usize,
    pub non_readers: usize,
}

impl Default for AbuseOptions {
    fn default() -> Self {
        Self {
            secs: 5.0,
            districts: 300,
            slowloris: 1000,
            non_readers: 64,
        }
    }
}

/// What the well-behaved client asks for, and what the attackers ask for.
struct Target {
    addr: std::net::SocketAddr,
    path: String,
    attack_path: String,
    pause_ms: u64,
}

/// Bytes of each gateway page the non-readers ask for and never read.
const GATEWAY_ATTACK_BYTES: usize = 1 << 20;
/// Gateway calls are paced: the fake, like Clever, allows a token 1,200 requests a minute.
const GATEWAY_PAUSE_MS: u64 = 20;

pub(super) fn run(bins: &Bins, opts: &AbuseOptions) -> Result<Value> {
    let fake = start_fake(bins, opts.districts)?;
    let (host, gateway) = start_host_with_gateway(bins, &fake.url, &[], None)?;
    let (_, body) = procs::http_get(host.addr, HEALTH)?;
    let health = Target {
        addr: host.addr,
        path: HEALTH.to_string(),
        attack_path: HEALTH.to_string(),
        pause_ms: 0,
    };
    let mut report = phases(bins, &host, &health, &health, opts)?;
    report["districts"] = json!(opts.districts);
    report["health_body_bytes"] = json!(body.len());
    // Hosts from before the gateway have no loopback listener: nothing to attack there.
    if let Some(addr) = gateway {
        // Each phase calls for its own district, so its token's rate budget is its own.
        let district = |i: usize| fake.districts.get(i).or(fake.districts.first());
        let target = |i: usize| -> Result<Target> {
            let d = district(i).context("the fake lists no district")?;
            Ok(Target {
                addr,
                path: format!("/clever/{d}/v3.0/districts/{d}/schools"),
                attack_path: format!("/clever/{d}/v3.0/bytes/{GATEWAY_ATTACK_BYTES}"),
                pause_ms: GATEWAY_PAUSE_MS,
            })
        };
        let mut section = phases(bins, &host, &target(0)?, &target(1)?, opts)?;
        section["page_path"] = json!(target(0)?.path);
        section["attack_path"] = json!(target(0)?.attack_path);
        section["pause_ms"] = json!(GATEWAY_PAUSE_MS);
        report["gateway"] = section;
    }
    Ok(report)
}

/// The well-behaved client alone (`quiet`), then with the attack attached (`attacked`).
fn phases(
    bins: &Bins,
    host: &Server,
    quiet: &Target,
    attacked: &Target,
    opts: &AbuseOptions,
) -> Result<Value> {
    let unloaded = attack(bins, host, quiet, 0, 0, opts)?;
    let loaded = attack(bins, host, attacked, opts.slowloris, opts.non_readers, opts)?;
    let ratio = |key: &str| num(&loaded[key]) / num(&unloaded[key]).max(1.0);
    Ok(json!({
        "unloaded": unloaded,
        "loaded": loaded,
        "p50_ratio": ratio("p50_us"),
        "p99_ratio": ratio("p99_us"),
    }))
}

fn attack(
    bins: &Bins,
    host: &Server,
    target: &Target,
    slowloris: usize,
    non_readers: usize,
    opts: &AbuseOptions,
) -> Result<Value> {
    let machine = machine();
    eprintln!(
        "xtask bench: abuse of {} ({}), {slowloris} slowloris + {non_readers} non-readers, {} s",
        target.addr, target.path, opts.secs
    );
    let mut result = run_generator(
        Command::new(&bins.bench)
            .args(["abuse", "--addr", &target.addr.to_string()])
            .args(["--path", &target.path])
            .args(["--attack-path", &target.attack_path])
            .args(["--pause-ms", &target.pause_ms.to_string()])
            .args(["--slowloris", &slowloris.to_string()])
            .args(["--non-readers", &non_readers.to_string()])
            .args(["--secs", &opts.secs.to_string()])
            .args(["--watch-pid", &host.proc.pid().to_string()]),
        "abuse generator",
    )?;
    result["machine"] = machine;
    Ok(result)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn ms(us: &Value) -> String {
    format!("{:.2}", num(us) / 1000.0)
}

pub(super) fn render(r: &Value) -> String {
    let mut md = String::new();
    if r.is_null() {
        return md;
    }
    let _ = writeln!(
        md,
        "#### Slow and abusive clients ({} districts, health {} bytes)\n",
        r["districts"], r["health_body_bytes"]
    );
    md.push_str("Public listener: the well-behaved client and the attackers ask for health.\n\n");
    render_phases(&mut md, r);
    let g = &r["gateway"];
    if !g.is_null() {
        let _ = writeln!(
            md,
            "Gateway listener: the well-behaved client calls `{}` every {} ms; the non-readers pipeline `{}` (another district while attacked).\n",
            g["page_path"].as_str().unwrap_or_default(),
            g["pause_ms"],
            g["attack_path"].as_str().unwrap_or_default(),
        );
        render_phases(&mut md, g);
    }
    md
}

fn render_phases(md: &mut String, r: &Value) {
    let _ = writeln!(
        md,
        "| attached | requests | p50 ms | p99 ms | max ms | errors | non-2xx | host RSS before → peak MiB | slowloris / non-readers dropped by the host | load avg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for key in ["unloaded", "loaded"] {
        let p = &r[key];
        let _ = writeln!(
            md,
            "| {} slowloris + {} non-readers | {} | {} | {} | {} | {} | {} | {:.1} → {:.1} | {} / {} | {} |",
            p["slowloris"],
            p["non_readers"],
            p["requests"],
            ms(&p["p50_us"]),
            ms(&p["p99_us"]),
            ms(&p["max_us"]),
            p["errors"],
            p["non_2xx"],
            num(&p["rss_before_kib"]) / 1024.0,
            num(&p["rss_peak_kib"]) / 1024.0,
            p["slowloris_closed_by_server"],
            p["non_readers_closed_by_server"],
            p["machine"]["loadavg_1m"],
        );
    }
    let _ = writeln!(
        md,
        "\nloaded/unloaded: p50 × {:.2}, p99 × {:.2}\n",
        num(&r["p50_ratio"]),
        num(&r["p99_ratio"])
    );
}

/// `cargo xtask bench-abuse`: the release build, then this section only. `host_bin` and
/// `component` replace the freshly built ones (another build's, for a before/after).
pub fn standalone(
    root: &std::path::Path,
    opts: &AbuseOptions,
    host_bin: Option<std::path::PathBuf>,
    component: Option<std::path::PathBuf>,
    out: &std::path::Path,
) -> Result<()> {
    let out_dir = out
        .parent()
        .map_or_else(|| root.join("target/bench"), std::path::Path::to_path_buf);
    std::fs::create_dir_all(&out_dir)?;
    let mut bins = build_release(root, &out_dir)?;
    if let Some(host) = host_bin {
        bins.host = host;
    }
    if let Some(component) = component {
        bins.component = component;
    }
    let mut report = run(&bins, opts)?;
    report["git"] = json!(git_rev(root));
    report["host_bin"] = json!(bins.host.display().to_string());
    let markdown = render(&report);
    print!("{markdown}");
    std::fs::write(out, &markdown).with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}
