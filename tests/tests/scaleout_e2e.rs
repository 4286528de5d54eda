//! Several real host processes on one real Redis (`--store redis://…`) against one fake Clever
//! behave as one Clever client: one token listing per refresh cycle whatever the number of
//! instances, every instance serves the tokens another one fetched, and callers spread over
//! the instances share one rate budget per district token.

use anyhow::Context as _;
use clever_auth_tests::fake_clever::{
    FakeClever, Fault, RateLimitBucket, RateLimitConfig, Route, RouteMatch,
};
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

/// `n` hosts on `redis` with the deployment's store key, tokens living `lifetime_secs`.
async fn start_hosts(
    fake: &FakeClever,
    redis: &RedisServer,
    n: usize,
    lifetime_secs: &str,
) -> anyhow::Result<Vec<HostProcess>> {
    start_hosts_with(
        fake,
        redis,
        n,
        &[("CLEVER_TOKEN_LIFETIME_SECS", lifetime_secs)],
    )
    .await
}

/// [`start_hosts`] with any settings.
async fn start_hosts_with(
    fake: &FakeClever,
    redis: &RedisServer,
    n: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<Vec<HostProcess>> {
    let mut env = env.to_vec();
    env.push(("CLEVER_AUTH_STORE_KEY", STORE_KEY));
    let mut hosts = Vec::new();
    for _ in 0..n {
        let opts = scenario::host_options(fake, &env, &["--store", &redis.url()], true);
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
    let hosts = start_hosts(&fake, &redis, INSTANCES, LIFETIME).await?;
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

/// Gateway calls counted in Redis's own statistics below.
const COUNTED_CALLS: u64 = 40;

/// A gateway call reads the district's token, pace and budget records in one `MGET` before
/// its first attempt, not in a `GET` each (three round trips per call before the change), and
/// takes its permit from the instance's reserved balance: one `INCRBY` per batch (up to
/// `reserve::MAX_BATCH` of Clever's 1,200 per minute), not one per call. A health request
/// reads the host's records, the versions seen and the public summary in one `MGET` too.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_and_health_requests_cost_one_redis_read_each() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    // Tokens that outlive the test: no refresh adds reads of its own meanwhile.
    let hosts = start_hosts(&fake, &redis, 1, "600").await?;
    wait_all_pass(&hosts).await?;
    let url = hosts[0].gateway_url("/clever/d-alpha/v3.0/districts/d-alpha");
    let counts = || -> anyhow::Result<[u64; 3]> {
        Ok([
            redis.command_calls("get")?,
            redis.command_calls("mget")?,
            redis.command_calls("incrby")?,
        ])
    };
    let before = counts()?;
    for _ in 0..COUNTED_CALLS {
        let reply = http_client::get(&url).await?;
        assert_eq!(reply.status, 200, "gateway: {}", reply.text());
    }
    let after = counts()?;
    let [gets, mgets, incrs] = [0, 1, 2].map(|i| after[i] - before[i]);
    eprintln!("{COUNTED_CALLS} gateway calls: {gets} GET, {mgets} MGET, {incrs} INCRBY");
    assert!(
        gets < COUNTED_CALLS,
        "{gets} GETs for {COUNTED_CALLS} gateway calls ({mgets} MGETs)"
    );
    assert!(
        mgets >= COUNTED_CALLS,
        "{mgets} MGETs for {COUNTED_CALLS} gateway calls ({gets} GETs)"
    );
    // A probe, the corrections its answer asks for, and about one batch per 16 calls.
    assert!(
        (1..=COUNTED_CALLS / 4).contains(&incrs),
        "{incrs} INCRBYs for {COUNTED_CALLS} gateway calls"
    );

    let before = counts()?;
    for _ in 0..COUNTED_CALLS {
        let health = scenario::health(&hosts[0]).await?;
        assert_eq!(health.body["status"], "pass", "{}", health.body);
    }
    let after = counts()?;
    let [gets, mgets, _] = [0, 1, 2].map(|i| after[i] - before[i]);
    eprintln!("{COUNTED_CALLS} health requests: {gets} GET, {mgets} MGET");
    assert_eq!(
        (gets, mgets),
        (0, COUNTED_CALLS),
        "GETs and MGETs for {COUNTED_CALLS} health requests"
    );
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
    // Long enough that no token nears expiry during the outage.
    let hosts = start_hosts(&fake, &redis, 2, "120").await?;
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

/// Solo refresh (issue #19, part 6): with `CLEVER_HTTP_TIMEOUT_MS=1000` the lease lasts 5 s and
/// the grace is two of them; tokens live 24 s and are refreshed at a quarter of that, so the
/// deployment lists every 6 s and a token read just before the outage is still usable when
/// the grace ends.
const SOLO_ENV: [(&str, &str); 5] = [
    ("CLEVER_TOKEN_LIFETIME_SECS", "24"),
    ("CLEVER_REFRESH_FRACTION", "0.25"),
    ("CLEVER_EXPIRY_SKEW_SECS", "1"),
    ("CLEVER_HTTP_TIMEOUT_MS", "1000"),
    ("CLEVER_GATEWAY_DEADLINE_MS", "2000"),
];
const SOLO_GRACE: Duration = Duration::from_secs(10);
const SOLO_LIFETIME: Duration = Duration::from_secs(24);
const SOLO_CYCLE: Duration = Duration::from_secs(6);

/// Redis stopped for longer than the tokens live: every instance keeps serving, because past
/// the grace each refreshes its tokens alone (health `warn`, saying so, naming no address);
/// Redis back (empty), each hands back and the deployment lists once per cycle again, with
/// no restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_redis_outage_makes_each_instance_refresh_alone_then_hand_back() -> anyhow::Result<()>
{
    let Some(mut redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let hosts = start_hosts_with(&fake, &redis, INSTANCES, &SOLO_ENV).await?;
    wait_all_pass(&hosts).await?;
    let district_data = "/clever/d-alpha/v3.0/districts/d-alpha";
    for h in &hosts {
        assert_eq!(
            http_client::get(&h.gateway_url(district_data))
                .await?
                .status,
            200
        );
    }

    redis.stop().await?;
    let stopped = Instant::now();
    let listings_before = fake.request_count(Route::TokenList);
    let log_marks: Vec<usize> = hosts.iter().map(|h| h.output.lines().len()).collect();
    // Longer than a token lives: by the end every token read before the outage has expired,
    // so a 200 then can only come from a token an instance obtained alone.
    let outage = SOLO_LIFETIME + Duration::from_secs(4);
    let mut served = 0;
    while stopped.elapsed() < outage {
        for h in &hosts {
            let reply = http_client::get(&h.gateway_url(district_data)).await?;
            assert_eq!(
                reply.status,
                200,
                "gateway {:?} into the outage: {}\n{}",
                stopped.elapsed(),
                reply.text(),
                h.output.text()
            );
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let alone_started: Vec<_> = fake
        .requests_for(Route::TokenList)
        .into_iter()
        .skip(listings_before)
        .map(|r| r.at)
        .collect();
    let first = alone_started
        .first()
        .ok_or_else(|| anyhow::anyhow!("no instance listed during the outage"))?
        .duration_since(stopped);
    eprintln!(
        "outage: {served} gateway calls served; {} listings, the first {first:?} after Redis stopped (grace {SOLO_GRACE:?})",
        alone_started.len()
    );
    // Not before the grace (the store may come back), and soon after it: the grace counts
    // from the first call that got no answer (up to 2 s after the stop while the client
    // reconnects), then one 200 ms poll of the busy lease and the listing itself.
    assert!(
        first >= SOLO_GRACE,
        "an instance listed alone {first:?} into the outage, before the grace:\n{}",
        hosts
            .iter()
            .map(|h| h.output.text())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    assert!(
        first <= SOLO_GRACE + Duration::from_secs(5),
        "the first solo listing came {first:?} into the outage"
    );
    // Each instance on its own schedule: one listing each at the start, then one per cycle.
    let alone_for = outage.saturating_sub(SOLO_GRACE);
    let per_instance = alone_for.as_millis() / SOLO_CYCLE.as_millis() + 2;
    assert!(
        alone_started.len() >= INSTANCES
            && alone_started.len() as u128 <= INSTANCES as u128 * per_instance,
        "{} listings during the outage by {INSTANCES} instances alone for about {alone_for:?}",
        alone_started.len()
    );
    for (h, mark) in hosts.iter().zip(&log_marks) {
        h.output
            .wait_for_line(*mark, Duration::from_secs(1), "solo_refresh_started", |l| {
                l.contains("solo_refresh_started")
            })
            .await?;
        let health = scenario::health(h).await?;
        let check = &health.body["checks"]["store:reachable"][0];
        assert_eq!(health.body["status"], "warn", "{}", health.body);
        assert_eq!(health.status, 200);
        assert!(
            check["output"]
                .as_str()
                .is_some_and(|o| o.contains("refreshes its tokens alone")),
            "{check}"
        );
        assert!(check["refreshingAloneSince"].is_string(), "{check}");
        let text = health.body.to_string();
        assert!(
            !text.contains(&redis.port.to_string()),
            "health names the store's address: {text}"
        );
        for d in ["d-alpha", "d-beta"] {
            let token = fake.district_token(d).unwrap_or_default();
            assert!(
                token.is_empty() || !text.contains(&token),
                "health shows {d}'s token"
            );
        }
    }

    redis.restart().await?;
    for (h, mark) in hosts.iter().zip(&log_marks) {
        scenario::wait_health(h, Duration::from_secs(20), |h| {
            h.body["status"] == "pass" && h.body["checks"]["store:reachable"][0]["status"] == "pass"
        })
        .await?;
        h.output
            .wait_for_line(*mark, Duration::from_secs(10), "solo_refresh_ended", |l| {
                l.contains("solo_refresh_ended")
            })
            .await?;
    }
    // Back to one shared refresher: one listing per cycle for the whole deployment (each
    // instance alone would list once per cycle each).
    let watch_from = fake.request_count(Route::TokenList);
    tokio::time::sleep(SOLO_CYCLE * 2).await;
    let shared = fake.request_count(Route::TokenList) - watch_from;
    eprintln!(
        "after the outage: {shared} listings in {:?}",
        SOLO_CYCLE * 2
    );
    assert!(
        (1..=3).contains(&shared),
        "{shared} listings in two cycles after Redis came back"
    );
    for h in &hosts {
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

/// Clever's budget here: calls per window per token, enforced with 429 as Clever does.
const BUDGET: u64 = 20;
const BUDGET_WINDOW_SECS: u64 = 2;
const CALLERS: usize = 8;
const CALLING: Duration = Duration::from_secs(12);

/// Eight callers spread over three instances, always with another request, against a Clever
/// allowing 20 calls per 2 s per token: every window earns at most one 429, and once the
/// deployment has seen two windows (it learns their period) each full window serves at least
/// 90 % of the budget. Each instance counting for itself earned 11–14 × 429 in 12 s (#19).
#[tokio::test(flavor = "multi_thread")]
async fn callers_on_three_instances_share_one_rate_budget() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    // Tokens that outlive the test: the fake counts per token, so a new token mid-window
    // would be a fresh budget that the deployment's counter does not know of.
    let hosts = start_hosts(&fake, &redis, INSTANCES, "600").await?;
    wait_all_pass(&hosts).await?;
    fake.set_rate_limit(RateLimitConfig {
        buckets: vec![RateLimitBucket::new(
            "per-token",
            BUDGET,
            Duration::from_secs(BUDGET_WINDOW_SECS),
        )],
        enforce: true,
        ..RateLimitConfig::default()
    });
    let data = "/clever/d-alpha/v3.0/districts/d-alpha/schools";
    let first = fake.requests().len();
    let start_ms = now_ms();
    let until = Instant::now() + CALLING;
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let url = hosts[i % hosts.len()].gateway_url(data);
        callers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < until {
                statuses.push(http_client::get(&url).await?.status);
            }
            anyhow::Ok(statuses)
        }));
    }
    let mut answered = Vec::new();
    for c in callers {
        answered.extend(c.await??);
    }
    let end_ms = now_ms();
    // Callers see no 429 at all: the gateway retries Clever's one after the reset.
    let refused = answered.iter().filter(|&&s| s != 200).count();

    let window_ms = BUDGET_WINDOW_SECS * 1000;
    let seen: Vec<_> = fake.requests()[first..]
        .iter()
        .filter(|r| r.route == Route::Data)
        .map(|r| (r.unix_ms / window_ms, r.status()))
        .collect();
    let windows: Vec<u64> = (start_ms / window_ms..=end_ms / window_ms).collect();
    let count = |w: u64, status: u16| {
        seen.iter()
            .filter(|(sw, s)| *sw == w && *s == Some(status))
            .count() as u64
    };
    let ok: Vec<u64> = windows.iter().map(|&w| count(w, 200)).collect();
    let limited: Vec<u64> = windows.iter().map(|&w| count(w, 429)).collect();
    eprintln!(
        "{CALLERS} callers on {INSTANCES} instances, {BUDGET} calls per {BUDGET_WINDOW_SECS} s: \
         200s per window {ok:?}, 429s per window {limited:?}; {} answers to callers, {refused} not 200",
        answered.len()
    );
    assert!(
        limited.iter().all(|&n| n <= 1),
        "more than one 429 from Clever in a window: {limited:?}"
    );
    // The first and last windows are partial; the first full one is where the period is
    // learned (its start waits for one probe's answer).
    let steady = &ok[2..ok.len() - 1];
    assert!(steady.len() >= 3, "{ok:?}");
    for (i, &n) in steady.iter().enumerate() {
        assert!(
            n * 10 >= BUDGET * 9,
            "window {} served {n} of {BUDGET}: {ok:?}",
            i + 2
        );
        assert!(n <= BUDGET, "window {} served {n} of {BUDGET}", i + 2);
    }
    assert_eq!(refused, 0, "callers got answers other than 200");
    Ok(())
}

/// Clever's answers name API versions on nearly every call; the shared observation is written
/// when it changes (or is a minute old), not per call: a call costs no Redis write for it.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_calls_seeing_the_same_versions_do_not_each_write_to_redis() -> anyhow::Result<()> {
    const CALLS: u64 = 40;
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let hosts = start_hosts(&fake, &redis, 1, "3600").await?;
    wait_all_pass(&hosts).await?;
    let url = hosts[0].gateway_url("/clever/d-alpha/v3.0/districts/d-alpha/schools?limit=100");
    let first = http_client::get(&url).await?;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(
        first.text().contains("\"uri\""),
        "a page without uris: {}",
        first.text()
    );
    let sets_before = redis.command_calls("set")?;
    for _ in 0..CALLS {
        assert_eq!(http_client::get(&url).await?.status, 200);
    }
    let sets = redis.command_calls("set")? - sets_before;
    eprintln!("{sets} SET commands during {CALLS} gateway calls");
    // The refresher's own records account for the few there are.
    assert!(sets < CALLS / 4, "{sets} SETs for {CALLS} gateway calls");
    // The observation is shared, for the other instances' health and the refresher.
    let shared = redis
        .dump()?
        .into_iter()
        .find(|(k, _)| k.ends_with("clever-auth/v1/gateway/versions"));
    let (_, value) = shared.context("no shared version observation in Redis")?;
    assert!(
        String::from_utf8_lossy(&value).contains("v3.0"),
        "{}",
        String::from_utf8_lossy(&value)
    );
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The lease with `CLEVER_HTTP_TIMEOUT_MS=1000`: the floor of `refresher::lease`.
const LEASE_TTL: Duration = Duration::from_secs(5);

/// The instance running the refresher killed with SIGKILL in the middle of its run (its
/// listing hangs): the others keep lending the shared tokens, none lists while the dead
/// holder's lease lasts, and one of them takes over once it lapses: one listing, within the
/// lease's lifetime plus one poll of the schedule.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresher_killed_mid_run_is_replaced_once_its_lease_lapses() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let fake = FakeClever::start(two_districts()).await?;
    let env = [
        ("CLEVER_TOKEN_LIFETIME_SECS", "600"),
        ("CLEVER_HTTP_TIMEOUT_MS", "1000"),
        ("CLEVER_GATEWAY_DEADLINE_MS", "2000"),
    ];
    // Alone, the first instance runs every refresh: it is the holder below.
    let mut first = start_hosts_with(&fake, &redis, 1, &env).await?;
    wait_all_pass(&first).await?;
    let holder = first.remove(0);

    // Clever refuses the token once (a relist is asked for) and every listing hangs.
    fake.fail_next(
        RouteMatch::route(Route::Data).for_district("d-alpha"),
        1,
        401,
    );
    fake.set_persistent_fault(Route::TokenList, Fault::Hang);
    let listings = fake.request_count(Route::TokenList);
    let refused = holder.gateway_url("/clever/d-alpha/v3.0/districts/d-alpha");
    let refused = tokio::spawn(async move { http_client::get(&refused).await });
    wait_until(Duration::from_secs(10), "the holder's listing", || {
        fake.request_count(Route::TokenList) > listings
    })
    .await?;

    // Two more instances join during the hung run; they serve the shared tokens.
    let others = start_hosts_with(&fake, &redis, 2, &env).await?;
    wait_all_pass(&others).await?;
    holder.kill().await?;
    let _ = refused.await;
    // The holder renews the lease before each attempt: its last attempt is its last renewal.
    let last_attempt = fake
        .requests_for(Route::TokenList)
        .last()
        .map(|r| r.at)
        .ok_or_else(|| anyhow::anyhow!("no listing seen"))?;
    let before = fake.request_count(Route::TokenList);
    fake.clear_faults();

    wait_until(LEASE_TTL * 3, "a listing by another instance", || {
        fake.request_count(Route::TokenList) > before
    })
    .await?;
    let takeover = fake.requests_for(Route::TokenList)[before].at;
    let waited = takeover.duration_since(last_attempt);
    eprintln!("the holder's last attempt to the next listing: {waited:?} (lease {LEASE_TTL:?})");
    // Not before the dead holder's lease lapsed (a second run while the first may still be
    // alive would write over it), and not much later: one 2 s poll of the schedule and a
    // 200 ms retry of the busy lease, with slack for a loaded machine.
    assert!(
        waited >= LEASE_TTL - Duration::from_millis(250),
        "another run started {waited:?} after the holder's last renewal (lease {LEASE_TTL:?})"
    );
    assert!(
        waited <= LEASE_TTL + Duration::from_secs(4),
        "the lease was taken over only {waited:?} after the holder's last renewal"
    );
    for h in &others {
        scenario::wait_health(h, Duration::from_secs(20), |h| h.body["status"] == "pass").await?;
        let reply =
            http_client::get(&h.gateway_url("/clever/d-alpha/v3.0/districts/d-alpha")).await?;
        assert_eq!(
            reply.status,
            200,
            "gateway after the takeover: {}",
            reply.text()
        );
    }
    // One run took over, not one per surviving instance.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = fake.request_count(Route::TokenList) - before;
    assert_eq!(after, 1, "{after} listings after the takeover");
    Ok(())
}

async fn wait_until(timeout: Duration, what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "no {what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
