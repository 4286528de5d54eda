//! One contract for every store provider: the memory store and Redis (a real `redis-server`)
//! must answer the component's `wasi:keyvalue` calls alike, so moving a deployment from one to
//! the other changes nothing it can observe.

use clever_auth_core::secret::Secret;
use clever_auth_host::keyvalue::store_auth::StoreAuth;
use clever_auth_host::keyvalue::{
    MemoryStore, RedisCredentials, RedisLogin, RedisStore, StoreProvider, Stores,
};
use clever_auth_tests::redis_server::{RedisAuth, RedisServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

const L: &str = "default";

async fn memory() -> Arc<dyn StoreProvider> {
    Arc::new(MemoryStore::new([L.to_string()]))
}

async fn redis(server: &RedisServer) -> anyhow::Result<Arc<dyn StoreProvider>> {
    Ok(Arc::new(RedisStore::new(server.client()?, None)?))
}

/// A store on `server` that logs in as `default` with `key`, and the credentials it reads.
fn redis_with_key(
    server: &RedisServer,
    key: &str,
) -> anyhow::Result<(Arc<dyn StoreProvider>, Arc<RedisCredentials>)> {
    let credentials = RedisCredentials::new(StoreAuth::AccessKey);
    credentials.set(login(key));
    let client = redis::Client::open(server.url())?;
    let store = RedisStore::new(client, Some(credentials.clone()))?;
    Ok((Arc::new(store), credentials))
}

/// A server that wants [`KEY`] (`requirepass`, an access key), or `None` without redis-server.
async fn keyed_server() -> anyhow::Result<Option<RedisServer>> {
    RedisServer::start_with(RedisAuth {
        requirepass: Some(KEY.into()),
        ..Default::default()
    })
    .await
}

fn login(key: &str) -> RedisLogin {
    RedisLogin {
        user: "default".into(),
        password: Secret::new(key),
    }
}

/// Calls `set` until it succeeds, within 10 s.
async fn until_set(s: &dyn StoreProvider, value: &[u8]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.set(L, "k", value).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => anyhow::bail!("the store never answered: {e}"),
        }
    }
}

/// Every key after `cursor`, page by page, as the component lists them.
async fn all_keys(s: &dyn StoreProvider, label: &str, page: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let keys = s.keys_after(label, cursor.as_deref(), page).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(out);
        };
        out.extend(keys);
        cursor = Some(last);
    }
}

async fn values_and_labels(s: &dyn StoreProvider) -> anyhow::Result<()> {
    assert_eq!(s.get(L, "absent").await?, None);
    let binary = vec![0u8, 255, 10, 0, 7];
    s.set(L, "k", &binary).await?;
    assert_eq!(s.get(L, "k").await?, Some(binary.clone()));
    s.set(L, "k", b"second").await?;
    assert_eq!(s.get(L, "k").await?, Some(b"second".to_vec()));
    assert_eq!(s.get("other", "k").await?, None, "labels are separate");
    s.set(L, "empty", b"").await?;
    assert_eq!(
        s.get(L, "empty").await?,
        Some(Vec::new()),
        "empty is not absent"
    );
    s.delete(L, "k").await?;
    assert_eq!(s.get(L, "k").await?, None);
    s.delete(L, "never-there").await?;
    Ok(())
}

async fn get_many(s: &dyn StoreProvider) -> anyhow::Result<()> {
    s.set(L, "many/a", b"1").await?;
    s.set(L, "many/empty", b"").await?;
    s.set("other", "many/elsewhere", b"x").await?;
    let keys = [
        "many/a",
        "many/absent",
        "many/elsewhere",
        "many/a",
        "many/empty",
    ]
    .map(String::from);
    assert_eq!(
        s.get_many(L, &keys).await?,
        [
            Some(b"1".to_vec()),
            None,
            None,
            Some(b"1".to_vec()),
            Some(Vec::new())
        ],
        "one answer per key, in order: absent, another label's and empty as get answers them"
    );
    assert_eq!(
        s.get_many(L, &["many/a".to_string()]).await?,
        [Some(b"1".to_vec())],
        "a lone key"
    );
    assert!(s.get_many(L, &[]).await?.is_empty(), "no keys, no values");
    Ok(())
}

