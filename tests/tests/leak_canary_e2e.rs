//! Zero credential leaks, tried the hard way: canary credentials (a client secret and tokens
//! with a recognisable prefix) go through the whole fault matrix — transient failures, rate
//! limiting, a server that echoes credentials back in error bodies, malformed bodies, revoked
//! tokens, an API version change, a hanging server, secret rotation and a Key Vault outage,
//! with gateway traffic among them — while health is polled throughout. No canary may appear
//! in the host's stdout or stderr, in any health body or gateway response, or in any telemetry
//! envelope sent to (a local look-alike of) Application
//! Insights; and every one of those incidents must be visible as a structured event.

use base64::Engine as _;
use clever_auth_tests::azure_scenario::{AzureOptions, AzureScenario, SECRET_SECRET};
use clever_auth_tests::fake_appinsights::FakeAppInsights;
use clever_auth_tests::fake_clever::{FakeCleverConfig, Fault, Route};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET_CANARY: &str = "CANARYSECRET";
const TOKEN_CANARY: &str = "CANARYTOKEN";
const WAIT: Duration = Duration::from_secs(20);

fn canary_secret(n: u32) -> String {
    format!("{SECRET_CANARY}-{n}-5f1e0c9a7b3d")
}

fn basic(id: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

/// Parsed JSON log lines of the host (stdout); other lines are skipped.
fn events(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn find<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_canary_escapes_through_the_fault_matrix() -> anyhow::Result<()> {
    let output = std::sync::OnceLock::new();
    let result = fault_matrix(&output).await;
    if result.is_err() {
        // The host's own account of what happened, for the failure report (scrubbed).
        if let Some(o) = output.get() {
            let o: &clever_auth_tests::host_process::Output = o;
            for line in o
                .lines()
                .iter()
                .filter(|l| !l.contains(r#""level":"DEBUG""#))
            {
                eprintln!("host: {line}");
            }
        }
    }
    result
}

async fn fault_matrix(
    output: &std::sync::OnceLock<clever_auth_tests::host_process::Output>,
) -> anyhow::Result<()> {
    let client_id = "canary-client-id".to_string();
    let first_secret = canary_secret(1);
    // Telemetry goes to a local Application Insights look-alike, searched like the logs.
    let ai = FakeAppInsights::start().await?;
    let s = AzureScenario::start(AzureOptions {
        extra_ca_pems: vec![ai.ca_pem().to_string()],
        clever: Some(FakeCleverConfig {
            district_ids: vec!["d-alpha".into(), "d-beta".into()],
            generated_districts: 0,
            client_id: client_id.clone(),
            client_secret: first_secret.clone(),
            token_prefix: TOKEN_CANARY.into(),
            ..Default::default()
        }),
        env: vec![
            // A refresh every 1.5 s, so each scripted fault meets a real acquisition soon.
            ("CLEVER_TOKEN_LIFETIME_SECS".into(), "2".into()),
            ("CLEVER_AUTH_SECRETS_REFRESH_SECS".into(), "1".into()),
            // Alerts without waiting minutes.
            ("CLEVER_ALERT_AUTH_FAILING_SECS".into(), "0".into()),
            ("CLEVER_ALERT_RATE_LIMITED_SECS".into(), "0".into()),
            ("RUST_LOG".into(), "debug".into()),
            (
                "APPLICATIONINSIGHTS_CONNECTION_STRING".into(),
                ai.connection_string(),
            ),
            ("CLEVER_AUTH_TELEMETRY_INTERVAL_MS".into(), "200".into()),
        ],
        ..Default::default()
    })
    .await?;
    let _ = output.set(s.host.output.clone());

    // Health, polled all along; every body is kept for the final search.
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let poller = {
        let bodies = bodies.clone();
        let url = s.host.url("/health/clever-auth");
        tokio::spawn(async move {
            loop {
                if let Ok(reply) = clever_auth_tests::http_client::get(&url).await {
                    if let Ok(mut b) = bodies.lock() {
                        b.push(reply.text());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;
    let token = |id: &str| s.clever.district_token(id).unwrap_or_default();
    let logs = || s.host.output.text();

    // 1. Transient failures, then success.
    s.clever.fail_next(Route::TokenList, 2, 503);
    wait_for("two retries", || {
        find(&events(&logs()), "acquisition_retry").len() >= 2
    })
    .await?;

    // 2. Rate limited.
    s.clever.push_fault(
        Route::TokenList,
        Fault::RateLimited {
            retry_after: None,
            reset_in: Duration::from_secs(1),
        },
    );
    wait_for("a rate_limited event", || {
        !find(&events(&logs()), "rate_limited").is_empty()
    })
    .await?;

    // 3. A server that echoes credentials back: in a JSON error, in plain text, and in a
    //    200 whose body is broken JSON.
    let echo = format!(
        "Authorization: Basic {} secret={} client_secret {} token {} bare {}",
        basic(&client_id, &first_secret),
        first_secret,
        first_secret,
        token("d-alpha"),
        token("d-beta")
    );
    s.clever.push_fault(
        Route::TokenList,
        Fault::Custom {
            status: 500,
            content_type: Some("application/json".into()),
            body: serde_json::json!({ "error": "server_error", "error_description": echo })
                .to_string(),
        },
    );
    s.clever.push_fault(
        Route::TokenList,
        Fault::Custom {
            status: 502,
            content_type: Some("text/plain".into()),
            body: echo.clone(),
        },
    );
    s.clever.push_fault(
        Route::TokenList,
        Fault::Custom {
            status: 200,
            content_type: Some("application/json".into()),
            body: format!(r#"{{"data":[{{"access_token":"{}","#, token("d-alpha")),
        },
    );
    // The faults may join one retry sequence, so the malformed body may end it (failed) or
    // be retried; either way it is reported with its code.
    wait_for("the malformed body to be reported", || {
        let ev = events(&logs());
        find(&ev, "acquisition_retry")
            .iter()
            .chain(find(&ev, "acquisition_failed").iter())
            .any(|e| e["error_code"] == "malformed_response")
    })
    .await?;

    // 4. A revoked token, refused by the data API with the token in the error.
    s.clever.push_fault(
        Route::Data.for_district("d-beta"),
        Fault::Custom {
            status: 401,
            content_type: Some("application/json".into()),
            body: format!(r#"{{"error":"invalid token {}"}}"#, token("d-beta")),
        },
    );
    wait_for("a probe failure", || {
        !find(&events(&logs()), "probe_failed").is_empty()
    })
    .await?;

    // 4b. The gateway: ordinary traffic, a 200 whose body echoes the token the gateway sent
    //     (the component's own echo mask must hide it, before the host's scrubber could),
    //     and a 401 carrying both districts' tokens in its error (dropped, relisted,
    //     replayed: never passed on). Every gateway response is searched like health.
    let gateway_get = |path: &str| {
        let url = s.host.gateway_url(path);
        async move { clever_auth_tests::http_client::get(&url).await }
    };
    let schools = "/clever/d-alpha/v3.0/districts/d-alpha/schools?limit=5";
    let mut gateway_replies = Vec::new();
    for _ in 0..3 {
        let r = gateway_get(schools).await?;
        gateway_replies.push(format!("{:?}\n{}", r.headers, r.text()));
    }
    for (status, echoed) in [
        (200, token("d-alpha")),
        (401, format!("{} and {}", token("d-alpha"), token("d-beta"))),
    ] {
        s.clever.push_fault(
            Route::Data.for_district("d-alpha"),
            Fault::Custom {
                status,
                content_type: Some("application/json".into()),
                body: format!(r#"{{"error":"echo {echoed} and {echoed}"}}"#),
            },
        );
        let r = gateway_get(schools).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        gateway_replies.push(format!("{:?}\n{}", r.headers, r.text()));
    }
    let r = gateway_get("/clever/d-alpha/v3.0/echo/canary").await?;
    gateway_replies.push(format!("{:?}\n{}", r.headers, r.text()));
    wait_for("the gateway's request events", || {
        find(&events(&logs()), "gateway_request").len() >= 6
    })
    .await?;

    // 5. Clever serves another API version than configured.
    s.clever.set_served_version(Some("v3.1"));
    wait_for("the version alert", || {
        find(&events(&logs()), "alert_raised")
            .iter()
            .any(|e| e["alert"] == "api_version_mismatch")
    })
    .await?;
    s.clever.set_served_version(None);

    // 6. A hanging data API (the attempt times out) and an HTML error page.
    s.clever.push_fault(Route::Data, Fault::Hang);
    s.clever.push_fault(Route::TokenList, Fault::Html(502));
    wait_for("the hang to time out", || {
        find(&events(&logs()), "probe_failed")
            .iter()
            .any(|e| e["error_code"] == "timeout")
    })
    .await?;

    // 7. Rotation: Clever accepts only the new secret; Key Vault gets it a moment later.
    let second_secret = canary_secret(2);
    s.clever
        .set_client_credentials(client_id.clone(), second_secret.clone());
    wait_for("the old secret to be refused", || {
        find(&events(&logs()), "acquisition_failed")
            .iter()
            .chain(find(&events(&logs()), "acquisition_retry").iter())
            .any(|e| e["status"] == 401)
    })
    .await?;
    s.vault.set_secret(SECRET_SECRET, &second_secret);
    wait_for("the rotated secret in use", || {
        !find(&events(&logs()), "credentials_changed").is_empty()
    })
    .await?;
    s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;

    // 8. Key Vault outage and recovery.
    s.vault.set_down(true).await?;
    wait_for("a failed vault read", || {
        find(&events(&logs()), "secret_access")
            .iter()
            .any(|e| e["outcome"] != "success")
    })
    .await?;
    s.vault.set_down(false).await?;
    s.wait_health(WAIT, |h| {
        h.body["status"] == "pass" && h.body["checks"]["secrets:keyvault"][0]["status"] == "pass"
    })
    .await?;

    poller.abort();
    let output = s.host.output.clone();
    let exit = s.host.terminate().await?;
    assert!(exit.success(), "host exit: {exit}");
    let stdout_and_stderr = output.text();
    let bodies = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    let health_polls = bodies.len();
    let bodies: Vec<String> = bodies.into_iter().chain(gateway_replies).collect();
    assert!(health_polls > 20, "health was polled {health_polls} times");
    // SIGTERM flushed what was queued; every envelope that arrived is searched.
    let telemetry: Vec<String> = ai.envelopes().iter().map(|e| e.to_string()).collect();
    assert!(
        telemetry.len() > 50,
        "only {} telemetry envelopes arrived",
        telemetry.len()
    );

    // The search: canary prefixes catch every token and secret, even ones the test never saw;
    // the Basic credentials are searched for whole.
    let needles = [
        SECRET_CANARY.to_string(),
        TOKEN_CANARY.to_string(),
        basic(&client_id, &first_secret),
        basic(&client_id, &second_secret),
    ];
    for needle in &needles {
        for line in stdout_and_stderr.lines() {
            assert!(
                !line.contains(needle.as_str()),
                "canary {needle} in host output: {line}"
            );
        }
        for body in &bodies {
            assert!(
                !body.contains(needle.as_str()),
                "canary {needle} in a health or gateway response: {body}"
            );
        }
        for envelope in &telemetry {
            assert!(
                !envelope.contains(needle.as_str()),
                "canary {needle} in telemetry: {envelope}"
            );
        }
    }

    // Not circular: the scrubber above is registered with the very values searched for, so
    // the search proves the scrubber. The component must not need it: the host reports every
    // component line and every health body it had to mask, and there must be none.
    let ev = events(&stdout_and_stderr);
    for needed in ["component_output_scrubbed", "response_scrubbed"] {
        let hits = find(&ev, needed);
        assert!(
            hits.is_empty(),
            "{} component outputs needed the host's scrubber ({needed}): {hits:?}",
            hits.len()
        );
    }

    // What Clever itself echoed back through the gateway (step 4b) is masked by the
    // component (so also under Spin), and said so without the value; the host's streaming
    // scrubber, the backstop, had nothing left to mask.
    let masked = find(&ev, "gateway_echo_masked");
    // The host re-emits fields it has no column for inside `detail`, as JSON.
    let count = |e: &serde_json::Value| {
        e.get("masked").cloned().or_else(|| {
            let detail: serde_json::Value = serde_json::from_str(e["detail"].as_str()?).ok()?;
            detail.get("masked").cloned()
        })
    };
    assert!(
        masked
            .iter()
            .any(|e| e["district"] == "d-alpha" && count(e) == Some(serde_json::json!(2))),
        "the component did not report masking the echoed token: {masked:?}"
    );
    let backstop = find(&ev, "upstream_body_scrubbed");
    assert!(
        backstop.is_empty(),
        "the host's scrubber had to mask an echo the component let through: {backstop:?}"
    );

    // And what happened is visible, with the shared field names.
    let ev = events(&stdout_and_stderr);
    let retry = find(&ev, "acquisition_retry");
    assert!(retry.iter().any(|e| e["status"] == 503
        && e["attempt"].is_u64()
        && e["delay_ms"].is_u64()
        && e["error_code"].is_string()
        && e["operation"] == "token_listing"
        && e["duration_ms"].is_u64()
        && e["source"] == "clever-auth-component"));
    let limited = find(&ev, "rate_limited");
    assert!(
        limited.iter().any(|e| e["delay_ms"].is_u64()),
        "{limited:?}"
    );
    assert!(find(&ev, "probe_failed")
        .iter()
        .any(|e| e["district"] == "d-beta"
            && e["status"] == 401
            && e["error_code"] == "token_revoked"));
    assert!(find(&ev, "secret_access")
        .iter()
        .any(|e| e["changed"] == true && e["duration_ms"].is_number()));
    assert!(!find(&ev, "tokens_acquired").is_empty());
    assert!(find(&ev, "gateway_request")
        .iter()
        .any(|e| e["district"] == "d-alpha" && e["status"] == 200 && e["duration_ms"].is_u64()));
    assert!(
        ev.iter().all(|e| e["event"] != "component_output"),
        "every component line should parse as an event"
    );
    Ok(())
}
