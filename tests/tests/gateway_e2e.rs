//! The Clever gateway end to end: the real host (its loopback gateway listener), the real
//! component and the fake Clever over loopback. One test per rule of issue 12.

use anyhow::{Context, Result};
use clever_auth_tests::fake_clever::{
    FakeClever, Fault, Outcome, RateLimitBucket, RateLimitConfig, RequestRecord, Route, RouteMatch,
};
use clever_auth_tests::host_process::{status_kib, HostOptions, HostProcess};
use clever_auth_tests::http_client::{self, Reply};
use clever_auth_tests::scenario::{two_districts, Scenario};
use std::time::{Duration, Instant};

const SCHOOLS: &str = "/clever/d-alpha/v3.0/districts/d-alpha/schools?limit=100";

/// A host with two districts whose tokens are in place.
async fn ready(env: &[(&str, &str)]) -> Result<Scenario> {
    let s = Scenario::start(two_districts(), env).await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    Ok(s)
}

async fn get(s: &Scenario, path: &str) -> Result<Reply> {
    http_client::get(&s.host.gateway_url(path)).await
}

/// Waits until `n` requests have logged their `gateway_request` event: a request is recorded
/// (figures, versions, event) when its body has reached the client, just after the client
/// has the whole answer.
async fn recorded(s: &Scenario, n: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let logged = s
            .logs()
            .lines()
            .filter(|l| l.contains("\"gateway_request\""))
            .count();
        if logged >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "{logged} of {n} gateway requests recorded within 5 s:\n{}",
                s.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn data_requests(fake: &FakeClever, district: &str) -> Vec<RequestRecord> {
    fake.requests_for(RouteMatch::route(Route::Data))
        .into_iter()
        .filter(|r| {
            r.district.as_deref() == Some(district) && r.path_and_query.contains("/schools")
        })
        .collect()
}

fn gateway_error(reply: &Reply) -> Result<(String, String)> {
    let v = reply.json()?;
    let code = v["error"]["code"]
        .as_str()
        .context("error.code")?
        .to_string();
    let message = v["error"]["message"]
        .as_str()
        .context("error.message")?
        .to_string();
    Ok((code, message))
}

fn assert_source(reply: &Reply, source: &str) {
    assert_eq!(
        reply.header("x-clever-auth-source"),
        Some(source),
        "status {} body {}",
        reply.status,
        reply.text()
    );
}

#[tokio::test]
async fn a_get_reaches_clever_with_that_districts_token_and_passes_back_whole() -> Result<()> {
    let s = ready(&[]).await?;
    let reply = get(&s, SCHOOLS).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_source(&reply, "clever");
    assert!(reply.header("x-ratelimit-remaining").is_some());
    assert!(reply.header("x-ratelimit-reset").is_some());
    let body = reply.json()?;
    assert_eq!(body["tokenDistrict"], "d-alpha");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));

    let seen = data_requests(&s.fake, "d-alpha");
    let last = seen.last().context("the fake saw the request")?;
    assert_eq!(
        last.path_and_query,
        "/v3.0/districts/d-alpha/schools?limit=100"
    );
    let token = s.fake.district_token("d-alpha").context("token")?;
    assert_eq!(
        last.auth.fingerprint.as_deref(),
        Some(s.fake.fingerprint(&token).as_str())
    );

    // The other district's request carries the other token.
    let beta = get(&s, "/clever/d-beta/v3.0/districts/d-beta/schools").await?;
    assert_eq!(beta.status, 200);
    assert_eq!(beta.json()?["tokenDistrict"], "d-beta");
    // A district's token cannot read another district: Clever's 404 passes through as such.
    let cross = get(&s, "/clever/d-beta/v3.0/districts/d-alpha/schools").await?;
    assert_eq!(cross.status, 404);
    assert_source(&cross, "clever");

    // HEAD: Clever's status and headers, no body.
    let head = http_client::request("HEAD", &s.host.gateway_url(SCHOOLS)).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        s.fake
            .requests()
            .last()
            .map(|r| r.method.clone())
            .as_deref(),
        Some("HEAD")
    );
    Ok(())
}

