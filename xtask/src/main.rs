//! Project commands, so that a fresh machine needs nothing but cargo and rustup:
//!
//! - `cargo xtask component`: the component only (what `spin build` runs).
//! - `cargo xtask build`: the component (wasm32-wasip2, release) and the host.
//! - `cargo xtask run`:   build, then start the service on its embedded default
//!   (`--spin`: under `spin up` instead of the host; `--store redis://…`: tokens in Redis).
//! - `cargo xtask test`:  build, then run the whole test suite.
//! - `cargo xtask fuzz`:  run every cargo-fuzz target for a bounded time (nightly).
//! - `cargo xtask bench`: build in release, then measure (see `bench/mod.rs`).
//! - `cargo xtask image`: the production image with podman (`--check`: run it as App Service
//!   would; see `image/mod.rs`).

mod bench;
mod image;
mod procs;
mod spin;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WASM_TARGET: &str = "wasm32-wasip2";
const COMPONENT_CRATE: &str = "clever-auth";
const COMPONENT_FILE: &str = "clever_auth.wasm";
const FUZZ_TOOLCHAIN: &str = "nightly";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test clever-auth")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build only the component, to target/wasm32-wasip2/release/clever_auth.wasm (spin.toml's source).
    Component,
    /// Build the component (wasm32-wasip2, release) and the host.
    Build {
        /// Build the host in release mode too.
        #[arg(long)]
        release: bool,
    },
    /// Build everything and start the service on its embedded default: the host plus a local
    /// fake Clever (districts d-alpha and d-beta, development credentials). Ctrl-C stops both.
    Run {
        /// Address for the service.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Run the app under `spin up` (the project's spin.toml) instead of the host.
        #[arg(long)]
        spin: bool,
        /// Keep tokens in this Redis instead of memory (redis://127.0.0.1:6379[/db]), sealed
        /// with a development store key; under --spin through runtime-config.redis.toml.
        #[arg(long)]
        store: Option<String>,
    },
    /// Measure the time from starting the host to its first Clever token (against the local
    /// fake Clever), over several runs.
    FirstToken {
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Build in release and measure: health under load (host vs a native baseline), memory,
    /// start-up to first token, token hand-out, and many districts. Loopback only; stops by
    /// itself after a few minutes.
    Bench {
        /// Measured seconds per load point.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Unrecorded warm-up seconds before each load point.
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
        /// Markdown report (a JSON twin is written next to it) [default: target/bench/report.md].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Districts for the scale part.
        #[arg(long, default_value_t = 500)]
        districts: usize,
        /// Tokio worker threads of the load generator.
        #[arg(long, default_value_t = 1)]
        gen_threads: usize,
        /// Upper bound on the requests of one load point.
        #[arg(long, default_value_t = 1_000_000)]
        max_requests: u64,
        /// Host starts for the first-token median.
        #[arg(long, default_value_t = 5)]
        first_token_runs: u32,
        /// Rounds of the gateway section: each point runs direct, gateway and nginx this many
        /// times in turn, and the ratios are taken round by round (the machine's speed drifts
        /// between minutes; 3 gives a median and a range).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
        gateway_rounds: u32,
        /// Run one part only: `scale10k` (10,000 districts on one instance), `spin` (health
        /// under `spin up` side by side with the host and the native baseline), `gateway` (the
        /// gateway vs direct vs nginx), `scaleout` (the gateway and health on the memory store
        /// vs a loopback Redis), `container` (the image under podman: run → pass and stop →
        /// exit, with and without the precompiled component; --first-token-runs runs).
        #[arg(long, value_parser = ["scale10k", "spin", "gateway", "scaleout", "container"])]
        only: Option<String>,
        /// Measure this component (another build's `clever_auth.wasm`) with this build's host
        /// and harness: the other side of a before/after pair run back to back.
        #[arg(long)]
        component: Option<PathBuf>,
    },
    /// Build in release and run only the bench's abuse section: a well-behaved client's
    /// health latency and the host's RSS, unloaded and with slowloris + non-reading clients.
    BenchAbuse {
        /// Measured seconds per point.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        #[arg(long, default_value_t = 300)]
        districts: usize,
        #[arg(long, default_value_t = 1000)]
        slowloris: usize,
        #[arg(long, default_value_t = 64)]
        non_readers: usize,
        /// Measure this host binary instead of the fresh build (e.g. main's, for "before").
        #[arg(long)]
        host_bin: Option<PathBuf>,
        /// With --host-bin: that build's component.
        #[arg(long)]
        component: Option<PathBuf>,
        /// Markdown report (a JSON twin next to it) [default: target/bench/abuse.md].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build the production image from the Dockerfile with podman, as localhost/clever-auth:local.
    /// Without a registry, the bases are made from Debian's packages (mmdebstrap) first.
    Image {
        /// Then run it as App Service would and check it (tests/tests/container_e2e.rs), and
        /// rehearse the sidecar layout in a pod (tests/tests/sidecar_pod_e2e.rs).
        #[arg(long)]
        check: bool,
        /// Use the Dockerfile's own bases (rust:1.95-bookworm, debian:bookworm-slim) from a
        /// registry instead of making them.
        #[arg(long)]
        registry_bases: bool,
        /// Make the Debian bases again (security updates) even when podman has them.
        #[arg(long)]
        fresh_bases: bool,
        /// Where the image build keeps its cargo target dir (about 2 GB after a build; reused
        /// by the next one). Default: <target dir>/image-build/target.
        #[arg(long, value_name = "DIR")]
        build_target: Option<PathBuf>,
    },
    /// Build everything and run the whole test suite.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every fuzz target in fuzz/ for a bounded time; fails if any finds a crash (the input
    /// lands in fuzz/artifacts/<target>/). Needs the nightly toolchain; installs cargo-fuzz.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        secs: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Cmd::Component => {
            let wasm = build_component(&root)?;
            println!("{}", wasm.display());
        }
        Cmd::Build { release } => {
            build(&root, release)?;
        }
        Cmd::Run {
            listen,
            spin: false,
            store,
        } => demo(&root, &listen, store.as_deref())?,
        Cmd::Run {
            listen,
            spin: true,
            store,
        } => spin::demo(&root, &listen, store.as_deref())?,
        Cmd::Test { args } => test(&root, &args)?,
        Cmd::Image {
            check,
            registry_bases,
            fresh_bases,
            build_target,
        } => image::run(
            &root,
            &image::ImageOptions {
                check,
                registry_bases,
                fresh_bases,
                build_target,
            },
        )?,
        Cmd::FirstToken { runs } => first_token(&root, runs.max(1))?,
        Cmd::Fuzz { secs } => fuzz(&root, secs.max(1))?,
        Cmd::BenchAbuse {
            secs,
            districts,
            slowloris,
            non_readers,
            host_bin,
            component,
            out,
        } => bench::abuse::standalone(
            &root,
            &bench::abuse::AbuseOptions {
                secs,
                districts,
                slowloris,
                non_readers,
            },
            host_bin,
            component,
            &out.unwrap_or_else(|| root.join("target/bench/abuse.md")),
        )?,
        Cmd::Bench {
            secs,
            warmup_secs,
            out,
            districts,
            gen_threads,
            max_requests,
            first_token_runs,
            gateway_rounds,
            only,
            component,
        } => bench::run(
            &root,
            &bench::Options {
                secs,
                warmup_secs,
                out: out.unwrap_or_else(|| root.join("target/bench/report.md")),
                districts,
                gen_threads,
                max_requests,
                first_token_runs,
                gateway_rounds,
                only,
                component,
            },
        )?,
    }
    Ok(())
}

