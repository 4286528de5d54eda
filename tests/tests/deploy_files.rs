//! The shipping files agree with the code: the Dockerfile builds and runs what `cargo xtask`
//! produces with flags and variables the host defines; the Bicep template's app settings are
//! names the host or component reads (never the two secrets) with the code's defaults; the
//! Spin Key Vault manifest binds every setting with names Key Vault can hold.
//!
//! These are text checks, not builds: no container engine or Bicep compiler is needed, so they
//! run everywhere `cargo test` does.

use clap::CommandFactory;
use clever_auth_core::health_view::DETAIL_SETTING;
use clever_auth_core::settings::{SettingSpec, SETTINGS};
use clever_auth_host::cli::Cli;
use clever_auth_host::server::routing::HEALTH_PATH;
use clever_auth_tests::bicep;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_toml(name: &str) -> toml::Table {
    read(name)
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not valid TOML: {e}"))
}

/// The environment variables the host's command line defines.
fn host_env_names() -> BTreeSet<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The host's long flags, with their leading `--`.
fn host_flags() -> BTreeSet<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect()
}

fn host_default(id: &str) -> String {
    let cmd = Cli::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("the host has no argument {id}"));
    let values = arg.get_default_values();
    assert_eq!(values.len(), 1, "{id} has one default");
    values[0].to_string_lossy().into_owned()
}

fn non_secret_settings() -> impl Iterator<Item = &'static SettingSpec> {
    SETTINGS.iter().filter(|s| !s.secret)
}

fn secret_env_names() -> Vec<String> {
    SETTINGS
        .iter()
        .filter(|s| s.secret)
        .map(|s| s.env_name())
        .collect()
}

// ---- Dockerfile ----------------------------------------------------------------------------

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuation lines
/// joined and comment lines dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The instructions of the last stage (the image that ships).
fn final_stage(all: &[Instruction]) -> &[Instruction] {
    let last_from = all
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("a FROM");
    &all[last_from..]
}

/// `ENV A=1 B=2` of the final stage.
fn final_env(all: &[Instruction]) -> BTreeMap<String, String> {
    final_stage(all)
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|pair| {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV {pair}: use the KEY=value form"));
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn dockerfile_builds_and_ships_what_xtask_produces() {
    let all = dockerfile();
    let runs: Vec<&str> = all
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo xtask build --release")),
        "the image is built with `cargo xtask build --release`"
    );
    // Where xtask writes the component (the host's default --component and spin.toml's source)
    // and the release host binary.
    let component_built = host_default("component");
    let host_built = format!("target/release/{}", Cli::command().get_name());
    for built in [&component_built, &host_built] {
        assert!(
            runs.iter().any(|r| r.contains(built.as_str())),
            "the build stage picks up {built}"
        );
    }

    // The shipped image points the host at the files it copies in.
    let env = final_env(&all);
    let copied: Vec<&str> = final_stage(&all)
        .iter()
        .filter(|i| i.keyword == "COPY")
        .filter_map(|i| i.args.split_whitespace().last())
        .collect();
    for key in ["CLEVER_AUTH_COMPONENT", "CLEVER_AUTH_COMPONENT_CACHE"] {
        let path = env
            .get(key)
            .unwrap_or_else(|| panic!("the image sets {key}"));
        assert!(
            copied
                .iter()
                .any(|dest| dest.trim_end_matches('/') == path.trim_end_matches('/')),
            "{key}={path} is copied into the image (COPY destinations: {copied:?})"
        );
    }

    // The precompile step writes exactly what the runtime reads.
    let precompile = runs
        .iter()
        .find(|r| r.contains("--precompile"))
        .expect("a RUN precompiles the component");
    for (flag, key) in [
        ("--component", "CLEVER_AUTH_COMPONENT"),
        ("--component-cache", "CLEVER_AUTH_COMPONENT_CACHE"),
    ] {
        let expected = format!("{flag} {}", env[key]);
        assert!(
            precompile
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w.join(" ") == expected),
            "the precompile step passes `{expected}`: {precompile}"
        );
    }

    let final_instr = final_stage(&all);
    let user = final_instr
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("the image runs as a named user");
    assert!(
        !["root", "0", "0:0"].contains(&user.args.as_str()),
        "USER {} is root",
        user.args
    );
    let healthcheck = final_instr
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    let probe = read("deploy/container-healthcheck.sh");
    assert!(
        probe.contains(&format!("health_path={HEALTH_PATH}\n")),
        "the probe asks {HEALTH_PATH}"
    );
    assert!(
        healthcheck.args.contains("clever-auth-healthcheck"),
        "{healthcheck:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("deploy/container-healthcheck.sh")),
        "the build installs deploy/container-healthcheck.sh"
    );
    let expose = final_instr
        .iter()
        .find(|i| i.keyword == "EXPOSE")
        .expect("EXPOSE");
    assert_eq!(expose.args, "8080", "the host's default port");
    assert!(
        !final_instr
            .iter()
            .any(|i| i.args.contains("--listen") || i.args.contains("CLEVER_AUTH_LISTEN")),
        "the image keeps the host's PORT / WEBSITES_PORT logic"
    );
}

