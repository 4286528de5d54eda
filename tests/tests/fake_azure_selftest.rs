//! The Azure fakes tested over real loopback sockets: HTTPS trusting the run-time test CA for
//! the Key Vault fake, plain HTTP for the identity endpoint fake, and the `fake-azure` binary.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clever_auth_tests::fake_azure::{
    FakeIdentityConfig, FakeIdentityEndpoint, FakeKeyVault, FakeKeyVaultConfig, Fault,
    IdentityHeaderSeen, Outcome, SecretMatch, TokenPolicy, VaultAuthSeen, IDENTITY_API_VERSION,
};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(5);
const API: &str = "api-version=2025-07-01";
const TOKEN: &str = "fake-mi-token-1";

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body).into_owned()
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn tls_connector(ca_pem: &str) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// An HTTP/1.1 connection to `addr`, over TLS (trusting `ca_pem`, verifying `server_name`)
/// when `tls` is given.
async fn connect(
    addr: SocketAddr,
    tls: Option<(&str, &str)>,
) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    match tls {
        None => {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            Ok(sender)
        }
        Some((ca_pem, server_name)) => {
            let tls_stream = tls_connector(ca_pem)?
                .connect(ServerName::try_from(server_name.to_string())?, stream)
                .await?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls_stream)).await?;
            tokio::spawn(conn);
            Ok(sender)
        }
    }
}

