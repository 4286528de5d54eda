//! Key Vault through the managed identity, end to end: start without the vault, rotation
//! without a restart, re-reading on a Clever 401, a broken identity endpoint, and audit events
//! that never carry a value.

use clever_auth_tests::azure_scenario::{AzureOptions, AzureScenario, SECRET_SECRET};
use clever_auth_tests::fake_azure::Fault;
use clever_auth_tests::fake_clever::Route;
use clever_auth_tests::http_client;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn secrets_check(h: &clever_auth_tests::scenario::Health) -> &serde_json::Value {
    &h.body["checks"]["secrets:keyvault"][0]
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_down_at_start_then_recovers_without_a_restart() -> anyhow::Result<()> {
    let s = AzureScenario::start(AzureOptions {
        vault_down: true,
        ..Default::default()
    })
    .await?;
    // The host is up and says why it has no token.
    let h = s
        .wait_health(WAIT, |h| secrets_check(h)["status"] == "fail")
        .await?;
    assert_eq!(h.status, 503);
    assert_eq!(h.body["error"]["code"], "vault_unreachable");
    assert!(
        h.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("secrets provider")),
        "{}",
        h.body
    );
    assert_eq!(s.clever.request_count(Route::TokenList), 0);

    let up_at = Instant::now();
    s.vault.set_down(false).await?;
    let h = s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;
    let recovered = up_at.elapsed();
    eprintln!("vault up -> health pass in {} ms", recovered.as_millis());
    assert!(recovered < Duration::from_secs(10), "took {recovered:?}");
    assert_eq!(secrets_check(&h)["status"], "pass");
    let logs = s.host.output.text();
    assert!(
        !logs.contains(&s.clever.client_secret()),
        "secret value in the logs"
    );
    assert!(!logs.contains("panicked"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_used_without_a_gap_in_health() -> anyhow::Result<()> {
    let s = AzureScenario::start(AzureOptions {
        env: vec![("CLEVER_AUTH_SECRETS_REFRESH_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;
    let listings_before = s.clever.request_count(Route::TokenList);

    let new_secret = "rotated-secret-7d1f";
    // The start-up read is audited as a change too: only lines from here on count.
    let printed = s.host.output.lines().len();
    s.clever
        .set_client_credentials(s.clever.client_id(), new_secret);
    s.vault.set_secret(SECRET_SECRET, new_secret);
    // Health must never drop to fail while the new secret is picked up.
    let deadline = Instant::now() + WAIT;
    loop {
        let h = s.health().await?;
        assert_ne!(h.status, 503, "health dropped during rotation: {}", h.body);
        let listings = s.clever.requests_for(Route::TokenList);
        if listings.len() > listings_before && listings.last().is_some_and(|r| r.auth.valid) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the rotated secret was never used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The audit line was printed before the listing, but the test reads the host's stdout
    // through a pipe that can lag behind what the fake saw: wait for it.
    s.host
        .output
        .wait_for_line(printed, WAIT, "auditing the rotated secret's change", |l| {
            l.contains("\"changed\":true")
                && l.contains(&format!("\"secret_name\":\"{SECRET_SECRET}\""))
        })
        .await?;
    let logs = s.host.output.text();
    assert!(!logs.contains(new_secret));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clever_401_makes_the_host_reread_the_secrets() -> anyhow::Result<()> {
    let s = AzureScenario::start(AzureOptions {
        // Short token lifetime: the next listing comes soon, with the old secret.
        env: vec![("CLEVER_TOKEN_LIFETIME_SECS".into(), "2".into())],
        ..Default::default()
    })
    .await?;
    s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;
    let vault_reads = s.vault.requests_for(SECRET_SECRET).len();
    // Rotated in Clever and the vault; the host learns of it only through Clever's 401.
    s.clever
        .set_client_credentials(s.clever.client_id(), "after-401-secret");
    s.vault.set_secret(SECRET_SECRET, "after-401-secret");
    let rejected = s
        .clever
        .wait_for_log(WAIT, |log| {
            log.iter()
                .any(|r| r.route == Route::TokenList && r.status() == Some(401))
        })
        .await?;
    let rejected_at = rejected
        .iter()
        .find(|r| r.status() == Some(401))
        .map(|r| r.at)
        .unwrap_or_else(Instant::now);
    let log = s
        .vault
        .wait_for_log(WAIT, |log| {
            log.iter()
                .skip(vault_reads)
                .any(|r| r.secret.as_deref() == Some(SECRET_SECRET) && r.at > rejected_at)
        })
        .await?;
    let reread = log
        .iter()
        .find(|r| r.secret.as_deref() == Some(SECRET_SECRET) && r.at > rejected_at);
    assert!(
        reread.is_some_and(|r| r.at.duration_since(rejected_at) < Duration::from_secs(5)),
        "no prompt re-read after the 401"
    );
    assert!(s.host.output.text().contains("re-reading them"));
    let h = s
        .wait_health(WAIT, |h| {
            h.body["status"] == "pass"
                && h.body["checks"]["clever:credentials"][0]["output"] == "accepted by Clever"
        })
        .await?;
    assert_eq!(h.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_identity_header_is_a_clear_error() -> anyhow::Result<()> {
    let s = AzureScenario::start(AzureOptions {
        identity_header: Some("not-the-header".into()),
        ..Default::default()
    })
    .await?;
    let h = s
        .wait_health(WAIT, |h| secrets_check(h)["status"] == "fail")
        .await?;
    assert_eq!(h.status, 503);
    let output = secrets_check(&h)["output"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        output.contains("identity") || output.contains("credential"),
        "{output}"
    );
    assert!(!s.host.output.text().contains("not-the-header"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_vault_access_is_audited_without_its_value() -> anyhow::Result<()> {
    let s = AzureScenario::start(AzureOptions::default()).await?;
    s.wait_health(WAIT, |h| h.body["status"] == "pass").await?;
    let logs = s.host.output.text();
    let audit: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "secret_access")
        .collect();
    assert!(audit.len() >= 2, "{logs}");
    for event in &audit {
        assert_eq!(event["outcome"], "success");
        assert_eq!(event["vault"], "127.0.0.1", "the host of KEYVAULT_URL");
        assert!(
            event["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{event}"
        );
        assert!(event["duration_ms"].is_number());
        assert_eq!(event["status"], 200);
        assert!(event["client_request_id"].is_string(), "{event}");
        assert!(
            event["secret_name"].is_string() && event["changed"].is_boolean(),
            "{event}"
        );
    }
    assert!(!logs.contains(&s.clever.client_secret()));
    Ok(())
}

/// Starts the production wiring with `opts` and checks that the public health answer names the
/// cause with its stable code and fixed message, reveals nothing of the vault, and that the
/// loopback detail carries the specifics (`detail_says`, when given).
async fn the_public_answer_names(
    opts: AzureOptions,
    code: &str,
    message: &str,
    detail_says: Option<&str>,
) -> anyhow::Result<()> {
    let s = AzureScenario::start(AzureOptions {
        public_health: true,
        ..opts
    })
    .await?;
    let h = s
        .wait_health(WAIT, |h| h.body["error"]["code"] == code)
        .await?;
    assert_eq!(h.status, 503, "{}", h.body);
    assert_eq!(h.body["status"], "fail");
    assert_eq!(h.body["error"]["message"], message, "{}", h.body);
    let public = h.body.to_string();
    for internal in [s.vault.vault_host(), SECRET_SECRET, "secrets provider"] {
        assert!(!public.contains(internal), "{internal} in {public}");
    }
    let detail = http_client::get(&s.host.gateway_url(HEALTH))
        .await?
        .json()?;
    assert_eq!(detail["error"]["code"], code, "{detail}");
    if let Some(words) = detail_says {
        let text = detail["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(words), "detail lacks {words:?}: {text}");
    }
    Ok(())
}

const HEALTH: &str = "/health/clever-auth";

#[tokio::test(flavor = "multi_thread")]
async fn an_absent_secret_is_named_as_absent() -> anyhow::Result<()> {
    the_public_answer_names(
        AzureOptions {
            omit_secret: Some(SECRET_SECRET),
            ..Default::default()
        },
        "secret_not_found",
        "a Clever client credential is absent from the secrets store",
        Some(SECRET_SECRET),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vault_that_refuses_the_identity_is_named_as_refusing() -> anyhow::Result<()> {
    the_public_answer_names(
        AzureOptions {
            vault_fault: Some(Fault::Forbidden),
            ..Default::default()
        },
        "vault_forbidden",
        "the secrets store refused this service's identity",
        Some("Forbidden"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_vault_is_named_as_unreachable() -> anyhow::Result<()> {
    the_public_answer_names(
        AzureOptions {
            vault_down: true,
            ..Default::default()
        },
        "vault_unreachable",
        "the secrets store could not be reached",
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_identity_endpoint_is_named_as_such() -> anyhow::Result<()> {
    the_public_answer_names(
        AzureOptions {
            identity_fault: Some(Fault::Status(500)),
            ..Default::default()
        },
        "identity_unavailable",
        "the managed identity endpoint issued no token",
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_setting_is_named_as_invalid() -> anyhow::Result<()> {
    the_public_answer_names(
        AzureOptions {
            env: vec![("CLEVER_RETRY_MAX".into(), "many".into())],
            ..Default::default()
        },
        "settings_invalid",
        "a setting has an unusable value",
        Some("clever_retry_max"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_clever_refuses_are_named_as_refused() -> anyhow::Result<()> {
    the_public_answer_names(
        AzureOptions {
            vault_client_secret: Some("not-the-secret-clever-knows".into()),
            ..Default::default()
        },
        "bad_credentials",
        "Clever rejected the client credentials",
        None,
    )
    .await
}