/// Builds the component and the host; returns the component's path.
fn build(root: &Path, release_host: bool) -> Result<PathBuf> {
    let component = build_component(root)?;
    let mut host = cargo(root);
    host.args(["build", "-p", "clever-auth-host"]);
    if release_host {
        host.arg("--release");
    }
    run(&mut host)?;
    Ok(component)
}

/// Builds the component into `<root>/target/wasm32-wasip2/release/clever_auth.wasm`, the path
/// `spin.toml` names. The target dir is fixed for this one build so that path holds even when
/// CARGO_TARGET_DIR points elsewhere. Cargo makes it a no-op when nothing changed.
fn build_component(root: &Path) -> Result<PathBuf> {
    ensure_wasm_target()?;
    let target_dir = root.join("target");
    run(cargo(root)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "-p",
            COMPONENT_CRATE,
        ])
        .arg("--target-dir")
        .arg(&target_dir))?;
    let wasm = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(COMPONENT_FILE);
    if !wasm.is_file() {
        bail!("the build finished but {} is missing", wasm.display());
    }
    Ok(wasm)
}

/// The test-only consumer component (`tests/consumer`, service chaining under Spin), built
/// next to the component.
const TEST_CONSUMER_CRATE: &str = "clever-auth-test-consumer";

fn build_test_consumer(root: &Path) -> Result<PathBuf> {
    let target_dir = root.join("target");
    run(cargo(root)
        .args(["build", "--release", "--target", WASM_TARGET])
        .args(["-p", TEST_CONSUMER_CRATE])
        .arg("--target-dir")
        .arg(&target_dir))?;
    Ok(target_dir
        .join(WASM_TARGET)
        .join("release")
        .join("clever_auth_test_consumer.wasm"))
}