/// The bases are build arguments (`cargo xtask image` passes Debian-made equivalents where no
/// registry serves them), and their defaults stay what CI and `az acr build` pull.
#[test]
fn dockerfile_bases_are_arguments_with_the_registry_defaults() {
    let all = dockerfile();
    let args: BTreeMap<&str, &str> = all
        .iter()
        .filter(|i| i.keyword == "ARG")
        .filter_map(|i| i.args.split_once('='))
        .collect();
    assert_eq!(args.get("BUILD_BASE"), Some(&"rust:1.95-bookworm"));
    assert_eq!(args.get("RUNTIME_BASE"), Some(&"debian:bookworm-slim"));
    let froms: Vec<&str> = all
        .iter()
        .filter(|i| i.keyword == "FROM")
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(froms, ["${BUILD_BASE} AS build", "${RUNTIME_BASE}"]);
}

#[test]
fn dockerfile_uses_only_flags_and_variables_the_host_defines() {
    let all = dockerfile();
    let known_env = host_env_names();
    for key in final_env(&all).keys() {
        assert!(
            known_env.contains(key),
            "ENV {key} is not a clever-auth-host variable (known: {known_env:?})"
        );
    }
    for secret in secret_env_names() {
        assert!(
            !all.iter()
                .any(|i| (i.keyword == "ENV" || i.keyword == "ARG") && i.args.contains(&secret)),
            "{secret} must never be baked into the image"
        );
    }
    // Every command that runs the host uses only flags it defines.
    let flags = host_flags();
    let host_commands: Vec<&str> = all
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| i.args.split("&&"))
        .map(str::trim)
        .filter(|cmd| {
            cmd.split_whitespace()
                .next()
                .is_some_and(|program| program.ends_with("/clever-auth-host"))
        })
        .collect();
    assert!(!host_commands.is_empty(), "a RUN calls clever-auth-host");
    for cmd in host_commands {
        for word in cmd.split_whitespace().filter(|w| w.starts_with("--")) {
            assert!(
                flags.contains(word),
                "`{word}` is not a clever-auth-host flag (known: {flags:?}): {cmd}"
            );
        }
    }
}

// ---- Bicep ---------------------------------------------------------------------------------

/// Settings the App Service platform or its SDKs read, not our code; each is documented in
/// README.md.
const PLATFORM_SETTINGS: &[&str] = &[
    "WEBSITES_PORT",
    "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
];

