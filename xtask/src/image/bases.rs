//! The Dockerfile's two bases made from Debian's packages (mmdebstrap), for machines no
//! container registry serves: `rust:1.95-bookworm` becomes bookworm with the build tools and
//! this machine's own Rust toolchain (rustup cannot download one here), `debian:bookworm-slim`
//! becomes a bookworm minbase without docs and apt lists. Each is kept as a podman image, so
//! only the first run (or `--fresh-bases`) pays for it.

use super::podman;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const SUITE: &str = "bookworm";
/// The suite plus its updates and security updates, as debian:bookworm-slim has them.
const SOURCES: [&str; 3] = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
/// What bookworm-slim leaves out (its /etc/dpkg/dpkg.cfg.d/docker); kept in the image, so the
/// Dockerfile's own `apt-get install` leaves them out too.
const SLIM_DPKG: [&str; 7] = [
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
];
/// The rust image's build tools: a C toolchain (ring, wasmtime's build scripts) and the CA
/// bundle (crates.io).
const BUILD_PACKAGES: &str = "ca-certificates,build-essential,pkg-config";
const CLEAN_APT: &str = r#"rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*"#;

pub struct Bases {
    pub build: String,
    pub runtime: String,
}

/// The sidecar rehearsal's other containers (tests/tests/sidecar_pod_e2e.rs): the sync app,
/// with Python's requests (the README's example uses it), and the site's Redis.
const TOOLS_PACKAGES: &str = "python3-requests,redis-server,redis-tools";
pub const TOOLS: &str = "localhost/clever-auth-pod-tools:bookworm";

