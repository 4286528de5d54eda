//! Load and soak, bounded: concurrent health clients hammer the real host for a fixed time
//! while the fake Clever fails, rate-limits and recovers, a token is rotated, and the Key
//! Vault fake rotates the client secret. While a valid token exists, every health answer must
//! be 2xx; no canary credential may appear anywhere; and resident memory must stay flat.
//!
//! `SOAK_SECS` (default 16) sets the loaded phase; loopback only; stops by itself.

use clever_auth_tests::azure_scenario::{AzureOptions, AzureScenario, SECRET_SECRET};
use clever_auth_tests::fake_clever::{FakeCleverConfig, Fault, Route};
use clever_auth_tests::host_process::status_kib;
use clever_auth_tests::http_client::KeepAlive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
/// Each client stops after this many requests even if time remains.
const MAX_REQUESTS_PER_CLIENT: u64 = 20_000;
const TOKEN_CANARY: &str = "CANARYTOKEN";
const SECRET_CANARY: &str = "CANARYSECRET";
/// Growth of resident memory over the loaded phase that still counts as flat.
const RSS_SLACK_KIB: u64 = 24 * 1024;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    non_2xx: AtomicU64,
    errors: AtomicU64,
    bad: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread")]
async fn health_stays_up_under_load_through_faults_and_rotation() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let s = AzureScenario::start(AzureOptions {
        clever: Some(FakeCleverConfig {
            generated_districts: 8,
            client_id: "soak-client".into(),
            client_secret: format!("{SECRET_CANARY}-soak-1-0a9b8c7d"),
            token_prefix: TOKEN_CANARY.into(),
            ..Default::default()
        }),
        env: vec![
            // Refresh every 4 s with 4 s to spare: the retry schedule (40…640 ms) and the 1 s
            // rate-limit wait end long before expiry, so a valid token exists throughout.
            ("CLEVER_TOKEN_LIFETIME_SECS".into(), "8".into()),
            ("CLEVER_REFRESH_FRACTION".into(), "0.5".into()),
            ("CLEVER_AUTH_SECRETS_REFRESH_SECS".into(), "1".into()),
        ],
        ..Default::default()
    })
    .await?;
    s.wait_health(Duration::from_secs(20), |h| h.body["status"] == "pass")
        .await?;
    let pid = s.host.pid().ok_or_else(|| anyhow::anyhow!("no host pid"))?;
    let url = s.host.url("/health/clever-auth");

    // Warm-up: instances, pools and buffers reach their working size before the baseline.
    for _ in 0..200 {
        clever_auth_tests::http_client::get(&url).await?;
    }
    let rss_start = status_kib(pid, "VmRSS").unwrap_or(0);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (url, tally, stop) = (url.clone(), tally.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS_PER_CLIENT {
                n += 1;
                if conn.is_none() {
                    conn = KeepAlive::connect(&url).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let reply = c.get().await;
                if reply.is_err() {
                    conn = None;
                }
                match reply {
                    Ok(r) if (200..300).contains(&r.status) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if r.text().contains(TOKEN_CANARY) || r.text().contains(SECRET_CANARY) {
                            if let Ok(mut b) = tally.bad.lock() {
                                b.push(r.text());
                            }
                        }
                    }
                    Ok(r) => {
                        tally.non_2xx.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut b) = tally.bad.lock() {
                            b.push(format!("{}: {}", r.status, r.text()));
                        }
                    }
                    Err(_) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // The faults, spread over the loaded phase.
    let started = Instant::now();
    let phase = Duration::from_secs(secs);
    let step = phase / 6;
    let district = s.clever.district_ids().first().cloned().unwrap_or_default();
    s.clever.fail_next(Route::TokenList, 3, 503);
    tokio::time::sleep(step).await;
    s.clever.push_fault(
        Route::TokenList,
        Fault::RateLimited {
            retry_after: None,
            reset_in: Duration::from_secs(1),
        },
    );
    tokio::time::sleep(step).await;
    s.clever.push_fault(Route::TokenList, Fault::Reset);
    s.clever.push_fault(Route::TokenList, Fault::MalformedJson);
    tokio::time::sleep(step).await;
    s.clever.rotate_token(&district);
    tokio::time::sleep(step).await;
    let new_secret = format!("{SECRET_CANARY}-soak-2-1b2c3d4e");
    s.vault.set_secret(SECRET_SECRET, &new_secret);
    s.clever.set_client_credentials("soak-client", new_secret);
    tokio::time::sleep(step).await;
    s.clever.push_faults(Route::Data, 2, Fault::Status(503));
    tokio::time::sleep(phase.saturating_sub(started.elapsed())).await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    let rss_end = status_kib(pid, "VmRSS").unwrap_or(0);
    let (ok, non_2xx, errors) = (
        tally.ok.load(Ordering::Relaxed),
        tally.non_2xx.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    );
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {ok} ok, {non_2xx} non-2xx, {errors} transport errors in {elapsed:.1} s ({:.0} req/s, {CLIENTS} clients); RSS {rss_start} -> {rss_end} KiB",
        ok as f64 / elapsed
    );
    let bad = tally.bad.lock().map(|b| b.clone()).unwrap_or_default();
    assert!(
        bad.is_empty(),
        "bad answers: {:?}",
        &bad[..bad.len().min(3)]
    );
    assert_eq!((non_2xx, errors), (0, 0));
    assert!(ok > 1_000, "only {ok} requests in {elapsed:.1} s");
    assert!(
        rss_start > 0 && rss_end <= rss_start + RSS_SLACK_KIB,
        "resident memory grew from {rss_start} KiB to {rss_end} KiB"
    );

    // The faults really happened, and the rotation took effect.
    let logs = s.host.output.text();
    assert!(logs.contains("\"acquisition_retry\""), "no retry seen");
    assert!(logs.contains("\"rate_limited\""), "no rate limiting seen");
    assert!(
        logs.contains("\"credentials_changed\""),
        "rotation not seen"
    );
    assert!(!logs.contains(TOKEN_CANARY) && !logs.contains(SECRET_CANARY));
    Ok(())
}
