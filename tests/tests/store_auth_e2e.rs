//! The real host on a real redis-server that wants credentials (issue #19): an access key
//! from the development provider or from the fake Key Vault, and Entra ID tokens from the fake
//! managed identity endpoint for an ACL user named after the identity. A refused key is an
//! outage that says authentication failed (and shows no key) until the key is fixed; a
//! rotated key or a refreshed token needs no restart.

use clever_auth_tests::azure_scenario::{AzureOptions, AzureScenario};
use clever_auth_tests::fake_azure::{FakeIdentityConfig, FakeIdentityEndpoint};
use clever_auth_tests::fake_clever::FakeClever;
use clever_auth_tests::host_process::HostProcess;
use clever_auth_tests::http_client;
use clever_auth_tests::redis_server::{RedisAuth, RedisServer};
use clever_auth_tests::scenario::{self, two_districts, Health};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The deployment's store key (base64 of 32 bytes).
const STORE_KEY: &str = "c3RvcmUtYXV0aC10ZXN0LXN0b3JlLWtleS0zMi1ieXQ=";
const ACCESS_KEY: &str = "redis-access-key-right-7d1f0c2a9b";
const ROTATED_KEY: &str = "redis-access-key-rotated-4e8a6b3c";
const WRONG_KEY: &str = "redis-access-key-wrong-00000000aa";
const DISTRICT_DATA: &str = "/clever/d-alpha/v3.0/districts/d-alpha";

fn passing(h: &Health) -> bool {
    h.body["status"] == "pass"
        && h.district_ids().len() == 2
        && h.body["checks"]["store:reachable"][0]["status"] == "pass"
}

