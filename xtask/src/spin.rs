//! `cargo xtask run --spin`: the fake Clever and the project's own `spin.toml` under `spin up`,
//! pointed at each other through Spin variables, as `cargo xtask run` does with the host.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Spin: `SPIN_BIN`, else `spin` on `PATH`, else `../shared/tools/spin/spin` next to the
/// workspace (the same order as the tests).
pub fn find_spin(root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SPIN_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SPIN_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("spin"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return Ok(p);
    }
    let shared = root.join("../shared/tools/spin/spin");
    if shared.is_file() {
        return Ok(shared);
    }
    bail!(
        "no Spin found: install Spin 3.x-4.0 (https://spinframework.dev), put it on PATH or set SPIN_BIN"
    )
}

/// `spin up` of `<root>/spin.toml` with `runtime_config`, development credentials and
/// both Clever origins pointed at `fake_url` (the allowed outbound hosts follow them).
/// `clean_env` drops the machine's own `SPIN_VARIABLE_*` first (for measurements).
/// On a loopback `listen` the health answer is the per-district detail (the opt-in a local
/// demo wants); on any other address it stays public, as `spin.toml` has it.
pub fn spin_up_against(
    spin: &Path,
    root: &Path,
    runtime_config: &Path,
    fake_url: &str,
    listen: &str,
    clean_env: bool,
) -> Command {
    let mut cmd = Command::new(spin);
    if clean_env {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                cmd.env_remove(&key);
            }
        }
    }
    cmd.current_dir(root)
        .args(["up", "--from", "spin.toml"])
        .arg("--runtime-config-file")
        .arg(runtime_config)
        .args(["--listen", listen])
        .env("SPIN_VARIABLE_CLEVER_CLIENT_ID", "demo-client-id")
        .env("SPIN_VARIABLE_CLEVER_CLIENT_SECRET", "demo-client-secret")
        .env("SPIN_VARIABLE_CLEVER_OAUTH_BASE_URL", fake_url)
        .env("SPIN_VARIABLE_CLEVER_API_BASE_URL", fake_url);
    if is_loopback(listen) {
        cmd.env("SPIN_VARIABLE_CLEVER_HEALTH_DETAIL", "always");
    }
    cmd
}

/// Whether `listen` (`host:port`, as `spin up --listen` takes it) binds loopback only.
fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    }
}

/// The URL line of `runtime-config.redis.toml`, which `--store` replaces.
const REDIS_URL_LINE: &str = r#"url = "redis://127.0.0.1:6379""#;

/// `runtime-config.redis.toml` pointed at `url`, written under the target dir (Spin expands
/// no variable in a runtime config, so the URL is written into a copy).
fn redis_runtime_config(root: &Path, url: &str) -> Result<PathBuf> {
    let template = std::fs::read_to_string(root.join("runtime-config.redis.toml"))
        .context("reading runtime-config.redis.toml")?;
    if !template.contains(REDIS_URL_LINE) {
        bail!("runtime-config.redis.toml has no line {REDIS_URL_LINE}");
    }
    let dir = crate::target_dir(root).join("xtask-run");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("runtime-config.redis.toml");
    // A JSON string is a TOML basic string: the same escapes.
    let quoted = serde_json::to_string(url)?;
    let text = template.replace(REDIS_URL_LINE, &format!("url = {quoted}"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The local loop under Spin: fake Clever plus `spin up`, until Ctrl-C. With `store`, the
/// component's store is that Redis, through Spin's own Redis provider.
pub fn demo(root: &Path, listen: &str, store: Option<&str>) -> Result<()> {
    crate::check_store(store)?;
    let spin = find_spin(root)?;
    let runtime_config = match store {
        Some(url) => redis_runtime_config(root, url)?,
        None => root.join("runtime-config.toml"),
    };
    let (_component, bin_dir) = crate::build_demo(root)?;
    let (mut fake, fake_url) = crate::start_fake_clever(&bin_dir)?;
    println!("fake Clever: {fake_url}");
    println!(
        "spin up ({}): http://{listen}/health/clever-auth   (Ctrl-C stops both)",
        spin.display()
    );
    println!("Spin has no scheduler: refreshes run on health requests (README, \"Under Spin and under clever-auth-host\")");
    if !is_loopback(listen) {
        println!("{listen} is not loopback: the health answer stays public (the per-district detail is for loopback only)");
    }
    let mut cmd = spin_up_against(&spin, root, &runtime_config, &fake_url, listen, false);
    if store.is_some() {
        cmd.env("SPIN_VARIABLE_CLEVER_STORE_KEY", crate::DEMO_STORE_KEY);
    }
    let status = cmd.status().context("starting spin up");
    let _ = fake.kill();
    let _ = fake.wait();
    let status = status?;
    // Ctrl-C ends spin up with a signal status; that is the normal way out.
    if !status.success() && status.code().is_some() {
        bail!("spin up exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_addresses_get_the_health_detail() {
        assert!(is_loopback("127.0.0.1:3000"));
        assert!(is_loopback("[::1]:3000"));
        assert!(is_loopback("localhost:3000"));
        assert!(!is_loopback("0.0.0.0:3000"));
        assert!(!is_loopback("[::]:3000"));
        assert!(!is_loopback("10.1.2.3:80"));
        assert!(!is_loopback("example.com:80"));
    }
}