async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut req = Request::builder()
        .method("GET")
        .uri(path)
        .header("host", host)
        .header("accept", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    sender.ready().await?;
    let resp = sender.send_request(req.body(Empty::new())?).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// One request to the vault on a fresh TLS connection, verified as `127.0.0.1`.
async fn vault_get(
    vault: &FakeKeyVault,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut sender = connect(vault.addr(), Some((vault.ca_pem(), "127.0.0.1"))).await?;
    send(&mut sender, &vault.addr().to_string(), path, headers).await
}

async fn vault_get_authed(vault: &FakeKeyVault, path: &str) -> anyhow::Result<Reply> {
    vault_get(
        vault,
        path,
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await
}

async fn identity_get(
    identity: &FakeIdentityEndpoint,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut sender = connect(identity.addr(), None).await?;
    send(
        &mut sender,
        &identity.addr().to_string(),
        path_and_query,
        headers,
    )
    .await
}

fn token_query(extra: &str) -> String {
    format!(
        "/msi/token?api-version={IDENTITY_API_VERSION}&resource=https%3A%2F%2Fvault.azure.net{extra}"
    )
}

async fn start_vault(secrets: &[(&str, &str)]) -> FakeKeyVault {
    FakeKeyVault::start(FakeKeyVaultConfig {
        secrets: secrets
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..FakeKeyVaultConfig::default()
    })
    .await
    .expect("vault starts")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.json()["error"]["code"], code, "{reply:?}");
    assert!(reply.json()["error"]["message"].as_str().is_some());
    assert_eq!(reply.header("x-ms-error-code"), Some(code));
}

#[tokio::test]
async fn challenge_401_then_secret_with_bearer() {
    let vault = start_vault(&[("clever-client-id", "id-value")]).await;
    assert!(vault.url().starts_with("https://127.0.0.1:"));
    assert!(vault.url().ends_with('/'));
    assert_eq!(vault.vault_host(), "clever-test.vault.azure.net");

    // The SDK's first request: no Authorization.
    let path = format!("/secrets/clever-client-id/?{API}");
    let first = vault_get(
        &vault,
        &path,
        &[("x-ms-client-request-id", "req-challenge-1")],
    )
    .await
    .unwrap();
    assert_error(&first, 401, "Unauthorized");
    assert_eq!(
        first.header("www-authenticate"),
        Some(
            "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-4000-8000-00000000fa4e\", resource=\"https://vault.azure.net\""
        )
    );
    assert_eq!(
        first.header("x-ms-client-request-id"),
        Some("req-challenge-1")
    );
    assert_eq!(vault.challenge(), first.header("www-authenticate").unwrap());

    // The retry with a token from the identity endpoint.
    let second = vault_get(
        &vault,
        &path,
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("x-ms-client-request-id", "req-challenge-2"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(second.status, 200, "{second:?}");
    assert!(second
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = second.json();
    assert_eq!(body["value"], "id-value");
    let version = vault.current_version("clever-client-id").unwrap().version;
    assert_eq!(version.len(), 32);
    assert!(version
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(
        body["id"],
        format!("https://clever-test.vault.azure.net/secrets/clever-client-id/{version}")
    );
    let attributes = &body["attributes"];
    assert_eq!(attributes["enabled"], true);
    let created = attributes["created"]
        .as_u64()
        .expect("created: unix seconds");
    let updated = attributes["updated"]
        .as_u64()
        .expect("updated: unix seconds");
    assert!(created <= now_secs() && created + 60 > now_secs() && updated >= created);
    assert_eq!(attributes["recoveryLevel"], "Recoverable+Purgeable");

    // Without the trailing slash, and with an explicit version.
    let no_slash = vault_get_authed(&vault, &format!("/secrets/clever-client-id?{API}"))
        .await
        .unwrap();
    assert_eq!(no_slash.json()["value"], "id-value");
    let versioned = vault_get_authed(
        &vault,
        &format!("/secrets/clever-client-id/{version}?{API}"),
    )
    .await
    .unwrap();
    assert_eq!(versioned.json()["value"], "id-value");

    // A token the vault does not accept: challenged again.
    let rejected = vault_get(&vault, &path, &[("authorization", "Bearer someone-else")])
        .await
        .unwrap();
    assert_error(&rejected, 401, "Unauthorized");
    assert!(rejected.header("www-authenticate").is_some());

    let log = vault.wait_for_requests(5, WAIT).await.unwrap();
    assert_eq!(log[0].auth, VaultAuthSeen::Missing);
    assert!(!log[0].auth_present() && !log[0].auth_valid());
    assert_eq!(log[0].status(), Some(401));
    assert_eq!(log[0].secret.as_deref(), Some("clever-client-id"));
    assert_eq!(log[0].api_version.as_deref(), Some("2025-07-01"));
    assert_eq!(log[0].client_request_id.as_deref(), Some("req-challenge-1"));
    assert!(log[1].auth_present() && log[1].auth_valid());
    assert_eq!(log[1].status(), Some(200));
    assert_eq!(log[1].served_version.as_deref(), Some(version.as_str()));
    assert_eq!(log[3].requested_version.as_deref(), Some(version.as_str()));
    assert_eq!(log[4].auth, VaultAuthSeen::Rejected);
    assert!(log[1].unix_ms > 0 && log[4].since(&log[0]) < WAIT);
    // No token value anywhere in the log.
    let dump = format!("{log:?}");
    assert!(!dump.contains(TOKEN) && !dump.contains("someone-else"));
}

#[tokio::test]
async fn certificate_names_the_vault_host_and_localhost() {
    let vault = start_vault(&[("s", "v")]).await;
    for name in [vault.vault_host(), "localhost", "127.0.0.1"] {
        let mut sender = connect(vault.addr(), Some((vault.ca_pem(), name)))
            .await
            .unwrap_or_else(|e| panic!("TLS as {name}: {e:#}"));
        let reply = send(&mut sender, name, &format!("/secrets/s?{API}"), &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
    }
    // A name outside the certificate is refused by the client.
    assert!(connect(
        vault.addr(),
        Some((vault.ca_pem(), "other.vault.azure.net"))
    )
    .await
    .is_err());
    assert_eq!(
        vault.url_by_name(),
        format!("https://clever-test.vault.azure.net:{}/", vault.port())
    );

    let dir = tempfile::tempdir().unwrap();
    let path = vault.write_ca_pem(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), vault.ca_pem());
    assert!(vault.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!vault.ca_der().is_empty());
}

#[tokio::test]
async fn rotation_adds_versions_and_latest_wins() {
    let vault = start_vault(&[("clever-client-secret", "one")]).await;
    let v1 = vault
        .current_version("clever-client-secret")
        .unwrap()
        .version;
    let v2 = vault.set_secret("clever-client-secret", "two");
    let v3 = vault.set_secret("clever-client-secret", "three");
    let versions = vault.secret_versions("clever-client-secret");
    let ids: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(ids, [v1.as_str(), v2.as_str(), v3.as_str()]);
    assert_ne!(v1, v2);
    assert_eq!(versions[1].value, "two");

    let latest = vault_get_authed(&vault, &format!("/secrets/clever-client-secret/?{API}"))
        .await
        .unwrap();
    assert_eq!(latest.json()["value"], "three");
    assert!(latest.json()["id"].as_str().unwrap().ends_with(&v3));

    let old = vault_get_authed(&vault, &format!("/secrets/clever-client-secret/{v1}?{API}"))
        .await
        .unwrap();
    assert_eq!(old.json()["value"], "one");

    let unknown = vault_get_authed(
        &vault,
        &format!("/secrets/clever-client-secret/{}?{API}", "0".repeat(32)),
    )
    .await
    .unwrap();
    assert_error(&unknown, 404, "SecretNotFound");

    let log = vault.wait_for_requests(3, WAIT).await.unwrap();
    assert_eq!(log[0].served_version.as_deref(), Some(v3.as_str()));
    assert_eq!(log[1].served_version.as_deref(), Some(v1.as_str()));
    assert_eq!(log[2].served_version, None);
    assert_eq!(vault.requests_for("clever-client-secret").len(), 3);
}

#[tokio::test]
async fn not_found_disabled_and_deleted_have_key_vaults_shape() {
    let vault = start_vault(&[("a", "1"), ("b", "2")]).await;
    let missing = vault_get_authed(&vault, &format!("/secrets/nope/?{API}"))
        .await
        .unwrap();
    assert_error(&missing, 404, "SecretNotFound");
    assert!(missing.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));

    assert!(vault.disable_secret("a"));
    let disabled = vault_get_authed(&vault, &format!("/secrets/a/?{API}"))
        .await
        .unwrap();
    assert_error(&disabled, 403, "Forbidden");
    assert_eq!(
        disabled.json()["error"]["innererror"]["code"],
        "SecretDisabled"
    );
    assert!(vault.enable_secret("a"));
    let enabled = vault_get_authed(&vault, &format!("/secrets/a/?{API}"))
        .await
        .unwrap();
    assert_eq!(enabled.json()["value"], "1");

    assert!(vault.delete_secret("b"));
    assert!(!vault.delete_secret("b"));
    assert!(vault.secret_versions("b").is_empty());
    let deleted = vault_get_authed(&vault, &format!("/secrets/b/?{API}"))
        .await
        .unwrap();
    assert_error(&deleted, 404, "SecretNotFound");
    assert_eq!(vault.secret_names(), ["a"]);

    let no_api_version = vault_get_authed(&vault, "/secrets/a/").await.unwrap();
    assert_error(&no_api_version, 400, "BadParameter");
}

#[tokio::test]
async fn faults_per_secret_and_for_all() {
    let vault = start_vault(&[("a", "1"), ("b", "2")]).await;
    let a = format!("/secrets/a/?{API}");
    let b = format!("/secrets/b/?{API}");

    // 403 for one secret only; the challenge still comes first.
    vault.set_persistent_fault("a", Fault::Forbidden);
    let challenged = vault_get(&vault, &a, &[]).await.unwrap();
    assert_eq!(challenged.status, 401);
    assert_error(
        &vault_get_authed(&vault, &a).await.unwrap(),
        403,
        "Forbidden",
    );
    assert_eq!(vault_get_authed(&vault, &b).await.unwrap().status, 200);
    assert!(vault.clear_persistent_fault("a"));

    // 429 with Retry-After for everything, then a 404 for one secret on top.
    vault.set_persistent_fault(SecretMatch::Any, Fault::throttled(7));
    vault.set_persistent_fault("b", Fault::NotFound);
    let throttled = vault_get_authed(&vault, &a).await.unwrap();
    assert_error(&throttled, 429, "Throttled");
    assert_eq!(throttled.header("retry-after"), Some("7"));
    assert_error(
        &vault_get_authed(&vault, &b).await.unwrap(),
        404,
        "SecretNotFound",
    );
    vault.clear_faults();

    // Queued one-shot faults, consumed in order.
    vault.push_fault(SecretMatch::Any, Fault::Status(503));
    vault.push_fault("b", Fault::MalformedJson);
    assert_eq!(vault.queued_faults(), 2);
    assert_error(
        &vault_get_authed(&vault, &b).await.unwrap(),
        503,
        "ServiceUnavailable",
    );
    let malformed = vault_get_authed(&vault, &b).await.unwrap();
    assert_eq!(malformed.status, 200);
    assert!(serde_json::from_slice::<Value>(&malformed.body).is_err());
    assert_eq!(vault_get_authed(&vault, &b).await.unwrap().status, 200);
    assert_eq!(vault.queued_faults(), 0);

    // A reset: no response at all.
    vault.push_fault("a", Fault::Reset);
    assert!(vault_get_authed(&vault, &a).await.is_err());

    // Slow answers: a global delay (challenge included) and a per-request one.
    vault.set_response_delay(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(vault_get(&vault, &a, &[]).await.unwrap().status, 401);
    assert!(started.elapsed() >= Duration::from_millis(300));
    vault.set_response_delay(Duration::ZERO);
    vault.push_fault("a", Fault::Delay(Duration::from_millis(250)));
    let started = Instant::now();
    assert_eq!(vault_get_authed(&vault, &a).await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));

    let log = vault.requests();
    let reset = log
        .iter()
        .find(|r| r.fault == Some(Fault::Reset))
        .expect("reset recorded");
    assert_eq!(reset.outcome, Outcome::Reset);
    assert!(log
        .iter()
        .any(|r| r.fault == Some(Fault::throttled(7)) && r.status() == Some(429)));

    // Token policy: an exact token only.
    vault.set_token_policy(TokenPolicy::Exact("only-this".to_string()));
    assert_eq!(vault_get_authed(&vault, &a).await.unwrap().status, 401);
    let exact = vault_get(&vault, &a, &[("authorization", "Bearer only-this")])
        .await
        .unwrap();
    assert_eq!(exact.status, 200);
}

#[tokio::test]
async fn down_refuses_connections_and_up_serves_on_the_same_port() {
    let vault = start_vault(&[("a", "1")]).await;
    let addr = vault.addr();
    let path = format!("/secrets/a/?{API}");

    // A kept-alive connection that has been answered once.
    let mut open = connect(addr, Some((vault.ca_pem(), "127.0.0.1")))
        .await
        .unwrap();
    let auth = format!("Bearer {TOKEN}");
    let first = send(&mut open, "x", &path, &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(first.status, 200);

    vault.set_down(true).await.unwrap();
    assert!(vault.is_down());
    let refused = TcpStream::connect(addr)
        .await
        .expect_err("refused while down");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    // The open connection is gone too.
    assert!(send(&mut open, "x", &path, &[("authorization", &auth)])
        .await
        .is_err());
    // Idempotent.
    vault.set_down(true).await.unwrap();

    vault.set_down(false).await.unwrap();
    assert!(!vault.is_down());
    assert_eq!(vault.addr(), addr);
    let back = vault_get_authed(&vault, &path).await.unwrap();
    assert_eq!(back.json()["value"], "1");

    // Starting down: the port is known, nothing listens until up.
    let late = FakeKeyVault::start(FakeKeyVaultConfig {
        start_down: true,
        secrets: vec![("a".to_string(), "late".to_string())],
        ..FakeKeyVaultConfig::default()
    })
    .await
    .unwrap();
    assert!(late.is_down());
    assert_eq!(
        TcpStream::connect(late.addr()).await.unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    late.set_down(false).await.unwrap();
    assert_eq!(
        vault_get_authed(&late, &path).await.unwrap().json()["value"],
        "late"
    );

    vault.shutdown().await;
    assert!(vault.set_down(false).await.is_err());
}

#[tokio::test]
async fn identity_checks_the_header_and_returns_expires_on_as_string() {
    let identity = FakeIdentityEndpoint::start(FakeIdentityConfig::default())
        .await
        .unwrap();
    let endpoint = identity.endpoint();
    assert_eq!(endpoint, format!("http://{}/msi/token", identity.addr()));
    let secret = identity.header_secret();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        identity.env_vars(),
        [
            ("IDENTITY_ENDPOINT".to_string(), endpoint.clone()),
            ("IDENTITY_HEADER".to_string(), secret.clone()),
        ]
    );

    let query = token_query("");
    let missing = identity_get(&identity, &query, &[("metadata", "true")])
        .await
        .unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["statusCode"], 401);
    assert!(missing.json()["message"]
        .as_str()
        .unwrap()
        .contains("missing"));

    let wrong = identity_get(
        &identity,
        &query,
        &[("metadata", "true"), ("x-identity-header", "not-it")],
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.json()["message"]
        .as_str()
        .unwrap()
        .contains("invalid"));

    let good = identity_get(
        &identity,
        &query,
        &[
            ("metadata", "true"),
            ("x-identity-header", &secret),
            ("x-ms-client-request-id", "mi-1"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(good.status, 200, "{good:?}");
    let body = good.json();
    assert_eq!(body["access_token"], "fake-mi-token-1");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert_eq!(body["client_id"], identity.system_client_id());
    let expires_on = body["expires_on"]
        .as_str()
        .expect("expires_on must be a string");
    let expires_on: u64 = expires_on.parse().expect("unix seconds");
    assert!(expires_on > now_secs() + 3600);

    // A user-assigned identity; then the identity unassigned.
    identity.set_token_lifetime(Duration::from_secs(600));
    let user = identity_get(
        &identity,
        &token_query("&client_id=my-uami"),
        &[("x-identity-header", &secret)],
    )
    .await
    .unwrap();
    assert_eq!(user.json()["client_id"], "my-uami");
    assert_eq!(user.json()["access_token"], "fake-mi-token-2");
    let expires_on: u64 = user.json()["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(expires_on <= now_secs() + 600);

    identity.set_identity_assigned(false);
    let unassigned = identity_get(&identity, &query, &[("x-identity-header", &secret)])
        .await
        .unwrap();
    assert_eq!(unassigned.status, 400);
    assert!(unassigned.json()["message"]
        .as_str()
        .unwrap()
        .contains("not been assigned"));
    identity.set_identity_assigned(true);

    let bad_version = identity_get(
        &identity,
        "/msi/token?api-version=2017-09-01&resource=https://vault.azure.net",
        &[("x-identity-header", &secret)],
    )
    .await
    .unwrap();
    assert_eq!(bad_version.status, 400);

    identity.push_fault(Fault::Status(500));
    let failed = identity_get(&identity, &query, &[("x-identity-header", &secret)])
        .await
        .unwrap();
    assert_eq!(failed.status, 500);
    assert_eq!(identity.tokens_issued(), 2);

    let log = identity.wait_for_requests(7, WAIT).await.unwrap();
    assert_eq!(log[0].identity_header, IdentityHeaderSeen::Missing);
    assert_eq!(log[1].identity_header, IdentityHeaderSeen::Wrong);
    assert_eq!(log[2].identity_header, IdentityHeaderSeen::Valid);
    assert!(log[2].metadata && !log[3].metadata);
    assert_eq!(log[2].resource.as_deref(), Some("https://vault.azure.net"));
    assert_eq!(log[2].api_version.as_deref(), Some(IDENTITY_API_VERSION));
    assert_eq!(log[2].client_request_id.as_deref(), Some("mi-1"));
    assert_eq!(log[2].token_serial, Some(1));
    assert_eq!(log[3].client_id.as_deref(), Some("my-uami"));
    assert_eq!(log[4].status(), Some(400));
    assert_eq!(log[6].fault, Some(Fault::Status(500)));
    assert!(!format!("{log:?}").contains(&secret));

    // The identity header can change (the old one is refused), and the endpoint can go down.
    identity.set_header_secret("rotated");
    let stale = identity_get(&identity, &query, &[("x-identity-header", &secret)])
        .await
        .unwrap();
    assert_eq!(stale.status, 401);
    identity.set_down(true).await.unwrap();
    assert_eq!(
        TcpStream::connect(identity.addr())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ConnectionRefused
    );
    identity.set_down(false).await.unwrap();
    let back = identity_get(&identity, &query, &[("x-identity-header", "rotated")])
        .await
        .unwrap();
    assert_eq!(back.status, 200);
}

#[tokio::test]
async fn identity_token_is_accepted_by_the_vault() {
    let identity = FakeIdentityEndpoint::start(FakeIdentityConfig::default())
        .await
        .unwrap();
    let vault = start_vault(&[("clever-client-id", "cid")]).await;
    let token_reply = identity_get(
        &identity,
        &token_query(""),
        &[("x-identity-header", &identity.header_secret())],
    )
    .await
    .unwrap();
    let token = token_reply.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = vault_get(
        &vault,
        &format!("/secrets/clever-client-id/?{API}"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["value"], "cid");
}

#[tokio::test]
async fn wait_for_requests_times_out_with_a_summary() {
    let vault = start_vault(&[]).await;
    let _ = vault_get(&vault, &format!("/secrets/x/?{API}"), &[]).await;
    let err = vault
        .wait_for_requests(2, Duration::from_millis(200))
        .await
        .expect_err("only one request came");
    let text = format!("{err:#}");
    assert!(text.contains("1 requests recorded") && text.contains("/secrets/x/"));
}

#[tokio::test]
async fn binary_prints_endpoints_and_takes_commands() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-azure"))
        .args(["--client-secret", "s3cret", "--quiet", "--ca-out"])
        .arg(&ca_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("stdout open")
    };

    let keyvault = next_line().await;
    let identity = next_line().await;
    let header = next_line().await;
    let vault_url = keyvault.strip_prefix("keyvault ").expect(&keyvault);
    let identity_url = identity.strip_prefix("identity ").expect(&identity);
    let header = header.strip_prefix("identity-header ").expect(&header);
    assert!(vault_url.starts_with("https://127.0.0.1:") && vault_url.ends_with('/'));
    assert!(identity_url.starts_with("http://127.0.0.1:") && identity_url.ends_with("/msi/token"));
    assert!(!header.is_empty());
    loop {
        if next_line().await == "ready" {
            break;
        }
    }
    let ca_pem = std::fs::read_to_string(&ca_path).unwrap();
    let vault_addr: SocketAddr = vault_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    let fetch = async |path: &str| {
        let mut sender = connect(vault_addr, Some((&ca_pem, "127.0.0.1")))
            .await
            .unwrap();
        send(
            &mut sender,
            "x",
            path,
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await
        .unwrap()
    };
    let secret = fetch(&format!("/secrets/clever-client-secret/?{API}")).await;
    assert_eq!(secret.json()["value"], "s3cret");
    let id = fetch(&format!("/secrets/clever-client-id/?{API}")).await;
    assert_eq!(id.json()["value"], "demo-client-id");

    stdin
        .write_all(b"set clever-client-secret rotated value\n")
        .await
        .unwrap();
    let answer = next_line().await;
    assert!(
        answer.starts_with("ok set clever-client-secret version "),
        "{answer}"
    );
    assert!(!answer.contains("rotated value"));
    let rotated = fetch(&format!("/secrets/clever-client-secret/?{API}")).await;
    assert_eq!(rotated.json()["value"], "rotated value");

    stdin.write_all(b"vault-down\n").await.unwrap();
    assert_eq!(next_line().await, "ok vault-down");
    assert_eq!(
        TcpStream::connect(vault_addr).await.unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    stdin.write_all(b"vault-up\nbogus\n").await.unwrap();
    assert!(next_line().await.starts_with("ok vault-up"));
    assert!(next_line().await.starts_with("error unknown command"));

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