#[tokio::test]
async fn hop_by_hop_headers_stay_behind_and_the_callers_others_pass() -> Result<()> {
    let s = ready(&[]).await?;
    let reply = http_client::request_with_headers(
        "GET",
        &s.host.gateway_url("/clever/d-alpha/v3.0/echo/x?a=1"),
        &[
            ("X-Request-Id", "req-42"),
            ("Accept", "application/json"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "secret-ish"),
            ("Cookie", "session=1"),
            ("X-Clever-Auth-Detail", "1"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-For", "10.9.8.7"),
            ("X-Invented", "1"),
            ("If-None-Match", "\"v1\""),
        ],
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json()?;

    assert_eq!(echo["pathAndQuery"], "/v3.0/echo/x?a=1");
    let headers = &echo["headers"];
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["if-none-match"], "\"v1\"");
    assert_eq!(headers["authorization"], "Bearer <present>");
    // `clever-auth-health-view` is the host's signal to the health handler, never sent here.
    for gone in [
        "x-private",
        "cookie",
        "x-clever-auth-detail",
        "clever-auth-health-view",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-invented",
    ] {
        assert!(headers.get(gone).is_none(), "{gone} was forwarded: {echo}");
    }

    // The other way: a header Clever's answer names in its `Connection` stays behind, the
    // others come back.
    let reply = get(&s, "/clever/d-alpha/v3.0/echo/x?hop=1").await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-end-to-end"), Some("1"));
    assert_eq!(
        reply.header("x-hop-private"),
        None,
        "a hop-by-hop header of Clever's answer was passed back"
    );
    Ok(())
}

#[tokio::test]
async fn the_main_listener_serves_only_health_and_the_gateway_clever_and_detailed_health(
) -> Result<()> {
    let s = ready(&[]).await?;
    let main = http_client::get(&s.host.url(SCHOOLS)).await?;
    assert_eq!(main.status, 404);
    // The loopback listener answers health too, with the per-district detail.
    let on_gateway = get(&s, "/health/clever-auth").await?;
    assert_eq!(on_gateway.status, 200);
    assert!(on_gateway.text().contains("\"componentId\":\"d-alpha\""));
    let other = get(&s, "/other").await?;
    assert_eq!(other.status, 404);
    assert!(s.host.gateway_addr.is_some_and(|a| a.ip().is_loopback()));
    Ok(())
}

#[tokio::test]
async fn a_request_carrying_authorization_is_refused_and_nothing_is_sent() -> Result<()> {
    let s = ready(&[]).await?;
    let before = s.fake.request_count(RouteMatch::route(Route::Data));
    let reply = http_client::request_with_headers(
        "GET",
        &s.host.gateway_url(SCHOOLS),
        &[("Authorization", "Bearer caller-held-token-123")],
    )
    .await?;
    assert_eq!(reply.status, 400);
    assert_source(&reply, "gateway");
    assert_eq!(gateway_error(&reply)?.0, "bad_request");
    assert!(!reply.text().contains("caller-held-token-123"));
    assert_eq!(s.fake.request_count(RouteMatch::route(Route::Data)), before);
    Ok(())
}

#[tokio::test]
async fn only_reads_pass() -> Result<()> {
    let s = ready(&[]).await?;
    let before = s.fake.request_count(RouteMatch::route(Route::Data));
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let reply = http_client::request(method, &s.host.gateway_url(SCHOOLS)).await?;
        assert_eq!(reply.status, 405, "{method}");
        assert_source(&reply, "gateway");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(gateway_error(&reply)?.0, "method_not_allowed");
    }
    assert_eq!(s.fake.request_count(RouteMatch::route(Route::Data)), before);
    Ok(())
}

