//! The host's outbound policy, end to end: https only (plain http to loopback only when
//! allowed), TLS 1.2 as the floor, an extra CA for private CAs, and clear start-up errors.

use clever_auth_tests::fake_clever::{FakeClever, FakeCleverConfig, Route};
use clever_auth_tests::host_process::{HostOptions, HostProcess};
use clever_auth_tests::scenario::{two_districts, Scenario};
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn error_message(h: &clever_auth_tests::scenario::Health) -> String {
    h.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_refused_without_the_loopback_allowance() -> anyhow::Result<()> {
    let fake = FakeClever::start(two_districts()).await?;
    let s = Scenario::launch_opts(fake, &[], &[], false).await?;
    let h = s
        .wait_health(WAIT, |h| error_message(h).contains("outbound policy"))
        .await?;
    assert_eq!(h.status, 503);
    assert!(
        error_message(&h).contains("plain http to 127.0.0.1 refused"),
        "{}",
        h.body
    );
    assert_eq!(s.fake.requests().len(), 0, "nothing may reach the server");
    s.wait_log("outbound request refused").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_extra_ca_works_and_without_it_fails() -> anyhow::Result<()> {
    let config = FakeCleverConfig {
        tls: true,
        ..two_districts()
    };
    let fake = FakeClever::start(config).await?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca_pem().unwrap_or_default())?;
    let ca = ca.to_string_lossy().into_owned();

    let s = Scenario::launch_opts(fake.clone(), &[], &["--extra-ca", &ca], false).await?;
    s.wait_status("pass", WAIT).await?;
    drop(s);

    let untrusted = FakeClever::start(FakeCleverConfig {
        tls: true,
        ..two_districts()
    })
    .await?;
    let s = Scenario::launch_opts(untrusted, &[], &[], false).await?;
    let h = s
        .wait_health(WAIT, |h| error_message(h).contains("TLS handshake"))
        .await?;
    assert_eq!(h.status, 503);
    assert!(
        error_message(&h).to_lowercase().contains("certificate"),
        "{}",
        h.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_offering_only_tls_1_1_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
            "-www",
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .arg("-cert")
        .arg(&cert_path)
        .arg("-key")
        .arg(&key_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // Wait until it accepts connections.
    let deadline = std::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "openssl s_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("https://127.0.0.1:{port}");
    let token_url = format!("{url}/oauth/tokens");
    let cert_arg = cert_path.to_string_lossy().into_owned();
    let opts = HostOptions::default()
        .args(&["--secrets", "env", "--extra-ca", &cert_arg])
        .env("CLEVER_CLIENT_ID", "id")
        .env("CLEVER_CLIENT_SECRET", "secret")
        .env("CLEVER_TOKEN_URL", &token_url)
        .env("CLEVER_API_BASE_URL", &url)
        .env("CLEVER_RETRY_MAX", "0");
    let host = HostProcess::start(opts).await?;
    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        let reply = clever_auth_tests::http_client::get(&host.url("/health/clever-auth")).await?;
        let body = reply.json()?;
        if body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("TLS handshake"))
        {
            break body;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no TLS error in health: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        message.contains("version") || message.contains("protocol"),
        "{message}"
    );
    server.start_kill()?;
    Ok(())
}

#[tokio::test]
async fn an_unknown_extra_ca_path_is_a_start_up_error() -> anyhow::Result<()> {
    let (status, text) = HostProcess::run_to_exit(
        HostOptions::default().args(&["--extra-ca", "/nonexistent/ca.pem"]),
    )
    .await?;
    assert!(!status.success());
    assert!(
        text.contains("cannot read the extra CA bundle /nonexistent/ca.pem"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn secret_values_in_app_settings_are_refused() -> anyhow::Result<()> {
    let (status, text) =
        HostProcess::run_to_exit(HostOptions::default().env("CLEVER_CLIENT_SECRET", "oops"))
            .await?;
    assert!(!status.success());
    assert!(
        text.contains("CLEVER_CLIENT_SECRET is set in the environment"),
        "{text}"
    );
    assert!(!text.contains("oops"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_is_the_only_401_that_rereads_secrets() -> anyhow::Result<()> {
    // With the env provider a 401 from the token endpoint triggers a re-read, visible in logs.
    let s = Scenario::start(two_districts(), &[("CLEVER_CLIENT_SECRET", "wrong")]).await?;
    s.fake.wait_for_outcomes(Route::TokenList, 1, WAIT).await?;
    let deadline = std::time::Instant::now() + WAIT;
    while !s.logs().contains("re-reading them") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no re-read logged:\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
