//! The precompiled-component cache: compiling the component takes about half a second (most
//! of a cold start), so the compiled artifact is kept on disk, keyed by the component's bytes
//! and the engine's compatibility hash, and reused by later starts.
//!
//! Loading a precompiled artifact executes its machine code, so it is only ever read from a
//! directory that nobody but its owner can write, and only a file this host wrote. Any problem
//! (stale, corrupt, unreadable, unwritable) falls back to compiling: the cache can make a start
//! faster, never make it fail.

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// How the component came to be loaded, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the cache: no compilation.
    Cache,
    /// Compiled now, and written to the cache for the next start.
    CompiledAndCached,
    /// Compiled now; no usable cache.
    Compiled,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cache => "cache",
            Origin::CompiledAndCached => "compiled_and_cached",
            Origin::Compiled => "compiled",
        }
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/clever-auth`, else `~/.cache/clever-auth`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("clever-auth"))
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is stable and wide.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache file for these component bytes under this engine.
pub fn artifact_path(dir: &Path, engine: &Engine, component: &[u8]) -> PathBuf {
    let mut engine_hash = ShaHasher(Sha256::new());
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let engine_hex = hex16(&engine_hash.0.finalize());
    let component_hex = hex16(&Sha256::digest(component));
    dir.join(format!("clever_auth-{component_hex}-{engine_hex}.cwasm"))
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Loads the component from `cache_dir` when a valid artifact is there, else compiles it (and
/// stores the artifact when the directory is usable).
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<(Component, Origin)> {
    let Some(dir) = cache_dir.filter(|d| usable_dir(d)) else {
        return Ok((Component::new(engine, bytes)?, Origin::Compiled));
    };
    let path = artifact_path(dir, engine, bytes);
    let mut warned = false;
    if path.is_file() {
        // SAFETY: the file is named by the hash of these component bytes and of this engine's
        // configuration, lives in a directory only its owner can write (checked above), and
        // was written by this program; `deserialize_file` validates its header against the
        // engine and refuses an incompatible artifact.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, Origin::Cache)),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "precompiled component unusable; compiling instead"
                );
                warned = true;
            }
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .map_err(anyhow::Error::from)
        .context("compiling the component")?;
    // SAFETY: these bytes were produced a moment ago by this engine's own compiler.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    match write_atomically(&path, &compiled) {
        Ok(()) => Ok((component, Origin::CompiledAndCached)),
        // A container image's cache is read-only to the service user, so an artifact that
        // does not fit this machine cannot be replaced there: one warning per start says so
        // (the one above); the failed write is detail.
        Err(e) if warned => {
            tracing::info!(
                path = %path.display(),
                error = %format!("{e:#}"),
                "could not replace the unusable precompiled component; every start compiles"
            );
            Ok((component, Origin::Compiled))
        }
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %format!("{e:#}"),
                "could not write the precompiled component; the next start compiles again"
            );
            Ok((component, Origin::Compiled))
        }
    }
}

/// Compiles the component into the cache and returns the artifact's path (`--precompile`, used
/// when building the container image).
pub fn precompile(engine: &Engine, bytes: &[u8], dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the cache directory {}", dir.display()))?;
    anyhow::ensure!(
        usable_dir(dir),
        "{} is writable by other users; a precompiled component there could be replaced with other code",
        dir.display()
    );
    let path = artifact_path(dir, engine, bytes);
    let compiled = engine
        .precompile_component(bytes)
        .map_err(anyhow::Error::from)
        .context("compiling the component")?;
    write_atomically(&path, &compiled)?;
    Ok(path)
}

/// Creates the directory if needed (owner-only), and accepts it only when no other user can
/// write to it.
fn usable_dir(dir: &Path) -> bool {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        if let Err(e) = builder.create(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the component cache directory");
            return false;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o022 == 0 => true,
            Ok(_) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "component cache directory is not a directory or is writable by others; not using it"
                );
                false
            }
            Err(_) => false,
        }
    }
    #[cfg(not(unix))]
    {
        dir.is_dir()
    }
}

/// Readers never see a half-written artifact: write a temporary file, then rename it.
///
/// The artifact is readable by everyone (0644; it holds nothing secret, only code compiled
/// from the public `.wasm`): the container image precompiles as root, and the service then runs
/// as uid 10001. The temporary file's default 0600 made that artifact unreadable, so every
/// container start compiled again (found by running the built image).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .context("the cache path has no parent directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .context("making the artifact readable")?;
    }
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component, `(component)` in binary form: enough to exercise the cache
    /// without the real one.
    const EMPTY_COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    fn engine() -> Engine {
        Engine::default()
    }

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        d
    }

    fn wasm() -> Vec<u8> {
        EMPTY_COMPONENT.to_vec()
    }

    #[test]
    fn second_load_comes_from_the_cache() {
        let (e, dir, bytes) = (engine(), private_dir(), wasm());
        let (_, first) = load(&e, &bytes, Some(dir.path())).expect("load");
        assert_eq!(first, Origin::CompiledAndCached);
        let (_, second) = load(&e, &bytes, Some(dir.path())).expect("load");
        assert_eq!(second, Origin::Cache);
    }

    #[test]
    fn a_corrupt_artifact_falls_back_to_compiling_and_is_replaced() {
        let (e, dir, bytes) = (engine(), private_dir(), wasm());
        let path = artifact_path(dir.path(), &e, &bytes);
        std::fs::write(&path, b"not an artifact").expect("write");
        let (_, origin) = load(&e, &bytes, Some(dir.path())).expect("falls back");
        assert_eq!(origin, Origin::CompiledAndCached);
        let (_, again) = load(&e, &bytes, Some(dir.path())).expect("load");
        assert_eq!(again, Origin::Cache);
    }

    #[test]
    fn a_different_engine_configuration_uses_a_different_artifact() {
        let bytes = wasm();
        let mut cfg = wasmtime::Config::new();
        cfg.cranelift_opt_level(wasmtime::OptLevel::None);
        let other = Engine::new(&cfg).expect("engine");
        let dir = private_dir();
        assert_ne!(
            artifact_path(dir.path(), &engine(), &bytes),
            artifact_path(dir.path(), &other, &bytes)
        );
    }

    /// The image's layout: precompiled by root into a 0755 directory, loaded by another user.
    #[cfg(unix)]
    #[test]
    fn a_precompiled_artifact_is_readable_but_not_writable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let (e, dir, bytes) = (engine(), private_dir(), wasm());
        let path = precompile(&e, &bytes, dir.path()).expect("precompile");
        let mode = std::fs::metadata(&path)
            .expect("artifact")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644, "artifact mode {mode:o}");
        let (_, origin) = load(&e, &bytes, Some(dir.path())).expect("load");
        assert_eq!(origin, Origin::Cache);
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let (e, bytes) = (engine(), wasm());
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let (_, origin) = load(&e, &bytes, Some(dir.path())).expect("compiles");
        assert_eq!(origin, Origin::Compiled);
        assert!(precompile(&e, &bytes, dir.path()).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(99),
            0
        );
    }
}