#[tokio::test]
async fn malformed_targets_get_400_before_anything_is_sent() -> Result<()> {
    let s = ready(&[]).await?;
    let addr = s.host.gateway_addr.context("gateway")?;
    let before = s.fake.requests().len();
    let long = format!("/clever/d-alpha/v3.0/{}", "a".repeat(5000));
    let targets: Vec<String> = [
        "/clever/d-alpha/districts/d-alpha",
        "/clever/d-alpha/v3.0/../oauth/tokens",
        "/clever/d-alpha/v3.0/%2e%2e/oauth/tokens",
        "/clever/d-alpha/v3.0/%2E%2E/oauth/tokens",
        "/clever/d-alpha/v3.0//districts",
        "/clever/d-alpha/v3.0/x%5c..%5coauth",
        "/clever/d-alpha/v3.0/x%00y",
        "/clever/d-alpha/v3.0/x\\y",
        "http://evil.example/clever/d-alpha/v3.0/districts",
        "/clever/d-alpha@evil.example/v3.0/x",
    ]
    .iter()
    .map(|t| t.to_string())
    .chain([long])
    .collect();
    for target in &targets {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let (status, text) = http_client::raw(addr, request.as_bytes()).await?;
        assert_eq!(status, 400, "{target}: {text}");
    }
    // A control character in the target: refused by the HTTP layer or the gateway, never sent.
    let (status, _) = http_client::raw(
        addr,
        b"GET /clever/d-alpha/v3.0/x\x01y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert_eq!(status, 400);
    let sent: Vec<String> = s.fake.requests()[before..]
        .iter()
        .filter(|r| r.route == Route::Data || r.route == Route::Other)
        .map(|r| r.path_and_query.clone())
        .collect();
    assert!(sent.is_empty(), "sent upstream: {sent:?}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_district_is_404_without_calling_clever() -> Result<()> {
    let s = ready(&[]).await?;
    let before = s.fake.request_count(RouteMatch::route(Route::Data));
    let reply = get(&s, "/clever/d-nobody/v3.0/districts/d-nobody").await?;
    assert_eq!(reply.status, 404);
    assert_source(&reply, "gateway");
    assert_eq!(gateway_error(&reply)?.0, "unknown_district");
    // `app` is the application token's id, unknown under district_tokens.
    let app = get(&s, "/clever/app/v3.0/me").await?;
    assert_eq!(gateway_error(&app)?.0, "unknown_district");
    assert_eq!(s.fake.request_count(RouteMatch::route(Route::Data)), before);
    Ok(())
}

#[tokio::test]
async fn a_request_without_a_token_waits_for_the_acquisition_within_its_deadline() -> Result<()> {
    // The first two listings fail: the first token arrives after the backoff (40 + 80 ms).
    let fake = FakeClever::start(two_districts()).await?;
    fake.fail_next(Route::TokenList, 2, 503);
    let s = Scenario::launch(fake, &[("CLEVER_GATEWAY_DEADLINE_MS", "10000")]).await?;
    let started = Instant::now();
    let reply = get(&s, SCHOOLS).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?["tokenDistrict"], "d-alpha");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(s.fake.request_count(Route::TokenList) >= 3);
    Ok(())
}

#[tokio::test]
async fn no_token_within_the_deadline_is_503_no_valid_token_with_retry_after() -> Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    fake.set_persistent_fault(Route::TokenList, Fault::Status(503));
    let s = Scenario::launch(fake, &[("CLEVER_GATEWAY_DEADLINE_MS", "1500")]).await?;
    let started = Instant::now();
    let reply = get(&s, SCHOOLS).await?;
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_source(&reply, "gateway");
    assert_eq!(gateway_error(&reply)?.0, "no_valid_token");
    assert!(reply.header("retry-after").is_some());
    assert!(took >= Duration::from_millis(1_400), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(s.fake.request_count(RouteMatch::route(Route::Data)), 0);
    Ok(())
}

#[tokio::test]
async fn a_refused_token_is_dropped_relisted_and_the_request_replayed_once() -> Result<()> {
    let s = ready(&[]).await?;
    let old = s.fake.district_token("d-alpha").context("token")?;
    let listings = s.fake.request_count(Route::TokenList);
    let new = s.fake.rotate_token("d-alpha").context("rotated")?;
    let reply = get(&s, SCHOOLS).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = data_requests(&s.fake, "d-alpha");
    let fps: Vec<(Option<String>, Option<u16>)> = seen
        .iter()
        .map(|r| (r.auth.fingerprint.clone(), r.status()))
        .collect();
    let old_fp = Some(s.fake.fingerprint(&old));
    let new_fp = Some(s.fake.fingerprint(&new));
    assert_eq!(
        fps,
        vec![(old_fp, Some(401)), (new_fp, Some(200))],
        "the old token once, then the new one"
    );
    assert_eq!(
        s.fake.request_count(Route::TokenList),
        listings + 1,
        "exactly one new listing"
    );
    s.wait_log("gateway_token_refused").await?;
    Ok(())
}

#[tokio::test]
async fn a_token_refused_again_after_the_relisting_is_not_replayed_twice() -> Result<()> {
    let s = ready(&[("CLEVER_GATEWAY_DEADLINE_MS", "3000")]).await?;
    // Revoked but still listed: the relisting brings the same, refused, token.
    s.fake.revoke_token("d-alpha");
    let reply = get(&s, SCHOOLS).await?;
    // Either the replay met Clever's 401 again, which then passes through as Clever's, or the
    // refresher's probe of the relisted token refused it first and none was left to replay.
    match reply.status {
        401 => assert_source(&reply, "clever"),
        503 => assert_eq!(gateway_error(&reply)?.0, "no_valid_token"),
        other => panic!("{other}: {}", reply.text()),
    }
    let attempts = data_requests(&s.fake, "d-alpha").len();
    assert!(
        (1..=2).contains(&attempts),
        "{attempts} attempts: one replay at most"
    );
    Ok(())
}

#[tokio::test]
async fn a_429_is_waited_out_by_retry_after_within_the_deadline() -> Result<()> {
    let s = ready(&[]).await?;
    s.fake.push_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::rate_limited_retry_after_secs(1),
    );
    let started = Instant::now();
    let reply = get(&s, SCHOOLS).await?;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_source(&reply, "clever");
    let seen = data_requests(&s.fake, "d-alpha");
    assert_eq!(seen.len(), 2);
    let gap = seen[1].since(&seen[0]);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    Ok(())
}

