//! Application Insights end to end: the real host and component against the fake Clever, exporting
//! to the fake ingestion endpoint (HTTPS, test CA through `--extra-ca`) with short intervals.

use clever_auth_tests::azure_scenario::{AzureOptions, AzureScenario};
use clever_auth_tests::fake_appinsights::{summary, FakeAppInsights};
use clever_auth_tests::fake_clever::FakeClever;
use clever_auth_tests::scenario::{two_districts, Scenario, HEALTH};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// The host against `fake`, exporting to `ai` every `interval_ms` (production intervals when
/// `None`).
async fn launch(
    fake: FakeClever,
    ai: &FakeAppInsights,
    dir: &tempfile::TempDir,
    interval_ms: Option<&str>,
) -> anyhow::Result<Scenario> {
    let ca = ai.write_ca_pem(dir.path())?;
    let ca = ca.to_string_lossy().to_string();
    let cs = ai.connection_string();
    let mut env = vec![("APPLICATIONINSIGHTS_CONNECTION_STRING", cs.as_str())];
    if let Some(ms) = interval_ms {
        env.push(("CLEVER_AUTH_TELEMETRY_INTERVAL_MS", ms));
    }
    Scenario::launch_with(fake, &env, &["--extra-ca", &ca]).await
}

fn data(e: &Value) -> &Value {
    &e["data"]["baseData"]
}

fn of_kind<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| FakeAppInsights::kind(e) == Some(kind))
        .collect()
}

fn metric_points<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    of_kind(all, "Metric")
        .into_iter()
        .filter(|e| data(e)["metrics"][0]["name"] == name)
        .collect()
}

fn metric_sum(all: &[Value], name: &str) -> f64 {
    metric_points(all, name)
        .iter()
        .filter_map(|e| data(e)["metrics"][0]["value"].as_f64())
        .sum()
}

fn health_request(e: &&Value) -> bool {
    data(e)["name"] == "GET /health/clever-auth"
}