#[test]
fn bicep_app_settings_are_names_the_code_reads_with_its_defaults() {
    let bicep = read("deploy/main.bicep");
    let readme = read("README.md");
    let settings = bicep::app_settings(&bicep);
    assert!(
        !settings.is_empty(),
        "main.bicep has no siteConfig.appSettings"
    );
    let params = bicep::string_param_defaults(&bicep);
    let host_env = host_env_names();
    let component_env: BTreeMap<String, &SettingSpec> =
        non_secret_settings().map(|s| (s.env_name(), s)).collect();
    // Settings only the sidecar layout reads, through sidecar.bicep's mapping onto a variable
    // the host reads (the next test holds the mapping to that).
    let sidecar_only: BTreeSet<String> = sidecar_clever_auth()
        .environment
        .into_iter()
        .filter(|(var, setting)| var != setting)
        .map(|(_, setting)| setting)
        .collect();

    let names: Vec<&str> = settings.iter().map(|(n, _)| n.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "duplicate app settings: {names:?}"
    );

    for secret in secret_env_names() {
        assert!(
            !unique.contains(secret.as_str()),
            "{secret} as an app setting stops the host: secrets come from Key Vault"
        );
    }
    for (name, value) in &settings {
        let known = host_env.contains(name)
            || component_env.contains_key(name)
            || PLATFORM_SETTINGS.contains(&name.as_str())
            || sidecar_only.contains(name);
        assert!(known, "app setting {name} is read by nothing");
        if PLATFORM_SETTINGS.contains(&name.as_str()) {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md documents {name}"
            );
        }
        // A component setting comes from a parameter whose default is the code's default.
        if let Some(spec) = component_env.get(name) {
            let default = params
                .get(value)
                .unwrap_or_else(|| panic!("{name} = {value}: not a string parameter"));
            assert_eq!(
                Some(default.as_str()),
                spec.default,
                "default of {value} ({name})"
            );
        }
    }
    for env in component_env.keys() {
        assert!(
            unique.contains(env.as_str()),
            "{env} is missing from the app settings"
        );
    }
    for (setting, id) in [
        ("KEYVAULT_SECRET_CLIENT_ID", "keyvault_secret_client_id"),
        (
            "KEYVAULT_SECRET_CLIENT_SECRET",
            "keyvault_secret_client_secret",
        ),
    ] {
        let (_, value) = settings
            .iter()
            .find(|(n, _)| n == setting)
            .unwrap_or_else(|| panic!("{setting} is set"));
        assert_eq!(params.get(value), Some(&host_default(id)), "{setting}");
    }
    for required in ["KEYVAULT_URL", "WEBSITES_PORT"] {
        assert!(unique.contains(required), "{required} is set");
    }
}

fn sidecar_clever_auth() -> bicep::SiteContainer {
    bicep::site_containers(&read("deploy/sidecar.bicep"))
        .into_iter()
        .find(|c| c.name == "clever-auth")
        .expect("deploy/sidecar.bicep has a clever-auth sitecontainer")
}

#[test]
fn sidecar_bicep_maps_app_settings_main_bicep_sets_onto_variables_the_host_reads() {
    let main = read("deploy/main.bicep");
    let set: BTreeSet<String> = bicep::app_settings(&main)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let host_env = host_env_names();
    let component_env: BTreeSet<String> = non_secret_settings().map(|s| s.env_name()).collect();
    let clever_auth = sidecar_clever_auth();
    assert!(
        !clever_auth.is_main,
        "clever-auth is the sidecar, not the main container"
    );
    assert!(
        !clever_auth.environment.is_empty(),
        "sidecar.bicep gives clever-auth no environment"
    );
    for (var, setting) in &clever_auth.environment {
        assert!(
            host_env.contains(var)
                || component_env.contains(var)
                || PLATFORM_SETTINGS.contains(&var.as_str()),
            "sidecar.bicep sets {var}, which nothing reads"
        );
        assert!(
            set.contains(setting),
            "sidecar.bicep maps {var} to app setting {setting}, which main.bicep does not set"
        );
    }
    let listen = clever_auth
        .environment
        .iter()
        .find(|(var, _)| var == "CLEVER_AUTH_LISTEN")
        .expect("sidecar.bicep moves clever-auth's health listener off the main container's port");
    assert_ne!(
        listen.1, "CLEVER_AUTH_LISTEN",
        "a setting of its own, unused by the single-container layout"
    );
}

