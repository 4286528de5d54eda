//! Many districts: with 300 districts the connection probes are spread out in batches (no
//! stampede at one instant), one district's failure stays its own, and health stays complete.

use clever_auth_tests::fake_clever::{FakeCleverConfig, Fault, Route};
use clever_auth_tests::scenario::Scenario;
use std::time::{Duration, Instant};

const DISTRICTS: usize = 300;
const BATCH: usize = 20;
const PACE_MS: u64 = 100;

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_districts_are_probed_in_paced_batches_and_stay_isolated() -> anyhow::Result<()>
{
    let s = Scenario::start(
        FakeCleverConfig {
            generated_districts: DISTRICTS,
            ..Default::default()
        },
        &[
            ("CLEVER_PROBE_BATCH", "20"),
            ("CLEVER_PROBE_PACE_MS", "100"),
            // Re-listings every 3 s, so the refused token below is met soon.
            ("CLEVER_TOKEN_LIFETIME_SECS", "4"),
        ],
    )
    .await?;
    let started = Instant::now();
    s.fake
        .wait_for_requests(Route::Data, DISTRICTS, Duration::from_secs(60))
        .await?;
    // The first cycle's probes (a second cycle starts 3 s in).
    let mut probes = s.fake.requests_for(Route::Data);
    probes.truncate(DISTRICTS);
    let first = probes.first().map(|r| r.at).unwrap_or(started);
    let last = probes.last().map(|r| r.at).unwrap_or(started);
    let span = last.duration_since(first);

    // The densest 50 ms window holds at most one batch: batches are separate in time.
    let densest = probes
        .iter()
        .map(|p| {
            probes
                .iter()
                .filter(|q| q.at >= p.at && q.at < p.at + Duration::from_millis(50))
                .count()
        })
        .max()
        .unwrap_or(0);
    let batches = DISTRICTS.div_ceil(BATCH) as u64;
    eprintln!(
        "{DISTRICTS} districts: probes over {} ms (at least {} ms expected), densest 50 ms window {densest}",
        span.as_millis(),
        (batches - 1) * PACE_MS
    );
    assert!(densest <= BATCH, "{densest} probes within 50 ms");
    assert!(
        span >= Duration::from_millis((batches - 1) * PACE_MS),
        "all probes within {span:?}"
    );
    let mut probed: Vec<String> = probes.iter().filter_map(|r| r.district.clone()).collect();
    probed.sort();
    probed.dedup();
    assert_eq!(
        probed.len(),
        DISTRICTS,
        "every district probed exactly once"
    );

    // Health lists every district and passes.
    let h = s
        .wait_health(Duration::from_secs(20), |h| {
            h.body["status"] == "pass" && h.district_ids().len() == DISTRICTS
        })
        .await?;
    assert_eq!(h.status, 200);

    // Isolation: one district's token is refused; only that district degrades.
    let victim = s.fake.district_ids()[DISTRICTS / 2].clone();
    s.fake
        .set_persistent_fault(Route::Data.for_district(victim.clone()), Fault::Status(401));
    s.fake.rotate_token(&victim);
    let h = s
        .wait_health(Duration::from_secs(30), |h| {
            h.district(&victim).is_some_and(|d| d["status"] != "pass")
        })
        .await?;
    let failing: Vec<String> = s
        .fake
        .district_ids()
        .into_iter()
        .filter(|id| h.district(id).is_some_and(|d| d["status"] != "pass"))
        .collect();
    assert_eq!(
        failing,
        std::slice::from_ref(&victim),
        "only the refused district degrades"
    );

    // Health with 300 districts is still quick (a loose bound: a loaded 2-core machine).
    let t = Instant::now();
    for _ in 0..20 {
        s.health().await?;
    }
    let per_request = t.elapsed() / 20;
    // Reported, not asserted: speed is measured by `cargo xtask bench`.
    eprintln!("health with {DISTRICTS} districts: {per_request:?} per request (sequential)");
    Ok(())
}
