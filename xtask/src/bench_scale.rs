//! `cargo xtask bench`, part 4: 10,000 districts on one instance.
//!
//! A fake Clever lists 10,000 district tokens (one page on this branch). Measured: process
//! start until every district's token is usable (health counts them all as passing); the
//! public health answer at 64 connections and its size; the detail view's page size and
//! latency; idle RSS; one refresh cycle's probes (span, densest 100 ms, requests per token
//! per minute against Clever's 1,200 per token and minute).

use super::build::Bins;
use super::fake_log::{probe_cycles, read_log};
use super::load::{load, machine};
use super::options::Options;
use super::servers::{
    health, host_command, listening_addr, start_fake, wait_health, Server, HEALTH,
    HOST_START_TIMEOUT,
};
use crate::procs::{self, Proc};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

pub const DISTRICTS: usize = 10_000;

/// Defaults, except the probe pacing: 100 probes every 250 ms instead of 20, so one cycle
/// (10,000 probes) takes about 25 s instead of about 125 s and the bench sees it end.
const SETTINGS: [(&str, &str); 2] = [
    ("CLEVER_PROBE_BATCH", "100"),
    ("CLEVER_PROBE_PACE_MS", "250"),
];

/// Clever's documented budget: 1,200 requests per minute per bearer token.
const PER_TOKEN_PER_MINUTE: u64 = 1_200;

/// Starts a host against `fake_url` and waits until every district passes.
fn start(bins: &Bins, fake_url: &str, detail: bool) -> Result<(Server, f64)> {
    let extra: Vec<String> = if detail {
        vec!["--health-detail".into()]
    } else {
        Vec::new()
    };
    let label = if detail {
        "host (10,000 districts, detail)"
    } else {
        "host (10,000 districts)"
    };
    let spawned = Instant::now();
    let mut proc = Proc::spawn(
        label,
        &mut host_command(bins, fake_url, &SETTINGS, &extra),
        false,
    )?;
    let addr = proc.wait_line(HOST_START_TIMEOUT, listening_addr)?;
    proc.quiet();
    let server = Server {
        label: label.into(),
        proc,
        addr,
    };
    wait_health(&server, Duration::from_secs(60), |_, body| {
        passing(body) == Some(DISTRICTS as u64)
    })?;
    Ok((server, spawned.elapsed().as_secs_f64()))
}

/// Districts passing: the counts of the public answer, else (a host from before them) the
/// per-district checks.
fn passing(body: &Value) -> Option<u64> {
    if let Some(n) = body["districts"]["pass"].as_u64() {
        if body["districtsPage"].is_null() || body["districtsPage"]["total"] == DISTRICTS {
            return Some(n);
        }
    }
    let checks = body["checks"]["clever:districtTokens"].as_array()?;
    Some(checks.iter().filter(|c| c["status"] == "pass").count() as u64)
}

/// Median of `runs` sequential requests to `path`, in ms, and the body size.
fn sequential(server: &Server, path: &str, runs: usize) -> Result<(f64, usize)> {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (_, body) = procs::http_get(server.addr, path)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], bytes))
}