async fn listing(s: &dyn StoreProvider) -> anyhow::Result<()> {
    let mut written: Vec<String> = (0..1205).map(|i| format!("list/{i:05}")).collect();
    // Keys that glob patterns would treat specially must list as themselves.
    written.extend(["list/*", "list/[x]", "list/a?b"].map(String::from));
    for k in &written {
        s.set(L, k, b"v").await?;
    }
    s.set("other", "list/elsewhere", b"v").await?;
    written.sort();
    let listed: Vec<String> = all_keys(s, L, 1000)
        .await?
        .into_iter()
        .filter(|k| k.starts_with("list/"))
        .collect();
    assert_eq!(listed, written, "every key once, ascending, across pages");
    let first = s.keys_after(L, Some("list/00009"), 3).await?;
    assert_eq!(
        first,
        ["list/00010", "list/00011", "list/00012"],
        "the cursor is exclusive"
    );
    assert!(s
        .keys_after(L, Some("list/zzz"), 10)
        .await?
        .iter()
        .all(|k| k.as_str() > "list/zzz"));
    Ok(())
}

async fn counters(s: &dyn StoreProvider) -> anyhow::Result<()> {
    assert_eq!(
        s.increment(L, "n", 2).await?,
        2,
        "a missing counter starts at 0"
    );
    assert_eq!(s.increment(L, "n", -5).await?, -3);
    assert_eq!(
        s.get(L, "n").await?,
        Some(b"-3".to_vec()),
        "stored as decimal text"
    );
    s.set(L, "text", b"x").await?;
    let e = s.increment(L, "text", 1).await.expect_err("not an integer");
    assert_eq!(e.0, "value is not a decimal integer");
    assert_eq!(
        s.get(L, "text").await?,
        Some(b"x".to_vec()),
        "left as it was"
    );
    s.set(L, "big", i64::MAX.to_string().as_bytes()).await?;
    let e = s.increment(L, "big", 1).await.expect_err("overflow");
    assert_eq!(e.0, "counter overflow");
    Ok(())
}

async fn compare_and_swap(s: &dyn StoreProvider) -> anyhow::Result<()> {
    assert!(
        s.compare_and_swap(L, "lease", None, b"a").await?,
        "absent as expected"
    );
    assert!(
        !s.compare_and_swap(L, "lease", None, b"b").await?,
        "no longer absent"
    );
    assert!(
        !s.compare_and_swap(L, "lease", Some(b"x"), b"b").await?,
        "wrong value"
    );
    assert_eq!(
        s.get(L, "lease").await?,
        Some(b"a".to_vec()),
        "a failed swap writes nothing"
    );
    assert!(s.compare_and_swap(L, "lease", Some(b"a"), b"b").await?);
    assert_eq!(s.get(L, "lease").await?, Some(b"b".to_vec()));
    s.set(L, "blank", b"").await?;
    assert!(
        !s.compare_and_swap(L, "blank", None, b"c").await?,
        "empty is not absent"
    );
    assert!(s.compare_and_swap(L, "blank", Some(b""), b"c").await?);
    Ok(())
}

/// Writers on separate tasks bump one counter by compare-and-swap: none is lost, so no
/// writer ever slipped in between another's comparison and write.
async fn swaps_are_atomic(s: Arc<dyn StoreProvider>) -> anyhow::Result<()> {
    const WRITERS: u64 = 8;
    const EACH: u64 = 40;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let seen = s.get(L, "race").await?;
                    let n: u64 = seen
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).parse().unwrap_or(0))
                        .unwrap_or(0);
                    if s.compare_and_swap(
                        L,
                        "race",
                        seen.as_deref(),
                        (n + 1).to_string().as_bytes(),
                    )
                    .await?
                    {
                        break;
                    }
                    conflicts += 1;
                }
            }
            anyhow::Ok(conflicts)
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await??;
    }
    let total = s.get(L, "race").await?.unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&total),
        (WRITERS * EACH).to_string(),
        "every increment kept ({conflicts} conflicts retried)"
    );
    Ok(())
}

