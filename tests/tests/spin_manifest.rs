//! spin.toml and runtime-config.toml agree with the code: same component file, every setting
//! exposed with its documented default, tokens kept in memory.

use clever_auth_core::health_view::DETAIL_SETTING;
use clever_auth_core::settings::SETTINGS;
use clever_auth_core::store_seal;
use std::path::PathBuf;

fn read_toml(name: &str) -> toml::Table {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{name} is not valid TOML: {e}"))
}

#[test]
fn manifest_is_v2_and_routes_health_to_the_built_component() {
    let m = read_toml("spin.toml");
    assert_eq!(m["spin_manifest_version"].as_integer(), Some(2));
    let trigger = &m["trigger"]["http"][0];
    assert_eq!(trigger["route"].as_str(), Some("/health/clever-auth"));
    // The gateway, for sync components reaching it by service chaining only: a private
    // endpoint, which Spin's listener never routes to.
    let gateway = &m["trigger"]["http"][1];
    assert_eq!(
        gateway["route"]["private"].as_bool(),
        Some(true),
        "the gateway lends district tokens: never a listener route"
    );
    assert_eq!(gateway["component"].as_str(), Some("clever-auth"));
    let component = &m["component"]["clever-auth"];
    assert_eq!(
        component["source"].as_str(),
        Some("target/wasm32-wasip2/release/clever_auth.wasm"),
        "must be where `cargo xtask component` writes it"
    );
    assert_eq!(
        component["build"]["command"].as_str(),
        Some("cargo xtask component")
    );
    let stores: Vec<&str> = component["key_value_stores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(stores, ["default"]);
}

/// The variables that seal tokens on a shared store, and whether each is a secret.
const STORE_SEALING: [(&str, bool); 3] = [
    (store_seal::KEY_SETTING, true),
    (store_seal::PREVIOUS_KEY_SETTING, true),
    (store_seal::MODE_SETTING, false),
];

/// Spin's allowed outbound hosts may not contain a path, so the token endpoint is given to Spin
/// as its origin and the component's `clever_token_url` is built from it.
const TOKEN_ORIGIN_VAR: &str = "clever_oauth_base_url";
const TOKEN_PATH: &str = "/oauth/tokens";

#[test]
fn every_setting_is_a_variable_with_the_documented_default() {
    let m = read_toml("spin.toml");
    let vars = m["variables"].as_table().expect("[variables]");
    let bound = m["component"]["clever-auth"]["variables"]
        .as_table()
        .expect("component variables");
    // The settings, plus the health view (not a Clever setting; Spin's signal for the detail)
    // and the store's sealing.
    assert_eq!(vars.len(), SETTINGS.len() + 1 + STORE_SEALING.len());
    for (name, secret) in STORE_SEALING {
        assert_eq!(vars[name]["default"].as_str(), Some(""), "{name}");
        assert_eq!(
            vars[name].get("secret").and_then(|v| v.as_bool()),
            secret.then_some(true),
            "{name}"
        );
        assert_eq!(
            bound[name].as_str(),
            Some(format!("{{{{ {name} }}}}").as_str())
        );
    }
    // The listener's health answer is the public one unless an operator opts in.
    assert_eq!(vars[DETAIL_SETTING]["default"].as_str(), Some(""));
    assert_eq!(
        bound[DETAIL_SETTING].as_str(),
        Some(format!("{{{{ {DETAIL_SETTING} }}}}").as_str())
    );
    for spec in SETTINGS {
        if spec.name == "clever_token_url" {
            assert_eq!(
                bound[spec.name].as_str(),
                Some(format!("{{{{ {TOKEN_ORIGIN_VAR} }}}}{TOKEN_PATH}").as_str())
            );
            let origin = vars[TOKEN_ORIGIN_VAR]["default"].as_str();
            assert_eq!(
                origin.map(|o| format!("{o}{TOKEN_PATH}")).as_deref(),
                spec.default,
                "the origin's default rebuilds the documented token URL"
            );
            continue;
        }
        let var = vars
            .get(spec.name)
            .unwrap_or_else(|| panic!("{} missing", spec.name));
        match spec.default {
            Some(default) => assert_eq!(var["default"].as_str(), Some(default), "{}", spec.name),
            None => assert_eq!(
                var.get("required").and_then(|v| v.as_bool()),
                Some(true),
                "{}",
                spec.name
            ),
        }
        assert_eq!(
            var.get("secret").and_then(|v| v.as_bool()).unwrap_or(false),
            spec.secret,
            "{}",
            spec.name
        );
        assert_eq!(
            bound[spec.name].as_str(),
            Some(format!("{{{{ {} }}}}", spec.name).as_str())
        );
    }
}

/// Pointing the settings at another Clever (the fake) must not need a manifest edit: the
/// allowed hosts are exactly the two origins, as templates Spin 4 resolves at start-up.
#[test]
fn allowed_outbound_hosts_are_derived_from_the_two_origins() {
    let m = read_toml("spin.toml");
    let allowed: Vec<&str> = m["component"]["clever-auth"]["allowed_outbound_hosts"]
        .as_array()
        .expect("allowed_outbound_hosts")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        allowed,
        [
            format!("{{{{ {TOKEN_ORIGIN_VAR} }}}}"),
            "{{ clever_api_base_url }}".to_string()
        ]
    );
    // Spin refuses an allowed host with a path: the defaults must be bare origins.
    let vars = m["variables"].as_table().expect("[variables]");
    for name in [TOKEN_ORIGIN_VAR, "clever_api_base_url"] {
        let default = vars[name]["default"].as_str().unwrap_or_default();
        let rest = default.split_once("://").map(|(_, r)| r).unwrap_or("");
        assert!(
            !rest.is_empty() && !rest.contains('/'),
            "{name} = {default}: scheme://host[:port], no path"
        );
    }
}

#[test]
fn runtime_config_keeps_the_store_in_memory() {
    let rc = read_toml("runtime-config.toml");
    let store = &rc["key_value_store"]["default"];
    assert_eq!(store["type"].as_str(), Some("spin"));
    assert!(
        store.get("path").is_none(),
        "a path would put tokens on disk"
    );
}

/// Several `spin up` on one Redis: Spin's Redis provider for the component's store, and
/// sealing required by a provider Spin asks before the environment.
#[test]
fn redis_runtime_config_shares_the_store_and_requires_sealing() {
    let rc = read_toml("runtime-config.redis.toml");
    let store = &rc["key_value_store"]["default"];
    assert_eq!(store["type"].as_str(), Some("redis"));
    let url = store["url"].as_str().unwrap_or_default();
    assert!(url.starts_with("redis://"), "{url}");
    assert!(!url.contains('@'), "no password in a committed file: {url}");
    let providers = rc["variables_provider"].as_array().expect("providers");
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"].as_str(), Some("static"));
    assert_eq!(
        providers[0]["values"][store_seal::MODE_SETTING].as_str(),
        Some(store_seal::REQUIRED)
    );
    assert!(
        providers[0]["values"]
            .get(store_seal::KEY_SETTING)
            .is_none(),
        "the store key is a secret: never in a committed file"
    );
}
