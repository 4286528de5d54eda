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

async fn start_hosts(
    fake: &FakeClever,
    redis: &RedisServer,
    n: usize,
) -> anyhow::Result<Vec<HostProcess>> {
    let mut hosts = Vec::new();
    for _ in 0..n {
        let opts = scenario::host_options(
            fake,
            &[("CLEVER_TOKEN_LIFETIME_SECS", LIFETIME)],
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
    Ok(())
}