async fn the_contract(s: Arc<dyn StoreProvider>) -> anyhow::Result<()> {
    values_and_labels(s.as_ref()).await?;
    get_many(s.as_ref()).await?;
    listing(s.as_ref()).await?;
    counters(s.as_ref()).await?;
    compare_and_swap(s.as_ref()).await?;
    swaps_are_atomic(s).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_store_keeps_the_contract() -> anyhow::Result<()> {
    the_contract(memory().await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_keeps_the_contract() -> anyhow::Result<()> {
    let Some(server) = RedisServer::start().await? else {
        return Ok(());
    };
    the_contract(redis(&server).await?).await?;
    // Everything lives under our prefix, so one Redis can hold other data too.
    let foreign: Vec<String> = server
        .dump()?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("clever-auth:default:") && !k.starts_with("clever-auth:other:"))
        .collect();
    assert!(foreign.is_empty(), "keys outside the prefix: {foreign:?}");
    Ok(())
}

/// `get_many` is one `MGET` whatever the number of keys, and no call at all for none.
#[tokio::test(flavor = "multi_thread")]
async fn redis_answers_get_many_with_one_mget() -> anyhow::Result<()> {
    let Some(server) = RedisServer::start().await? else {
        return Ok(());
    };
    let s = redis(&server).await?;
    s.set(L, "a", b"1").await?;
    let (gets, mgets) = (server.command_calls("get")?, server.command_calls("mget")?);
    let keys = ["a", "b", "c"].map(String::from);
    assert_eq!(
        s.get_many(L, &keys).await?,
        [Some(b"1".to_vec()), None, None]
    );
    s.get_many(L, &["a".to_string()]).await?;
    s.get_many(L, &[]).await?;
    assert_eq!(
        server.command_calls("mget")? - mgets,
        2,
        "one MGET per call with keys"
    );
    assert_eq!(server.command_calls("get")?, gets, "no GET");
    Ok(())
}

/// The host's routing keeps `get`'s semantics for each key of a `get_many`: the host's own
/// keys from the process, the rest from Redis and kept in the process's copy, which answers
/// while Redis does not (and the store is then said to be unreachable).
#[tokio::test(flavor = "multi_thread")]
async fn stores_answer_get_many_from_the_copy_during_an_outage() -> anyhow::Result<()> {
    let Some(mut server) = RedisServer::start().await? else {
        return Ok(());
    };
    let stores = Stores::shared(
        MemoryStore::new([L.to_string()]),
        redis(&server).await?,
        "redis",
    );
    let token = "clever-auth/v1/token/d";
    let own = "clever-auth/v1/host/solo/token/d";
    let pace = "clever-auth/v1/gateway/pace/d";
    let budget = "clever-auth/v1/gateway/budget/d";
    let keys = [token, own, pace, budget].map(String::from);
    stores.set(L, token, b"t".to_vec()).await?;
    stores.set(L, own, b"mine".to_vec()).await?;
    // Written by another instance: this one has no copy until it reads it.
    redis(&server).await?.set(L, pace, b"p").await?;
    let mgets = server.command_calls("mget")?;
    let expected = [
        Some(b"t".to_vec()),
        Some(b"mine".to_vec()),
        Some(b"p".to_vec()),
        None,
    ];
    assert_eq!(stores.get_many(L, &keys).await?, expected);
    assert_eq!(server.command_calls("mget")? - mgets, 1);
    assert!(
        server.dump()?.iter().all(|(k, _)| !k.contains("/host/")),
        "a host key reached Redis"
    );

    server.stop().await?;
    assert_eq!(
        stores.get_many(L, &keys).await?,
        expected,
        "the copy answers, the read pace included"
    );
    assert!(!stores.reachable(), "an unanswered get_many is an outage");
    assert!(
        stores.set(L, token, b"t2".to_vec()).await.is_err(),
        "writes still fail"
    );

    // Back, empty (no persistence): the answers and the copy follow Redis again.
    server.restart().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let values = stores.get_many(L, &keys).await?;
        if stores.reachable() {
            assert_eq!(values, [None, Some(b"mine".to_vec()), None, None]);
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "Redis never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stores.local.get(L, token), None, "the copy follows Redis");
    Ok(())
}

/// Redis going away makes calls fail quickly with a message that names no address; when it
/// comes back, the same store works again without being rebuilt.
#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_fails_fast_and_recovers() -> anyhow::Result<()> {
    let Some(mut server) = RedisServer::start().await? else {
        return Ok(());
    };
    let s = redis(&server).await?;
    s.set(L, "k", b"v").await?;
    server.stop().await?;
    let started = Instant::now();
    let e = s.get(L, "k").await.expect_err("Redis is down");
    let waited = started.elapsed();
    assert!(e.0.starts_with("store unreachable"), "{e}");
    assert!(
        !e.0.contains(&server.port.to_string()) && !e.0.contains("127.0.0.1"),
        "{e}"
    );
    assert!(waited < Duration::from_secs(5), "failing took {waited:?}");
    server.restart().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.set(L, "k", b"again").await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet back: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => anyhow::bail!("store never recovered: {e}"),
        }
    }
    assert_eq!(s.get(L, "k").await?, Some(b"again".to_vec()));
    Ok(())
}

const KEY: &str = "access-key-one-0123456789abcdef";
const ROTATED: &str = "access-key-two-fedcba9876543210";
const WRONG: &str = "access-key-wrong-000000000000000";