#[tokio::test]
async fn a_429_beyond_the_deadline_is_the_gateways_429_and_holds_the_district() -> Result<()> {
    let s = ready(&[("CLEVER_GATEWAY_DEADLINE_MS", "2000")]).await?;
    s.fake.push_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::rate_limited_retry_after_secs(20),
    );
    let started = Instant::now();
    let reply = get(&s, SCHOOLS).await?;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    assert_eq!(reply.status, 429);
    assert_source(&reply, "gateway");
    assert_eq!(gateway_error(&reply)?.0, "rate_limited");
    let retry_after: u64 = reply
        .header("retry-after")
        .context("retry-after")?
        .parse()?;
    assert!((18..=21).contains(&retry_after), "{retry_after}");
    // The hold is shared: the next request is refused without calling Clever.
    let again = get(&s, SCHOOLS).await?;
    assert_eq!(again.status, 429);
    assert_source(&again, "gateway");
    assert_eq!(data_requests(&s.fake, "d-alpha").len(), 1);
    // Other districts are not held.
    let beta = get(&s, "/clever/d-beta/v3.0/districts/d-beta/schools").await?;
    assert_eq!(beta.status, 200);
    Ok(())
}

#[tokio::test]
async fn an_exhausted_bucket_paces_requests_until_the_reset_without_429s() -> Result<()> {
    let s = ready(&[]).await?;
    // Four requests per 2 s window for each token, enforced with 429 like Clever.
    s.fake.set_rate_limit(RateLimitConfig {
        buckets: vec![RateLimitBucket::new("per-token", 4, Duration::from_secs(2))],
        enforce: true,
        ..RateLimitConfig::default()
    });
    let started = Instant::now();
    for i in 0..10 {
        let reply = get(&s, SCHOOLS).await?;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }
    let seen = data_requests(&s.fake, "d-alpha");
    let limited = seen.iter().filter(|r| r.status() == Some(429)).count();
    assert_eq!(limited, 0, "the gateway held back instead of earning 429s");
    // Ten requests at four per window span at least two window boundaries.
    assert!(
        started.elapsed() >= Duration::from_millis(2_000),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    Ok(())
}

#[tokio::test]
async fn server_errors_are_retried_on_the_backoff_schedule() -> Result<()> {
    let s = ready(&[]).await?;
    let target = RouteMatch::route(Route::Data).for_district("d-alpha");
    s.fake.fail_next(target.clone(), 2, 503);
    let reply = get(&s, SCHOOLS).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = data_requests(&s.fake, "d-alpha");
    assert_eq!(seen.len(), 3);
    // The test schedule: 40 ms, then 80 ms.
    assert!(seen[1].since(&seen[0]) >= Duration::from_millis(38));
    assert!(seen[2].since(&seen[1]) >= Duration::from_millis(78));

    // Retries used up: Clever's own 5xx comes back, marked as Clever's.
    s.fake.fail_next(target, 20, 502);
    let reply = get(&s, SCHOOLS).await?;
    assert_eq!(reply.status, 502);
    assert_source(&reply, "clever");
    assert_eq!(
        data_requests(&s.fake, "d-alpha").len(),
        3 + 6,
        "1 + 5 retries"
    );
    s.fake.clear_faults();
    Ok(())
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_504_at_the_deadline() -> Result<()> {
    let s = ready(&[
        ("CLEVER_GATEWAY_DEADLINE_MS", "1500"),
        ("RUST_LOG", "debug"),
    ])
    .await?;
    s.fake.set_persistent_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::Hang,
    );
    let started = Instant::now();
    let reply = get(&s, SCHOOLS).await?;
    let took = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_source(&reply, "gateway");
    assert_eq!(gateway_error(&reply)?.0, "upstream_timeout");
    assert!(took >= Duration::from_millis(1_400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}\n{}", s.logs());
    Ok(())
}

#[tokio::test]
async fn a_50_mb_page_streams_through_with_bounded_memory() -> Result<()> {
    use http_body_util::BodyExt;
    let s = ready(&[]).await?;
    let pid = s.host.pid().context("pid")?;
    // Warm up the gateway path once, so the baseline includes its instances.
    assert_eq!(
        get(&s, "/clever/d-alpha/v3.0/bytes/1024").await?.status,
        200
    );
    let before = status_kib(pid, "VmHWM")?;

    const SIZE: usize = 50 << 20;
    let url = s
        .host
        .gateway_url(&format!("/clever/d-alpha/v3.0/bytes/{SIZE}"));
    let uri: hyper::Uri = url.parse()?;
    let stream = tokio::net::TcpStream::connect(uri.authority().context("a")?.as_str()).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(uri.path_and_query().context("p")?.as_str())
        .header("host", "gateway")
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(SIZE.to_string().as_str())
    );
    let mut body = resp.into_body();
    let pattern = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n";
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            for (i, b) in data.iter().enumerate() {
                if *b != pattern[(received + i) % pattern.len()] {
                    anyhow::bail!("byte {} differs", received + i);
                }
            }
            received += data.len();
        }
    }
    assert_eq!(received, SIZE);
    let grown_mib = status_kib(pid, "VmHWM")?.saturating_sub(before) / 1024;
    // Buffering the page whole would cost at least 50 MiB.
    assert!(
        grown_mib < 24,
        "the host's peak memory grew by {grown_mib} MiB"
    );
    Ok(())
}

