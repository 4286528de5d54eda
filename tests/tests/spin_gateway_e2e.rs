//! The Clever gateway (`/clever/{district}/{version}/…`) under a real `spin up` of the project's
//! own `spin.toml`, against the fake Clever. The gateway is a private endpoint: only a sync
//! component in the same app reaches it, through Spin's service chaining
//! (`http://clever-auth.spin.internal`), without ever holding a token (`tests/consumer`, built
//! by `cargo xtask test`); Spin's listener gives nobody a district's data, and its health
//! answer names no district unless the operator opts in.
//!
//! Without Spin on this machine each test says so and returns; under `CI=true` it fails.

use anyhow::{Context, Result};
use clever_auth_tests::fake_clever::{FakeClever, Fault, RequestRecord, Route, RouteMatch};
use clever_auth_tests::http_client::{self, Reply};
use clever_auth_tests::scenario::{names_a_district, two_districts};
use clever_auth_tests::spin::{SpinOptions, SpinScenario};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const SCHOOLS: &str = "d-alpha/v3.0/districts/d-alpha/schools?limit=100";

/// `spin up` of the app with the consumer beside clever-auth, against a fake with two
/// districts, polled until both tokens are in place.
async fn ready(opts: impl FnOnce(&FakeClever) -> SpinOptions) -> Result<Option<SpinScenario>> {
    let fake = FakeClever::start(two_districts()).await?;
    let opts = opts(&fake).with_consumer();
    let Some(s) = SpinScenario::launch_opts(fake, opts).await? else {
        return Ok(None);
    };
    s.poll_until(Duration::from_millis(50), WAIT, |h| {
        h.body["status"] == "pass"
    })
    .await?;
    Ok(Some(s))
}

fn schools_seen(fake: &FakeClever, district: &str) -> Vec<RequestRecord> {
    fake.requests_for(RouteMatch::route(Route::Data))
        .into_iter()
        .filter(|r| {
            r.district.as_deref() == Some(district) && r.path_and_query.contains("/schools")
        })
        .collect()
}

fn error_code(reply: &Reply) -> Result<String> {
    Ok(reply.json()?["error"]["code"]
        .as_str()
        .context("error.code")?
        .to_string())
}

/// The fake saw the last `/schools` request of `district` with that district's token.
fn assert_sent_with_the_districts_token(fake: &FakeClever, district: &str) -> Result<()> {
    let seen = schools_seen(fake, district);
    let last = seen.last().context("the fake saw the request")?;
    let token = fake
        .district_token(district)
        .context("the district's token")?;
    assert_eq!(
        last.auth.fingerprint.as_deref(),
        Some(fake.fingerprint(&token).as_str()),
        "Clever got {district}'s token"
    );
    Ok(())
}

/// No token the fake ever issued appears in `reply`, head or body.
fn assert_no_token(fake: &FakeClever, reply: &Reply) {
    let head = format!("{:?}", reply.headers);
    let body = reply.text();
    for token in fake.issued_tokens() {
        assert!(
            !head.contains(&token) && !body.contains(&token),
            "a token reached the caller"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_under_spin_sends_the_districts_token_and_refuses_what_it_must() -> Result<()> {
    let Some(s) = ready(|fake| SpinOptions::against(fake, &[])).await? else {
        return Ok(());
    };
    let url = |path: &str| s.app.url(&format!("/consumer/{path}"));

    let reply = http_client::get(&url(SCHOOLS)).await?;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), s.app.logs());
    assert_eq!(reply.json()?["tokenDistrict"], "d-alpha");
    assert_sent_with_the_districts_token(&s.fake, "d-alpha")?;
    assert_no_token(&s.fake, &reply);
    let beta = http_client::get(&url("d-beta/v3.0/districts/d-beta/schools")).await?;
    assert_eq!(beta.json()?["tokenDistrict"], "d-beta");
    assert_sent_with_the_districts_token(&s.fake, "d-beta")?;

    // Clever echoing the very token it got: under Spin the component's own mask is all there
    // is between that body and the caller.
    let token = s
        .fake
        .district_token("d-alpha")
        .context("d-alpha's token")?;
    s.fake.push_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::Custom {
            status: 200,
            content_type: Some("application/json".into()),
            body: format!(r#"{{"echo":"{token} and {token}"}}"#),
        },
    );
    let echoed = http_client::get(&url(SCHOOLS)).await?;
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    assert!(echoed.text().contains("echo"), "{}", echoed.text());
    assert_no_token(&s.fake, &echoed);
    let masked = || {
        s.app.logs().contains("gateway_echo_masked")
            || s.app.log_files().contains("gateway_echo_masked")
    };
    let waiting = Instant::now();
    while !masked() && waiting.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(masked(), "no gateway_echo_masked event:\n{}", s.app.logs());

    // A component sending a token of its own is refused, and nothing reaches Clever.
    let before = s.fake.request_count(RouteMatch::route(Route::Data));
    let carrying = http_client::request_with_headers(
        "GET",
        &url(SCHOOLS),
        &[("x-forward-authorization", "Bearer caller-held-token-123")],
    )
    .await?;
    assert_eq!(carrying.status, 400, "{}", carrying.text());
    assert_eq!(error_code(&carrying)?, "bad_request");
    assert!(!carrying.text().contains("caller-held-token-123"));

    // A district without a token is 404 without calling Clever.
    let unknown = http_client::get(&url("d-nobody/v3.0/districts/d-nobody")).await?;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(error_code(&unknown)?, "unknown_district");
    assert_eq!(s.fake.request_count(RouteMatch::route(Route::Data)), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_under_spin_is_waited_out_by_its_retry_after() -> Result<()> {
    let Some(s) = ready(|fake| SpinOptions::against(fake, &[])).await? else {
        return Ok(());
    };
    s.fake.push_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::rate_limited_retry_after_secs(1),
    );
    let started = Instant::now();
    let reply = http_client::get(&s.app.url(&format!("/consumer/{SCHOOLS}"))).await?;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), s.app.logs());
    let seen = schools_seen(&s.fake, "d-alpha");
    assert_eq!(seen.len(), 2, "the 429, then the request again");
    let gap = seen[1].since(&seen[0]);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_component_gets_clevers_data_through_service_chaining_without_a_token(
) -> Result<()> {
    let Some(s) = ready(|fake| SpinOptions::against(fake, &[])).await? else {
        return Ok(());
    };

    let reply = http_client::get(&s.app.url(&format!("/consumer/{SCHOOLS}"))).await?;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), s.app.logs());
    let body = reply.json()?;
    assert_eq!(body["tokenDistrict"], "d-alpha");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    assert_sent_with_the_districts_token(&s.fake, "d-alpha")?;
    assert_no_token(&s.fake, &reply);

    // The gateway's own answers reach the consumer as they are.
    let unknown =
        http_client::get(&s.app.url("/consumer/d-nobody/v3.0/districts/d-nobody")).await?;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(error_code(&unknown)?, "unknown_district");
    Ok(())
}

