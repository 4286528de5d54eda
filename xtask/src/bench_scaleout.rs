//! `cargo xtask bench --only scaleout`: what a shared store costs. One release host on the
//! memory store and one on a loopback `redis-server` (persistence off), side by side against
//! the same stand-in upstream (which sends Clever's rate-limit headers, so every gateway call
//! takes its permit from the shared budget): the gateway at 1 and 64 connections, and health
//! at 64 connections, `--gateway-rounds` times in turn; ratios are taken within a round. The
//! gateway asks for a Clever-shaped page (`uri`s in it, as in Clever's answers, so the version
//! observation runs). Then what one gateway call costs on Redis: commands (`INFO
//! commandstats`), and CPU of the host and of `redis-server`, over [`COST_CALLS`] calls on one
//! connection. Last, the calls to Clever per hour of 1, 2 and 4 instances on either store
//! (`bench_clever_calls`).

use super::bench_clever_calls;
use super::bench_gateway::{
    load, median_and_range, start_gateway_host_with, start_upstream, write_section,
};
use super::build::Bins;
use super::options::Options;
use super::servers::{start_fake, start_redis, Redis};
use crate::procs;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CONNECTIONS: [usize; 2] = [1, 64];
/// The gateway path the load asks for: a page of Clever's shape from the stand-in upstream.
const GATEWAY_PATH: &str = "v3.0/schools";
const STORES: [&str; 2] = ["memory", "redis"];
/// Calls of the per-call cost measurement (one connection, no warm-up), per sample.
const COST_CALLS: u64 = 1_000;
const COST_SAMPLES: usize = 3;
const COST_SAMPLE_GAP: Duration = Duration::from_millis(2_500);
/// Any 32 bytes, base64: the store key of the Redis host.
const STORE_KEY: &str = "YmVuY2gtc2NhbGVvdXQtc3RvcmUta2V5LTMyYnl0ZXM=";

pub(super) fn only(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<()> {
    let mut result = run(bins, opts, out_dir)?;
    // After the throughput part's hosts and Redis are gone: the counts run on a quiet machine.
    result["clever_calls"] = bench_clever_calls::run(bins, out_dir)?;
    result["component"] = opts
        .component
        .as_ref()
        .map_or_else(|| "this build's".into(), |p| p.display().to_string())
        .into();
    write_section(out_dir, "scaleout", &result, &render(&result))
}

/// Every command's call count so far (`INFO commandstats`, through `redis-cli`).
fn command_calls(redis: &Redis) -> Result<Vec<(String, u64)>> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.addr.port().to_string()])
        .args(["INFO", "commandstats"])
        .output()
        .context("redis-cli (apt-get install redis-tools)")?;
    anyhow::ensure!(out.status.success(), "redis-cli INFO failed");
    Ok(parse_commandstats(&String::from_utf8_lossy(&out.stdout)))
}

/// `cmdstat_get:calls=12,usec=…` lines into (command, calls), sorted by command.
fn parse_commandstats(info: &str) -> Vec<(String, u64)> {
    let mut calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect();
    calls.sort();
    calls
}

/// Commands per gateway call (and which), and CPU per call of the host and of Redis.
fn per_call_cost(
    bins: &Bins,
    opts: &Options,
    url: &str,
    host_pid: u32,
    redis: &Redis,
) -> Result<Value> {
    let cost_opts = Options {
        secs: 30.0,
        warmup_secs: 0.0,
        max_requests: COST_CALLS,
        ..opts.clone()
    };
    // `INFO` itself counts as a command: the second reading's own call is taken off.
    let before = command_calls(redis)?;
    let redis_cpu0 = procs::cpu_time(redis.proc.pid());
    let p = load(bins, url, &[], 1, host_pid, &cost_opts)?;
    let redis_cpu1 = procs::cpu_time(redis.proc.pid());
    let after = command_calls(redis)?;
    let calls = p["requests"].as_u64().unwrap_or(0).max(1) as f64;
    let mut per_call = serde_json::Map::new();
    let mut total = 0.0;
    for (name, n) in &after {
        let was = before
            .iter()
            .find(|(b, _)| b == name)
            .map_or(0, |(_, n)| *n);
        let own = u64::from(name == "info");
        let grew = n.saturating_sub(was).saturating_sub(own);
        if grew > 0 {
            per_call.insert(name.clone(), json!(grew as f64 / calls));
            total += grew as f64;
        }
    }
    let redis_cpu_us = match (redis_cpu0, redis_cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() * 1e6 / calls),
        _ => None,
    };
    Ok(json!({
        "calls": p["requests"],
        "non_2xx": p["non_2xx"],
        "commands_per_call": total / calls,
        "by_command": per_call,
        "host_cpu_us_per_call": num(&p["server_cpu_secs"]) * 1e6 / calls,
        "redis_cpu_us_per_call": redis_cpu_us,
    }))
}