#[tokio::test(flavor = "multi_thread")]
async fn redis_behind_an_access_key_keeps_the_contract() -> anyhow::Result<()> {
    let Some(server) = keyed_server().await? else {
        return Ok(());
    };
    let (store, _) = redis_with_key(&server, KEY)?;
    the_contract(store).await
}

/// A wrong key fails like an outage (so health shows `store:reachable`), says authentication
/// failed and shows no key; the right key heals the same store on its next call.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_is_an_outage_until_the_right_key_is_held() -> anyhow::Result<()> {
    let Some(server) = keyed_server().await? else {
        return Ok(());
    };
    let (store, credentials) = redis_with_key(&server, WRONG)?;
    let e = store.get(L, "k").await.expect_err("a wrong key");
    assert!(
        e.0.starts_with("store unreachable: authentication failed"),
        "{e}"
    );
    assert!(e.0.contains("access key"), "{e}");
    for secret in [KEY, WRONG] {
        assert!(!e.0.contains(secret), "the key in the error: {e}");
    }

    credentials.set(login(KEY));
    until_set(store.as_ref(), b"v").await?;
    assert_eq!(store.get(L, "k").await?, Some(b"v".to_vec()));

    // No credentials at all against a Redis that wants them.
    let bare = RedisStore::new(redis::Client::open(server.url())?, None)?;
    let e = bare.get(L, "k").await.expect_err("no AUTH");
    assert!(
        e.0.starts_with("store unreachable: authentication failed") && e.0.contains("--store-auth"),
        "{e}"
    );
    Ok(())
}

/// A rotated credential reaches the live connection (AUTH again: the same connection, now
/// logged in as the new user) and every later one (after Redis drops the connection, the
/// store reconnects with the new credential).
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_reaches_live_and_new_connections() -> anyhow::Result<()> {
    let Some(server) = keyed_server().await? else {
        return Ok(());
    };
    let (store, credentials) = redis_with_key(&server, KEY)?;
    store.set(L, "k", b"1").await?;
    let connections = server.client_ids_of("default")?;
    assert_eq!(connections.len(), 1, "{connections:?}");

    // A user of its own makes the re-authentication visible in CLIENT LIST.
    server.command(&[
        "ACL",
        "SETUSER",
        "rotated",
        "on",
        &format!(">{ROTATED}"),
        "~*",
        "+@all",
    ])?;
    assert!(credentials.set(RedisLogin {
        user: "rotated".into(),
        password: Secret::new(ROTATED),
    }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.client_ids_of("rotated")? != connections {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the live connection never re-authenticated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.set(L, "k", b"2").await?;

    // The old key stops working and Redis drops the connection: the next one logs in with
    // the rotated credential.
    server.command(&["CONFIG", "SET", "requirepass", WRONG])?;
    server.command(&["CLIENT", "KILL", "USER", "rotated"])?;
    until_set(store.as_ref(), b"3").await?;
    assert_eq!(store.get(L, "k").await?, Some(b"3".to_vec()));
    let now = server.client_ids_of("rotated")?;
    assert!(
        !now.is_empty() && now != connections,
        "a new connection: {now:?}"
    );
    Ok(())
}

/// Each thread that calls the store has a connection of its own, as the gateway's threads
/// (each its own single-threaded runtime) need: on one shared connection every round trip
/// crossed to the thread whose runtime drove it. A thread that ends closes its connection.
#[tokio::test(flavor = "multi_thread")]
async fn each_calling_thread_has_its_own_connection() -> anyhow::Result<()> {
    let Some(server) = keyed_server().await? else {
        return Ok(());
    };
    let (store, _) = redis_with_key(&server, KEY)?;
    store.set(L, "k", b"0").await?;
    assert_eq!(server.client_ids_of("default")?.len(), 1);

    let connected = Arc::new(std::sync::Barrier::new(3));
    let release = Arc::new(std::sync::Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (store, connected, release) = (store.clone(), connected.clone(), release.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let written = runtime.block_on(async {
                    for n in 0..3u8 {
                        store.set(L, &format!("thread-{i}"), &[n]).await?;
                    }
                    anyhow::Ok(())
                });
                connected.wait();
                release.wait();
                written
            })
        })
        .collect();
    tokio::task::block_in_place(|| connected.wait());
    let during = server.client_ids_of("default")?;
    tokio::task::block_in_place(|| release.wait());
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))??;
    }
    assert_eq!(
        during.len(),
        3,
        "connections while 3 threads used the store: {during:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.client_ids_of("default")?.len() > 1 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ended threads' connections stayed open: {:?}",
            server.client_ids_of("default")?
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.get(L, "thread-1").await?, Some(vec![2]));
    Ok(())
}