/// The store key of `cargo xtask run --store`: a development value, like the demo's client
/// secret, so that the records of one run open in the next. Never for a real deployment.
pub(crate) const DEMO_STORE_KEY: &str = "ZGVtby1vbmx5LWNsZXZlci1hdXRoLXN0b3JlLWtleSE=";

/// `--store` as given, if it is a Redis URL (checked before anything is built).
pub(crate) fn check_store(store: Option<&str>) -> Result<()> {
    match store {
        Some(url) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
            bail!(
                "--store takes a Redis URL: redis://127.0.0.1:6379[/db] or rediss://host:port[/db]"
            )
        }
        _ => Ok(()),
    }
}

/// The embedded default: a local fake Clever on loopback and the host pointed at it.
fn demo(root: &Path, listen: &str, store: Option<&str>) -> Result<()> {
    check_store(store)?;
    let (component, bin_dir) = build_demo(root)?;
    let (mut fake, fake_url) = start_fake_clever(&bin_dir)?;
    println!("fake Clever: {fake_url}");
    println!("clever-auth: http://{listen}/health/clever-auth   (Ctrl-C stops both)");
    let mut host = host_against(
        &bin_dir.join("clever-auth-host"),
        &component,
        &fake_url,
        listen,
    );
    host.args(["--log-format", "text"])
        // A local demo: the per-district detail, as under `spin up`.
        .arg("--health-detail");
    if let Some(url) = store {
        host.args(["--store", url])
            .env("CLEVER_AUTH_STORE_KEY", DEMO_STORE_KEY);
    }
    let status = host.status().context("starting clever-auth-host");
    let _ = fake.kill();
    let _ = fake.wait();
    let status = status?;
    if !status.success() {
        bail!("clever-auth-host exited with {status}");
    }
    Ok(())
}

/// Builds the component, the host and the fakes; returns the component and the binaries' dir.
pub(crate) fn build_demo(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let component = build_component(root)?;
    run(cargo(root).args([
        "build",
        "-p",
        "clever-auth-host",
        "-p",
        "clever-auth-tests",
        "--bins",
    ]))?;
    Ok((component, target_dir(root).join("debug")))
}

/// Starts `fake-clever` (two districts) and returns it with its base URL. The districts are
/// the README's `d-alpha` and `d-beta`, so its gateway examples run against the demo as printed.
pub(crate) fn start_fake_clever(bin_dir: &Path) -> Result<(std::process::Child, String)> {
    let mut fake = Command::new(bin_dir.join("fake-clever"))
        .args(["--addr", "127.0.0.1:0", "--districts", "0", "--quiet"])
        .args(["--district-id", "d-alpha", "--district-id", "d-beta"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the fake Clever")?;
    let stdout = fake.stdout.take().context("fake Clever has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    let Some(url) = first.strip_prefix("listening on ").map(str::to_string) else {
        let _ = fake.kill();
        bail!("the fake Clever did not start: {first}");
    };
    // Keep reading: closing the pipe would kill the fake at its next line of output.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("fake Clever: {line}");
        }
    });
    Ok((fake, url))
}

/// The host command with development credentials, pointed at the fake Clever.
fn host_against(host: &Path, component: &Path, fake_url: &str, listen: &str) -> Command {
    let mut cmd = Command::new(host);
    cmd.args(["--listen", listen, "--secrets", "env"])
        // The fake Clever speaks plain http on loopback.
        .arg("--allow-loopback-http")
        .arg("--component")
        .arg(component)
        .env("CLEVER_CLIENT_ID", "demo-client-id")
        .env("CLEVER_CLIENT_SECRET", "demo-client-secret")
        .env("CLEVER_TOKEN_URL", format!("{fake_url}/oauth/tokens"))
        .env("CLEVER_API_BASE_URL", fake_url);
    cmd
}

/// Starts the fake Clever, then the host `runs` times, timing spawn → `listening` (stdout) and
/// spawn → `tokens_acquired` (the component's stderr).
fn first_token(root: &Path, runs: u32) -> Result<()> {
    let (component, bin_dir) = build_demo(root)?;
    let (mut fake, url) = start_fake_clever(&bin_dir)?;
    let results = first_token_runs(
        &bin_dir.join("clever-auth-host"),
        &component,
        &url,
        runs,
        &[],
    );
    let _ = fake.kill();
    let _ = fake.wait();
    let results = results?;
    for (l, t) in &results {
        println!(
            "listening after {:>5} ms, first token after {:>5} ms",
            l.as_millis(),
            t.as_millis()
        );
    }
    let mut tokens: Vec<u128> = results.iter().map(|(_, t)| t.as_millis()).collect();
    tokens.sort_unstable();
    println!(
        "first token: median {} ms over {runs} runs (dev build, fake Clever on loopback)",
        tokens[tokens.len() / 2]
    );
    Ok(())
}

