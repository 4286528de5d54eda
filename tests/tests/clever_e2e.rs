//! Clever authentication end to end: the real host and component against the fake Clever,
//! with the retry schedule scaled down through the settings (40, 80, 160, 320, 640 ms).

use clever_auth_tests::fake_clever::{FakeClever, Fault, Outcome as RecordOutcome, Route};
use clever_auth_tests::scenario::{two_districts, Scenario};
use std::time::{Duration, Instant};

const SCHEDULE_MS: [u64; 5] = [40, 80, 160, 320, 640];
/// A retry is never early; it may be late by a wake-up on a loaded 2-core machine, so one
/// gap may be this late, ...
const LATE_MS: u64 = 600;
/// ... but the typical (median) gap must be on time: a refresher that adds a constant delay
/// to every retry (the 700 ms the old 750 ms slack let through) fails here.
const MEDIAN_LATE_MS: u64 = 150;
const WAIT: Duration = Duration::from_secs(15);

fn gaps_ms(records: &[clever_auth_tests::fake_clever::RequestRecord]) -> Vec<u64> {
    records
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis() as u64)
        .collect()
}

fn gap_fits(gap: u64, expected: u64) -> bool {
    gap >= expected.saturating_sub(5) && gap <= expected + LATE_MS
}

fn assert_gap(gap: u64, expected: u64) {
    assert!(
        gap_fits(gap, expected),
        "gap {gap} ms, expected {expected} ms (+{LATE_MS} slack)"
    );
}

/// The median of how late each gap came.
fn median_lateness(gaps: &[u64], expected: &[u64]) -> u64 {
    let mut late: Vec<u64> = gaps
        .iter()
        .zip(expected)
        .map(|(g, e)| g.saturating_sub(*e))
        .collect();
    late.sort_unstable();
    late.get(late.len() / 2).copied().unwrap_or(0)
}

