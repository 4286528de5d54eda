//! Every file of every layer of an image, searched for values that must not be there.

use super::podman;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Saves `image` (`podman image save`), unpacks the archive and each layer in it under `work`,
/// and returns, per needle found, its name and the files holding it (never the value).
pub fn scan_image(image: &str, work: &Path, needles: &[(String, String)]) -> Result<Vec<String>> {
    let archive = work.join("image.tar");
    podman::run(&[
        "image",
        "save",
        "--format",
        "docker-archive",
        "-o",
        &archive.to_string_lossy(),
        image,
    ])?;
    let unpacked = work.join("image");
    untar(&archive, &unpacked)?;
    let mut layers = 0;
    for entry in walk(&unpacked)? {
        if entry.extension().is_some_and(|e| e == "tar") {
            layers += 1;
            untar(&entry, &work.join(format!("layer-{layers}")))?;
        }
    }
    anyhow::ensure!(layers > 0, "the saved image has no layer archives");
    let mut found = Vec::new();
    for (name, value) in needles {
        // grep -F: a fixed string, through binaries too (-a); the needle goes in a file, not
        // on a command line.
        let pattern = work.join("needle");
        std::fs::write(&pattern, value)?;
        let out = Command::new("grep")
            .args(["-r", "-l", "-a", "-F", "-f"])
            .arg(&pattern)
            .arg(work)
            .arg("--exclude=needle")
            .arg("--exclude=image.tar")
            .output()
            .context("starting grep")?;
        std::fs::remove_file(&pattern)?;
        match out.status.code() {
            Some(0) => found.push(format!(
                "{name} in {}",
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .replace('\n', ", ")
            )),
            Some(1) => {}
            _ => bail!("grep failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    Ok(found)
}

/// How many layer archives the last scan unpacked under `work` (for the report).
pub fn layer_count(work: &Path) -> usize {
    (1..)
        .take_while(|n| work.join(format!("layer-{n}")).is_dir())
        .count()
}

fn untar(archive: &Path, into: &Path) -> Result<()> {
    std::fs::create_dir_all(into)?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .args(["--no-same-owner", "--no-same-permissions"])
        .output()
        .context("starting tar")?;
    if !out.status.success() {
        bail!(
            "tar -xf {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Regular files under `dir`, recursively (symlinks are not followed).
fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}
