//! `cargo xtask bench --only scaleout`, its last part: the calls to Clever per hour of 1, 2 and
//! 4 instances, each on its own memory store and all on one loopback Redis, counted in the
//! fake Clever's request log (token listings and connection probes).
//!
//! Time is scaled down, as in the tests: tokens live [`LIFETIME_SECS`] and refresh at 75 %, a
//! cycle every 3 s where the defaults (3,600 s, 75 %) make one every 2,700 s. A count over
//! [`WATCH`] (six cycles) becomes an hour at the defaults by that ratio. Each run starts from
//! a fresh fake and, on Redis, a fresh server; the instances' start-up listings are left out
//! (the log is cleared once every instance reports `pass`).

use super::build::Bins;
use super::fake_log::read_log;
use super::servers::{start_fake, start_host, start_redis};
use anyhow::Result;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

const INSTANCES: [usize; 3] = [1, 2, 4];
const STORES: [&str; 2] = ["memory", "redis"];
const DISTRICTS: usize = 2;
const LIFETIME_SECS: f64 = 4.0;
const REFRESH_FRACTION: f64 = 0.75;
/// The defaults' token lifetime when Clever gives none (`clever_token_lifetime_secs`).
const DEFAULT_LIFETIME_SECS: f64 = 3600.0;
const WATCH: Duration = Duration::from_secs(18);
/// No jitter, so every run makes whole cycles; a skew below the lifetime.
const SETTINGS: [(&str, &str); 3] = [
    ("CLEVER_TOKEN_LIFETIME_SECS", "4"),
    ("CLEVER_EXPIRY_SKEW_SECS", "1"),
    ("CLEVER_REFRESH_JITTER", "0"),
];
/// Any 32 bytes, base64: the store key of the instances on Redis.
const STORE_KEY: &str = "YmVuY2gtY2xldmVyLWNhbGxzLXN0b3JlLWtleS0zMmI=";
/// The fake's routes counted, as its log names them, and what the report calls them.
const ROUTES: [(&str, &str); 3] = [
    ("TokenList", "listings"),
    ("ClientCredentials", "client_credentials"),
    ("Data", "probes"),
];

/// Calls per hour at the defaults for `count` calls seen over [`WATCH`].
fn per_hour(count: usize) -> f64 {
    let cycle = LIFETIME_SECS * REFRESH_FRACTION;
    let default_cycle = DEFAULT_LIFETIME_SECS * REFRESH_FRACTION;
    count as f64 / (WATCH.as_secs_f64() / cycle) * (3600.0 / default_cycle)
}

pub(super) fn run(bins: &Bins, out_dir: &Path) -> Result<Value> {
    let mut points = Vec::new();
    for instances in INSTANCES {
        for store in STORES {
            eprintln!("xtask bench: scaleout: Clever calls of {instances} instance(s) on {store}");
            let mut fake = start_fake(bins, DISTRICTS)?;
            let redis = match store {
                "redis" => Some(start_redis(&out_dir.join("scaleout-redis"))?),
                _ => None,
            };
            let store_url = redis.as_ref().map(|r| format!("redis://{}", r.addr));
            let mut settings = SETTINGS.to_vec();
            if let Some(url) = &store_url {
                settings.extend([
                    ("CLEVER_AUTH_STORE", url.as_str()),
                    ("CLEVER_AUTH_STORE_KEY", STORE_KEY),
                ]);
            }
            let hosts = (0..instances)
                .map(|_| start_host(bins, &fake.url, &settings, None))
                .collect::<Result<Vec<_>>>()?;
            fake.command("log-clear")?;
            std::thread::sleep(WATCH);
            let log_path = out_dir.join(format!("clever-calls-{store}-{instances}.jsonl"));
            fake.command(&format!("log-dump {}", log_path.display()))?;
            drop(hosts);
            let log = read_log(&log_path)?;
            let mut p = json!({ "instances": instances, "store": store });
            for (route, name) in ROUTES {
                let count = log.iter().filter(|r| r["route"] == route).count();
                p[name] = json!(count);
                p[format!("{name}_per_hour")] = json!(per_hour(count));
            }
            p["not_200"] = json!(log.iter().filter(|r| r["status"] != 200).count());
            points.push(p);
        }
    }
    Ok(json!({
        "districts": DISTRICTS,
        "watch_secs": WATCH.as_secs_f64(),
        "token_lifetime_secs": LIFETIME_SECS,
        "points": points,
    }))
}

fn count(p: &Value, name: &str) -> f64 {
    p[name].as_f64().unwrap_or(f64::NAN)
}

pub(super) fn render(r: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Clever calls per hour at the defaults ({} districts; counted over {} s with {} s tokens, \
         scaled by the refresh cycle, 3 s here and 2,700 s at the defaults):\n",
        r["districts"], r["watch_secs"], r["token_lifetime_secs"]
    );
    let _ = writeln!(
        s,
        "| instances | store | listings seen | probes seen | listings / h | probes / h | not 200 |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|");
    let points: Vec<&Value> = r["points"].as_array().into_iter().flatten().collect();
    for p in &points {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            p["instances"],
            p["store"].as_str().unwrap_or_default(),
            p["listings"],
            p["probes"],
            count(p, "listings_per_hour") + count(p, "client_credentials_per_hour"),
            count(p, "probes_per_hour"),
            p["not_200"],
        );
    }
    let _ = writeln!(s);
    for store in STORES {
        let listings = |n: usize| {
            points
                .iter()
                .find(|p| p["store"] == store && p["instances"] == json!(n))
                .map(|p| count(p, "listings") + count(p, "client_credentials"))
        };
        if let (Some(one), Some(four)) = (listings(1), listings(4)) {
            let _ = writeln!(
                s,
                "- On {store}: 4 instances list tokens {:.2}× as often as 1.",
                four / one
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_scaled_cycles_of_one_listing_are_the_defaults_listings_per_hour() {
        // 18 s of 3-s cycles: 6 listings is one per cycle, 3600 / 2700 per hour.
        assert!((per_hour(6) - 4.0 / 3.0).abs() < 1e-9);
        assert_eq!(per_hour(0), 0.0);
    }

    #[test]
    fn the_table_compares_four_instances_with_one_per_store() {
        let p = |n: usize, store: &str, listings: usize| {
            json!({ "instances": n, "store": store, "listings": listings,
                    "listings_per_hour": per_hour(listings), "client_credentials": 0,
                    "client_credentials_per_hour": 0.0, "probes": listings * 2,
                    "probes_per_hour": per_hour(listings * 2), "not_200": 0 })
        };
        let r = json!({ "districts": 2, "watch_secs": 18.0, "token_lifetime_secs": 4.0,
            "points": [p(1, "memory", 6), p(4, "memory", 24), p(1, "redis", 6), p(4, "redis", 6)] });
        let md = render(&r);
        assert!(
            md.contains("On memory: 4 instances list tokens 4.00×"),
            "{md}"
        );
        assert!(
            md.contains("On redis: 4 instances list tokens 1.00×"),
            "{md}"
        );
        assert!(
            md.contains("| 4 | memory | 24 | 48 | 5.33 | 10.67 | 0 |"),
            "{md}"
        );
    }
}