#[test]
fn bicep_wires_health_port_vault_and_audit_as_the_code_expects() {
    let bicep = read("deploy/main.bicep");
    let has = |needle: &str| {
        assert!(bicep.contains(needle), "main.bicep lacks `{needle}`");
    };
    has(&format!("var healthPath = '{HEALTH_PATH}'"));
    has("healthCheckPath: healthPath");
    // The port App Service routes to is the one the image exposes (the host's default).
    has("var containerPort = '8080'");
    has("value: containerPort");
    has("linuxFxVersion: 'DOCKER|${containerImage}'");
    has("enableRbacAuthorization: true");
    has("var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'");
    has("principalId: site.identity.principalId");
    has("category: 'AuditEvent'");
    has("httpsOnly: true");
    has("minTlsVersion: '1.2'");
    has("ftpsState: 'Disabled'");
    has("alwaysOn: true");
    has("name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE'\n          value: 'false'");

    // The example parameters file only sets parameters the template declares.
    let declared = bicep::declared_params(&bicep);
    let example = read("deploy/main.bicepparam");
    assert!(example.contains("using './main.bicep'"));
    for line in example.lines() {
        if let Some(rest) = line.trim().strip_prefix("param ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                declared.contains(name),
                "main.bicepparam sets {name}, unknown to main.bicep"
            );
        }
    }
    for p in &declared {
        assert!(
            !p.to_ascii_lowercase().contains("clientsecret") || p.starts_with("keyVaultSecret"),
            "parameter {p}: secret values never go through the template"
        );
    }
}

// ---- Spin with Key Vault -------------------------------------------------------------------

/// Valid as a Spin variable name and as a Key Vault secret name: lower-case letters and
/// digits, starting with a letter (Spin allows `_`, Key Vault does not; Key Vault allows `-`,
/// Spin does not).
fn spin_and_key_vault_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[test]
fn spin_key_vault_manifest_binds_every_setting_with_vault_compatible_names() {
    let m = read_toml("spin.keyvault.toml");
    let plain = read_toml("spin.toml");
    assert_eq!(m["spin_manifest_version"].as_integer(), Some(2));
    assert_eq!(m["trigger"]["http"], plain["trigger"]["http"]);
    for key in ["source", "key_value_stores", "build"] {
        assert_eq!(
            m["component"]["clever-auth"][key], plain["component"]["clever-auth"][key],
            "{key} as in spin.toml"
        );
    }
    let vars = m["variables"].as_table().expect("[variables]");
    let bound = m["component"]["clever-auth"]["variables"]
        .as_table()
        .expect("component variables");
    assert_eq!(bound.len(), SETTINGS.len() + 1);
    assert_eq!(
        bound[DETAIL_SETTING].as_str(),
        Some(""),
        "the listener gives the public health answer"
    );
    // spin.toml derives its allowed hosts from variables; here the URLs are literals (a
    // variable would be looked up in the vault), so the allowed hosts are their origins.
    let origin = |name: &str| {
        let url = bound[name].as_str().unwrap_or_default();
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let host = rest.split('/').next().unwrap_or_default();
        format!("{}://{host}", url.split("://").next().unwrap_or_default())
    };
    let allowed: Vec<&str> = m["component"]["clever-auth"]["allowed_outbound_hosts"]
        .as_array()
        .expect("allowed_outbound_hosts")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        allowed,
        [origin("clever_token_url"), origin("clever_api_base_url")],
        "the origins of the literal endpoint URLs"
    );
    // Every application variable is looked up in the vault, and a failed lookup fails the
    // read: only the secrets may be variables, all with names the vault can hold.
    assert_eq!(vars.len(), SETTINGS.iter().filter(|s| s.secret).count());
    for (name, var) in vars {
        assert!(
            spin_and_key_vault_name(name),
            "{name}: must be a valid Spin variable and Key Vault secret name (a-z, 0-9)"
        );
        assert_eq!(var["secret"].as_bool(), Some(true), "{name}");
        assert_eq!(var["required"].as_bool(), Some(true), "{name}");
    }
    for spec in SETTINGS {
        let value = bound[spec.name]
            .as_str()
            .unwrap_or_else(|| panic!("{} is bound", spec.name));
        if spec.secret {
            let var = value
                .strip_prefix("{{ ")
                .and_then(|v| v.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("{} = {value}: a variable", spec.name));
            assert!(vars.contains_key(var), "{var} is declared");
        } else {
            assert_eq!(Some(value), spec.default, "{} literal", spec.name);
        }
    }

    let rc = read_toml("runtime-config.keyvault.toml");
    let store = &rc["key_value_store"]["default"];
    assert_eq!(store["type"].as_str(), Some("spin"));
    assert!(
        store.get("path").is_none(),
        "a path would put tokens on disk"
    );
    let providers = rc["variables_provider"].as_array().expect("providers");
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"].as_str(), Some("azure_key_vault"));
    assert!(providers[0].get("vault_url").is_some());
    assert!(
        providers[0].get("client_secret").is_none(),
        "no credential in a committed file"
    );
}