fn token_dependency(e: &&Value) -> bool {
    data(e)["name"] == "GET /oauth/tokens"
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_dependencies_logs_metrics_and_alerts_reach_application_insights(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let ai = FakeAppInsights::start().await?;
    let dir = tempfile::tempdir()?;
    let fake = FakeClever::start(two_districts()).await?;
    // Clever serving another version than configured: a warn, and an `api_version_mismatch`
    // alert (error level).
    fake.set_served_version(Some("v3.1"));
    let clever_port = fake.addr().port();
    let s = launch(fake, &ai, &dir, Some("200")).await?;
    let h = s.wait_status("warn", WAIT).await?;
    assert_eq!(h.status, 200);
    s.health().await?;

    let all = ai
        .wait_for(WAIT, "every kind of telemetry", |all| {
            of_kind(all, "Request")
                .iter()
                .any(|e| health_request(e) && data(e)["responseCode"] == "200")
                && of_kind(all, "RemoteDependency")
                    .iter()
                    .any(token_dependency)
                && !of_kind(all, "Message").is_empty()
                && !of_kind(all, "Exception").is_empty()
                && !of_kind(all, "Event").is_empty()
                && metric_sum(all, "clever_auth.tokens.acquired") >= 1.0
                && !metric_points(all, "clever_auth.token.seconds_to_expiry").is_empty()
                && !metric_points(all, "clever_auth.health.duration_ms").is_empty()
        })
        .await?;
    eprintln!(
        "all kinds exported {} ms after start; {} envelopes in {} uploads",
        started.elapsed().as_millis(),
        all.len(),
        ai.requests().len()
    );
    for kind in [
        "Request",
        "RemoteDependency",
        "Message",
        "Exception",
        "Event",
        "Metric",
    ] {
        if let Some(e) = of_kind(&all, kind).first() {
            eprintln!("example {kind}: {e}");
        }
    }

    // Every envelope carries the key and the cloud role.
    for e in &all {
        assert_eq!(
            e["iKey"],
            "00000000-0000-0000-0000-000000000000",
            "{}",
            summary(e)
        );
        assert_eq!(e["tags"]["ai.cloud.role"], "clever-auth", "{e}");
    }

    // The first answers (before the first token) may be 503s; the later ones are 200.
    let request = of_kind(&all, "Request")
        .into_iter()
        .find(|e| health_request(e) && data(e)["responseCode"] == "200")
        .expect("a 200 health request");
    let d = data(request);
    assert_eq!(d["responseCode"], "200");
    assert_eq!(d["success"], true);
    assert!(
        d["duration"].as_str().is_some_and(|s| s.contains(':')),
        "{d}"
    );
    assert_eq!(d["properties"]["http.request.method"], "GET");
    assert_eq!(d["properties"]["http.route"], "/health/clever-auth");

    let dependencies = of_kind(&all, "RemoteDependency");
    let token_call = dependencies
        .iter()
        .copied()
        .find(token_dependency)
        .expect("token dependency");
    let d = data(token_call);
    assert_eq!(d["target"], format!("127.0.0.1:{clever_port}"));
    assert_eq!(d["type"], "HTTP");
    assert_eq!(d["resultCode"], "200");
    assert_eq!(d["success"], true);
    assert_eq!(d["properties"]["peer.service"], "clever");
    // The probes of both districts are dependencies too.
    assert!(
        dependencies
            .iter()
            .any(|e| data(e)["name"] == "GET /v3.0/districts/d-alpha"),
        "{:?}",
        dependencies.iter().map(|e| summary(e)).collect::<Vec<_>>()
    );
    // Never the query (the listing's `owner_type=district`) nor a header.
    for e in &dependencies {
        let text = e.to_string();
        assert!(!text.contains("owner_type"), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("authorization"),
            "{text}"
        );
        assert!(data(e)["data"].is_null(), "{text}");
    }

    let messages = of_kind(&all, "Message");
    let message = |m: &str| messages.iter().find(|e| data(e)["message"] == m).copied();
    let listening = message("listening").expect("the host's `listening` record");
    // Severity levels: 0 verbose, 1 information, 2 warning, 3 error, 4 critical.
    assert_eq!(data(listening)["severityLevel"], 1);
    let acquired = message("tokens_acquired").expect("the component's tokens_acquired record");
    assert_eq!(data(acquired)["properties"]["event"], "tokens_acquired");
    assert_eq!(
        data(acquired)["properties"]["target"],
        "clever_auth_component"
    );
    // Debug records (the host's per-request line) stay out at the default level.
    assert!(message("request").is_none());

    let event = of_kind(&all, "Event")
        .into_iter()
        .find(|e| data(e)["name"] == "api_version_mismatch")
        .expect("the api_version_mismatch alert as a custom Event");
    // Raised once per incident by the component's alert evaluation.
    assert_eq!(data(event)["properties"]["event"], "alert_raised");
    assert_eq!(data(event)["properties"]["level"], "ERROR");

    let exception = of_kind(&all, "Exception")
        .into_iter()
        .find(|e| data(e)["exceptions"][0]["typeName"] == "api_version_problem")
        .expect("the error-level alert as an Exception");
    assert_eq!(data(exception)["severityLevel"], 3);

    let expiry = metric_points(&all, "clever_auth.token.seconds_to_expiry");
    let alpha = expiry
        .iter()
        .find(|e| data(e)["properties"]["district"] == "d-alpha")
        .expect("seconds to expiry of d-alpha");
    let secs = data(alpha)["metrics"][0]["value"].as_f64().unwrap_or(-1.0);
    assert!(secs > 3000.0 && secs <= 3600.0, "{secs}");
    assert!(metric_sum(&all, "clever_auth.clever.api_version_problems") >= 1.0);

    // Nothing secret left the process.
    let text = serde_json::to_string(&all)?;
    assert!(
        !text.contains(&s.fake.client_secret()),
        "client secret exported"
    );
    for id in ["d-alpha", "d-beta"] {
        let token = s.fake.district_token(id).expect("token");
        assert!(!text.contains(&token), "token of {id} exported");
    }
    // Every upload was gzip on /v2/track.
    assert!(ai
        .requests()
        .iter()
        .all(|r| r.gzip && r.path == "/v2/track" && r.status == 200));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unavailable_endpoint_never_affects_health_or_tokens() -> anyhow::Result<()> {
    let ai = FakeAppInsights::start().await?;
    ai.set_status(Some(503));
    let dir = tempfile::tempdir()?;
    let fake = FakeClever::start(two_districts()).await?;
    let s = launch(fake, &ai, &dir, Some("100")).await?;
    s.wait_status("pass", WAIT).await?;
    // The exporter keeps trying (and retrying) against the 503s.
    ai.wait_for_uploads(3, WAIT).await?;
    assert!(ai.requests().iter().all(|r| r.status == 503));

    // Closed: connections refused and open ones reset.
    ai.set_down(true).await?;
    let until = Instant::now() + Duration::from_secs(2);
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let t = Instant::now();
        let h = s.health().await?;
        slowest = slowest.max(t.elapsed());
        assert_eq!(h.status, 200, "{}", h.body);
        assert_eq!(h.body["status"], "pass", "{}", h.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("slowest health answer while telemetry was down: {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");

    // Back up: telemetry resumes without a restart. Only what arrives from here on counts:
    // the fake forgets the outage, and the log is searched from this line on.
    let printed = s.host.output.lines().len();
    ai.clear();
    ai.set_status(None);
    ai.set_down(false).await?;
    s.host
        .output
        .wait_for_line(printed, WAIT, "saying uploads recovered", |l| {
            l.contains("Application Insights uploads work again")
        })
        .await?;
    // New data flows, not only what was queued during the outage: the only HEAD request of
    // the test, made now, arrives.
    let head = clever_auth_tests::http_client::request("HEAD", &s.host.url(HEALTH)).await?;
    assert_eq!(head.status, 200);
    ai.wait_for(WAIT, "the HEAD request made after the outage", |all| {
        of_kind(all, "Request")
            .iter()
            .any(|e| data(e)["name"] == "HEAD /health/clever-auth")
    })
    .await?;
    // Said once when it started failing and once when it recovered, not at every retry.
    let logs = s.logs();
    assert_eq!(
        logs.matches("Application Insights upload failed").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("Application Insights uploads work again")
            .count(),
        1,
        "{logs}"
    );

    // Down again at SIGTERM: the flush gives up after its bound, the host still exits cleanly.
    ai.set_status(Some(503));
    s.health().await?;
    let Scenario { fake: _fake, host } = s;
    let stopping = Instant::now();
    let status = host.terminate().await?;
    eprintln!(
        "stopped {} ms after SIGTERM with the endpoint answering 503",
        stopping.elapsed().as_millis()
    );
    assert!(status.success(), "{status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(8));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_what_is_queued() -> anyhow::Result<()> {
    let ai = FakeAppInsights::start().await?;
    let dir = tempfile::tempdir()?;
    let fake = FakeClever::start(two_districts()).await?;
    // Production intervals: nothing would leave for 5 s (metrics: 60 s) but for the flush.
    let s = launch(fake, &ai, &dir, None).await?;
    s.wait_status("pass", WAIT).await?;
    let Scenario { fake: _fake, host } = s;
    let stopping = Instant::now();
    let status = host.terminate().await?;
    eprintln!(
        "stopped {} ms after SIGTERM",
        stopping.elapsed().as_millis()
    );
    assert!(status.success(), "{status:?}");
    let all = ai.envelopes();
    assert!(
        of_kind(&all, "Request").iter().any(health_request),
        "{:?}",
        all.iter().map(summary).collect::<Vec<_>>()
    );
    assert!(metric_sum(&all, "clever_auth.tokens.acquired") >= 1.0);
    assert!(of_kind(&all, "Message")
        .iter()
        .any(|e| data(e)["message"] == "shutdown requested"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_connection_string_is_a_warning_not_a_crash() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    let s = Scenario::launch(
        fake,
        &[(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "this-is-not-a-connection-string",
        )],
    )
    .await?;
    let h = s.wait_status("pass", WAIT).await?;
    assert_eq!(h.status, 200);
    let warning = s
        .host
        .output
        .lines()
        .into_iter()
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("Application Insights telemetry is OFF"))
        })
        .expect("a start-up warning");
    assert_eq!(warning["level"], "WARN");
    assert!(
        warning["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a valid connection string")),
        "{warning}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn key_vault_and_identity_calls_are_dependencies_with_a_latency_histogram(
) -> anyhow::Result<()> {
    let ai = FakeAppInsights::start().await?;
    let s = AzureScenario::start(AzureOptions {
        env: vec![
            (
                "APPLICATIONINSIGHTS_CONNECTION_STRING".into(),
                ai.connection_string(),
            ),
            ("CLEVER_AUTH_TELEMETRY_INTERVAL_MS".into(), "200".into()),
        ],
        extra_ca_pems: vec![ai.ca_pem().to_string()],
        ..Default::default()
    })
    .await?;
    s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;
    let dependency = |all: &[Value], service: &str, code: &str| {
        of_kind(all, "RemoteDependency").into_iter().any(|e| {
            data(e)["properties"]["peer.service"] == service && data(e)["resultCode"] == code
        })
    };
    let all = ai
        .wait_for(WAIT, "Key Vault and identity dependencies", |all| {
            // The SDK's challenge round trip (401), then the secret (200); the token (200).
            dependency(all, "keyvault", "401")
                && dependency(all, "keyvault", "200")
                && dependency(all, "managed_identity", "200")
                && !metric_points(all, "clever_auth.keyvault.fetch_duration_ms").is_empty()
        })
        .await?;
    let vault_port = s.vault.addr().port();
    let secret = of_kind(&all, "RemoteDependency")
        .into_iter()
        .find(|e| {
            data(e)["properties"]["peer.service"] == "keyvault" && data(e)["resultCode"] == "200"
        })
        .expect("a vault dependency");
    let d = data(secret);
    assert_eq!(d["target"], format!("127.0.0.1:{vault_port}"));
    assert!(
        d["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("GET /secrets/clever-client-")),
        "{d}"
    );
    let identity = of_kind(&all, "RemoteDependency")
        .into_iter()
        .find(|e| data(e)["properties"]["peer.service"] == "managed_identity")
        .expect("an identity dependency");
    assert_eq!(data(identity)["name"], "GET /msi/token");
    let fetches = metric_points(&all, "clever_auth.keyvault.fetch_duration_ms");
    let counted: f64 = fetches
        .iter()
        .filter_map(|e| data(e)["metrics"][0]["count"].as_f64())
        .sum();
    assert!(counted >= 2.0, "{fetches:?}");
    assert!(fetches
        .iter()
        .all(|e| data(e)["properties"]["outcome"] == "success"));
    // Neither the identity header, nor the query, nor a secret value left the process.
    let text = serde_json::to_string(&all)?;
    assert!(!text.contains(&s.identity.header_secret()));
    assert!(!text.contains("api-version"));
    assert!(!text.contains(&s.clever.client_secret()));
    Ok(())
}
