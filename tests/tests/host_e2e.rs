//! The real host running the real component, over real HTTP on loopback.

use clever_auth_tests::host_process::{HostOptions, HostProcess};
use clever_auth_tests::http_client::{get, request};
use clever_auth_tests::scenario::wait_health;
use std::time::Duration;

const HEALTH: &str = "/health/clever-auth";

#[tokio::test]
async fn health_without_credentials_is_a_clear_503_fail() -> anyhow::Result<()> {
    let host = HostProcess::start(HostOptions::default()).await?;
    let reply = get(&host.url(HEALTH)).await?;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/health+json")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json()?;
    assert_eq!(body["status"], "fail");
    assert_eq!(body["lastSuccessfulAuth"], serde_json::Value::Null);
    assert_eq!(body["error"]["code"], "credentials_missing");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("clever_client_secret"));
    assert!(body["error"]["at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(body["checks"]["clever:credentials"][0]["status"], "fail");
    host.terminate().await?;
    Ok(())
}

#[tokio::test]
async fn dev_credentials_are_seen_and_never_echoed() -> anyhow::Result<()> {
    let canary = "canary-secret-3f9a1c";
    let host = HostProcess::start(
        HostOptions::default()
            .arg("--secrets")
            .arg("env")
            .env("CLEVER_CLIENT_ID", "canary-id-77")
            .env("CLEVER_CLIENT_SECRET", canary)
            // A closed loopback port: the attempt fails fast and nothing leaves the machine.
            .env("CLEVER_TOKEN_URL", "http://127.0.0.1:9/oauth/tokens")
            .env("CLEVER_API_BASE_URL", "http://127.0.0.1:9"),
    )
    .await?;
    // Health is served at once and the secrets poller reads the variables just after: a
    // first answer may still say "waiting", so wait (bounded) for the credentials check.
    let seen = wait_health(&host, Duration::from_secs(10), |h| {
        h.body["checks"]["clever:credentials"][0]["status"] == "pass"
    })
    .await?;
    // Credentials alone are not a token: still fail, for the right reason.
    assert_eq!(seen.status, 503);
    assert_eq!(
        seen.body["error"]["code"], "no_valid_token",
        "{}",
        seen.body
    );
    let output = host.output.clone();
    host.terminate().await?;
    let logs = output.text();
    assert!(
        logs.contains("DEVELOPMENT secrets provider"),
        "start-up warning missing:\n{logs}"
    );
    assert!(
        !logs.contains(canary) && !seen.body.to_string().contains(canary),
        "secret leaked"
    );
    Ok(())
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() -> anyhow::Result<()> {
    let host = HostProcess::start(HostOptions::default()).await?;
    for path in ["/", "/other", "/health", "/health/clever-auth/extra"] {
        let reply = get(&host.url(path)).await?;
        assert_eq!(reply.status, 404, "{path}");
    }
    let reply = request("POST", &host.url(HEALTH)).await?;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    let head = request("HEAD", &host.url(HEALTH)).await?;
    assert_eq!(head.status, 503);
    assert!(head.body.is_empty());
    host.terminate().await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_setting_is_named_in_health_and_the_host_keeps_serving() -> anyhow::Result<()> {
    let host = HostProcess::start(
        HostOptions::default()
            .env("CLEVER_GRANT", "password")
            .env("CLEVER_RETRY_MAX", "many"),
    )
    .await?;
    for _ in 0..2 {
        let reply = get(&host.url(HEALTH)).await?;
        assert_eq!(reply.status, 503);
        let body = reply.json()?;
        assert_eq!(body["error"]["code"], "settings_invalid");
        let output = body["checks"]["clever:settings"][0]["output"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            output.contains("clever_grant") && output.contains("clever_retry_max"),
            "{output}"
        );
    }
    host.terminate().await?;
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() -> anyhow::Result<()> {
    let host = HostProcess::start(HostOptions::default()).await?;
    assert_eq!(get(&host.url(HEALTH)).await?.status, 503);
    let output = host.output.clone();
    let status = host.terminate().await?;
    assert!(status.success(), "exit status {status:?}");
    assert!(output.text().contains("\"stopped\""), "{}", output.text());
    Ok(())
}

#[tokio::test]
async fn port_comes_from_the_app_service_port_variable() -> anyhow::Result<()> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let opts = HostOptions {
        no_listen_flag: true,
        ..Default::default()
    }
    .env("WEBSITES_PORT", &port.to_string());
    let host = HostProcess::start(opts).await?;
    assert_eq!(host.addr.port(), port);
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}{HEALTH}"))
            .await?
            .status,
        503
    );
    host.terminate().await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_component_is_a_clear_start_up_error() -> anyhow::Result<()> {
    let (status, text) = HostProcess::run_to_exit(
        HostOptions::default()
            .arg("--component")
            .arg("/nonexistent/x.wasm"),
    )
    .await?;
    assert!(!status.success());
    assert!(
        text.contains("cannot read the component file /nonexistent/x.wasm"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_corrupt_component_is_a_clear_start_up_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("corrupt.wasm");
    std::fs::write(&path, b"\0asm\x0d\0\x01\0 definitely not a component")?;
    let path = path.to_string_lossy().into_owned();
    let (status, text) =
        HostProcess::run_to_exit(HostOptions::default().arg("--component").arg(&path)).await?;
    assert!(!status.success());
    assert!(
        text.contains("is not a valid WebAssembly component"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_busy_port_is_a_clear_start_up_error() -> anyhow::Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let opts = HostOptions {
        no_listen_flag: true,
        ..Default::default()
    }
    .arg("--listen")
    .arg(&addr);
    let (status, text) = HostProcess::run_to_exit(opts).await?;
    assert!(!status.success());
    assert!(text.contains("already in use"), "{text}");
    Ok(())
}
