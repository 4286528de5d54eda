//! The fake Clever tested over real loopback sockets with a plain hyper client.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use clever_auth_tests::fake_clever::{
    AuthScheme, FakeClever, FakeCleverConfig, Fault, MultiBucketStyle, Outcome, RateLimitBucket,
    RateLimitConfig, Route, RouteMatch,
};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

/// One request on a fresh connection; `tls` is the CA to trust when the fake serves HTTPS.
async fn send_via(
    fake: &FakeClever,
    tls: Option<&str>,
    method: &str,
    path: &str,
    auth: Option<String>,
    body: Option<(&str, &str)>,
) -> anyhow::Result<Reply> {
    let stream = TcpStream::connect(fake.addr()).await?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", fake.addr().to_string());
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let req = match body {
        Some((content_type, body)) => req
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body.to_string())))?,
        None => req.body(Full::new(Bytes::new()))?,
    };
    let resp = match tls {
        None => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        }
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
            let config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let tls_stream = TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost")?, stream)
                .await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls_stream)).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        }
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

async fn get(fake: &FakeClever, path: &str, auth: Option<String>) -> anyhow::Result<Reply> {
    send_via(fake, None, "GET", path, auth, None).await
}

fn basic(id: &str, secret: &str) -> Option<String> {
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    ))
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn good_basic(fake: &FakeClever) -> Option<String> {
    basic(&fake.client_id(), &fake.client_secret())
}

async fn start(config: FakeCleverConfig) -> FakeClever {
    FakeClever::start(config).await.expect("fake starts")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn assert_rate_headers(reply: &Reply) {
    for name in [
        "x-ratelimit-bucket",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(
            reply.header(name).is_some(),
            "{name} missing on {}",
            reply.status
        );
    }
    let reset: u64 = reply
        .header("x-ratelimit-reset")
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .expect("numeric reset");
    let now = now_secs();
    // Absolute epoch seconds, not a delta.
    assert!(
        reset >= now && reset <= now + 3600,
        "reset {reset} now {now}"
    );
}

#[tokio::test]
async fn listing_with_good_basic_has_clevers_shape() {
    let fake = start(FakeCleverConfig::default()).await;
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    let reply = get(
        &fake,
        "/oauth/tokens?owner_type=district",
        good_basic(&fake),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_rate_headers(&reply);
    let body = reply.json();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let mut ids: Vec<String> = Vec::new();
    for entry in data {
        let token = entry["access_token"].as_str().unwrap();
        assert_eq!(token.len(), 40);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(entry["owner"]["type"], "district");
        let id = entry["owner"]["id"].as_str().unwrap().to_string();
        assert_eq!(fake.district_token(&id).as_deref(), Some(token));
        assert!(entry["created"].as_str().unwrap().ends_with('Z'));
        assert!(entry["scopes"].as_array().unwrap().len() > 1);
        assert!(entry.get("expires_in").is_none() && entry.get("token_type").is_none());
        ids.push(id);
    }
    ids.sort();
    assert_eq!(ids, fake.district_ids());
    assert_eq!(body["links"][0]["rel"], "self");
    assert_eq!(body["links"][0]["uri"], "/oauth/tokens?owner_type=district");

    // One district only.
    let one = &ids[1];
    let reply = get(
        &fake,
        &format!("/oauth/tokens?owner_type=district&district={one}"),
        good_basic(&fake),
    )
    .await
    .unwrap();
    let data = reply.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["owner"]["id"], one.as_str());
    let log = fake.requests_for(Route::TokenList);
    assert_eq!(log[1].district.as_deref(), Some(one.as_str()));
}

#[tokio::test]
async fn listing_rejects_bad_basic_and_missing_owner_type() {
    let fake = start(FakeCleverConfig::default()).await;
    let wrong = get(
        &fake,
        "/oauth/tokens?owner_type=district",
        basic("demo-client-id", "nope"),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "invalid_client");
    assert!(wrong.json()["error_description"].is_string());
    assert_rate_headers(&wrong);

    let missing = get(&fake, "/oauth/tokens?owner_type=district", None)
        .await
        .unwrap();
    assert_eq!(missing.status, 401);

    let no_owner = get(&fake, "/oauth/tokens", good_basic(&fake))
        .await
        .unwrap();
    assert_eq!(no_owner.status, 400);
    assert_eq!(no_owner.json()["error"], "invalid_request");

    // A rotated secret: the old pair stops working at once.
    fake.set_client_credentials("demo-client-id", "rotated");
    let old = get(
        &fake,
        "/oauth/tokens?owner_type=district",
        basic("demo-client-id", "demo-client-secret"),
    )
    .await
    .unwrap();
    assert_eq!(old.status, 401);
    let new = get(
        &fake,
        "/oauth/tokens?owner_type=district",
        basic("demo-client-id", "rotated"),
    )
    .await
    .unwrap();
    assert_eq!(new.status, 200);

    let log = fake.requests();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].auth.scheme, AuthScheme::Basic);
    assert!(!log[0].auth.valid);
    assert_eq!(
        log[0].auth.fingerprint.as_deref(),
        Some(fake.fingerprint("demo-client-id:nope").as_str())
    );
    assert_eq!(log[1].auth.scheme, AuthScheme::Missing);
    assert_eq!(log[1].auth.fingerprint, None);
    assert!(log[2].auth.valid);
    assert_eq!(
        log.iter().map(|r| r.status()).collect::<Vec<_>>(),
        [Some(401), Some(401), Some(400), Some(401), Some(200)]
    );
    // Raw credentials never reach the log.
    let dump = format!("{log:?}");
    assert!(!dump.contains("demo-client-secret") && !dump.contains("rotated"));
}

