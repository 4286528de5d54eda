//! `cargo xtask image`: the production image from the real Dockerfile, built with podman and
//! tagged `localhost/clever-auth:local`; `--check` then runs it as App Service would
//! (tests/tests/container_e2e.rs).
//!
//! Where no registry serves the Dockerfile's bases, equivalents are made from Debian's packages
//! (`bases.rs`) and passed as build arguments. The cargo registry and a target dir of its own
//! are mounted into the build, so a rebuild compiles what changed, not wasmtime.

mod bases;
mod podman;

use anyhow::Result;
use std::path::Path;
use std::time::Instant;

pub const TAG: &str = "localhost/clever-auth:local";
/// The Dockerfile's defaults (what CI and `az acr build` use).
const REGISTRY_BUILD_BASE: &str = "rust:1.95-bookworm";
const REGISTRY_RUNTIME_BASE: &str = "debian:bookworm-slim";

pub struct ImageOptions {
    /// Run the container checks after the build.
    pub check: bool,
    /// Use the Dockerfile's default bases (a registry must serve them).
    pub registry_bases: bool,
    /// Make the Debian bases again even when podman has them.
    pub fresh_bases: bool,
    /// The build's cargo target dir, when not under the image build dir.
    pub build_target: Option<std::path::PathBuf>,
}

pub fn run(root: &Path, opts: &ImageOptions) -> Result<()> {
    podman::require()?;
    let work = crate::target_dir(root).join("image-build");
    let (build_base, runtime_base) = if opts.registry_bases {
        (
            REGISTRY_BUILD_BASE.to_string(),
            REGISTRY_RUNTIME_BASE.to_string(),
        )
    } else {
        let b = bases::ensure(&work.join("bases"), opts.fresh_bases)?;
        (b.build, b.runtime)
    };
    let target = opts
        .build_target
        .clone()
        .unwrap_or_else(|| work.join("target"));
    build(root, &target, &build_base, &runtime_base)?;
    if opts.check {
        let tools = bases::ensure_tools(&work.join("bases"), opts.fresh_bases)?;
        check(root, &runtime_base, &tools)?;
    }
    Ok(())
}

fn build(root: &Path, target: &Path, build_base: &str, runtime_base: &str) -> Result<()> {
    std::fs::create_dir_all(target)?;
    let registry = cargo_home().join("registry");
    std::fs::create_dir_all(&registry)?;
    let started = Instant::now();
    let mut cmd = podman::podman();
    // docker format: the OCI image format has no HEALTHCHECK.
    cmd.args(["build", "--format", "docker"])
        .args(podman::runtime_args()?)
        .args(["--build-arg", &format!("BUILD_BASE={build_base}")])
        .args(["--build-arg", &format!("RUNTIME_BASE={runtime_base}")])
        // Both bases keep CARGO_HOME at /usr/local/cargo, and the Dockerfile builds in /src.
        .arg("-v")
        .arg(format!("{}:/usr/local/cargo/registry", registry.display()))
        .arg("-v")
        .arg(format!("{}:/src/target", target.display()))
        .args(["-t", TAG])
        .arg(root);
    crate::run(&mut cmd)?;
    let (size, base) = (podman::image_size(TAG)?, podman::image_size(runtime_base)?);
    eprintln!(
        "xtask: built {TAG} in {:.0} s: {} MB ({} MB over its base {runtime_base})",
        started.elapsed().as_secs_f64(),
        size / 1_000_000,
        size.saturating_sub(base) / 1_000_000
    );
    Ok(())
}

/// The container tests against the image just built, one at a time (they time starts and
/// stops): the image as App Service runs it, then the sidecar layout in a pod.
fn check(root: &Path, runtime_base: &str, tools: &str) -> Result<()> {
    let mut cmd = crate::cargo(root);
    cmd.args(["test", "-p", "clever-auth-tests"])
        .args(["--test", "container_e2e", "--test", "sidecar_pod_e2e"])
        .args(["--", "--test-threads", "1", "--nocapture"])
        .env("CLEVER_AUTH_CONTAINER_IMAGE", TAG)
        .env("CLEVER_AUTH_CONTAINER_RUNTIME_BASE", runtime_base)
        .env("CLEVER_AUTH_CONTAINER_TOOLS_IMAGE", tools);
    crate::run(&mut cmd)
}

/// `cargo xtask bench --only container`: builds the image, then times `podman run` → first
/// `pass` and `podman stop` → exited, median of `runs`, with and without the precompiled
/// component (the ignored `container_bench` test). The summary lands in `out_dir`.
pub fn bench(root: &Path, out_dir: &Path, runs: u32) -> Result<()> {
    let opts = ImageOptions {
        check: false,
        registry_bases: false,
        fresh_bases: false,
        build_target: None,
    };
    run(root, &opts)?;
    let runtime_base = bases::ensure(
        &crate::target_dir(root).join("image-build").join("bases"),
        false,
    )?
    .runtime;
    let out = out_dir.join("container.json");
    let mut cmd = crate::cargo(root);
    cmd.args(["test", "-p", "clever-auth-tests", "--test", "container_e2e"])
        .args([
            "--",
            "--ignored",
            "--exact",
            "container_bench",
            "--nocapture",
        ])
        .env("CLEVER_AUTH_CONTAINER_IMAGE", TAG)
        .env("CLEVER_AUTH_CONTAINER_RUNTIME_BASE", runtime_base)
        .env("CLEVER_AUTH_CONTAINER_BENCH_RUNS", runs.to_string())
        .env("CLEVER_AUTH_CONTAINER_BENCH_OUT", &out);
    crate::run(&mut cmd)?;
    eprintln!("xtask bench: container summary in {}", out.display());
    Ok(())
}

fn cargo_home() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(Into::into)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| ".cargo".into())
}
