//! `fake-clever`: the test suite's Clever look-alike as a standalone process, for demos and
//! manual runs. Prints `listening on <base url>` as its first stdout line and serves until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use clever_auth_tests::fake_clever::{FakeClever, FakeCleverConfig};
use clever_auth_tests::fake_support::signals::{exit_code, StopSignals};

/// A fake Clever (OAuth district-token listing, client_credentials, tokeninfo and the
/// versioned data API) on loopback, for demos and end-to-end tests.
///
/// Endpoints, all under the printed base URL:
///   GET  /oauth/tokens?owner_type=district[&district=ID]   (HTTP Basic client id/secret)
///   POST /oauth/tokens   grant_type=client_credentials     (HTTP Basic client id/secret)
///   GET  /oauth/tokeninfo                                  (Bearer token)
///   GET  /{version}/districts/{id}, /{version}/me          (Bearer token)
///
/// The first line on stdout is `listening on <base url>`; then `district <id>` per district.
/// One line per request goes to stderr unless --quiet.
#[derive(Debug, Parser)]
#[command(name = "fake-clever", version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on (loopback only); port 0 picks a free port.
    #[arg(long, env = "FAKE_CLEVER_ADDR", default_value = "127.0.0.1:0")]
    addr: SocketAddr,

    /// Client id accepted with HTTP Basic on /oauth/tokens.
    #[arg(long, env = "FAKE_CLEVER_CLIENT_ID", default_value = "demo-client-id")]
    client_id: String,

    /// Client secret accepted with HTTP Basic on /oauth/tokens.
    #[arg(
        long,
        env = "FAKE_CLEVER_CLIENT_SECRET",
        default_value = "demo-client-secret",
        hide_env_values = true
    )]
    client_secret: String,

    /// Number of districts (random ids) that have authorised the app.
    #[arg(long, env = "FAKE_CLEVER_DISTRICTS", default_value_t = 2)]
    districts: usize,

    /// Additional district with this exact id (repeatable).
    #[arg(long = "district-id", value_name = "ID")]
    district_ids: Vec<String>,

    /// expires_in of client_credentials tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,

    /// Data API versions answered normally (comma-separated); others get "version not supported".
    #[arg(long, value_delimiter = ',', default_value = "v3.0,v3.1")]
    supported_versions: Vec<String>,

    /// Send the served API version in this response header on data responses.
    #[arg(long, value_name = "HEADER")]
    version_header: Option<String>,

    /// Serve HTTPS with a certificate from a throw-away CA made at start-up.
    #[arg(long)]
    tls: bool,

    /// With --tls: write the CA certificate (PEM) here so clients can trust it.
    #[arg(long, value_name = "PATH", requires = "tls")]
    ca_out: Option<PathBuf>,

    /// Do not log requests to stderr.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    exit_code("fake-clever", run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Credentials are well known and data is fake: never expose this beyond the machine.
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "--addr must be a loopback address (got {})",
        args.addr
    );
    // Installed before the first line is printed: whoever reads it may signal at once.
    let mut stop = StopSignals::install()?;

    let fake = FakeClever::start(FakeCleverConfig {
        addr: args.addr,
        tls: args.tls,
        client_id: args.client_id,
        client_secret: args.client_secret,
        district_ids: args.district_ids,
        generated_districts: args.districts,
        client_credentials_lifetime_secs: args.token_lifetime_secs,
        supported_versions: args.supported_versions,
        version_header: args.version_header,
        echo_requests: !args.quiet,
        ..FakeCleverConfig::default()
    })
    .await?;

    if let (Some(path), Some(pem)) = (&args.ca_out, fake.ca_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("writing the CA certificate to {}", path.display()))?;
    }
    println!("listening on {}", fake.base_url());
    for id in fake.district_ids() {
        println!("district {id}");
    }

    stop.recv().await;
    fake.shutdown().await;
    Ok(())
}
