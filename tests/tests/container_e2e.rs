//! The production image as App Service runs it (`cargo xtask image --check` builds it and sets
//! CLEVER_AUTH_CONTAINER_IMAGE; without that variable every test here passes at once, so that
//! `cargo xtask test` stays fast). Run one test at a time: they time starts and stops.

use clever_auth_tests::container::app_service::{
    self, leaked_in, make_world_readable, AppService, Options, GATEWAY_PORT, PORT,
};
use clever_auth_tests::container::{layers, podman};
use clever_auth_tests::fake_clever::{Fault, Route};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
/// The host's default `--drain-secs`.
const DRAIN: Duration = Duration::from_secs(10);

fn is_warning(line: &str) -> bool {
    line.to_ascii_lowercase().contains("\"level\":\"warn\"")
}

#[tokio::test(flavor = "multi_thread")]
async fn health_user_and_healthcheck_as_app_service_runs_it() -> anyhow::Result<()> {
    let Some(image) = podman::image_under_test("health_user_and_healthcheck") else {
        return Ok(());
    };
    let s = AppService::start(
        &image,
        Options {
            vault_down: true,
            ..Default::default()
        },
    )
    .await?;
    let c = s.run(&[])?;
    let at = c.published(PORT)?;

    // The vault is down: 503, and the probe counts that as alive.
    let (code, _) = c.with_logs(app_service::wait_health(at, WAIT, |code, _| code == 503).await)?;
    assert_eq!(code, 503);
    let (healthy, said) = c.healthcheck()?;
    assert!(healthy, "HEALTHCHECK on a 503 should be healthy: {said}");

    s.vault.set_down(false).await?;
    c.with_logs(
        app_service::wait_health(at, WAIT, |code, status| code == 200 && status == "pass").await,
    )?;
    let (healthy, said) = c.healthcheck()?;
    assert!(healthy, "HEALTHCHECK on pass should be healthy: {said}");

    // Numeric and not root, in the image's config and in the running process.
    let user = podman::run(&["image", "inspect", "--format", "{{.Config.User}}", &image])?;
    let (uid, gid) = user.split_once(':').unwrap_or((user.as_str(), ""));
    let uid: u32 = uid
        .parse()
        .map_err(|_| anyhow::anyhow!("the image's USER {user:?} is not numeric"))?;
    assert!(
        gid.is_empty() || gid.parse::<u32>().is_ok(),
        "the image's group {gid:?} is not numeric"
    );
    assert_ne!(uid, 0, "the image runs as root");
    let running_uid = std::fs::read_to_string(format!("/proc/{}/status", c.pid()?))?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    assert_eq!(
        running_uid,
        uid.to_string(),
        "the host runs as uid {running_uid}"
    );
    assert_eq!(c.inspect("{{.HostConfig.ReadonlyRootfs}}")?, "true");

    // A host that does not answer (stopped, as a hung process would be) is unhealthy.
    c.signal(Signal::SIGSTOP)?;
    let probe = c.healthcheck();
    c.signal(Signal::SIGCONT)?;
    let (healthy, said) = probe?;
    assert!(
        !healthy,
        "HEALTHCHECK on a host that does not answer: {said}"
    );
    c.with_logs(app_service::wait_health(at, WAIT, |_, status| status == "pass").await)?;

    let logs = c.logs()?;
    assert!(
        logs.contains("\"origin\":\"cache\""),
        "the precompiled component was not used: {logs}"
    );
    let leaked = leaked_in(&logs, &s.secrets());
    assert!(leaked.is_empty(), "in podman logs: {leaked:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_request_in_flight_completes_during_stop() -> anyhow::Result<()> {
    let Some(image) = podman::image_under_test("gateway_during_stop") else {
        return Ok(());
    };
    let s = AppService::start(&image, Options::default()).await?;
    let c = s.run(&[])?;
    let at = c.published(PORT)?;
    c.with_logs(app_service::wait_health(at, WAIT, |_, status| status == "pass").await)?;

    // Clever takes 3 s: the request is inside the host when SIGTERM comes.
    s.clever
        .set_persistent_fault(Route::Data, Fault::Delay(Duration::from_secs(3)));
    let stream = c.connect_localhost(GATEWAY_PORT)?;
    stream.set_read_timeout(Some(WAIT))?;
    let request = std::thread::spawn(move || -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut stream = stream;
        stream.write_all(
            b"GET /clever/d-alpha/v3.0/districts/d-alpha HTTP/1.1\r\n\
              Host: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    });
    s.clever
        .wait_for_log(WAIT, |log| log.iter().any(|r| r.route == Route::Data))
        .await?;
    let took = c.stop(DRAIN + Duration::from_secs(10))?;
    let answer = request
        .join()
        .map_err(|_| anyhow::anyhow!("the request thread panicked"))??;
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "the in-flight request got {status_line:?}"
    );
    assert!(
        answer.contains("d-alpha"),
        "no district in the body: {answer}"
    );
    assert_eq!(c.exit_code()?, 0, "exit code after podman stop");
    assert!(took < DRAIN, "podman stop took {took:?} (drain {DRAIN:?})");
    eprintln!(
        "podman stop with a request in flight: {} ms",
        took.as_millis()
    );
    let leaked = leaked_in(&c.logs()?, &s.secrets());
    assert!(leaked.is_empty(), "in podman logs: {leaked:?}");
    Ok(())
}

/// Copies the image's component and precompiled artifact out; returns the artifact's name.
fn copy_out(image: &str, into: &std::path::Path) -> anyhow::Result<String> {
    let id = podman::run(&["create", image])?;
    let copied = podman::run(&[
        "cp",
        &format!("{id}:/app/component-cache/."),
        &into.join("cache").to_string_lossy(),
    ])
    .and_then(|_| {
        podman::run(&[
            "cp",
            &format!("{id}:/app/clever_auth.wasm"),
            &into.to_string_lossy(),
        ])
    });
    let _ = podman::run(&["rm", &id]);
    copied?;
    let mut names: Vec<String> = std::fs::read_dir(into.join("cache"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    anyhow::ensure!(
        names.len() == 1,
        "the image should hold one precompiled artifact: {names:?}"
    );
    Ok(names.remove(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfit_precompiled_artifact_falls_back_to_compiling() -> anyhow::Result<()> {
    let Some(image) = podman::image_under_test("unfit_artifact") else {
        return Ok(());
    };
    let s = AppService::start(&image, Options::default()).await?;
    let work = s.dir().join("artifact");
    std::fs::create_dir(&work)?;
    let name = copy_out(&image, &work)?;
    let good = std::fs::read(work.join("cache").join(&name))?;
    let wasm = std::fs::read(work.join("clever_auth.wasm"))?;
    // Another engine: wasmtime's defaults, not the host's configuration.
    let other = wasmtime::Engine::default().precompile_component(&wasm)?;

    for (case, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("another engine", other),
    ] {
        let dir = s.dir().join(case.replace(' ', "-"));
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join(&name), &bytes)?;
        make_world_readable(&dir)?;
        let c = s.run(&[
            "-v".into(),
            format!("{}:/app/component-cache:ro", dir.display()),
        ])?;
        let at = c.published(PORT)?;
        c.with_logs(app_service::wait_health(at, WAIT, |_, status| status == "pass").await)?;
        let logs = c.logs()?;
        let warnings: Vec<&str> = logs.lines().filter(|l| is_warning(l)).collect();
        assert_eq!(
            warnings.len(),
            1,
            "{case}: want one warning, got {}: {warnings:#?}",
            warnings.len()
        );
        assert!(
            warnings[0].contains("precompiled component unusable"),
            "{case}: {}",
            warnings[0]
        );
        assert!(
            logs.contains("\"origin\":\"compiled\""),
            "{case}: the component was not compiled: {logs}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_layer_and_the_image_stays_small() -> anyhow::Result<()> {
    let Some(image) = podman::image_under_test("layers") else {
        return Ok(());
    };
    let s = AppService::start(&image, Options::default()).await?;
    // A run first, so the fakes have issued the tokens the scan looks for.
    let c = s.run(&[])?;
    c.with_logs(
        app_service::wait_health(c.published(PORT)?, WAIT, |_, status| status == "pass").await,
    )?;
    drop(c);
    let mut needles = s.secrets();
    // The development credentials the demo and the fakes default to.
    needles.push(("the demo client secret".into(), "demo-client-secret".into()));
    let started = Instant::now();
    let found = layers::scan_image(&image, s.dir(), &needles)?;
    eprintln!(
        "scanned {} layers for {} values in {} ms",
        layers::layer_count(s.dir()),
        needles.len(),
        started.elapsed().as_millis()
    );
    assert!(found.is_empty(), "found in the image: {found:#?}");

    let base = std::env::var(podman::RUNTIME_BASE_ENV)
        .map_err(|_| anyhow::anyhow!("{} is not set", podman::RUNTIME_BASE_ENV))?;
    let size = |image: &str| -> anyhow::Result<u64> {
        let text = podman::run(&["image", "inspect", "--format", "{{.Size}}", image])?;
        Ok(text.parse()?)
    };
    let (image_size, base_size) = (size(&image)?, size(&base)?);
    eprintln!(
        "image {} MB, base {} MB",
        image_size / 1_000_000,
        base_size / 1_000_000
    );
    assert!(
        image_size <= base_size + 60_000_000,
        "the image ({image_size} B) is more than 60 MB over its base ({base_size} B)"
    );
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `cargo xtask bench --only container`: `podman run` → first `pass`, and `podman stop` →
/// exited, with the image's precompiled component and without it. Writes a JSON summary to
/// CLEVER_AUTH_CONTAINER_BENCH_OUT.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: cargo xtask bench --only container"]
async fn container_bench() -> anyhow::Result<()> {
    let Some(image) = podman::image_under_test("container_bench") else {
        return Ok(());
    };
    let runs: usize = std::env::var("CLEVER_AUTH_CONTAINER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let s = AppService::start(&image, Options::default()).await?;
    // Without the artifact: an empty cache directory over the image's. (The image sets
    // CLEVER_AUTH_COMPONENT_CACHE, which the host refuses together with
    // CLEVER_AUTH_NO_COMPONENT_CACHE.)
    let empty = s.dir().join("empty-cache");
    std::fs::create_dir(&empty)?;
    make_world_readable(&empty)?;
    let mut summary = serde_json::Map::new();
    for (mode, extra) in [
        ("precompiled", vec![]),
        (
            "compiled at start",
            vec![
                "-v".to_string(),
                format!("{}:/app/component-cache:ro", empty.display()),
            ],
        ),
    ] {
        let (mut to_pass, mut to_exit) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let c = s.run(&extra)?;
            let at = c.published(PORT)?;
            c.with_logs(app_service::wait_health(at, WAIT, |_, status| status == "pass").await)?;
            to_pass.push(c.started.elapsed());
            to_exit.push(c.stop(DRAIN + Duration::from_secs(10))?);
            assert_eq!(c.exit_code()?, 0);
        }
        let (pass, exit) = (median(to_pass.clone()), median(to_exit.clone()));
        let ms = |v: &[Duration]| -> Vec<u128> { v.iter().map(Duration::as_millis).collect() };
        eprintln!(
            "{mode}: run -> pass median {} ms {:?}; stop -> exited median {} ms {:?}",
            pass.as_millis(),
            ms(&to_pass),
            exit.as_millis(),
            ms(&to_exit)
        );
        summary.insert(
            mode.into(),
            serde_json::json!({
                "runs": runs,
                "run_to_pass_ms": ms(&to_pass),
                "run_to_pass_median_ms": pass.as_millis(),
                "stop_to_exit_ms": ms(&to_exit),
                "stop_to_exit_median_ms": exit.as_millis(),
            }),
        );
    }
    if let Ok(out) = std::env::var("CLEVER_AUTH_CONTAINER_BENCH_OUT") {
        std::fs::write(out, serde_json::to_string_pretty(&summary)?)?;
    }
    let pass = summary["precompiled"]["run_to_pass_median_ms"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        pass <= 1000,
        "run -> pass with the cache: {pass} ms (target 1 s)"
    );
    Ok(())
}