/// Paths a client of Spin's listener tries for the gateway: the route itself, its edges, and
/// the spellings a router might normalise into it.
const LISTENER_PROBES: [&str; 7] = [
    "/clever/d-alpha/v3.0/districts/d-alpha",
    "/clever/d-alpha/v3.0/districts/d-alpha/schools?limit=100",
    "/clever/",
    "/clever",
    "/CLEVER/d-alpha/v3.0/districts/d-alpha",
    "//clever/d-alpha/v3.0/districts/d-alpha",
    "/health/clever-auth/../../clever/d-alpha/v3.0/districts/d-alpha",
];

#[tokio::test(flavor = "multi_thread")]
async fn spins_listener_lends_no_districts_token_while_the_consumer_still_gets_its_data(
) -> Result<()> {
    let Some(s) = ready(|fake| SpinOptions::against(fake, &[])).await? else {
        return Ok(());
    };
    let before = s.fake.request_count(RouteMatch::route(Route::Data));
    for path in LISTENER_PROBES {
        for method in ["GET", "HEAD"] {
            let reply = http_client::request(method, &s.app.url(path)).await?;
            assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text());
            assert!(
                !reply.text().contains("tokenDistrict"),
                "{method} {path} gave district data: {}",
                reply.text()
            );
            assert_no_token(&s.fake, &reply);
        }
    }
    assert_eq!(
        s.fake.request_count(RouteMatch::route(Route::Data)),
        before,
        "a listener client made the gateway call Clever"
    );

    // The same app's component, through service chaining, is served.
    let reply = http_client::get(&s.app.url(&format!("/consumer/{SCHOOLS}"))).await?;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), s.app.logs());
    assert_eq!(reply.json()?["tokenDistrict"], "d-alpha");
    assert_eq!(
        s.fake.request_count(RouteMatch::route(Route::Data)),
        before + 1
    );
    Ok(())
}

/// Headers a caller of Spin's listener may send hoping for the detail: the native host's own
/// signal, and Spin's request headers (which Spin sets itself, but a client may send too).
const DETAIL_ASKS: [(&str, &str); 6] = [
    ("clever-auth-health-view", "detail"),
    (
        "spin-full-url",
        "http://clever-auth.spin.internal/health/clever-auth",
    ),
    ("spin-client-addr", "127.0.0.1:1"),
    ("spin-component-route", "/health/clever-auth"),
    ("spin-path-info", "/health/clever-auth"),
    ("host", "clever-auth.spin.internal"),
];

#[tokio::test(flavor = "multi_thread")]
async fn spins_listener_gives_the_public_health_answer_unless_the_operator_opts_in() -> Result<()> {
    let Some(s) = ready(|fake| {
        SpinOptions::against(fake, &[]).without_var(clever_auth_tests::spin::HEALTH_DETAIL_OPT_IN.0)
    })
    .await?
    else {
        return Ok(());
    };
    let url = s.app.url("/health/clever-auth?page=1");
    let plain = http_client::get(&url).await?;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let body = plain.json()?;
    assert_eq!(body["status"], "pass");
    assert_eq!(body["districts"]["total"], 2, "counts, not names");
    assert!(body.get("checks").is_none(), "{body}");
    assert!(!names_a_district(&plain.text()), "{}", plain.text());
    for (name, value) in DETAIL_ASKS {
        let asked = http_client::request_with_headers("GET", &url, &[(name, value)]).await?;
        assert_eq!(asked.status, 200, "{name}: {}", asked.text());
        assert!(
            !names_a_district(&asked.text()),
            "{name}: {value} turned the detail on: {}",
            asked.text()
        );
    }
    let all: Vec<(&str, &str)> = DETAIL_ASKS.to_vec();
    let asked = http_client::request_with_headers("GET", &url, &all).await?;
    assert!(!names_a_district(&asked.text()), "{}", asked.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operators_opt_in_gives_the_listener_the_per_district_detail() -> Result<()> {
    let Some(s) = ready(|fake| SpinOptions::against(fake, &[])).await? else {
        return Ok(());
    };
    let h = s.health().await?;
    assert_eq!(h.district_ids(), ["d-alpha", "d-beta"], "{}", h.body);
    assert!(
        h.body["checks"]["clever:credentials"].is_array(),
        "{}",
        h.body
    );
    Ok(())
}
