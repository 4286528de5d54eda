//! The built component imports only what Spin 3.x–4.0 and our host both provide, and exports
//! exactly the HTTP handler and the refresher.

use clever_auth_tests::paths;
use std::collections::BTreeSet;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Imports the project chose (the WIT contract), at the exact versions Spin hosts.
const CONTRACT_IMPORTS: [&str; 6] = [
    "wasi:http/outgoing-handler@0.2.6",
    "wasi:http/types@0.2.6",
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
];
/// Interfaces Rust's std pulls in on wasm32-wasip2.
const STD_PACKAGES: [&str; 4] = ["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/"];

/// Prints the component's world, for the issue notes: `cargo test --test component_contract -- --nocapture`.
#[test]
fn print_world() {
    let (imports, exports) = world();
    eprintln!("imports: {imports:#?}\nexports: {exports:#?}");
}

fn world() -> (BTreeSet<String>, BTreeSet<String>) {
    paths::require_artifacts();
    let engine = Engine::new(&Config::new()).expect("engine");
    let component = Component::from_file(&engine, paths::component()).expect("component loads");
    let ty = component.component_type();
    let imports = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports = ty
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    (imports, exports)
}

#[test]
fn exports_are_exactly_the_http_handler_the_refresher_and_the_gateway() {
    let (_, exports) = world();
    let expected: BTreeSet<String> = [
        "wasi:http/incoming-handler@0.2.6",
        "clever:auth/refresher@0.1.0",
        "clever:auth/gateway@0.1.0",
    ]
    .map(String::from)
    .into();
    assert_eq!(exports, expected);
}

#[test]
fn imports_are_only_the_contract_and_what_std_needs() {
    let (imports, _) = world();
    let unexpected: Vec<&String> = imports
        .iter()
        .filter(|i| !CONTRACT_IMPORTS.contains(&i.as_str()))
        .filter(|i| !STD_PACKAGES.iter().any(|p| i.starts_with(p)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected imports: {unexpected:?} (all: {imports:?})"
    );
    assert!(
        !imports
            .iter()
            .any(|i| i.starts_with("fermyon:") || i.contains("@0.3")),
        "{imports:?}"
    );
    for needed in [
        "wasi:config/store@0.2.0-draft-2024-09-27",
        "wasi:keyvalue/store@0.2.0-draft2",
        // The gateway's first reads in one call (one Redis MGET under the native host).
        "wasi:keyvalue/batch@0.2.0-draft2",
    ] {
        assert!(
            imports.contains(needed),
            "{needed} missing from {imports:?}"
        );
    }
}