pub(super) fn run(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<Value> {
    eprintln!("xtask bench: {DISTRICTS} districts");
    let mut fake = start_fake(bins, DISTRICTS)?;
    let machine_at_start = machine();
    let (host, all_usable_secs) = start(bins, &fake.url, false)?;
    let (_, public) = health(&host)?;
    let (public_ms, public_bytes) = sequential(&host, HEALTH, 20)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = host.proc.vm_kib("VmRSS");
    let public_64 = load(bins, &host, 64, opts)?;

    // One whole cycle of probes in the fake's log (paced: about 25 s at these settings).
    let log_path = out_dir.join("scale-10k-fake-log.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (cycle, log) = loop {
        fake.command(&format!("log-dump {}", log_path.display()))?;
        let log = read_log(&log_path)?;
        if let Some(c) = probe_cycles(&log, DISTRICTS).into_iter().next() {
            break (Some(c), log);
        }
        if Instant::now() > deadline {
            break (None, log);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let per_token_minute = max_per_token_per_minute(&log);
    let hwm = host.proc.vm_kib("VmHWM");
    drop(host);

    // The detail view on a listener that serves it: one page, bounded whatever the count.
    let (detail_host, _) = start(bins, &fake.url, true)?;
    let (detail_ms, detail_page_bytes) = sequential(&detail_host, HEALTH, 10)?;
    let (_, detail) = health(&detail_host)?;
    drop(detail_host);

    Ok(json!({
        "districts": DISTRICTS,
        "settings": SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "machine_at_start": machine_at_start,
        "start_to_all_usable_secs": all_usable_secs,
        "public_status": public["status"],
        "public_counts": public["districts"],
        "public_body_bytes": public_bytes,
        "public_sequential_median_ms": public_ms,
        "public_64": public_64,
        "idle_rss_kib": idle_rss,
        "vm_hwm_kib": hwm,
        "detail_page_bytes": detail_page_bytes,
        "detail_sequential_median_ms": detail_ms,
        "detail_page": detail["districtsPage"],
        "cycle": cycle,
        "max_requests_per_token_per_minute": per_token_minute,
        "per_token_budget_per_minute": PER_TOKEN_PER_MINUTE,
    }))
}

/// The most data-API requests any one district's token made in any 60 s window.
fn max_per_token_per_minute(log: &[Value]) -> u64 {
    let mut by_district: std::collections::HashMap<&str, Vec<u64>> = Default::default();
    for r in log.iter().filter(|r| r["route"] == "Data") {
        if let (Some(d), Some(t)) = (r["district"].as_str(), r["t_us"].as_u64()) {
            by_district.entry(d).or_default().push(t);
        }
    }
    let mut best = 0;
    for times in by_district.values_mut() {
        times.sort_unstable();
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= 60_000_000 {
                lo += 1;
            }
            best = best.max((hi - lo + 1) as u64);
        }
    }
    best
}

/// The report's section for this part.
pub(super) fn render(md: &mut String, s: &Value) {
    if s.is_null() {
        return;
    }
    let num = |v: &Value| v.as_f64().map_or("?".into(), |x| format!("{x:.1}"));
    let us_ms = |v: &Value| {
        v.as_f64()
            .map_or("?".into(), |x| format!("{:.2}", x / 1000.0))
    };
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("?".into(), |x| format!("{:.0}", x / 1024.0))
    };
    let _ = writeln!(md, "\n### {} districts on one instance\n", s["districts"]);
    let _ = writeln!(
        md,
        "Settings: {}; load average at start {}.\n",
        s["settings"], s["machine_at_start"]["loadavg_1m"]
    );
    let p = &s["public_64"];
    let c = &s["cycle"];
    let rows = [
        (
            "process start → every token usable",
            format!("{} s", num(&s["start_to_all_usable_secs"])),
            "< 2 s",
        ),
        (
            "public health, 64 connections: p50 / p99",
            format!(
                "{} / {} ms ({} req/s)",
                us_ms(&p["latency_us"]["p50"]),
                us_ms(&p["latency_us"]["p99"]),
                num(&p["rps"])
            ),
            "p99 < 10 ms",
        ),
        (
            "public health body",
            format!("{} bytes", s["public_body_bytes"]),
            "independent of the count",
        ),
        (
            "public health, one client (median of 20)",
            format!("{} ms", num(&s["public_sequential_median_ms"])),
            "",
        ),
        (
            "detail view, one page",
            format!(
                "{} bytes, {} ms (page {} of {})",
                s["detail_page_bytes"],
                num(&s["detail_sequential_median_ms"]),
                s["detail_page"]["page"],
                s["detail_page"]["pages"]
            ),
            "bounded",
        ),
        (
            "idle RSS / high-water mark",
            format!(
                "{} / {} MiB",
                mib(&s["idle_rss_kib"]),
                mib(&s["vm_hwm_kib"])
            ),
            "< 128 MiB idle",
        ),
        (
            "one cycle's probes: span, densest 100 ms",
            format!("{} ms, {}", num(&c["probe_span_ms"]), c["max_in_100ms"]),
            "",
        ),
        (
            "requests per token per minute (max)",
            format!(
                "{} (budget {})",
                s["max_requests_per_token_per_minute"], s["per_token_budget_per_minute"]
            ),
            "within budget",
        ),
    ];
    let _ = writeln!(md, "| measure | value | target |\n|---|---|---|");
    for (what, value, target) in rows {
        let _ = writeln!(md, "| {what} | {value} | {target} |");
    }
}

/// The whole part, for `cargo xtask bench --only scale10k`: a report of its own.
pub(super) fn only(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<()> {
    let section = run(bins, opts, out_dir)?;
    let mut md = String::new();
    render(&mut md, &section);
    print!("{md}");
    let path = out_dir.join("scale-10k.json");
    std::fs::write(&path, serde_json::to_string_pretty(&section)?)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(out_dir.join("scale-10k.md"), md)?;
    Ok(())
}
