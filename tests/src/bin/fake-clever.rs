//! `fake-clever`: the test suite's Clever look-alike as a standalone process, for demos,
//! manual runs and benchmarks. Prints `listening on <base url>` as its first stdout line, takes
//! control commands on stdin, and serves until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use clever_auth_tests::fake_clever::{
    FakeClever, FakeCleverConfig, Fault, Outcome, RequestRecord, Route, RouteMatch,
};
use clever_auth_tests::fake_support::commands::{print_answer, spawn_stdin_reader};
use clever_auth_tests::fake_support::signals::{exit_code, StopSignals};
use serde_json::json;

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
///
/// Commands on stdin, one per line; each answers `ok ...` or `error ...` on stdout:
///   rotate <district-id>|all           new token(s) in the listing; the old ones get 401
///   fail <route> <n> <kind> [district] the next n matching requests get this fault
///   fault <route> <kind> [district]    every matching request gets it, until `clear`
///   clear                              drop queued and persistent faults
///   log-dump <path>                    write the request log as JSON lines (no credentials)
///   log-clear                          forget the recorded requests
/// Routes: tokens (the listing), client-credentials, tokeninfo, data, any.
/// Kinds: status:<code>, throttle:<secs> (429, Retry-After), slow:<ms>, reset, hang, malformed.
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
    // The log's times are dumped relative to this.
    let started = Instant::now();

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

    let mut commands = spawn_stdin_reader();
    loop {
        tokio::select! {
            () = stop.recv() => break,
            Some(line) = commands.recv() => {
                print_answer(command(&fake, started, line.trim()));
            }
        }
    }
    fake.shutdown().await;
    Ok(())
}

fn parse_route(name: &str) -> anyhow::Result<RouteMatch> {
    Ok(match name {
        "tokens" => Route::TokenList.into(),
        "client-credentials" => Route::ClientCredentials.into(),
        "tokeninfo" => Route::TokenInfo.into(),
        "data" => Route::Data.into(),
        "any" => RouteMatch::any(),
        other => anyhow::bail!(
            "unknown route {other:?} (tokens, client-credentials, tokeninfo, data, any)"
        ),
    })
}

fn parse_fault(kind: &str) -> anyhow::Result<Fault> {
    let (name, arg) = kind.split_once(':').unwrap_or((kind, ""));
    let number = |what: &str| -> anyhow::Result<u64> {
        arg.parse()
            .with_context(|| format!("{what} needs a number, as in {name}:5"))
    };
    Ok(match name {
        "status" => Fault::Status(u16::try_from(number("status")?).context("status code")?),
        "throttle" => Fault::rate_limited_retry_after_secs(number("throttle")?),
        "slow" => Fault::Delay(Duration::from_millis(number("slow")?)),
        "reset" => Fault::Reset,
        "hang" => Fault::Hang,
        "malformed" => Fault::MalformedJson,
        other => anyhow::bail!("unknown fault {other:?}"),
    })
}

/// One request of the log as a JSON object: times, route, district and outcome, never a
/// credential (not even its fingerprint).
fn record_json(r: &RequestRecord, started: Instant) -> serde_json::Value {
    let (outcome, status) = match r.outcome {
        Outcome::Responded(s) => ("responded", Some(s)),
        Outcome::Pending => ("pending", None),
        Outcome::Hung => ("hung", None),
        Outcome::Reset => ("reset", None),
        Outcome::Abandoned => ("abandoned", None),
    };
    json!({
        "seq": r.seq,
        "t_us": u64::try_from(r.at.saturating_duration_since(started).as_micros()).unwrap_or(u64::MAX),
        "unix_ms": r.unix_ms,
        "method": r.method,
        "route": format!("{:?}", r.route),
        "district": r.district,
        "outcome": outcome,
        "status": status,
        "fault": r.fault.is_some(),
    })
}

fn command(fake: &FakeClever, started: Instant, line: &str) -> anyhow::Result<Option<String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&verb, args)) = words.split_first() else {
        return Ok(None);
    };
    let target = |route: &str, district: Option<&&str>| -> anyhow::Result<RouteMatch> {
        let target = parse_route(route)?;
        Ok(match district {
            Some(d) => target.for_district(*d),
            None => target,
        })
    };
    let answer = match (verb, args) {
        ("rotate", ["all"]) => {
            let ids = fake.district_ids();
            for id in &ids {
                fake.rotate_token(id);
            }
            format!("rotate {} districts", ids.len())
        }
        ("rotate", [id]) => {
            anyhow::ensure!(fake.rotate_token(id).is_some(), "no district {id}");
            format!("rotate {id}")
        }
        ("fail", [route, n, kind, rest @ ..]) if rest.len() <= 1 => {
            let n: usize = n.parse().context("fail: n must be a number")?;
            fake.push_faults(target(route, rest.first())?, n, parse_fault(kind)?);
            line.to_string()
        }
        ("fault", [route, kind, rest @ ..]) if rest.len() <= 1 => {
            fake.set_persistent_fault(target(route, rest.first())?, parse_fault(kind)?);
            line.to_string()
        }
        ("clear", []) => {
            fake.clear_faults();
            "clear".to_string()
        }
        ("log-dump", [path]) => {
            let records = fake.requests();
            let file = std::fs::File::create(path).with_context(|| format!("creating {path}"))?;
            let mut out = std::io::BufWriter::new(file);
            for r in &records {
                writeln!(out, "{}", record_json(r, started))?;
            }
            out.flush()?;
            format!("log-dump {} records {path}", records.len())
        }
        ("log-clear", []) => {
            fake.clear_requests();
            "log-clear".to_string()
        }
        _ => anyhow::bail!("unknown command or wrong arguments: {line:?} (see --help)"),
    };
    Ok(Some(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdin_commands_drive_the_fake() -> anyhow::Result<()> {
        let fake = FakeClever::start(FakeCleverConfig::default()).await?;
        let started = Instant::now();
        let id = fake.district_ids()[0].clone();
        let before = fake.district_token(&id);
        assert_eq!(
            command(&fake, started, "rotate all")?,
            Some("rotate 2 districts".into())
        );
        assert_ne!(fake.district_token(&id), before);
        command(&fake, started, &format!("fail data 2 status:503 {id}"))?;
        command(&fake, started, "fail tokens 1 throttle:1")?;
        assert_eq!(fake.queued_faults(), 3);
        command(&fake, started, "fault any slow:5")?;
        command(&fake, started, "clear")?;
        assert_eq!(fake.queued_faults(), 0);
        assert!(command(&fake, started, "fail nowhere 1 status:503").is_err());
        assert!(command(&fake, started, "fail data 1 teapot").is_err());
        assert!(command(&fake, started, "rotate no-such-district").is_err());
        assert_eq!(command(&fake, started, "  ")?, None);

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log.jsonl");
        let answer = command(&fake, started, &format!("log-dump {}", path.display()))?;
        assert_eq!(
            answer,
            Some(format!("log-dump 0 records {}", path.display()))
        );
        assert_eq!(std::fs::read_to_string(&path)?, "");
        fake.shutdown().await;
        Ok(())
    }
}
