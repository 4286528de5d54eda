//! App Service's sidecar layout rehearsed in a podman pod (`cargo xtask image --check` builds
//! the images and sets CLEVER_AUTH_CONTAINER_IMAGE; without it every test here passes at once).
//!
//! The pod is the site: clever-auth with the variables `deploy/sidecar.bicep` maps from
//! `deploy/main.bicep`'s app settings (read from those files), and a sync app running the
//! README's Python `requests` example unchanged against `http://127.0.0.1:8081/clever/…`, the
//! two sharing `localhost`. The fakes (Key Vault over TLS through the managed identity
//! endpoint, Clever over TLS) run beside the pod on podman's bridge.

use anyhow::{ensure, Context, Result};
use clever_auth_tests::container::app_service::{
    self, leaked_in, AppService, Options, CLEVER_TOKEN_PREFIX, EXTRA_CA_IN_CONTAINER,
};
use clever_auth_tests::container::pod::Pod;
use clever_auth_tests::container::podman::{self, Container};
use clever_auth_tests::container::redis::{self, RedisContainer};
use clever_auth_tests::container::sidecar::SidecarLayout;
use clever_auth_tests::fake_clever::Route;
use clever_auth_tests::http_client;
use clever_auth_tests::readme_examples;
use clever_auth_tests::scenario;
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
/// Listing tokens carry no `expires_in`, so this lifetime applies; refreshed at 0.75 of it,
/// the deployment lists every 3 s.
const LIFETIME: &str = "4";
const CYCLE: Duration = Duration::from_secs(3);
const WATCH: Duration = Duration::from_secs(9);

#[tokio::test(flavor = "multi_thread")]
async fn the_sync_app_beside_clever_auth_gets_district_data_and_never_a_token() -> Result<()> {
    let Some(image) = podman::image_under_test("sidecar_pod") else {
        return Ok(());
    };
    let tools = podman::tools_image()?;
    let layout = SidecarLayout::from_deploy_files()?;
    let s = AppService::start(&image, Options::default()).await?;

    let pod = Pod::create(
        &[
            layout.health_listen.port(),
            layout.clever_auth_port,
            layout.sync_port,
        ],
        &s.hosts(),
    )?;
    // App Service may hand every container of the site the main container's PORT: the
    // sidecar's own listen setting must win, or clever-auth would take the sync app's port.
    let mut settings = layout.clever_auth_env.clone();
    settings.push(("PORT".into(), layout.sync_port.to_string()));
    let mut args = vec!["--read-only".to_string()];
    args.extend(s.mount_and_env(&settings));
    args.push(image.clone());
    let clever_auth = pod.run(&args, &s.secret_env())?;

    // From outside the pod: the health port answers App Service's health path, publicly.
    let health_at = pod.published(layout.health_listen.port())?;
    clever_auth.with_logs(
        app_service::wait_health(health_at, WAIT, |code, status| {
            code == 200 && status == "pass"
        })
        .await,
    )?;
    let public = http_client::get(&format!("http://{health_at}{}", layout.health_path)).await?;
    ensure!(
        public.status == 200,
        "health at {}: {}",
        layout.health_path,
        public.status
    );
    let public_text = public.text();
    for district in ["d-alpha", "d-beta"] {
        ensure!(
            !public_text.contains(district),
            "the published health names {district}: {public_text}"
        );
    }

    // ... and the gateway's port does not, even published: it listens on loopback only.
    let data_calls = s.clever.request_count(Route::Data);
    let gateway_at = pod.published(layout.clever_auth_port)?;
    let outside = http_client::get(&format!(
        "http://{gateway_at}/clever/d-alpha/v3.0/districts/d-alpha/schools"
    ))
    .await;
    ensure!(
        outside.is_err(),
        "the gateway answered from outside the pod: {}",
        outside.map(|r| r.status).unwrap_or_default()
    );

    // The sync app, in the pod, runs the README's example as written.
    let block = readme_examples::example("python")?;
    let program = readme_examples::python_program(&block.text);
    let sync = pod.run(
        &[
            "--read-only".into(),
            "-e".into(),
            format!("PORT={}", layout.sync_port),
            tools,
            "python3".into(),
            "-c".into(),
            program,
            "d-alpha".into(),
        ],
        &[],
    )?;
    let code = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking({
            let id = sync.id.clone();
            move || podman::run(&["wait", &id])
        }),
    )
    .await
    .context("the sync app did not finish")???;
    let output = sync.logs()?;
    ensure!(code.trim() == "0", "the sync app exited {code}: {output}");
    let report: Value = output
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("the sync app printed no report: {output}"))?;
    ensure!(
        report["status"] == 200 && report["source"] == "clever",
        "the sync app's answer: {report:#}"
    );
    let schools = report["body"]["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    ensure!(
        report["body"]["tokenDistrict"] == "d-alpha"
            && !schools.is_empty()
            && schools.iter().all(|x| x["data"]["district"] == "d-alpha"),
        "the sync app did not get d-alpha's schools: {report:#}"
    );
    ensure!(
        s.clever.request_count(Route::Data) == data_calls + 1,
        "Clever saw {} data calls, not the sync app's one",
        s.clever.request_count(Route::Data) - data_calls
    );

    // No token or secret in the sync app's environment, its output, or clever-auth's log.
    let sync_env = sync.inspect("{{json .Config.Env}}")?;
    let secrets = s.secrets();
    for (what, text) in [
        ("the sync app's environment", sync_env.as_str()),
        ("the sync app's output", output.as_str()),
        ("clever-auth's log", clever_auth.logs()?.as_str()),
    ] {
        let leaked = leaked_in(text, &secrets);
        ensure!(leaked.is_empty(), "in {what}: {leaked:?}");
    }
    Ok(())
}