/// Every gap against its step of the schedule; a failure shows the whole sequence and what
/// the refresher logged about it, since a wrong gap is usually a second driver or a wake-up.
fn assert_schedule(s: &Scenario, gaps: &[u64], expected: &[u64]) {
    let fits = gaps.len() >= expected.len()
        && gaps.iter().zip(expected).all(|(g, e)| gap_fits(*g, *e))
        && median_lateness(gaps, expected) <= MEDIAN_LATE_MS;
    if !fits {
        let refresher: Vec<String> = s
            .logs()
            .lines()
            .filter(|l| {
                ["acquisition", "credentials", "secrets", "refresh"]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .map(str::to_string)
            .collect();
        panic!(
            "gaps {gaps:?} ms, expected {expected:?} ms (+{LATE_MS} slack, median lateness at most {MEDIAN_LATE_MS}); refresher log:\n{}",
            refresher.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_token_per_district_and_health_pass() -> anyhow::Result<()> {
    let started = Instant::now();
    let s = Scenario::start(two_districts(), &[]).await?;
    let h = s.wait_status("pass", WAIT).await?;
    eprintln!(
        "first token: health pass {} ms after the host was spawned",
        started.elapsed().as_millis()
    );
    assert_eq!(h.status, 200);
    assert_eq!(h.body["error"], serde_json::Value::Null);
    assert!(h.body["lastSuccessfulAuth"].is_string());
    assert_eq!(h.district_ids(), ["d-alpha", "d-beta"]);
    for id in ["d-alpha", "d-beta"] {
        let d = h.district(id).expect("district check");
        assert_eq!(d["status"], "pass");
        assert!(d["expiresAt"].is_string() && d["refreshAt"].is_string());
    }
    assert_eq!(h.body["checks"]["clever:apiVersion"][0]["status"], "pass");
    assert_eq!(
        h.body["checks"]["clever:credentials"][0]["output"],
        "accepted by Clever"
    );

    let listing = s.fake.requests_for(Route::TokenList);
    assert_eq!(listing.len(), 1);
    assert!(listing[0].auth.valid, "Basic credentials were not accepted");
    assert!(listing[0].path_and_query.contains("owner_type=district"));
    let probes = s.fake.requests_for(Route::Data);
    let mut probed: Vec<String> = probes.iter().filter_map(|r| r.district.clone()).collect();
    probed.sort();
    assert_eq!(probed, ["d-alpha", "d-beta"]);
    assert!(probes
        .iter()
        .all(|r| r.auth.valid && r.api_version.as_deref() == Some("v3.0")));

    let logs = s.logs();
    assert!(
        !logs.contains(&s.fake.client_secret()),
        "client secret in the logs"
    );
    for id in ["d-alpha", "d-beta"] {
        let token = s.fake.district_token(id).expect("token");
        assert!(
            !logs.contains(&token) && !h.body.to_string().contains(&token),
            "token leaked"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_transient_failures_then_success_follow_the_schedule() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.fail_next(Route::TokenList, 5, 503);
    let s = Scenario::launch(fake, &[]).await?;
    s.wait_status("pass", WAIT).await?;
    let listing = s.fake.requests_for(Route::TokenList);
    assert_eq!(listing.len(), 6, "five failures and one success");
    let statuses: Vec<Option<u16>> = listing.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses,
        [
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(200)
        ]
    );
    assert_schedule(&s, &gaps_ms(&listing), &SCHEDULE_MS);
    s.wait_log("acquisition_retry").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn six_failures_give_up_and_the_next_cycle_recovers() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.fail_next(Route::TokenList, 6, 502);
    let s = Scenario::launch(fake, &[]).await?;
    s.fake.wait_for_outcomes(Route::TokenList, 6, WAIT).await?;
    // Between giving up and the next cycle, health says what happened.
    let h = s
        .wait_health(WAIT, |h| {
            h.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no valid token"))
        })
        .await?;
    assert_eq!(h.status, 503);
    let h = s.wait_status("pass", WAIT).await?;
    assert_eq!(h.status, 200);
    let listing = s.fake.requests_for(Route::TokenList);
    assert_eq!(listing.len(), 7, "six failed attempts, then one new cycle");
    // The new cycle starts after the cooldown (clever_retry_max_delay_ms = 640 ms).
    let expected: Vec<u64> = SCHEDULE_MS.into_iter().chain([640]).collect();
    assert_schedule(&s, &gaps_ms(&listing), &expected);
    s.wait_log("acquisition_failed").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_reset_is_waited_for() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.push_fault(
        Route::TokenList,
        Fault::rate_limited_reset_only(Duration::from_millis(1500)),
    );
    let s = Scenario::launch(fake, &[]).await?;
    let first = s.fake.wait_for_outcomes(Route::TokenList, 1, WAIT).await?;
    let h = s
        .wait_health(WAIT, |h| {
            h.body["checks"]["clever:rateLimit"][0]["rateLimitedUntil"].is_string()
        })
        .await?;
    assert_eq!(h.body["error"]["code"], "no_valid_token");
    s.wait_status("pass", WAIT).await?;
    let listing = s.fake.requests_for(Route::TokenList);
    assert_eq!(listing.len(), 2);
    // X-Ratelimit-Reset is whole epoch seconds: the retry may not come before that second.
    let reset_ms = (first[0].unix_ms + 1500) / 1000 * 1000;
    assert!(
        listing[1].unix_ms + 5 >= reset_ms,
        "retried at {} before the reset {reset_ms}",
        listing[1].unix_ms
    );
    assert!(
        listing[1].unix_ms - first[0].unix_ms > SCHEDULE_MS[0] + 200,
        "the 40 ms backoff won over the hint"
    );
    let logs = s.logs();
    assert!(logs.contains("\"event\":\"rate_limited\""), "{logs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.push_fault(Route::TokenList, Fault::rate_limited_retry_after_secs(1));
    let s = Scenario::launch(fake, &[]).await?;
    s.wait_status("pass", WAIT).await?;
    let listing = s.fake.requests_for(Route::TokenList);
    assert_eq!(listing.len(), 2);
    assert_gap(gaps_ms(&listing)[0], 1000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_refetched_at_75_percent_of_its_lifetime_without_traffic() -> anyhow::Result<()> {
    let s = Scenario::start(two_districts(), &[("CLEVER_TOKEN_LIFETIME_SECS", "2")]).await?;
    // No health requests: the host's scheduler alone must refresh.
    let listing = s.fake.wait_for_requests(Route::TokenList, 3, WAIT).await?;
    for gap in gaps_ms(&listing[..3]) {
        assert_gap(gap, 1500);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failing_district_leaves_the_others_pass() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.set_persistent_fault(Route::Data.for_district("d-beta"), Fault::Status(503));
    let s = Scenario::launch(fake, &[]).await?;
    let h = s
        .wait_health(WAIT, |h| {
            h.district("d-alpha").is_some_and(|d| d["status"] == "pass")
        })
        .await?;
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "warn", "{:#}\n{}", h.body, s.logs());
    let beta = h.district("d-beta").expect("d-beta check");
    assert_eq!(beta["status"], "warn", "{beta}");
    assert_eq!(beta["lastError"]["code"], "server_error");
    assert_eq!(beta["consecutiveFailures"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_dropped_not_reported_valid() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.revoke_token("d-beta");
    let s = Scenario::launch(fake, &[]).await?;
    let h = s
        .wait_health(WAIT, |h| {
            h.district("d-beta").is_some_and(|d| d["status"] == "fail")
        })
        .await?;
    let beta = h.district("d-beta").expect("d-beta check");
    assert_eq!(beta["lastError"]["code"], "token_revoked");
    assert_eq!(beta["expiresAt"], serde_json::Value::Null);
    assert_eq!(
        h.district("d-alpha").map(|d| d["status"].clone()),
        Some("pass".into())
    );
    assert_eq!(h.body["status"], "warn");
    // Once Clever lists a fresh token, the district recovers on the next cycle.
    s.fake.rotate_token("d-beta");
    s.wait_health(WAIT, |h| {
        h.district("d-beta").is_some_and(|d| d["status"] == "pass")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_while_clever_hangs() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.set_persistent_fault(Route::TokenList, Fault::Hang);
    let s = Scenario::launch(fake, &[("CLEVER_HTTP_TIMEOUT_MS", "20000")]).await?;
    s.fake.wait_for_requests(Route::TokenList, 1, WAIT).await?;
    for _ in 0..20 {
        // Bounded far below the 20 s attempt timeout: an answer proves health does not wait.
        let h = tokio::time::timeout(Duration::from_secs(3), s.health()).await??;
        assert_eq!(h.status, 503);
    }
    let listing = s.fake.requests_for(Route::TokenList);
    assert_eq!(listing.len(), 1);
    assert!(
        matches!(
            listing[0].outcome,
            RecordOutcome::Pending | RecordOutcome::Hung
        ),
        "{:?}",
        listing[0].outcome
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_are_reported_and_not_retried() -> anyhow::Result<()> {
    let s = Scenario::start(two_districts(), &[("CLEVER_CLIENT_SECRET", "wrong-secret")]).await?;
    let h = s
        .wait_health(WAIT, |h| {
            h.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("bad_credentials") || m.contains("401"))
        })
        .await?;
    assert_eq!(h.status, 503);
    assert_eq!(h.body["checks"]["clever:credentials"][0]["status"], "warn");
    // Longer than the whole retry schedule plus the 640 ms cooldown: nothing may follow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.fake.request_count(Route::TokenList),
        1,
        "a 401 must not be retried"
    );
    assert!(!s.logs().contains("wrong-secret"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_version_fails_health() -> anyhow::Result<()> {
    let s = Scenario::start(two_districts(), &[("CLEVER_API_VERSION", "v2.0")]).await?;
    let h = s
        .wait_health(WAIT, |h| {
            h.body["checks"]["clever:apiVersion"][0]["status"] == "fail"
        })
        .await?;
    assert_eq!(h.status, 503);
    assert_eq!(h.body["error"]["code"], "version_unsupported");
    s.wait_log("api_version_unsupported").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_mismatch_warns_and_alerts() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.set_served_version(Some("v3.1"));
    let s = Scenario::launch(fake, &[]).await?;
    let h = s.wait_status("warn", WAIT).await?;
    assert_eq!(h.status, 200);
    let check = &h.body["checks"]["clever:apiVersion"][0];
    assert_eq!(check["status"], "warn");
    assert!(
        check["output"].as_str().is_some_and(|o| o.contains("v3.1")),
        "{check}"
    );
    s.wait_log("\"alert\":\"api_version_mismatch\"").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disconnected_district_is_removed_once() -> anyhow::Result<()> {
    let s = Scenario::start(two_districts(), &[("CLEVER_TOKEN_LIFETIME_SECS", "1")]).await?;
    s.wait_status("pass", WAIT).await?;
    s.fake.remove_district("d-beta");
    let h = s
        .wait_health(WAIT, |h| h.district_ids() == ["d-alpha"])
        .await?;
    assert_eq!(h.body["status"], "pass");
    s.fake.wait_for_requests(Route::TokenList, 4, WAIT).await?;
    let removed = s
        .logs()
        .lines()
        .filter(|l| l.contains(r#""event":"district_removed""#))
        .count();
    assert_eq!(removed, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_mode_honours_expires_in() -> anyhow::Result<()> {
    let mut config = two_districts();
    config.client_credentials_lifetime_secs = 2;
    let s = Scenario::start(config, &[("CLEVER_GRANT", "client_credentials")]).await?;
    let h = s.wait_status("pass", WAIT).await?;
    assert_eq!(h.district_ids(), ["app"]);
    let posts = s
        .fake
        .wait_for_requests(Route::ClientCredentials, 2, WAIT)
        .await?;
    assert_gap(gaps_ms(&posts)[0], 1500);
    assert!(s
        .fake
        .requests_for(Route::Data)
        .iter()
        .any(|r| r.path_and_query.ends_with("/me")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_listing_is_retried_with_a_clear_error() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.push_fault(Route::TokenList, Fault::Html(200));
    let s = Scenario::launch(fake, &[]).await?;
    s.wait_status("pass", WAIT).await?;
    assert_eq!(s.fake.request_count(Route::TokenList), 2);
    s.wait_log("malformed_response").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_scheduler_health_requests_drive_refreshes_as_under_spin() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    let s = Scenario::launch_with(fake, &[], &["--no-scheduler"]).await?;
    // Longer than the whole retry schedule plus the 640 ms cooldown: nothing may follow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.fake.request_count(Route::TokenList),
        0,
        "nothing may call Clever before a request:\n{}",
        s.logs()
    );
    // The first answer comes from memory (no token yet); the refresh runs after it was sent.
    let first = s.health().await?;
    assert_eq!(first.status, 503);
    s.fake.wait_for_requests(Route::TokenList, 1, WAIT).await?;
    let h = s.wait_status("pass", WAIT).await?;
    assert_eq!(h.district_ids(), ["d-alpha", "d-beta"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_allow_list_limits_districts() -> anyhow::Result<()> {
    let s = Scenario::start(
        two_districts(),
        &[("CLEVER_DISTRICTS", "d-beta, d-unknown")],
    )
    .await?;
    let h = s.wait_status("pass", WAIT).await?;
    assert_eq!(h.district_ids(), ["d-beta"]);
    let probed: Vec<Option<String>> = s
        .fake
        .requests_for(Route::Data)
        .into_iter()
        .map(|r| r.district)
        .collect();
    assert_eq!(probed, [Some("d-beta".to_string())]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paged_listing_is_followed_to_its_last_page() -> anyhow::Result<()> {
    let mut config = two_districts();
    config.district_ids = ["d1", "d2", "d3", "d4", "d5"].map(String::from).to_vec();
    let fake = FakeClever::start(config).await?;
    fake.set_listing_page_size(Some(2));
    let s = Scenario::launch(fake, &[]).await?;
    let h = s
        .wait_health(WAIT, |h| {
            h.body["status"] == "pass" && h.district_ids().len() == 5
        })
        .await?;
    assert_eq!(h.district_ids(), ["d1", "d2", "d3", "d4", "d5"]);
    let pages = s.fake.requests_for(Route::TokenList);
    assert_eq!(pages.len(), 3, "three pages of two, two and one");
    assert!(pages[1].path_and_query.contains("starting_after=d2"));
    assert!(pages[2].path_and_query.contains("starting_after=d4"));
    assert!(pages.iter().all(|p| p.auth.valid));
    assert!(!s.logs().contains("district_removed"), "{}", s.logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_health_requests_make_one_acquisition() -> anyhow::Result<()> {
    // As under Spin: no scheduler, an instance per request, each running the refresher after
    // its response when due. The lease and the re-check under it make one listing of them.
    let fake = FakeClever::start(two_districts()).await?;
    let s = Scenario::launch_with(fake, &[], &["--no-scheduler"]).await?;
    let url = s.host.url(clever_auth_tests::scenario::HEALTH);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let url = url.clone();
        burst.spawn(async move { clever_auth_tests::http_client::get(&url).await });
    }
    while let Some(r) = burst.join_next().await {
        r??;
    }
    s.wait_status("pass", WAIT).await?;
    for _ in 0..10 {
        s.health().await?;
    }
    assert_eq!(
        s.fake.request_count(Route::TokenList),
        1,
        "one acquisition for a burst of health requests:\n{}",
        s.logs()
    );
    Ok(())
}