#[tokio::test]
async fn api_versions_seen_on_gateway_traffic_feed_the_version_check() -> Result<()> {
    let s = ready(&[]).await?;
    // Clever starts answering with v3.1 links while the service is configured for v3.0.
    s.fake.set_served_version(Some("v3.1"));
    let reply = get(&s, SCHOOLS).await?;
    assert_eq!(reply.status, 200);
    let health = s
        .wait_health(Duration::from_secs(5), |h| {
            h.body["checks"]["clever:apiVersion"][0]["status"] == "warn"
        })
        .await?;
    let output = health.body["checks"]["clever:apiVersion"][0]["output"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(output.contains("v3.1"), "{output}");
    // The probes' event, logged once for the change, not once per request.
    assert_eq!(get(&s, SCHOOLS).await?.status, 200);
    recorded(&s, 2).await?;
    let problems = s
        .logs()
        .lines()
        .filter(|l| l.contains("api_version_problem") && l.contains("gateway"))
        .count();
    assert_eq!(problems, 1, "{}", s.logs());
    Ok(())
}

#[tokio::test]
async fn each_request_logs_one_event_and_health_shows_gateway_figures() -> Result<()> {
    let s = ready(&[("CLEVER_GATEWAY_DEADLINE_MS", "2000")]).await?;
    assert_eq!(get(&s, SCHOOLS).await?.status, 200);
    s.fake.push_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::rate_limited_retry_after_secs(30),
    );
    assert_eq!(get(&s, SCHOOLS).await?.status, 429);
    recorded(&s, 2).await?;
    let events: Vec<serde_json::Value> = s
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "gateway_request")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let first = &events[0];
    assert_eq!(first["district"], "d-alpha");
    assert_eq!(first["status"], 200);
    let text = first.to_string();
    // Fields of their own (the host logs the record the component returns).
    assert_eq!(first["method"], "GET", "{text}");
    assert_eq!(first["attempts"], 1, "{text}");
    assert!(
        first["waited_ms"].is_u64() && first["duration_ms"].is_u64(),
        "{text}"
    );
    assert!(
        first["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/v3.0/districts/d-alpha/schools")),
        "{text}"
    );
    assert!(
        !text.contains("limit=100"),
        "the query stays out of logs: {text}"
    );
    assert_eq!(events[1]["error_code"], "rate_limited");

    let health = s.health().await?;
    let alpha = health.district("d-alpha").context("d-alpha")?;
    assert_eq!(alpha["gateway"]["lastStatus"], 429);
    assert_eq!(alpha["gateway"]["rateLimitedLastMinute"], 1);
    assert_eq!(alpha["gateway"]["requests"], 2);
    Ok(())
}