/// The tools image, made when absent (or always with `fresh`).
pub fn ensure_tools(work: &Path, fresh: bool) -> Result<String> {
    if fresh || !podman::image_exists(TOOLS)? {
        require_mmdebstrap()?;
        std::fs::create_dir_all(work)?;
        make(
            work,
            TOOLS,
            &["--include", TOOLS_PACKAGES],
            &runtime_hooks(),
            &[r#"CMD ["python3"]"#],
        )?;
    }
    Ok(TOOLS.to_string())
}

/// The two bases as podman images, made when absent (or always with `fresh`).
pub fn ensure(work: &Path, fresh: bool) -> Result<Bases> {
    let toolchain = Toolchain::find()?;
    let bases = Bases {
        build: format!(
            "localhost/clever-auth-build-base:rust-{}-{SUITE}",
            toolchain.version
        ),
        runtime: format!("localhost/clever-auth-runtime-base:{SUITE}-slim"),
    };
    let make_runtime = fresh || !podman::image_exists(&bases.runtime)?;
    let make_build = fresh || !podman::image_exists(&bases.build)?;
    if make_runtime || make_build {
        require_mmdebstrap()?;
        std::fs::create_dir_all(work)?;
    }
    if make_runtime {
        make(
            work,
            &bases.runtime,
            &[],
            &runtime_hooks(),
            &[r#"CMD ["bash"]"#],
        )?;
    }
    if make_build {
        let env = [
            "ENV RUSTUP_HOME=/usr/local/rustup".to_string(),
            "ENV CARGO_HOME=/usr/local/cargo".to_string(),
            "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                .to_string(),
            format!("ENV RUST_VERSION={}", toolchain.version),
            r#"CMD ["bash"]"#.to_string(),
        ];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        let mut hooks = runtime_hooks();
        hooks.push(toolchain.copy_hook(&work.join("rustup-settings.toml"))?);
        make(
            work,
            &bases.build,
            &["--include", BUILD_PACKAGES],
            &hooks,
            &env,
        )?;
    }
    Ok(bases)
}

fn require_mmdebstrap() -> Result<()> {
    match Command::new("mmdebstrap").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!("`mmdebstrap --version` failed ({})", o.status),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mmdebstrap not found: apt-get install mmdebstrap (it makes the image's bases)")
        }
        Err(e) => Err(e).context("starting mmdebstrap"),
    }
}

fn runtime_hooks() -> Vec<String> {
    vec![CLEAN_APT.to_string()]
}

/// mmdebstrap into a tarball, `podman import` it as `tag` with `changes`, remove the tarball.
fn make(work: &Path, tag: &str, extra: &[&str], hooks: &[String], changes: &[&str]) -> Result<()> {
    let tar = work.join("base.tar");
    let started = std::time::Instant::now();
    eprintln!("xtask: making {tag} with mmdebstrap");
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--variant=minbase",
        "--mode=root",
        "--format=tar",
        "--quiet",
    ])
    .args(extra);
    for opt in SLIM_DPKG {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    for hook in hooks {
        cmd.arg(format!("--customize-hook={hook}"));
    }
    cmd.arg(SUITE).arg(&tar).args(SOURCES);
    crate::run(&mut cmd)?;
    let mut import = podman::podman();
    import.arg("import").arg("--quiet");
    for change in changes {
        import.args(["--change", change]);
    }
    import
        .arg(&tar)
        .arg(tag)
        .stdout(std::process::Stdio::null());
    let imported = crate::run(&mut import);
    let _ = std::fs::remove_file(&tar);
    imported?;
    eprintln!(
        "xtask: {tag}: {} MB in {:.0} s",
        podman::image_size(tag)? / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The Rust toolchain this machine builds with: copied into the build base as the rust image
/// lays it out (rustup in /usr/local/cargo/bin, the toolchain under /usr/local/rustup).
struct Toolchain {
    sysroot: PathBuf,
    /// `1.95.0`.
    version: String,
    /// `x86_64-unknown-linux-gnu`.
    host: String,
    rustup: PathBuf,
}

impl Toolchain {
    fn find() -> Result<Toolchain> {
        let sysroot = PathBuf::from(stdout(Command::new("rustc").args(["--print", "sysroot"]))?);
        let verbose = stdout(Command::new("rustc").arg("-vV"))?;
        let field = |name: &str| {
            verbose
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .with_context(|| format!("`rustc -vV` has no {name} line"))
        };
        let version = field("release:")?;
        let host = field("host:")?;
        if !sysroot
            .join("lib/rustlib")
            .join(crate::WASM_TARGET)
            .is_dir()
        {
            bail!(
                "the toolchain at {} lacks {}: rustup target add {}",
                sysroot.display(),
                crate::WASM_TARGET,
                crate::WASM_TARGET
            );
        }
        let rustup = PathBuf::from(stdout(
            Command::new("sh").args(["-c", "command -v rustup"]),
        )?);
        Ok(Toolchain {
            sysroot,
            version,
            host,
            rustup,
        })
    }

    /// A customize hook copying the toolchain (without its 800 MB of HTML docs) and rustup
    /// into the tree, with rustup's settings naming it the default.
    fn copy_hook(&self, settings: &Path) -> Result<String> {
        let name = format!("{}-{}", self.version, self.host);
        std::fs::write(
            settings,
            format!(
                "version = \"12\"\ndefault_toolchain = \"{name}\"\nprofile = \"minimal\"\n\
                 auto_self_update = \"disable\"\n\n[overrides]\n"
            ),
        )?;
        let quoted = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        let proxies = "cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt";
        Ok(format!(
            r#"set -e; t="$1/usr/local/rustup/toolchains/{name}"; mkdir -p "$t" "$1/usr/local/cargo/bin"; tar -C {sysroot} --exclude=./share/doc -cf - . | tar -C "$t" -xf -; cp {rustup} "$1/usr/local/cargo/bin/rustup"; for p in {proxies}; do ln -s rustup "$1/usr/local/cargo/bin/$p"; done; cp {settings} "$1/usr/local/rustup/settings.toml""#,
            sysroot = quoted(&self.sysroot),
            rustup = quoted(&self.rustup),
            settings = quoted(settings),
        ))
    }
}

fn stdout(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
