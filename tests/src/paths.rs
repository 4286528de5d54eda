//! Where the artifacts under test are: the host binary and the component.

use std::path::PathBuf;

/// The workspace root (where `spin.toml` is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built component: `CLEVER_AUTH_COMPONENT` (set by `cargo xtask test`), else the path the
/// xtask build and `spin.toml` use.
pub fn component() -> PathBuf {
    std::env::var_os("CLEVER_AUTH_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip2/release/clever_auth.wasm"))
}

/// The test-only consumer component (`tests/consumer`): `CLEVER_AUTH_TEST_CONSUMER` (set by
/// `cargo xtask test`, which builds it), else where that build puts it.
pub fn test_consumer() -> PathBuf {
    std::env::var_os("CLEVER_AUTH_TEST_CONSUMER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/wasm32-wasip2/release/clever_auth_test_consumer.wasm")
        })
}

/// The host binary: `CLEVER_AUTH_HOST_BIN`, else next to this test executable's `deps/` folder,
/// where `cargo build -p clever-auth-host` puts it for the same profile.
pub fn host_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CLEVER_AUTH_HOST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    profile_dir.join(format!("clever-auth-host{}", std::env::consts::EXE_SUFFIX))
}

/// Fails early with the command that fixes it, instead of an obscure spawn error.
pub fn require_artifacts() {
    let (host, component) = (host_binary(), component());
    assert!(
        host.is_file() && component.is_file(),
        "missing {} or {}: run the tests with `cargo xtask test`, which builds both",
        host.display(),
        component.display()
    );
}

/// Like [`require_artifacts`], for tests that need only the component (Spin tests).
pub fn require_component() {
    let component = component();
    assert!(
        component.is_file(),
        "missing {}: run the tests with `cargo xtask test`, which builds it",
        component.display()
    );
}
