//! Part 3, many districts: the spread of each refresh cycle's probes, one failing district's
//! isolation in health, and health under load next to the baseline.

use super::build::Bins;
use super::fake_log::{probe_cycles, read_log};
use super::load::load;
use super::options::Options;
use super::servers::{start_baseline, start_fake, start_host, wait_health, Fake, Server};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Many districts: a cycle every 4 s (lifetime 8 s, refresh at 50 %).
const SCALE_SETTINGS: [(&str, &str); 7] = [
    ("CLEVER_TOKEN_LIFETIME_SECS", "8"),
    ("CLEVER_REFRESH_FRACTION", "0.5"),
    ("CLEVER_EXPIRY_SKEW_SECS", "1"),
    ("CLEVER_RETRY_BASE_MS", "100"),
    ("CLEVER_RETRY_MAX_DELAY_MS", "2000"),
    ("CLEVER_HTTP_TIMEOUT_MS", "5000"),
    ("CLEVER_RATE_LIMIT_MAX_WAIT_SECS", "2"),
];

pub(super) fn scale(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<Value> {
    let n = opts.districts.max(2);
    eprintln!("xtask bench: {n} districts");
    let mut fake = start_fake(bins, n)?;
    let started = Instant::now();
    let host = start_host(bins, &fake.url, &SCALE_SETTINGS, None)?;
    let first_pass_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = host.proc.vm_kib("VmRSS");

    let host_load = load(bins, &host, 64, opts)?;
    let load_rss = host_load["server_rss_max_kib"].clone();
    let baseline = start_baseline(bins, &fake.url, &SCALE_SETTINGS, n)?;
    let baseline_load = load(bins, &baseline, 64, opts)?;
    drop(baseline);

    let isolation = isolation(&host, &mut fake)?;

    // Enough complete cycles in the log to say something about their spread.
    let log_path = out_dir.join("scale-fake-log.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    let cycles = loop {
        fake.command(&format!("log-dump {}", log_path.display()))?;
        let cycles = probe_cycles(&read_log(&log_path)?, n);
        if cycles.len() >= 5 || Instant::now() > deadline {
            break cycles;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let hwm = host.proc.vm_kib("VmHWM");
    Ok(json!({
        "districts": n,
        "settings": SCALE_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "first_pass_secs": first_pass_secs,
        "host_idle_rss_kib": idle_rss,
        "host_load_rss_max_kib": load_rss,
        "host_vm_hwm_kib": hwm,
        "host_64": host_load,
        "baseline_64": baseline_load,
        "isolation": isolation,
        "cycles": cycles,
    }))
}

/// One district's probes fail (503) until cleared: only that district may degrade in health.
fn isolation(host: &Server, fake: &mut Fake) -> Result<Value> {
    let victim = fake.districts[fake.districts.len() / 2].clone();
    let district_status = |body: &Value, id: &str| -> Option<String> {
        body["checks"]["clever:districtTokens"]
            .as_array()?
            .iter()
            .find(|c| c["componentId"] == id)?["status"]
            .as_str()
            .map(str::to_string)
    };
    // The public answer has counts only: one district warning is the victim.
    let one_warns = |b: &Value| b["districts"]["warn"] == 1 && b["checks"].is_null();
    fake.command(&format!("fault data status:503 {victim}"))?;
    let faulted_at = Instant::now();
    let (http, body) = wait_health(host, Duration::from_secs(30), |_, b| {
        one_warns(b) || district_status(b, &victim).as_deref() == Some("warn")
    })?;
    let degraded_after = faulted_at.elapsed().as_secs_f64();
    let checks = body["checks"]["clever:districtTokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut others_not_pass: Vec<String> = checks
        .iter()
        .filter(|c| c["componentId"] != victim.as_str() && c["status"] != "pass")
        .filter_map(|c| c["componentId"].as_str().map(str::to_string))
        .collect();
    if one_warns(&body) && body["districts"]["fail"] != 0 {
        others_not_pass.push(format!("{} failing", body["districts"]["fail"]));
    }
    fake.command("clear")?;
    let cleared_at = Instant::now();
    wait_health(host, Duration::from_secs(30), |_, b| {
        (b["checks"].is_null() && b["districts"]["pass"] == b["districts"]["total"])
            || district_status(b, &victim).as_deref() == Some("pass")
    })?;
    Ok(json!({
        "victim": victim,
        "degraded_after_secs": degraded_after,
        "http_status_while_degraded": http,
        "overall_while_degraded": body["status"],
        "victim_status": "warn",
        "districts_checked": if checks.is_empty() { body["districts"]["total"].clone() } else { json!(checks.len()) },
        "others_not_pass": others_not_pass,
        "isolated": others_not_pass.is_empty() && http == 200,
        "recovered_after_secs": cleared_at.elapsed().as_secs_f64(),
    }))
}
