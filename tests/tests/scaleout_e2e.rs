//! Several real host processes on one real Redis (`--store redis://…`) against one fake Clever
//! behave as one Clever client: one token listing per refresh cycle whatever the number of
//! instances, and every instance serves the tokens another one fetched.

use clever_auth_tests::fake_clever::{FakeClever, Route};
use clever_auth_tests::host_process::HostProcess;
use clever_auth_tests::http_client;
use clever_auth_tests::redis_server::RedisServer;
use clever_auth_tests::scenario::{self, two_districts};
use std::time::{Duration, Instant};

const INSTANCES: usize = 3;
/// Listing tokens carry no `expires_in`, so this lifetime applies; refreshed at 0.75 of it,
/// the deployment lists every 3 s.
const LIFETIME: &str = "4";
const CYCLE: Duration = Duration::from_secs(3);
const WATCH: Duration = Duration::from_secs(9);
/// The deployment's store key (base64 of 32 bytes), as `CLEVER_AUTH_STORE_KEY` gives it.
const STORE_KEY: &str = "c2NhbGVvdXQtdGVzdC1zdG9yZS1rZXktMzItYnl0ZXM=";

async fn start_hosts(
    fake: &FakeClever,
    redis: &RedisServer,
    n: usize,
) -> anyhow::Result<Vec<HostProcess>> {
    let mut hosts = Vec::new();
    for _ in 0..n {
        let opts = scenario::host_options(
            fake,
            &[
                ("CLEVER_TOKEN_LIFETIME_SECS", LIFETIME),
                ("CLEVER_AUTH_STORE_KEY", STORE_KEY),
            ],
            &["--store", &redis.url()],
            true,
        );
        hosts.push(HostProcess::start(opts).await?);
    }
    Ok(hosts)
}

async fn wait_all_pass(hosts: &[HostProcess]) -> anyhow::Result<()> {
    for h in hosts {
        scenario::wait_health(h, Duration::from_secs(30), |h| {
            h.body["status"] == "pass" && h.district_ids().len() == 2
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_on_one_redis_list_once_per_cycle_and_share_the_tokens() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let hosts = start_hosts(&fake, &redis, INSTANCES).await?;
    wait_all_pass(&hosts).await?;

    // Count listings over whole cycles from here on.
    let before = fake.request_count(Route::TokenList);
    let started = Instant::now();
    tokio::time::sleep(WATCH).await;
    let listings = fake.request_count(Route::TokenList) - before;
    let cycles = (WATCH.as_secs_f64() / CYCLE.as_secs_f64()).round() as usize;
    eprintln!(
        "{INSTANCES} instances on one Redis: {listings} listings in {:?} ({cycles} cycles)",
        started.elapsed()
    );
    // One refresher for the deployment: one listing per cycle (a cycle boundary at either
    // edge of the window may add one). Each instance for itself would make about 3 per cycle.
    assert!(
        (cycles - 1..=cycles + 1).contains(&listings),
        "{listings} listings in {cycles} cycles of {INSTANCES} instances"
    );

    // Every instance lends the shared tokens, including those that never listed.
    for h in &hosts {
        let reply =
            http_client::get(&h.gateway_url("/clever/d-alpha/v3.0/districts/d-alpha")).await?;
        assert_eq!(
            reply.status,
            200,
            "gateway on one instance: {}",
            reply.text()
        );
    }

    // Nothing usable in Redis: no token Clever issued, no credential, not the store key.
    let dump = redis.dump()?;
    assert!(
        dump.iter().any(|(k, _)| k.contains("/token/")),
        "no token records among {} keys",
        dump.len()
    );
    let mut needles: Vec<String> = fake
        .district_ids()
        .iter()
        .filter_map(|d| fake.district_token(d))
        .collect();
    assert_eq!(needles.len(), 2, "the fake's tokens");
    needles.extend([fake.client_secret(), STORE_KEY.to_string()]);
    for (key, value) in &dump {
        let text = String::from_utf8_lossy(value);
        for n in &needles {
            assert!(
                !key.contains(n.as_str()) && !text.contains(n.as_str()),
                "a secret in Redis under {key}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_store_without_a_store_key_is_refused_at_start() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let opts = scenario::host_options(&fake, &[], &["--store", &redis.url()], true);
    let (status, output) = HostProcess::run_to_exit(opts).await?;
    assert!(!status.success(), "started without a store key");
    assert!(output.contains("CLEVER_AUTH_STORE_KEY"), "{output}");
    assert_eq!(redis.dump()?.len(), 0, "wrote to Redis before refusing");
    Ok(())
}

/// Redis stopped for a few seconds: each instance keeps lending the unexpired tokens it last
/// read, health says `warn` with `store:reachable`, naming no address; when Redis returns
/// (empty: it keeps nothing on disk) the deployment lists again and passes, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_stops_nothing_and_heals_without_a_restart() -> anyhow::Result<()> {
    let Some(mut redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let opts = scenario::host_options(
            &fake,
            &[
                // Long enough that no token nears expiry during the outage.
                ("CLEVER_TOKEN_LIFETIME_SECS", "120"),
                ("CLEVER_AUTH_STORE_KEY", STORE_KEY),
            ],
            &["--store", &redis.url()],
            true,
        );
        hosts.push(HostProcess::start(opts).await?);
    }
    wait_all_pass(&hosts).await?;
    let district_data = "/clever/d-alpha/v3.0/districts/d-alpha";
    for h in &hosts {
        // Each instance reads the shared token once, so it holds a copy.
        assert_eq!(
            http_client::get(&h.gateway_url(district_data))
                .await?
                .status,
            200
        );
    }

    redis.stop().await?;
    for h in &hosts {
        let warned = scenario::wait_health(h, Duration::from_secs(10), |h| {
            h.body["status"] == "warn" && h.body["checks"]["store:reachable"][0]["status"] == "warn"
        })
        .await?;
        let text = warned.body.to_string();
        assert!(
            !text.contains(&redis.port.to_string()),
            "health names the store's address: {text}"
        );
        assert_eq!(
            warned.status, 200,
            "an outage with usable tokens is not a failure"
        );
        let reply = http_client::get(&h.gateway_url(district_data)).await?;
        assert_eq!(
            reply.status,
            200,
            "gateway during the outage: {}",
            reply.text()
        );
    }

    redis.restart().await?;
    for h in &hosts {
        scenario::wait_health(h, Duration::from_secs(20), |h| {
            h.body["status"] == "pass" && h.body["checks"]["store:reachable"][0]["status"] == "pass"
        })
        .await?;
        let reply = http_client::get(&h.gateway_url(district_data)).await?;
        assert_eq!(
            reply.status,
            200,
            "gateway after the outage: {}",
            reply.text()
        );
    }
    Ok(())
}