/// `sharedStore` wires what the host accepts: a `rediss://` URL its parser takes for the
/// database's host name and port, Entra ID (a `--store-auth` value), the app's identity as a
/// Redis user; and a database the host can use as the spec requires (no persistence, no
/// eviction, one endpoint, no access keys).
#[test]
fn bicep_shared_store_is_a_redis_the_host_accepts() {
    use clap::ValueEnum;
    use clever_auth_host::keyvalue::runtime_config::{parse, StoreSetting};
    use clever_auth_host::keyvalue::store_auth::StoreAuth;

    let bicep = read("deploy/main.bicep");
    let settings = bicep::app_settings(&bicep);
    let value = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} is set"))
    };
    let store = value("CLEVER_AUTH_STORE");
    let port = bicep
        .lines()
        .find_map(|l| l.trim().strip_prefix("var redisPort = "))
        .expect("var redisPort");
    // `sharedStore ? 'rediss://${redis.properties.hostName}:${redisPort}' : 'memory'`
    let (shared, alone) = store
        .strip_prefix("sharedStore ? '")
        .and_then(|rest| rest.split_once("' : '"))
        .expect("CLEVER_AUTH_STORE chooses by sharedStore");
    let url = shared
        .replace(
            "${redis.properties.hostName}",
            "redis-clever-x.westeurope.redis.azure.net",
        )
        .replace("${redisPort}", port);
    assert!(
        matches!(parse(&url), Ok(StoreSetting::Redis { tls: true, .. })),
        "{url}"
    );
    assert_eq!(
        parse(alone.trim_end_matches('\'')),
        Ok(StoreSetting::Memory)
    );

    let auth = value("CLEVER_AUTH_STORE_AUTH");
    let (shared, alone) = auth
        .strip_prefix("sharedStore ? '")
        .and_then(|rest| rest.split_once("' : '"))
        .expect("CLEVER_AUTH_STORE_AUTH chooses by sharedStore");
    assert_eq!(StoreAuth::from_str(shared, false), Ok(StoreAuth::Entra));
    assert_eq!(
        StoreAuth::from_str(alone.trim_end_matches('\''), false),
        Ok(StoreAuth::None)
    );

    for needle in [
        "clientProtocol: 'Encrypted'",
        "clusteringPolicy: 'EnterpriseCluster'",
        "evictionPolicy: 'NoEviction'",
        "aofEnabled: false",
        "rdbEnabled: false",
        "accessKeysAuthentication: 'Disabled'",
        "minimumTlsVersion: '1.2'",
        "objectId: site.identity.principalId",
    ] {
        assert!(bicep.contains(needle), "main.bicep lacks `{needle}`");
    }
}