fn run(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<Value> {
    let fake = start_fake(bins, 1)?;
    let district = fake
        .districts
        .first()
        .context("the fake made no district")?;
    let upstream = start_upstream(bins)?;
    let upstream_url = format!("http://{}", upstream.addr);
    let redis = start_redis(&out_dir.join("scaleout-redis"))?;
    let memory = start_gateway_host_with(bins, &fake.url, &upstream_url, &[], &[])?;
    let shared = start_gateway_host_with(
        bins,
        &fake.url,
        &upstream_url,
        &[("CLEVER_AUTH_STORE_KEY", STORE_KEY)],
        &["--store".into(), format!("redis://{}", redis.addr)],
    )?;
    let hosts = [(STORES[0], &memory), (STORES[1], &shared)];
    let rounds = opts.gateway_rounds.max(1);
    let mut points = Vec::new();
    for round in 1..=rounds {
        for connections in CONNECTIONS {
            for (store, host) in hosts {
                let url = format!("http://{}/clever/{district}/{GATEWAY_PATH}", host.gateway);
                eprintln!("xtask bench: scaleout: gateway on {store} at {connections} connections");
                let mut p = load(bins, &url, &[], connections, host.server.proc.pid(), opts)?;
                p["what"] = json!("gateway");
                p["store"] = json!(store);
                p["round"] = json!(round);
                points.push(p);
            }
        }
        for (store, host) in hosts {
            let url = format!("http://{}/health/clever-auth", host.server.addr);
            eprintln!("xtask bench: scaleout: health on {store} at 64 connections");
            let mut p = load(bins, &url, &[], 64, host.server.proc.pid(), opts)?;
            p["what"] = json!("health");
            p["store"] = json!(store);
            p["round"] = json!(round);
            points.push(p);
        }
    }
    eprintln!("xtask bench: scaleout: what one gateway call costs on Redis");
    let url = format!("http://{}/clever/{district}/{GATEWAY_PATH}", shared.gateway);
    // Calls in the last CROSSING_GUARD_MS (2 s) of a rate-limit window take permits in both
    // windows and give one back (three increments): samples 2.5 s apart, of well under a
    // second each, put at most one of three there, so the median is a call inside a window.
    let mut samples = Vec::new();
    for i in 0..COST_SAMPLES {
        if i > 0 {
            std::thread::sleep(COST_SAMPLE_GAP);
        }
        samples.push(per_call_cost(
            bins,
            opts,
            &url,
            shared.server.proc.pid(),
            &redis,
        )?);
    }
    samples.sort_by(|a, b| num(&a["commands_per_call"]).total_cmp(&num(&b["commands_per_call"])));
    let mut cost = samples[samples.len() / 2].clone();
    cost["samples"] = json!(samples
        .iter()
        .map(|s| s["commands_per_call"].clone())
        .collect::<Vec<_>>());
    Ok(json!({
        "upstream": "clever-auth-bench upstream (1 thread, Clever's rate-limit headers)",
        "redis": redis_version(),
        "points": points,
        "cost": cost,
        "machine_after": { "loadavg_1m": procs::loadavg() },
    }))
}

fn redis_version() -> Option<String> {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn point<'a>(r: &'a Value, what: &str, store: &str, conns: usize, round: u64) -> Option<&'a Value> {
    r["points"].as_array()?.iter().find(|p| {
        p["what"] == what
            && p["store"] == store
            && p["connections"] == json!(conns)
            && p["round"] == json!(round)
    })
}

/// `f(memory, redis)` round by round.
fn per_round(r: &Value, what: &str, conns: usize, f: impl Fn(&Value, &Value) -> f64) -> Vec<f64> {
    (1..)
        .map_while(|round| {
            Some((
                point(r, what, STORES[0], conns, round)?,
                point(r, what, STORES[1], conns, round)?,
            ))
        })
        .map(|(m, s)| f(m, s))
        .collect()
}