#[tokio::test]
async fn client_credentials_tokeninfo_and_me() {
    let fake = start(FakeCleverConfig {
        client_credentials_lifetime_secs: 7,
        ..FakeCleverConfig::default()
    })
    .await;
    let form = Some((
        "application/x-www-form-urlencoded",
        "grant_type=client_credentials",
    ));
    let reply = send_via(
        &fake,
        None,
        "POST",
        "/oauth/tokens",
        good_basic(&fake),
        form,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7);
    let token = body["access_token"].as_str().unwrap().to_string();

    let info = get(&fake, "/oauth/tokeninfo", bearer(&token))
        .await
        .unwrap();
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["client_id"], "demo-client-id");
    assert!(info.json()["scopes"].is_array());
    let bad = get(&fake, "/oauth/tokeninfo", bearer("0123"))
        .await
        .unwrap();
    assert_eq!(bad.status, 401);

    let me = get(&fake, "/v3.0/me", bearer(&token)).await.unwrap();
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["links"][0]["uri"], "/v3.0/me");

    let wrong_grant = send_via(
        &fake,
        None,
        "POST",
        "/oauth/tokens",
        good_basic(&fake),
        Some(("application/x-www-form-urlencoded", "grant_type=password")),
    )
    .await
    .unwrap();
    assert_eq!(wrong_grant.status, 400);
    assert_eq!(wrong_grant.json()["error"], "unsupported_grant_type");
    let bad_client = send_via(&fake, None, "POST", "/oauth/tokens", None, form)
        .await
        .unwrap();
    assert_eq!(bad_client.status, 401);

    assert_eq!(fake.revoke_client_credentials_tokens(), 1);
    let revoked = get(&fake, "/v3.0/me", bearer(&token)).await.unwrap();
    assert_eq!(revoked.status, 401);
}

