//! podman as this project's machines can run it.

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

pub fn podman() -> Command {
    Command::new("podman")
}

/// Fails with the install command when podman is missing.
pub fn require() -> Result<()> {
    match podman().arg("--version").stdout(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("`podman --version` failed ({s})"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("podman not found: apt-get install podman runc")
        }
        Err(e) => Err(e).context("starting podman"),
    }
}

pub fn image_exists(image: &str) -> Result<bool> {
    Ok(podman()
        .args(["image", "exists", image])
        .status()
        .context("running `podman image exists`")?
        .success())
}

/// Size in bytes as podman reports it.
pub fn image_size(image: &str) -> Result<u64> {
    let out = podman()
        .args(["image", "inspect", "--format", "{{.Size}}", image])
        .output()
        .context("running `podman image inspect`")?;
    if !out.status.success() {
        bail!(
            "podman image inspect {image} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("image size {text:?}"))
}

/// `--runtime runc` and explicit ulimits: crun refuses this machine's cgroup layout, and the
/// runtime refuses podman's default ulimits. nofile is the hard limit of this shell; nproc at
/// 65536 or at the hard limit was refused, 32768 works.
pub fn runtime_args() -> Result<Vec<String>> {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .context("running `sh -c 'ulimit -Hn'`")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let nofile: u64 = text
        .parse()
        .with_context(|| format!("`ulimit -Hn` said {text:?}"))?;
    Ok(vec![
        "--runtime".into(),
        "runc".into(),
        "--ulimit".into(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".into(),
        "nproc=32768:32768".into(),
    ])
}