#[tokio::test]
async fn the_gateway_can_be_turned_off_and_never_listens_beyond_loopback() -> Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    let s = Scenario::launch_with(fake, &[], &["--gateway-listen", "off"]).await?;
    assert!(s.host.gateway_addr.is_none());
    s.wait_log("gateway off").await?;

    let opts = HostOptions::default().args(&["--gateway-listen", "0.0.0.0:0"]);
    let (status, text) = HostProcess::run_to_exit(opts).await?;
    assert!(!status.success());
    assert!(text.contains("loopback"), "{text}");
    let opts = HostOptions::default().env("CLEVER_AUTH_GATEWAY_LISTEN", "10.1.2.3:8081");
    let (status, text) = HostProcess::run_to_exit(opts).await?;
    assert!(!status.success());
    assert!(text.contains("loopback"), "{text}");
    Ok(())
}

#[tokio::test]
async fn no_token_ever_reaches_a_gateway_response_or_log() -> Result<()> {
    let s = ready(&[("CLEVER_GATEWAY_DEADLINE_MS", "2000")]).await?;
    let tokens: Vec<String> = s
        .fake
        .district_ids()
        .iter()
        .filter_map(|d| s.fake.district_token(d))
        .collect();
    let mut bodies = Vec::new();
    for path in [
        SCHOOLS,
        "/clever/d-alpha/v3.0/echo/leak",
        "/clever/d-alpha/v3.0/districts/d-beta",
        "/clever/d-nobody/v3.0/x",
        "/clever/d-alpha/v9.9/x",
    ] {
        let r = get(&s, path).await?;
        bodies.push(format!("{:?}\n{}", r.headers, r.text()));
    }
    let all = format!("{}\n{}", bodies.join("\n"), s.logs());
    for t in &tokens {
        assert!(!all.contains(t.as_str()), "a token leaked");
    }
    let finished = s
        .fake
        .requests()
        .iter()
        .all(|r| r.outcome != Outcome::Pending);
    assert!(finished);
    Ok(())
}

