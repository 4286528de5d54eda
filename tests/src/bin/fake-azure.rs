//! `fake-azure`: the test suite's Key Vault and App Service managed identity look-alikes as a
//! standalone process, for demos and manual runs. Prints the endpoints on its first stdout
//! lines, takes control commands on stdin, and serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use clever_auth_tests::fake_azure::{
    is_valid_secret_name, FakeIdentityConfig, FakeIdentityEndpoint, FakeKeyVault,
    FakeKeyVaultConfig, Fault,
};
use clever_auth_tests::fake_support::commands::{print_answer, spawn_stdin_reader};
use clever_auth_tests::fake_support::signals::{exit_code, StopSignals};

/// A fake Azure Key Vault (HTTPS, test CA made at start-up) and a fake App Service managed
/// identity endpoint (plain HTTP), both on loopback.
///
/// The vault holds the secrets `clever-client-id` and `clever-client-secret`. Point the host at
///   KEYVAULT_URL=<keyvault line>   IDENTITY_ENDPOINT=<identity line>
///   IDENTITY_HEADER=<identity-header line>
/// and trust the CA written to --ca-out. The vault's certificate is valid for 127.0.0.1,
/// localhost and <vault-name>.vault.azure.net; with the IP URL, turn the SDK's
/// verify_challenge_resource off.
///
/// First stdout lines:
///   keyvault https://127.0.0.1:PORT/
///   identity http://127.0.0.1:PORT/msi/token
///   identity-header <value>
///   vault-host <vault-name>.vault.azure.net
///   ca <path>                      (with --ca-out)
///   ready
///
/// Commands on stdin, one per line; each answers `ok ...` or `error ...` on stdout:
///   set <name> <value>        new secret version (rotation); prints the version id
///   disable <name> | enable <name> | delete <name>
///   vault-down | vault-up     stop listening (connection refused) / listen again, same port
///   vault-fault <kind> [name] persistent fault for all secrets or one: forbidden, notfound,
///                             throttle:<secs>, slow:<ms>, status:<code>, reset, hang
///   vault-clear               drop vault faults
///   vault-delay <ms>          delay every vault answer (0: off)
///   identity-down | identity-up
///   identity-unassigned | identity-assigned   400 "identity not assigned" on/off
///   identity-header <value>   expect another x-identity-header
///   identity-fault <kind> | identity-clear
///   versions <name>           list versions (ids only, never values)
/// Requests are logged on stderr unless --quiet.
#[derive(Debug, Parser)]
#[command(name = "fake-azure", version, verbatim_doc_comment)]
struct Args {
    /// Key Vault listen address (loopback only); port 0 picks a free port.
    #[arg(long, env = "FAKE_KEYVAULT_ADDR", default_value = "127.0.0.1:0")]
    vault_addr: SocketAddr,

    /// Identity endpoint listen address (loopback only); port 0 picks a free port.
    #[arg(long, env = "FAKE_IDENTITY_ADDR", default_value = "127.0.0.1:0")]
    identity_addr: SocketAddr,

    /// Vault name: the certificate and secret ids use <name>.vault.azure.net.
    #[arg(long, default_value = "clever-test")]
    vault_name: String,

    /// Value of the secret `clever-client-id`.
    #[arg(long, env = "FAKE_AZURE_CLIENT_ID", default_value = "demo-client-id")]
    client_id: String,

    /// Value of the secret `clever-client-secret`.
    #[arg(
        long,
        env = "FAKE_AZURE_CLIENT_SECRET",
        default_value = "demo-client-secret",
        hide_env_values = true
    )]
    client_secret: String,

    /// Write the vault's CA certificate (PEM) here so clients can trust it.
    #[arg(long, value_name = "PATH")]
    ca_out: Option<PathBuf>,

    /// The x-identity-header value to expect (IDENTITY_HEADER); random if not given.
    #[arg(long, env = "FAKE_IDENTITY_HEADER", hide_env_values = true)]
    identity_header: Option<String>,

    /// Lifetime of issued managed identity tokens, in seconds.
    #[arg(long, default_value_t = 86_400)]
    token_lifetime_secs: u64,

    /// Start with the vault down (port reserved and printed, connections refused) until the
    /// `vault-up` command.
    #[arg(long)]
    vault_down: bool,

    /// Do not log requests to stderr.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    exit_code("fake-azure", run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Well-known secrets and fake tokens: never expose this beyond the machine.
    for (flag, addr) in [
        ("--vault-addr", args.vault_addr),
        ("--identity-addr", args.identity_addr),
    ] {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "{flag} must be a loopback address (got {addr})"
        );
    }
    // Installed before the first line is printed: whoever reads it may signal at once.
    let mut stop = StopSignals::install()?;

    let mut identity_config = FakeIdentityConfig {
        addr: args.identity_addr,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        echo_requests: !args.quiet,
        ..FakeIdentityConfig::default()
    };
    if let Some(header) = args.identity_header {
        identity_config.header_secret = header;
    }
    let identity = FakeIdentityEndpoint::start(identity_config).await?;
    let vault = FakeKeyVault::start(FakeKeyVaultConfig {
        addr: args.vault_addr,
        vault_name: args.vault_name,
        secrets: vec![
            ("clever-client-id".to_string(), args.client_id),
            ("clever-client-secret".to_string(), args.client_secret),
        ],
        start_down: args.vault_down,
        echo_requests: !args.quiet,
        ..FakeKeyVaultConfig::default()
    })
    .await?;
    if let Some(path) = &args.ca_out {
        std::fs::write(path, vault.ca_pem())
            .with_context(|| format!("writing the CA certificate to {}", path.display()))?;
    }

    println!("keyvault {}", vault.url());
    println!("identity {}", identity.endpoint());
    println!("identity-header {}", identity.header_secret());
    println!("vault-host {}", vault.vault_host());
    if let Some(path) = &args.ca_out {
        println!("ca {}", path.display());
    }
    println!("ready");

    let mut commands = spawn_stdin_reader();
    loop {
        tokio::select! {
            () = stop.recv() => break,
            Some(line) = commands.recv() => {
                print_answer(command(&vault, &identity, line.trim()).await);
            }
        }
    }
    vault.shutdown().await;
    identity.shutdown().await;
    Ok(())
}