/// Starts `host` (with `extra` arguments) against the fake at `url` `runs` times, one after
/// the other; returns spawn → `listening` and spawn → first `tokens_acquired` of each run.
fn first_token_runs(
    host: &Path,
    component: &Path,
    url: &str,
    runs: u32,
    extra: &[String],
) -> Result<Vec<(Duration, Duration)>> {
    let mut results = Vec::new();
    for _ in 0..runs {
        let mut cmd = host_against(host, component, url, "127.0.0.1:0");
        cmd.args(extra);
        let mut host = procs::Proc::spawn("clever-auth-host", &mut cmd, false)?;
        let started = host.started;
        let mut listening = None;
        let (token_at, ()) = host.wait_line_at(Duration::from_secs(120), |l| {
            if l.contains("\"listening\"") {
                listening = Some(Instant::now());
            }
            l.contains("tokens_acquired").then_some(())
        })?;
        // stdout and stderr are read on separate threads: `listening` may trail a little.
        let listening_at = match listening {
            Some(at) => at,
            None => {
                host.wait_line_at(Duration::from_secs(10), |l| {
                    l.contains("\"listening\"").then_some(())
                })?
                .0
            }
        };
        results.push((listening_at - started, token_at - started));
    }
    Ok(results)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    let component = build(root, false)?;
    let consumer = build_test_consumer(root)?;
    let mut cmd = cargo(root);
    cmd.args(["test", "--workspace", "--exclude", COMPONENT_CRATE])
        .args(["--exclude", TEST_CONSUMER_CRATE])
        .args(extra)
        .env("CLEVER_AUTH_COMPONENT", &component)
        .env("CLEVER_AUTH_TEST_CONSUMER", &consumer);
    run(&mut cmd)?;
    if extra.is_empty() {
        // The refresher's deterministic simulation at full size needs an optimised build;
        // the debug run above only did a short smoke pass of it.
        run(cargo(root).args(SIMULATION))?;
    }
    Ok(())
}

/// The release-size simulation (10,000 virtual days), run by `cargo xtask test`; its closing
/// line (`simulation: <days> virtual days, <seeds> seeds, <checks> invariant checks, <secs> s`)
/// is shown, so every CI log says how much was simulated and how long it took.
const SIMULATION: [&str; 8] = [
    "test",
    "-p",
    "clever-auth-core",
    "--release",
    "--test",
    "simulation",
    "--",
    "--nocapture",
];

/// Builds the fuzz targets, then runs each for `secs`, reporting every failing target rather
/// than stopping at the first.
fn fuzz(root: &Path, secs: u64) -> Result<()> {
    ensure_fuzz_tools(root)?;
    run(fuzz_cargo(root).args(["fuzz", "build"]))?;
    let listed = fuzz_cargo(root)
        .args(["fuzz", "list"])
        .output()
        .context("running `cargo fuzz list`")?;
    if !listed.status.success() {
        bail!("`cargo fuzz list` failed ({})", listed.status);
    }
    let targets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if targets.is_empty() {
        bail!("`cargo fuzz list` found no targets in fuzz/");
    }
    let mut failed = Vec::new();
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {secs} s");
        let mut cmd = fuzz_cargo(root);
        cmd.args(["fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={secs}"));
        if let Err(e) = run(&mut cmd) {
            eprintln!("xtask: {e:#}");
            failed.push(target.as_str());
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs in fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    eprintln!(
        "xtask: {} fuzz targets ran {secs} s each without a failure",
        targets.len()
    );
    Ok(())
}

/// `cargo +nightly` in fuzz/. Through the rustup proxy on PATH: `$CARGO` is the stable
/// toolchain's own binary, which does not understand `+nightly`. Without CARGO_TARGET_DIR, so the
/// fuzz build keeps fuzz/target: sanitizer flags would rebuild a target dir shared with the
/// stable builds from scratch, each way.
fn fuzz_cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{FUZZ_TOOLCHAIN}"))
        .current_dir(root.join("fuzz"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

/// The nightly toolchain is a deliberate install (large, and it moves daily), so its absence is
/// an error with the command to run; cargo-fuzz is installed when missing.
fn ensure_fuzz_tools(root: &Path) -> Result<()> {
    let nightly = fuzz_cargo(root)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running `cargo +nightly --version` (is rustup installed?)")?;
    if !nightly.success() {
        bail!(
            "fuzzing needs the {FUZZ_TOOLCHAIN} toolchain (libFuzzer and sanitizers); \
             install it with `rustup toolchain install {FUZZ_TOOLCHAIN}`"
        );
    }
    let has_cargo_fuzz = fuzz_cargo(root)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_cargo_fuzz {
        eprintln!("xtask: installing cargo-fuzz");
        run(cargo(root).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// `rustup target add` is idempotent but slow to ask; look first.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running `rustup target list --installed` (is rustup installed?)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target");
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}
