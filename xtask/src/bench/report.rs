//! The Markdown report, rendered from the JSON report as it stands (untyped, so the JSON twin
//! and the Markdown can never disagree about a figure).

use super::stats::median;
use super::{abuse, bench_gateway, bench_scale, bench_spin};
use serde_json::Value;
use std::fmt::Write as _;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ms(us: &Value) -> String {
    format!("{:.3}", num(us) / 1000.0)
}

fn mib(kib: &Value) -> String {
    kib.as_f64()
        .map_or_else(|| "—".into(), |k| format!("{:.1} MiB", k / 1024.0))
}

fn point_row(p: &Value, ratio: Option<f64>) -> String {
    let requests = num(&p["requests"]);
    let per_req = |secs: &Value| {
        secs.as_f64()
            .filter(|_| requests > 0.0)
            .map_or_else(|| "—".into(), |s| format!("{:.0}", s * 1e6 / requests))
    };
    let gen_pct = p["generator_cpu_secs"].as_f64().map_or_else(
        || "—".into(),
        |s| format!("{:.0} %", s / num(&p["window_secs"]) * 100.0),
    );
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        p["server"].as_str().unwrap_or("?"),
        p["connections"],
        num(&p["rps"]),
        ms(&p["latency_us"]["p50"]),
        ms(&p["latency_us"]["p99"]),
        ms(&p["latency_us"]["p999"]),
        ms(&p["latency_us"]["max"]),
        p["non_2xx"],
        p["errors"],
        ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}")),
        per_req(&p["server_cpu_secs"]),
        gen_pct,
    )
}

const POINT_HEADER: &str = "| server | conns | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | errors | host/baseline | server CPU µs/req | generator CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/// The report's title, the machine and the health matrix (all `--only spin` writes).
pub(super) fn render_matrix(r: &Value) -> String {
    let mut md = String::new();
    let m = &r["matrix"];
    let _ = writeln!(
        md,
        "## clever-auth benchmark ({})\n",
        r["git"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "{} cores; load average {} before, {} after; compilers running before: {}. Release build {:.0} s. Each point: {} s warm-up + {} s measured (at most {} requests), closed loop, keep-alive, generator on {} thread(s) on the same machine.\n",
        r["nproc"],
        r["machine_before"]["loadavg_1m"],
        r["machine_after"]["loadavg_1m"],
        r["machine_before"]["compilers_running"],
        num(&r["release_build_secs"]),
        r["warmup_secs"],
        r["secs_per_point"],
        r["max_requests_per_point"],
        r["generator_threads"],
    );
    let points = m["points"].as_array().cloned().unwrap_or_default();
    let loads: Vec<f64> = points
        .iter()
        .filter_map(|p| p["machine"]["loadavg_1m"].as_f64())
        .collect();
    let compilers = points
        .iter()
        .filter_map(|p| p["machine"]["compilers_running"].as_u64())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "Load average at the start of the points: {:.2}–{:.2}; at most {compilers} compiler processes of other builds running at a point's start. Host `--instance-mode`: {}; `--component-cache`: {}.\n",
        loads.iter().copied().fold(f64::INFINITY, f64::min),
        loads.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        if r["instance_mode_flag"] == true { "both modes measured" } else { "not offered by this host" },
        if r["component_cache_flag"] == true { "offered" } else { "not offered" },
    );
    let _ = writeln!(
        md,
        "### Health endpoint, {} districts, tokens refreshed every 3 s with faults\n",
        m["districts"]
    );
    md.push_str(POINT_HEADER);
    for p in &points {
        let baseline = points
            .iter()
            .find(|b| b["server"] == "baseline" && b["connections"] == p["connections"]);
        let ratio = match (p["server"].as_str(), baseline) {
            (Some(s), Some(b)) if s != "baseline" => Some(num(&p["rps"]) / num(&b["rps"])),
            _ => None,
        };
        md.push_str(&point_row(p, ratio));
    }
    if points.iter().any(|p| p["server"] == bench_spin::LABEL) {
        let _ = writeln!(md, "\n{}", bench_spin::NOTE);
    }
    let log = &m["fake_log"];
    let _ = writeln!(
        md,
        "\nDuring the matrix the fake saw {} listings ({} answered 200, {} 503, {} 429) and {} probes ({} 503, {} 401); commands sent: {}.\n",
        log["listings"], log["listings_200"], log["listings_503"], log["listings_429"],
        log["probes"], log["probes_503"], log["probes_401"],
        m["fake_commands_sent"].as_array().map_or(0, Vec::len),
    );

    md
}