fn store_check(h: &Health) -> String {
    h.body["checks"]["store:reachable"][0]["output"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn refused(h: &Health) -> bool {
    h.body["checks"]["store:reachable"][0]["status"] == "warn"
        && store_check(h).contains("authentication failed")
}

/// Neither the health answer nor anything the host printed holds one of `secrets`.
fn assert_shows_none(h: &Health, host: &HostProcess, secrets: &[&str]) {
    let body = h.body.to_string();
    let logs = host.output.text();
    for s in secrets {
        assert!(!body.contains(s), "a key in health: {body}");
        assert!(!logs.contains(s), "a key in the host's output");
    }
}

fn password_redis() -> RedisAuth {
    RedisAuth {
        requirepass: Some(ACCESS_KEY.into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_env_providers_access_key_authenticates_and_a_wrong_one_says_so() -> anyhow::Result<()>
{
    let Some(redis) = RedisServer::start_with(password_redis()).await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let host = |key: &str| {
        scenario::host_options(
            &fake,
            &[
                ("CLEVER_AUTH_STORE_KEY", STORE_KEY),
                // On loopback, a given key is enough to select --store-auth access-key.
                ("CLEVER_AUTH_REDIS_ACCESS_KEY", key),
            ],
            &["--store", &redis.url()],
            true,
        )
    };
    let started = Instant::now();
    let (right, wrong) = tokio::try_join!(
        HostProcess::start(host(ACCESS_KEY)),
        HostProcess::start(host(WRONG_KEY))
    )?;
    let ok = scenario::wait_health(&right, Duration::from_secs(30), passing).await?;
    let reply = http_client::get(&right.gateway_url(DISTRICT_DATA)).await?;
    assert_eq!(reply.status, 200, "gateway: {}", reply.text());
    assert!(
        redis.dump()?.iter().any(|(k, _)| k.contains("/token/")),
        "no token records in Redis"
    );

    let bad = scenario::wait_health(&wrong, Duration::from_secs(15), refused).await?;
    assert!(
        store_check(&bad).contains("refused the access key"),
        "{}",
        bad.body
    );
    assert_eq!(bad.body["checks"]["store:reachable"][0]["status"], "warn");
    assert_shows_none(&bad, &wrong, &[ACCESS_KEY, WRONG_KEY]);
    assert_shows_none(&ok, &right, &[ACCESS_KEY]);
    eprintln!("both verdicts in {:?}", started.elapsed());
    Ok(())
}

/// The vault's key is wrong at first: the store is unreachable with "authentication failed";
/// fixed in the vault, the host reads it again (Redis's refusal asks for that) and passes.
/// Rotated later (Redis takes a new key, the vault holds it, Redis drops the connections), the
/// host's new connections use the new key. No restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_fixed_or_rotated_in_key_vault_is_used_without_a_restart() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start_with(password_redis()).await? else {
        return Ok(());
    };
    let s = AzureScenario::start(AzureOptions {
        vault_secrets: vec![
            ("clever-auth-store-key".into(), STORE_KEY.into()),
            ("redis-access-key".into(), WRONG_KEY.into()),
        ],
        env: vec![
            ("CLEVER_AUTH_STORE".into(), redis.url()),
            ("CLEVER_AUTH_STORE_AUTH".into(), "access-key".into()),
            // Only Redis's refusal makes the host read the key again within the test.
            ("CLEVER_AUTH_SECRETS_REFRESH_SECS".into(), "600".into()),
        ],
        ..Default::default()
    })
    .await?;
    let bad = s.wait_health(Duration::from_secs(20), refused).await?;
    assert!(
        store_check(&bad).contains("refused the access key"),
        "{}",
        bad.body
    );
    assert_shows_none(&bad, &s.host, &[ACCESS_KEY, WRONG_KEY]);

    let fixed_at = Instant::now();
    s.vault.set_secret("redis-access-key", ACCESS_KEY);
    s.wait_health(Duration::from_secs(20), passing).await?;
    eprintln!("healed {:?} after the fix", fixed_at.elapsed());

    redis.command(&["CONFIG", "SET", "requirepass", ROTATED_KEY])?;
    s.vault.set_secret("redis-access-key", ROTATED_KEY);
    redis.command(&["CLIENT", "KILL", "USER", "default"])?;
    let rotated_at = Instant::now();
    // Only the rotated key logs in now: a connection of the host's means it has it.
    while redis.client_ids_of("default")?.is_empty() {
        anyhow::ensure!(
            rotated_at.elapsed() < Duration::from_secs(20),
            "the host never logged in with the rotated key:\n{}",
            s.host.output.text()
        );
        let _ = s.health().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = s.wait_health(Duration::from_secs(20), passing).await?;
    eprintln!("rotated in {:?}", rotated_at.elapsed());
    let reply = http_client::get(&s.host.gateway_url(DISTRICT_DATA)).await?;
    assert_eq!(reply.status, 200, "gateway: {}", reply.text());
    assert_shows_none(&h, &s.host, &[ACCESS_KEY, ROTATED_KEY, WRONG_KEY]);
    Ok(())
}

/// The Redis resource the identity endpoint is asked for (the scope without `/.default`).
const REDIS_RESOURCE: &str = "https://redis.azure.com";
const OBJECT_ID: &str = "5c0f3a7e-2b9d-4e61-8a4f-9d3b1c7e0a26";

/// Plays Azure's part: the tokens the identity fake issues for Redis are the passwords of the
/// identity's Redis user, and the ones before the previous (expired) stop working. The next
/// two log in before they are issued, so the host never meets a token Redis does not know yet
/// (in Azure a token is valid as soon as it is issued).
struct TokenFollower {
    identity: FakeIdentityEndpoint,
    redis: Arc<RedisServer>,
    valid: BTreeSet<u64>,
}

impl TokenFollower {
    fn sync(&mut self) -> anyhow::Result<()> {
        let newest = self
            .identity
            .requests()
            .iter()
            .filter(|r| r.resource.as_deref() == Some(REDIS_RESOURCE))
            .filter_map(|r| r.token_serial)
            .max()
            .unwrap_or(0);
        let want: BTreeSet<u64> = (newest.saturating_sub(1).max(1)..=newest + 2).collect();
        if want == self.valid {
            return Ok(());
        }
        let mut rules: Vec<String> = want
            .difference(&self.valid)
            .map(|n| format!(">{}", self.identity.token(*n)))
            .collect();
        rules.extend(
            self.valid
                .difference(&want)
                .map(|n| format!("<{}", self.identity.token(*n))),
        );
        let mut args = vec!["ACL", "SETUSER", OBJECT_ID];
        args.extend(rules.iter().map(String::as_str));
        self.redis.command(&args)?;
        self.valid = want;
        Ok(())
    }

    async fn run(mut self) {
        loop {
            if let Err(e) = self.sync() {
                eprintln!("ACL SETUSER failed: {e}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Entra ID: the host logs in as the identity's object id (read from its token) with the
/// token; short-lived tokens are refreshed and sent as AUTH on the live connection (same
/// connection, more AUTH calls), and when Redis drops the connection (as Azure does once a
/// token expires) the new one logs in with the current token.
#[tokio::test(flavor = "multi_thread")]
async fn entra_tokens_log_in_as_the_identity_and_refresh_on_the_live_connection(
) -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start_with(RedisAuth {
        default_user_off: true,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let redis = Arc::new(redis);
    redis.command(&["ACL", "SETUSER", OBJECT_ID, "on", "~*", "&*", "+@all"])?;
    let identity = FakeIdentityEndpoint::start(FakeIdentityConfig {
        token_lifetime: Duration::from_secs(3),
        object_id: Some(OBJECT_ID.into()),
        ..Default::default()
    })
    .await?;
    let mut follower = TokenFollower {
        identity: identity.clone(),
        redis: redis.clone(),
        valid: BTreeSet::new(),
    };
    follower.sync()?;
    let follower = tokio::spawn(follower.run());
    let fake = FakeClever::start(two_districts()).await?;
    let endpoint = identity.endpoint();
    let header = identity.header_secret();
    let opts = scenario::host_options(
        &fake,
        &[
            ("CLEVER_AUTH_STORE_KEY", STORE_KEY),
            ("IDENTITY_ENDPOINT", &endpoint),
            ("IDENTITY_HEADER", &header),
        ],
        &["--store", &redis.url(), "--store-auth", "entra"],
        true,
    );
    let host = HostProcess::start(opts).await?;
    scenario::wait_health(&host, Duration::from_secs(30), passing).await?;
    let live = redis.client_ids_of(OBJECT_ID)?;
    assert!(
        !live.is_empty(),
        "the host is not logged in as the identity"
    );
    let auths = redis.command_calls("auth")?;
    let tokens = identity.tokens_issued();

    // Three more tokens: about 4.5 s at a refresh every half lifetime.
    let deadline = Instant::now() + Duration::from_secs(15);
    while identity.tokens_issued() < tokens + 3 {
        anyhow::ensure!(Instant::now() < deadline, "the host stopped refreshing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the last re-authentication its moment, then look.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = scenario::wait_health(&host, Duration::from_secs(5), passing).await?;
    let reauths = redis.command_calls("auth")? - auths;
    assert!(reauths >= 3, "{reauths} AUTH calls for 3 refreshed tokens");
    let now = redis.client_ids_of(OBJECT_ID)?;
    assert!(
        live.iter().all(|id| now.contains(id)),
        "the connection was replaced, not re-authenticated: {live:?} then {now:?}"
    );

    // Redis drops the connection: the next one needs the current token (older ones no
    // longer log in).
    redis.command(&["CLIENT", "KILL", "USER", OBJECT_ID])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ids = redis.client_ids_of(OBJECT_ID)?;
        if ids.iter().any(|id| !live.contains(id)) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the host never logged in again:\n{}",
            host.output.text()
        );
        let _ = scenario::health(&host).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scenario::wait_health(&host, Duration::from_secs(15), passing).await?;
    let reply = http_client::get(&host.gateway_url(DISTRICT_DATA)).await?;
    assert_eq!(reply.status, 200, "gateway: {}", reply.text());

    let tokens: Vec<String> = (1..=identity.tokens_issued())
        .map(|n| identity.token(n))
        .collect();
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert_shows_none(&h, &host, &token_refs);
    follower.abort();
    Ok(())
}
