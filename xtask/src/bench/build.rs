//! The release build the bench measures, copied out of the shared target directory.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The release artifacts, copied out of the shared target directory right after the build
/// so another build there cannot swap them mid-run.
pub(super) struct Bins {
    pub(super) host: PathBuf,
    pub(super) fake: PathBuf,
    pub(super) bench: PathBuf,
    pub(super) component: PathBuf,
}

pub(super) fn build_release(root: &Path, out_dir: &Path) -> Result<Bins> {
    let component = crate::build(root, true)?;
    // Separate invocations, so each package's dependency features stay what they are alone
    // (the host and its wasmtime are not rebuilt with the fakes' features).
    crate::run(crate::cargo(root).args(["build", "--release", "-p", "clever-auth-bench"]))?;
    crate::run(crate::cargo(root).args([
        "build",
        "--release",
        "-p",
        "clever-auth-tests",
        "--bin",
        "fake-clever",
    ]))?;
    let release = crate::target_dir(root).join("release");
    let bin_dir = out_dir.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = bin_dir.join(name);
        std::fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(to)
    };
    Ok(Bins {
        host: copy(&release.join("clever-auth-host"), "clever-auth-host")?,
        fake: copy(&release.join("fake-clever"), "fake-clever")?,
        bench: copy(&release.join("clever-auth-bench"), "clever-auth-bench")?,
        component: copy(&component, "clever_auth.wasm")?,
    })
}