/// Keep-alive upstream: sequential requests for one district share one connection to Clever
/// instead of a TCP and TLS handshake each.
#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() -> Result<()> {
    let s = ready(&[]).await?;
    // The first opens the connection the others reuse (or reuses the refresher's).
    assert_eq!(get(&s, SCHOOLS).await?.status, 200);
    let before = s.fake.accepted_connections();
    const N: u64 = 10;
    for _ in 0..N {
        let reply = get(&s, SCHOOLS).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let opened = s.fake.accepted_connections() - before;
    // One more at most: background token traffic overlapping a request needs its own.
    assert!(
        opened <= 1,
        "{N} sequential gateway requests opened {opened} upstream connections"
    );
    Ok(())
}

/// SIGTERM while gateway requests wait on Clever, served by the gateway's own threads: each is
/// answered whole before the host exits, and it exits cleanly.
#[tokio::test]
async fn requests_in_flight_at_sigterm_are_answered_before_the_host_exits() -> Result<()> {
    const CALLERS: usize = 4;
    let fake = FakeClever::start(two_districts()).await?;
    let s = Scenario::launch_with(fake, &[], &["--gateway-threads", "2"]).await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    let delay = Duration::from_millis(700);
    s.fake.set_persistent_fault(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        Fault::Delay(delay),
    );
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let url = s.host.gateway_url(SCHOOLS);
            tokio::spawn(async move { http_client::get(&url).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while data_requests(&s.fake, "d-alpha").len() < CALLERS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Clever saw {} of {CALLERS} requests",
            data_requests(&s.fake, "d-alpha").len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Scenario { fake: _fake, host } = s;
    let output = host.output.clone();
    let signalled = Instant::now();
    let status = host.terminate().await?;
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        output.text()
    );
    // The exit waited for Clever's delayed answers (bounded: the drain is 10 s by default).
    let waited = signalled.elapsed();
    assert!(
        waited >= delay / 2 && waited < Duration::from_secs(8),
        "exited {waited:?} after SIGTERM"
    );
    for caller in callers {
        let reply = caller.await??;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_source(&reply, "clever");
        assert_eq!(reply.json()?["tokenDistrict"], "d-alpha");
    }
    assert!(output.text().contains("\"stopped\""), "{}", output.text());
    Ok(())
}

/// A response the caller stopped reading half-way leaves its connection unusable: the next
/// requests get their own answers whole, never the rest of the abandoned body.
#[tokio::test]
async fn a_body_abandoned_half_way_never_leaks_into_the_next_answer() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = ready(&[]).await?;
    let addr = s.host.gateway_addr.context("gateway")?;
    let mut caller = tokio::net::TcpStream::connect(addr).await?;
    caller
        .write_all(b"GET /clever/d-alpha/v3.0/bytes/8000000 HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await?;
    let mut first = vec![0u8; 64 * 1024];
    let n = caller.read(&mut first).await?;
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n.min(200)])
    );
    drop(caller);
    for _ in 0..5 {
        let reply = get(&s, SCHOOLS).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()?["tokenDistrict"], "d-alpha");
    }
    let beta = get(&s, "/clever/d-beta/v3.0/districts/d-beta/schools").await?;
    assert_eq!(beta.json()?["tokenDistrict"], "d-beta");
    Ok(())
}