fn parse_fault(kind: &str) -> anyhow::Result<Fault> {
    let (name, arg) = kind.split_once(':').unwrap_or((kind, ""));
    let number = |what: &str| -> anyhow::Result<u64> {
        arg.parse()
            .with_context(|| format!("{what} needs a number, as in {name}:5"))
    };
    Ok(match name {
        "forbidden" => Fault::Forbidden,
        "notfound" => Fault::NotFound,
        "throttle" => Fault::throttled(number("throttle")?),
        "slow" => Fault::Delay(Duration::from_millis(number("slow")?)),
        "status" => Fault::Status(u16::try_from(number("status")?).context("status code")?),
        "reset" => Fault::Reset,
        "hang" => Fault::Hang,
        other => anyhow::bail!("unknown fault {other:?}"),
    })
}

async fn command(
    vault: &FakeKeyVault,
    identity: &FakeIdentityEndpoint,
    line: &str,
) -> anyhow::Result<Option<String>> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    let arg = words.next();
    let secret_name = |arg: Option<&str>| -> anyhow::Result<String> {
        let name = arg.context("missing secret name")?;
        anyhow::ensure!(
            is_valid_secret_name(name),
            "{name:?} is not a Key Vault secret name (letters, digits, '-')"
        );
        Ok(name.to_string())
    };
    let answer = match verb {
        "set" => {
            let name = secret_name(arg)?;
            // The value is the rest of the line after the name, inner spaces included.
            let value = line
                .trim_start()
                .strip_prefix(verb)
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix(name.as_str()))
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .context("usage: set <name> <value>")?;
            let version = vault.set_secret(&name, value);
            format!("set {name} version {version}")
        }
        "disable" | "enable" | "delete" => {
            let name = secret_name(arg)?;
            let existed = match verb {
                "disable" => vault.disable_secret(&name),
                "enable" => vault.enable_secret(&name),
                _ => vault.delete_secret(&name),
            };
            anyhow::ensure!(existed, "no secret {name}");
            format!("{verb} {name}")
        }
        "versions" => {
            let name = secret_name(arg)?;
            let versions: Vec<String> = vault
                .secret_versions(&name)
                .into_iter()
                .map(|v| format!("{}{}", v.version, if v.enabled { "" } else { "(disabled)" }))
                .collect();
            format!("versions {name} {}", versions.join(" "))
        }
        "vault-down" => {
            vault.set_down(true).await?;
            "vault-down".to_string()
        }
        "vault-up" => {
            vault.set_down(false).await?;
            format!("vault-up {}", vault.url())
        }
        "vault-fault" => {
            let fault = parse_fault(arg.context("usage: vault-fault <kind> [name]")?)?;
            match words.next() {
                Some(name) => vault.set_persistent_fault(secret_name(Some(name))?, fault),
                None => vault
                    .set_persistent_fault(clever_auth_tests::fake_azure::SecretMatch::Any, fault),
            }
            line.to_string()
        }
        "vault-clear" => {
            vault.clear_faults();
            "vault-clear".to_string()
        }
        "vault-delay" => {
            let ms: u64 = arg
                .context("usage: vault-delay <ms>")?
                .parse()
                .context("milliseconds")?;
            vault.set_response_delay(Duration::from_millis(ms));
            format!("vault-delay {ms}")
        }
        "identity-down" => {
            identity.set_down(true).await?;
            "identity-down".to_string()
        }
        "identity-up" => {
            identity.set_down(false).await?;
            format!("identity-up {}", identity.endpoint())
        }
        "identity-unassigned" => {
            identity.set_identity_assigned(false);
            "identity-unassigned".to_string()
        }
        "identity-assigned" => {
            identity.set_identity_assigned(true);
            "identity-assigned".to_string()
        }
        "identity-header" => {
            let value = arg.context("usage: identity-header <value>")?;
            identity.set_header_secret(value);
            "identity-header changed".to_string()
        }
        "identity-fault" => {
            let fault = parse_fault(arg.context("usage: identity-fault <kind>")?)?;
            identity.set_persistent_fault(fault);
            line.to_string()
        }
        "identity-clear" => {
            identity.clear_faults();
            "identity-clear".to_string()
        }
        other => anyhow::bail!("unknown command {other:?} (see --help)"),
    };
    Ok(Some(answer))
}