pub(super) fn render(r: &Value) -> String {
    let mut md = render_matrix(r);
    let m = &r["matrix"];
    let points = m["points"].as_array().cloned().unwrap_or_default();
    md.push_str("### Memory\n\n| process | VmRSS idle | VmRSS max at 256 conns | VmHWM |\n|---|---:|---:|---:|\n");
    let idle = m["idle"].as_array().cloned().unwrap_or_default();
    for i in &idle {
        let label = &i["server"];
        let under = points
            .iter()
            .find(|p| &p["server"] == label && p["connections"] == 256)
            .map_or(Value::Null, |p| p["server_rss_max_kib"].clone());
        let hwm = m["end"]
            .as_array()
            .and_then(|e| e.iter().find(|e| &e["server"] == label))
            .map_or(Value::Null, |e| e["vm_hwm_kib"].clone());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            label.as_str().unwrap_or("?"),
            mib(&i["vm_rss_kib"]),
            mib(&under),
            mib(&hwm)
        );
    }
    let s = &r["scale"];
    let _ = writeln!(
        md,
        "| host, {} districts | {} | {} (64 conns) | {} |\n",
        s["districts"],
        mib(&s["host_idle_rss_kib"]),
        mib(&s["host_load_rss_max_kib"]),
        mib(&s["host_vm_hwm_kib"])
    );

    md.push_str("### Start-up and token hand-out\n\n| figure | value |\n|---|---:|\n");
    let ft = &r["first_token"];
    let _ = writeln!(
        md,
        "| process start → first token, median of {} (listening at) | {:.0} ms ({:.0} ms) |",
        ft["cold"]["runs"],
        num(&ft["cold"]["token_median_ms"]),
        num(&ft["cold"]["listening_median_ms"])
    );
    if ft.get("cached").is_some() {
        let _ = writeln!(
            md,
            "| same with --component-cache, warm (listening at) | {:.0} ms ({:.0} ms) |",
            num(&ft["cached"]["token_median_ms"]),
            num(&ft["cached"]["listening_median_ms"])
        );
    }
    for h in r["handout"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| token hand-out from cache (store read + deserialise + hand_out), {} districts in store | {:.0} ns/op |",
            h["districts"],
            num(&h["ns_per_op"])
        );
    }

    let _ = writeln!(md, "\n### {} districts\n", s["districts"]);
    md.push_str("| figure | value |\n|---|---:|\n");
    let cycles = s["cycles"].as_array().cloned().unwrap_or_default();
    let mut spans: Vec<f64> = cycles.iter().map(|c| num(&c["probe_span_ms"])).collect();
    let max_100 = cycles
        .iter()
        .map(|c| c["max_in_100ms"].as_u64().unwrap_or(0))
        .max();
    let per_cycle: Vec<String> = cycles
        .iter()
        .map(|c| {
            format!(
                "{}/{:.0}/{}",
                c["probes"],
                num(&c["probe_span_ms"]),
                c["max_in_100ms"]
            )
        })
        .collect();
    let _ = writeln!(
        md,
        "| start → health pass (first cycle done) | {:.1} s |",
        num(&s["first_pass_secs"])
    );
    let _ = writeln!(
        md,
        "| complete refresh cycles in the log | {} |",
        cycles.len()
    );
    let _ = writeln!(
        md,
        "| probes per cycle / span ms / max in any 100 ms, each cycle | {} |",
        per_cycle.join(", ")
    );
    let max_span = spans.iter().copied().fold(f64::NAN, f64::max);
    let _ = writeln!(
        md,
        "| probe span of one cycle, median (max) | {:.0} ms ({:.0} ms) |",
        median(&mut spans).unwrap_or(f64::NAN),
        max_span
    );
    let _ = writeln!(
        md,
        "| most probes in any 100 ms window | {} |",
        max_100.unwrap_or(0)
    );
    let iso = &s["isolation"];
    let _ = writeln!(
        md,
        "| isolation: one district's probes fail (503) | {}: that district `warn` after {:.1} s, overall `{}` HTTP {}, {} of {} others not `pass`; `pass` again {:.1} s after the fault was cleared |",
        if iso["isolated"] == true { "isolated" } else { "NOT isolated" },
        num(&iso["degraded_after_secs"]),
        iso["overall_while_degraded"].as_str().unwrap_or("?"),
        iso["http_status_while_degraded"],
        iso["others_not_pass"].as_array().map_or(0, Vec::len),
        num(&iso["districts_checked"]) - 1.0,
        num(&iso["recovered_after_secs"]),
    );
    let (h, b) = (&s["host_64"], &s["baseline_64"]);
    let _ = writeln!(
        md,
        "| health at 64 conns, host: req/s, p50 / p99 ms, body | {:.0}, {} / {} ms, {} bytes |",
        num(&h["rps"]),
        ms(&h["latency_us"]["p50"]),
        ms(&h["latency_us"]["p99"]),
        h["body_bytes"]
    );
    let _ = writeln!(
        md,
        "| health at 64 conns, baseline: req/s, p50 / p99 ms, body | {:.0}, {} / {} ms, {} bytes |",
        num(&b["rps"]),
        ms(&b["latency_us"]["p50"]),
        ms(&b["latency_us"]["p99"]),
        b["body_bytes"]
    );
    let _ = writeln!(
        md,
        "| host/baseline throughput at 64 conns | {:.2} |",
        num(&h["rps"]) / num(&b["rps"])
    );
    bench_scale::render(&mut md, &r["scale_10k"]);
    md.push('\n');
    md.push_str(&bench_gateway::render(&r["gateway"]));
    md.push('\n');
    md.push_str(&abuse::render(&r["abuse"]));
    md
}