pub(super) fn render(r: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Scale-out: the memory store vs a loopback Redis\n");
    let _ = writeln!(
        s,
        "`cargo xtask bench --only scaleout` · upstream: {} · {}\n",
        r["upstream"].as_str().unwrap_or_default(),
        r["redis"].as_str().unwrap_or("redis-server")
    );
    let _ = writeln!(
        s,
        "| what | conns | round | store | req/s | p50 ms | p99 ms | non-2xx+errors |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---:|---:|---:|---:|");
    for p in r["points"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {} |",
            p["what"].as_str().unwrap_or_default(),
            p["connections"],
            p["round"],
            p["store"].as_str().unwrap_or_default(),
            num(&p["rps"]),
            num(&p["latency_us"]["p50"]) / 1000.0,
            num(&p["latency_us"]["p99"]) / 1000.0,
            p["non_2xx"].as_u64().unwrap_or(0) + p["errors"].as_u64().unwrap_or(0),
        );
    }
    let _ = writeln!(s);
    let added = per_round(r, "gateway", 1, |m, s| {
        (num(&s["latency_us"]["p50"]) - num(&m["latency_us"]["p50"])) / 1000.0
    });
    if let Some(v) = median_and_range(added, " ms", 3) {
        let _ = writeln!(
            s,
            "- Added p50 at 1 connection, Redis vs memory: {v} (target ≤ 0.3 ms)."
        );
    }
    let ratio = per_round(r, "gateway", 64, |m, s| num(&s["rps"]) / num(&m["rps"]));
    if let Some(v) = median_and_range(ratio, "×", 2) {
        let _ = writeln!(
            s,
            "- Gateway req/s at 64 connections, Redis / memory: {v} (target ≥ 0.8×)."
        );
    }
    let p99 = per_round(r, "health", 64, |_, s| {
        num(&s["latency_us"]["p99"]) / 1000.0
    });
    if let Some(v) = median_and_range(p99, " ms", 2) {
        let _ = writeln!(
            s,
            "- Health p99 at 64 connections on Redis: {v} (target < 10 ms)."
        );
    }
    let cost = &r["cost"];
    if cost.is_object() {
        let by: Vec<String> = cost["by_command"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, n)| format!("{name} {:.2}", num(n)))
            .collect();
        let _ = writeln!(
            s,
            "- One gateway call on Redis (median of {} samples of {} calls, 1 connection; \
             commands per call in each: {}): {:.2} Redis commands ({}); \
             CPU {:.0} µs in the host, {:.0} µs in redis-server.",
            COST_SAMPLES,
            cost["calls"],
            cost["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| format!("{:.2}", num(v)))
                .collect::<Vec<_>>()
                .join(", "),
            num(&cost["commands_per_call"]),
            by.join(", "),
            num(&cost["host_cpu_us_per_call"]),
            num(&cost["redis_cpu_us_per_call"]),
        );
    }
    if r["clever_calls"].is_object() {
        let _ = writeln!(s, "\n{}", bench_clever_calls::render(&r["clever_calls"]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(what: &str, store: &str, conns: usize, round: u64, rps: f64, p50_us: f64) -> Value {
        json!({ "what": what, "store": store, "connections": conns, "round": round,
                "rps": rps, "latency_us": { "p50": p50_us, "p99": p50_us * 2.0 } })
    }

    #[test]
    fn ratios_pair_the_stores_of_one_round() {
        let r = json!({ "points": [
            p("gateway", "memory", 1, 1, 1000.0, 500.0), p("gateway", "redis", 1, 1, 800.0, 700.0),
            p("gateway", "memory", 64, 1, 4000.0, 9000.0), p("gateway", "redis", 64, 1, 3000.0, 9000.0),
            p("health", "memory", 64, 1, 9000.0, 1000.0), p("health", "redis", 64, 1, 9000.0, 2500.0),
        ]});
        let md = render(&r);
        assert!(md.contains("Redis vs memory: **0.200 ms**"), "{md}");
        assert!(md.contains("Redis / memory: **0.75×**"), "{md}");
        assert!(md.contains("on Redis: **5.00 ms**"), "{md}");
    }

    #[test]
    fn commandstats_lines_give_each_commands_calls() {
        let info = "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\ncmdstat_incrby:calls=4,usec=9\r\nnoise\r\n";
        assert_eq!(
            parse_commandstats(info),
            [("get".to_string(), 12), ("incrby".to_string(), 4)]
        );
    }
}