#[tokio::test]
async fn data_api_versions_isolation_and_revocation() {
    let fake = start(FakeCleverConfig {
        district_ids: vec!["district-a".into(), "district-b".into()],
        generated_districts: 0,
        ..FakeCleverConfig::default()
    })
    .await;
    let token_a = fake.district_token("district-a").unwrap();

    let ok = get(&fake, "/v3.0/districts/district-a", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_rate_headers(&ok);
    assert_eq!(ok.json()["data"]["id"], "district-a");
    assert_eq!(ok.json()["links"][0]["uri"], "/v3.0/districts/district-a");
    assert_eq!(ok.header("x-clever-api-version"), None);

    let v31 = get(&fake, "/v3.1/districts/district-a", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(v31.json()["links"][0]["uri"], "/v3.1/districts/district-a");

    let me = get(&fake, "/v3.0/me", bearer(&token_a)).await.unwrap();
    assert_eq!(me.json()["data"]["district"], "district-a");
    assert_eq!(me.json()["data"]["type"], "district");

    // A's token on B's resources.
    let cross = get(&fake, "/v3.0/districts/district-b", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(cross.status, 404);

    let retired = get(&fake, "/v2.0/districts/district-a", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(retired.status, 404);
    assert!(String::from_utf8_lossy(&retired.body).contains("version not supported"));
    fake.set_version_not_supported_status(400);
    let retired = get(&fake, "/v1.1/districts/district-a", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(retired.status, 400);

    // Version signals: a served version other than the requested one, and a header.
    fake.set_version_header(Some("X-Clever-Api-Version"));
    fake.set_served_version(Some("v3.1"));
    let served = get(&fake, "/v3.0/districts/district-a", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(served.header("x-clever-api-version"), Some("v3.1"));
    assert_eq!(
        served.json()["links"][0]["uri"],
        "/v3.1/districts/district-a"
    );
    fake.set_served_version(None);
    fake.set_supported_versions(["v3.1"]);
    let now_retired = get(&fake, "/v3.0/me", bearer(&token_a)).await.unwrap();
    assert!(String::from_utf8_lossy(&now_retired.body).contains("version not supported"));
    fake.set_supported_versions(["v3.0", "v3.1"]);

    // Revoked: still listed, 401 on use.
    assert!(fake.revoke_token("district-a"));
    let revoked = get(&fake, "/v3.0/districts/district-a", bearer(&token_a))
        .await
        .unwrap();
    assert_eq!(revoked.status, 401);
    let listing = get(
        &fake,
        "/oauth/tokens?owner_type=district&district=district-a",
        good_basic(&fake),
    )
    .await
    .unwrap();
    assert_eq!(
        listing.json()["data"][0]["access_token"],
        token_a.as_str(),
        "a revoked token stays listed until rotated"
    );

    // Rotated: new token works, old one is 401 and still attributed to its district.
    let token_a2 = fake.rotate_token("district-a").unwrap();
    assert_ne!(token_a2, token_a);
    let new_ok = get(&fake, "/v3.0/districts/district-a", bearer(&token_a2))
        .await
        .unwrap();
    assert_eq!(new_ok.status, 200);
    let old = get(&fake, "/v3.0/me", bearer(&token_a)).await.unwrap();
    assert_eq!(old.status, 401);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.token_district.as_deref(), Some("district-a"));
    assert!(!last.auth.valid);

    // Removed: gone from the listing, its token dead.
    let token_b = fake.district_token("district-b").unwrap();
    assert!(fake.remove_district("district-b"));
    let listing = get(
        &fake,
        "/oauth/tokens?owner_type=district",
        good_basic(&fake),
    )
    .await
    .unwrap();
    let data = listing.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["owner"]["id"], "district-a");
    let gone = get(&fake, "/v3.0/me", bearer(&token_b)).await.unwrap();
    assert_eq!(gone.status, 401);

    let generated = fake.generate_districts(50);
    assert_eq!(generated.len(), 50);
    let listing = get(
        &fake,
        "/oauth/tokens?owner_type=district",
        good_basic(&fake),
    )
    .await
    .unwrap();
    assert_eq!(listing.json()["data"].as_array().unwrap().len(), 51);
}

#[tokio::test]
async fn rate_limited_faults_have_empty_bodies_and_each_hint() {
    let fake = start(FakeCleverConfig::default()).await;
    fake.push_fault(Route::TokenList, Fault::rate_limited_retry_after_secs(7));
    fake.push_fault(
        Route::TokenList,
        Fault::rate_limited_http_date(Duration::from_secs(30)),
    );
    fake.push_fault(
        Route::TokenList,
        Fault::rate_limited_reset_only(Duration::from_secs(2)),
    );
    let path = "/oauth/tokens?owner_type=district";

    let delta = get(&fake, path, good_basic(&fake)).await.unwrap();
    assert_eq!(delta.status, 429);
    assert!(delta.body.is_empty());
    assert_eq!(delta.header("retry-after"), Some("7"));
    assert_eq!(delta.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = delta.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = now_secs();
    assert!(
        (now + 6..=now + 8).contains(&reset),
        "reset {reset} now {now}"
    );

    let date = get(&fake, path, good_basic(&fake)).await.unwrap();
    assert_eq!(date.status, 429);
    assert!(date.body.is_empty());
    let when = httpdate::parse_http_date(date.header("retry-after").unwrap()).unwrap();
    let ahead = when.duration_since(SystemTime::now()).unwrap();
    assert!(
        ahead > Duration::from_secs(28) && ahead <= Duration::from_secs(32),
        "{ahead:?}"
    );

    let only_reset = get(&fake, path, good_basic(&fake)).await.unwrap();
    assert_eq!(only_reset.status, 429);
    assert!(only_reset.body.is_empty());
    assert_eq!(only_reset.header("retry-after"), None);
    let reset: u64 = only_reset
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    let now = now_secs();
    assert!(
        (now + 1..=now + 3).contains(&reset),
        "reset {reset} now {now}"
    );

    let normal = get(&fake, path, good_basic(&fake)).await.unwrap();
    assert_eq!(normal.status, 200);
    assert_eq!(fake.queued_faults(), 0);
}

#[tokio::test]
async fn several_buckets_joined_or_repeated_and_enforced() {
    let buckets = vec![
        RateLimitBucket::new("app", 200, Duration::from_secs(60)),
        RateLimitBucket::new("per-token", 1200, Duration::from_secs(60)),
    ];
    let fake = start(FakeCleverConfig {
        rate_limit: RateLimitConfig {
            buckets: buckets.clone(),
            style: MultiBucketStyle::CommaJoined,
            enforce: true,
        },
        ..FakeCleverConfig::default()
    })
    .await;
    let path = "/oauth/tokens?owner_type=district";
    let joined = get(&fake, path, good_basic(&fake)).await.unwrap();
    assert_eq!(joined.header("x-ratelimit-limit"), Some("200, 1200"));
    assert_eq!(joined.header("x-ratelimit-remaining"), Some("199, 1199"));
    assert_eq!(joined.header("x-ratelimit-bucket"), Some("app, per-token"));

    fake.set_rate_limit(RateLimitConfig {
        buckets,
        style: MultiBucketStyle::Repeated,
        enforce: true,
    });
    let repeated = get(&fake, path, good_basic(&fake)).await.unwrap();
    assert_eq!(repeated.header_all("x-ratelimit-limit"), ["200", "1200"]);
    assert_eq!(repeated.header_all("x-ratelimit-reset").len(), 2);

    // An exhausted bucket gives Clever's own 429: empty body, only the reset as hint.
    fake.set_rate_limit(RateLimitConfig {
        buckets: vec![RateLimitBucket::new("tiny", 2, Duration::from_secs(3600))],
        style: MultiBucketStyle::CommaJoined,
        enforce: true,
    });
    let statuses = [
        get(&fake, path, good_basic(&fake)).await.unwrap(),
        get(&fake, path, good_basic(&fake)).await.unwrap(),
        get(&fake, path, good_basic(&fake)).await.unwrap(),
    ]
    .map(|r| {
        (
            r.status,
            r.body.is_empty(),
            r.header("retry-after").is_none(),
        )
    });
    assert_eq!(
        statuses,
        [(200, false, true), (200, false, true), (429, true, true)]
    );
}

#[tokio::test]
async fn fault_queue_is_consumed_in_order_per_route() {
    let fake = start(FakeCleverConfig::default()).await;
    let district = fake.district_ids()[0].clone();
    let token = fake.district_token(&district).unwrap();
    let listing = "/oauth/tokens?owner_type=district";
    let probe = format!("/v3.0/districts/{district}");

    fake.fail_next(Route::TokenList, 2, 503);
    fake.push_fault(Route::Data, Fault::Html(502));
    fake.push_fault(Route::TokenList, Fault::MalformedJson);
    fake.push_fault(RouteMatch::any(), Fault::VersionNotSupported);
    assert_eq!(fake.queued_faults(), 5);

    // The data probe skips the listing's faults and takes its own first.
    let html = get(&fake, &probe, bearer(&token)).await.unwrap();
    assert_eq!(html.status, 502);
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&html.body).contains("<html>"));
    assert_rate_headers(&html);

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = get(&fake, listing, good_basic(&fake)).await.unwrap();
        statuses.push(r.status);
        if r.status == 200 && statuses.len() == 3 {
            assert!(
                serde_json::from_slice::<Value>(&r.body).is_err(),
                "malformed"
            );
        }
        if statuses.len() == 4 {
            assert!(String::from_utf8_lossy(&r.body).contains("version not supported"));
        }
    }
    assert_eq!(statuses, [503, 503, 200, 404, 200]);
    assert_eq!(fake.queued_faults(), 0);

    let faults: Vec<Option<Fault>> = fake
        .requests_for(Route::TokenList)
        .into_iter()
        .map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        [
            Some(Fault::Status(503)),
            Some(Fault::Status(503)),
            Some(Fault::MalformedJson),
            Some(Fault::VersionNotSupported),
            None
        ]
    );

    // Persistent, district-scoped: only that district's probe fails, until cleared.
    let other = fake.district_ids()[1].clone();
    let other_token = fake.district_token(&other).unwrap();
    fake.set_persistent_fault(Route::Data.for_district(&district), Fault::Status(500));
    for _ in 0..2 {
        assert_eq!(
            get(&fake, &probe, bearer(&token)).await.unwrap().status,
            500
        );
        assert_eq!(
            get(
                &fake,
                &format!("/v3.0/districts/{other}"),
                bearer(&other_token)
            )
            .await
            .unwrap()
            .status,
            200
        );
    }
    // /me is attributed to the token's district, so it fails too.
    assert_eq!(
        get(&fake, "/v3.0/me", bearer(&token)).await.unwrap().status,
        500
    );
    assert!(fake.clear_persistent_fault(Route::Data.for_district(&district)));
    assert_eq!(
        get(&fake, &probe, bearer(&token)).await.unwrap().status,
        200
    );
    assert_eq!(fake.request_count(Route::Data.for_district(&district)), 5);
}

#[tokio::test]
async fn reset_hang_and_delay() {
    let fake = start(FakeCleverConfig::default()).await;
    let listing = "/oauth/tokens?owner_type=district";

    fake.push_fault(Route::TokenList, Fault::Reset);
    let err = get(&fake, listing, good_basic(&fake))
        .await
        .expect_err("reset gives no response");
    // A real RST, as from a crashed upstream, not a polite close.
    let reset_seen = err.chain().any(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
            {
                return true;
            }
            cause = c.source();
        }
        false
    });
    assert!(reset_seen, "expected ECONNRESET, got {err:?}");

    fake.push_fault(Route::TokenList, Fault::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        get(&fake, listing, good_basic(&fake)),
    )
    .await;
    assert!(hung.is_err(), "a hang never answers");

    fake.push_fault(Route::TokenList, Fault::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    let delayed = get(&fake, listing, good_basic(&fake)).await.unwrap();
    assert_eq!(delayed.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    fake.push_fault(
        Route::TokenList,
        Fault::DelayThen(Duration::from_millis(50), Box::new(Fault::Status(504))),
    );
    assert_eq!(
        get(&fake, listing, good_basic(&fake)).await.unwrap().status,
        504
    );

    let log = fake
        .wait_for_outcomes(Route::TokenList, 4, WAIT)
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = log.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Reset,
            Outcome::Hung,
            Outcome::Responded(200),
            Outcome::Responded(504)
        ]
    );

    // The fake keeps serving after all that.
    assert_eq!(
        get(&fake, listing, good_basic(&fake)).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn request_log_times_and_waiting() {
    let fake = start(FakeCleverConfig::default()).await;
    let client = fake.clone();
    let before_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let before = Instant::now();
    // Requests arrive from another task while the test waits for them.
    let sender = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = get(
                &client,
                "/oauth/tokens?owner_type=district",
                good_basic(&client),
            )
            .await;
        }
        let _ = get(&client, "/nowhere", None).await;
    });
    let seen = fake
        .wait_for_requests(Route::TokenList, 3, WAIT)
        .await
        .unwrap();
    assert_eq!(seen.len(), 3);
    sender.await.unwrap();
    let all = fake
        .wait_for_outcomes(RouteMatch::any(), 4, WAIT)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].route, Route::Other);
    assert_eq!(all[3].status(), Some(404));
    for pair in all.windows(2) {
        assert!(pair[1].seq > pair[0].seq);
        assert!(pair[1].at >= pair[0].at);
        assert!(pair[1].unix_ms >= pair[0].unix_ms);
    }
    assert!(all[0].at > before && all[0].unix_ms >= before_ms);
    assert!(all[1].since(&all[0]) >= Duration::from_millis(20));
    assert_eq!(all[0].method, "GET");
    assert_eq!(all[0].path_and_query, "/oauth/tokens?owner_type=district");
    assert!(all[0].summary().contains("-> 200"));

    let timeout = fake
        .wait_for_requests(Route::Data, 1, Duration::from_millis(100))
        .await
        .expect_err("no data request comes");
    assert!(format!("{timeout:#}").contains("timed out"));

    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn tls_with_the_generated_ca() {
    let fake = start(FakeCleverConfig {
        tls: true,
        ..FakeCleverConfig::default()
    })
    .await;
    assert!(fake.base_url().starts_with("https://127.0.0.1:"));
    let ca = fake.ca_pem().expect("a CA with TLS").to_string();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(fake.ca_der().is_some());

    let reply = send_via(
        &fake,
        Some(&ca),
        "GET",
        "/oauth/tokens?owner_type=district",
        good_basic(&fake),
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"].as_array().unwrap().len(), 2);

    // A client trusting some other CA is refused.
    let other = start(FakeCleverConfig {
        tls: true,
        ..FakeCleverConfig::default()
    })
    .await;
    let refused = send_via(
        &fake,
        other.ca_pem(),
        "GET",
        "/oauth/tokens?owner_type=district",
        good_basic(&fake),
        None,
    )
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn shutdown_and_drop_close_the_port() {
    let fake = start(FakeCleverConfig::default()).await;
    let addr = fake.addr();
    fake.push_fault(RouteMatch::any(), Fault::Hang);
    let hanging = tokio::spawn({
        let fake = fake.clone();
        async move { get(&fake, "/v3.0/me", None).await }
    });
    fake.wait_for_requests(RouteMatch::any(), 1, WAIT)
        .await
        .unwrap();
    fake.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
    // The hanging request is cut off rather than left open.
    assert!(tokio::time::timeout(WAIT, hanging)
        .await
        .unwrap()
        .unwrap()
        .is_err());
    fake.shutdown().await;

    let dropped = start(FakeCleverConfig::default()).await;
    let addr = dropped.addr();
    drop(dropped);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "port still open after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn client_leaving_mid_delay_is_recorded_as_abandoned() {
    let fake = start(FakeCleverConfig::default()).await;
    fake.push_fault(Route::TokenList, Fault::Delay(Duration::from_secs(30)));
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        get(
            &fake,
            "/oauth/tokens?owner_type=district",
            good_basic(&fake),
        ),
    )
    .await;
    assert!(gave_up.is_err());
    let log = fake
        .wait_for_outcomes(Route::TokenList, 1, WAIT)
        .await
        .unwrap();
    assert_eq!(log[0].outcome, Outcome::Abandoned);
}
