//! What the fake Clever's request log says: the matrix's listings and probes, and the refresh
//! cycles of many districts.

use super::stats::max_in_window;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;

pub(super) fn read_log(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the fake's log {}", path.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).context("a log line"))
        .collect()
}

pub(super) fn summarize_matrix_log(log: &[Value]) -> Value {
    let count = |route: &str, status: Option<u64>| {
        log.iter()
            .filter(|r| r["route"] == route && status.is_none_or(|s| r["status"] == s))
            .count()
    };
    json!({
        "listings": count("TokenList", None),
        "listings_200": count("TokenList", Some(200)),
        "listings_503": count("TokenList", Some(503)),
        "listings_429": count("TokenList", Some(429)),
        "probes": count("Data", None),
        "probes_503": count("Data", Some(503)),
        "probes_401": count("Data", Some(401)),
    })
}

/// The refresh cycles in the fake's log: each successful listing and the data probes that
/// follow it until the next listing.
pub(super) fn probe_cycles(log: &[Value], districts: usize) -> Vec<Value> {
    let t_ms = |r: &Value| r["t_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let listings: Vec<f64> = log
        .iter()
        .filter(|r| r["route"] == "TokenList" && r["status"] == 200)
        .map(t_ms)
        .collect();
    let mut cycles = Vec::new();
    for (i, &start) in listings.iter().enumerate() {
        let end = listings.get(i + 1).copied().unwrap_or(f64::INFINITY);
        let probes: Vec<&Value> = log
            .iter()
            .filter(|r| r["route"] == "Data" && (start..end).contains(&t_ms(r)))
            .collect();
        if probes.len() < districts {
            // The last cycle may still be running when the log was dumped.
            continue;
        }
        let times: Vec<f64> = probes.iter().map(|r| t_ms(r)).collect();
        let first = times.first().copied().unwrap_or(start);
        let last = times.last().copied().unwrap_or(start);
        let mut distinct: Vec<&str> = probes
            .iter()
            .filter_map(|r| r["district"].as_str())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        cycles.push(json!({
            "listing_at_ms": start,
            "probes": probes.len(),
            "distinct_districts": distinct.len(),
            "failed_probes": probes.iter().filter(|r| r["status"] != 200).count(),
            "first_probe_after_listing_ms": first - start,
            "probe_span_ms": last - first,
            "max_in_100ms": max_in_window(&times, 100.0),
        }));
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_group_probes_after_each_listing() {
        let rec = |t_ms: u64, route: &str, district: &str| json!({"t_us": t_ms * 1000, "route": route, "status": 200, "district": district});
        let log = vec![
            rec(0, "TokenList", ""),
            rec(10, "Data", "a"),
            rec(30, "Data", "b"),
            rec(1000, "TokenList", ""),
            rec(1005, "Data", "a"),
        ];
        let cycles = probe_cycles(&log, 2);
        assert_eq!(cycles.len(), 1, "the unfinished last cycle is left out");
        assert_eq!(cycles[0]["probes"], 2);
        assert_eq!(cycles[0]["probe_span_ms"], 20.0);
        assert_eq!(cycles[0]["max_in_100ms"], 2);
    }
}