/// A second site on the same Redis (App Service scale-out, each instance a site of two
/// containers): the two clever-auth sidecars behave as one Clever client, one token listing
/// per refresh cycle, over TLS with the access key from the vault and records sealed with the
/// store key from the vault.
#[tokio::test(flavor = "multi_thread")]
async fn two_sites_on_one_redis_container_list_once_per_cycle() -> Result<()> {
    let Some(image) = podman::image_under_test("sidecar_pods_on_redis") else {
        return Ok(());
    };
    let tools = podman::tools_image()?;
    let layout = SidecarLayout::from_deploy_files()?;
    podman::ensure_bridge_up(&image)?;
    let redis = RedisContainer::start(&tools)?;
    let store_key = redis::random_store_key();
    let s = AppService::start(
        &image,
        Options {
            extra_secrets: vec![
                ("redis-access-key".into(), redis.access_key.clone()),
                ("clever-auth-store-key".into(), store_key.clone()),
            ],
            extra_ca_pem: vec![redis.ca_pem.clone()],
            ..Default::default()
        },
    )
    .await?;
    let mut hosts = s.hosts();
    hosts.push(redis.host_entry());
    let mut settings = layout.clever_auth_env.clone();
    settings.extend([
        ("CLEVER_AUTH_STORE".to_string(), redis.url()),
        ("CLEVER_AUTH_STORE_AUTH".into(), "access-key".into()),
        // The Redis connection trusts the platform's roots (rustls-native-certs), which
        // SSL_CERT_FILE replaces; the test CA is not among Azure's.
        ("SSL_CERT_FILE".into(), EXTRA_CA_IN_CONTAINER.into()),
        ("CLEVER_TOKEN_LIFETIME_SECS".into(), LIFETIME.into()),
    ]);
    // The scaled-down schedule (no skew or jitter at a 4 s lifetime), as scaleout_e2e uses.
    settings.extend(
        scenario::FAST_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut sites: Vec<(Pod, Container)> = Vec::new();
    for _ in 0..2 {
        let pod = Pod::create(&[layout.health_listen.port()], &hosts)?;
        let mut args = vec!["--read-only".to_string()];
        args.extend(s.mount_and_env(&settings));
        args.push(image.clone());
        let clever_auth = pod.run(&args, &s.secret_env())?;
        sites.push((pod, clever_auth));
    }
    for (pod, clever_auth) in &sites {
        let at = pod.published(layout.health_listen.port())?;
        let waited =
            app_service::wait_health(at, WAIT, |code, status| code == 200 && status == "pass")
                .await;
        clever_auth.with_logs(redis.container.with_logs(waited))?;
    }

    let before = s.clever.request_count(Route::TokenList);
    let started = Instant::now();
    tokio::time::sleep(WATCH).await;
    let listings = s.clever.request_count(Route::TokenList) - before;
    let cycles = (WATCH.as_secs_f64() / CYCLE.as_secs_f64()).round() as usize;
    eprintln!(
        "two sites on one Redis container: {listings} listings in {:?} ({cycles} cycles)",
        started.elapsed()
    );
    // Each site for itself would list about twice per cycle.
    ensure!(
        (cycles - 1..=cycles + 1).contains(&listings),
        "{listings} listings in {cycles} cycles of two sites"
    );

    // The shared records are there, under clever-auth's prefix, and no key names a token.
    let keys = redis.keys()?;
    ensure!(
        keys.iter().any(|k| k.contains("clever-auth/")),
        "no clever-auth record in Redis: {keys:?}"
    );
    ensure!(
        !keys.iter().any(|k| k.contains(CLEVER_TOKEN_PREFIX)),
        "a Redis key names a token"
    );
    let secrets = s.secrets();
    for (_, clever_auth) in &sites {
        let leaked = leaked_in(&clever_auth.logs()?, &secrets);
        ensure!(leaked.is_empty(), "in clever-auth's log: {leaked:?}");
        ensure!(
            !clever_auth.logs()?.contains(&redis.access_key),
            "the Redis access key in clever-auth's log"
        );
    }
    Ok(())
}
