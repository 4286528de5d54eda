//! The README's gateway examples ("Calling Clever from your sync code"), read from README.md
//! when the test runs and run as a reader would: the `curl` line under `sh` with the real
//! `curl`, the `requests` snippet with `python3`, against the real host and component and the
//! fake Clever on loopback. Only the gateway's address is put in (the test's host listens on a
//! free port, not the default 127.0.0.1:8081), and the Python snippet's free `district`.
//!
//! Without `curl` or Python's `requests` a test says so and returns; under `CI=true` it fails
//! (as the Spin tests do: in CI a missing tool is an error, never a silent skip).

use anyhow::{ensure, Context, Result};
use clap::CommandFactory;
use clever_auth_tests::fake_clever::{Fault, Route, RouteMatch};
use clever_auth_tests::markdown::CodeBlock;
use clever_auth_tests::readme_examples::{self, example};
use clever_auth_tests::scenario::{two_districts, Scenario};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// How long one run of an example may take: the gateway answers within its 30 s deadline.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The host's default `--gateway-listen`, the address the README's examples use.
fn default_gateway() -> Result<String> {
    let cli = clever_auth_host::cli::Cli::command();
    let arg = cli
        .get_arguments()
        .find(|a| a.get_id() == "gateway_listen")
        .context("the host has a gateway_listen argument")?;
    let default = arg
        .get_default_values()
        .first()
        .context("gateway_listen has a default")?;
    Ok(default.to_string_lossy().into_owned())
}

/// The example pointed at `gateway`: its `http://<default gateway>/` must be there exactly
/// once, so an example that drifted from the host's default fails here rather than passing
/// against an address nobody documented.
fn at_gateway(block: &CodeBlock, gateway: SocketAddr) -> Result<String> {
    let documented = format!("http://{}/", default_gateway()?);
    let uses = block.text.matches(&documented).count();
    ensure!(
        uses == 1,
        "the ```{} example on README.md line {} names {documented} {uses} times, not once:\n{}",
        block.lang,
        block.line,
        block.text
    );
    Ok(block
        .text
        .replace(&documented, &format!("http://{gateway}/")))
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether `program args` runs and succeeds; if not, fails under CI and says it skips otherwise.
async fn available(what: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !under_ci(),
            "CI=true but {what} is missing (.ci/run installs it: apt-get install curl python3-requests)"
        );
        eprintln!("SKIPPED: {what} is missing; this README example did not run");
    }
    ok
}

/// Runs `cmd` in an empty directory (should the curl line lose its quotes, its `?` is a shell glob
/// that must not meet a file it matches), without proxy settings (a proxy would not reach loopback).
async fn run(mut cmd: Command, dir: &Path) -> Result<Output> {
    cmd.current_dir(dir).kill_on_drop(true);
    for proxy in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(proxy);
    }
    tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .context("the example did not finish within a minute")?
        .context("starting the example")
}

/// Every token the fake issued and the client secret: none may reach an example's output.
fn secrets(s: &Scenario) -> Vec<String> {
    let mut all = s.fake.issued_tokens();
    all.push(s.fake.client_secret());
    all
}

/// `text` with every secret blanked, so that a failure message cannot print one.
fn redacted(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "<redacted>"))
}

/// The example's stdout, once its exit status, stderr and the absence of every secret from
/// both (and from the host's log) are checked; messages show the output redacted.
fn checked_stdout(s: &Scenario, what: &str, out: &Output) -> Result<String> {
    let secrets = secrets(s);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for (name, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("host log", &s.logs()),
    ] {
        let leaked = secrets
            .iter()
            .filter(|secret| !secret.is_empty() && text.contains(secret.as_str()))
            .count();
        ensure!(
            leaked == 0,
            "{what}: {leaked} token(s) or the client secret in the {name}"
        );
    }
    ensure!(
        out.status.success(),
        "{what} exited with {}\nstdout: {}\nstderr: {}",
        out.status,
        redacted(&stdout, &secrets),
        redacted(&stderr, &secrets)
    );
    Ok(stdout)
}

/// The fake saw the example's request with d-alpha's own token: the gateway, not the
/// example, authenticated it.
fn clever_saw_d_alphas_token(s: &Scenario, path_and_query: &str) -> Result<()> {
    let token = s
        .fake
        .district_token("d-alpha")
        .context("d-alpha's token")?;
    let seen = s
        .fake
        .requests_for(RouteMatch::route(Route::Data).for_district("d-alpha"));
    let request = seen
        .iter()
        .rev()
        .find(|r| r.path_and_query == path_and_query)
        .with_context(|| {
            let all: Vec<String> = seen.iter().map(|r| r.summary()).collect();
            format!("the fake never saw {path_and_query}: {all:#?}")
        })?;
    assert_eq!(
        request.auth.fingerprint.as_deref(),
        Some(s.fake.fingerprint(&token).as_str()),
        "the request reached Clever with d-alpha's token"
    );
    Ok(())
}

/// A schools page of the fake's, read with d-alpha's token: three d-alpha schools.
fn assert_d_alpha_schools(what: &str, body: &Value) {
    let schools = body["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    assert!(
        body["tokenDistrict"] == "d-alpha"
            && schools.len() == 3
            && schools.iter().all(|s| s["data"]["district"] == "d-alpha"),
        "{what} did not get d-alpha's three schools: {body:#}"
    );
}

#[tokio::test]
async fn the_readmes_curl_example_prints_the_districts_schools() -> Result<()> {
    let block = example("sh")?;
    ensure!(
        block.text.trim_start().starts_with("curl "),
        "the ```sh example on README.md line {} is not a curl command:\n{}",
        block.line,
        block.text
    );
    if !available("curl", "curl", &["--version"]).await {
        return Ok(());
    }
    let s = Scenario::start(two_districts(), &[]).await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    let gateway = s.host.gateway_addr.context("the host has a gateway")?;
    let script = at_gateway(&block, gateway)?;

    let dir = tempfile::tempdir()?;
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    let out = run(sh, dir.path()).await?;
    let stdout = checked_stdout(&s, "the curl example", &out)?;
    let body: Value =
        serde_json::from_str(&stdout).with_context(|| format!("curl printed no JSON: {stdout}"))?;
    assert_d_alpha_schools("the curl example", &body);
    clever_saw_d_alphas_token(&s, "/v3.0/districts/d-alpha/schools?limit=100")?;
    Ok(())
}

/// Runs the snippet for `district` and returns the report it printed.
async fn run_python(s: &Scenario, snippet: &str, district: &str) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("example.py");
    std::fs::write(&file, readme_examples::python_program(snippet))?;
    let mut python = Command::new("python3");
    python.arg(&file).arg(district);
    let out = run(python, dir.path()).await?;
    let what = format!("the Python example for {district}");
    let stdout = checked_stdout(s, &what, &out)?;
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("{what} printed no report: {stdout}"))
}

#[tokio::test]
async fn the_readmes_python_example_reads_schools_and_takes_the_gateways_errors() -> Result<()> {
    let block = example("python")?;
    if !available("Python's requests", "python3", &["-c", "import requests"]).await {
        return Ok(());
    }
    // A deadline below the Retry-After below, so the gateway answers its own 429 at once
    // instead of waiting the rate limit out.
    let s = Scenario::start(two_districts(), &[("CLEVER_GATEWAY_DEADLINE_MS", "2000")]).await?;
    s.wait_status("pass", Duration::from_secs(30)).await?;
    let gateway = s.host.gateway_addr.context("the host has a gateway")?;
    let snippet = at_gateway(&block, gateway)?;

    let ok = run_python(&s, &snippet, "d-alpha").await?;
    assert_eq!(ok["status"], 200, "{ok:#}");
    assert_eq!(ok["source"], "clever", "{ok:#}");
    assert!(
        ok.get("code").is_none(),
        "a 200 took the error branch: {ok:#}"
    );
    assert_d_alpha_schools("the Python example", &ok["body"]);
    clever_saw_d_alphas_token(&s, "/v3.0/districts/d-alpha/schools?limit=100")?;

    // The snippet's error branch, on the gateway's own answers.
    let unknown = run_python(&s, &snippet, "d-nobody").await?;
    assert_eq!(unknown["status"], 404, "{unknown:#}");
    assert_eq!(unknown["source"], "gateway", "{unknown:#}");
    assert_eq!(unknown["code"], "unknown_district", "{unknown:#}");
    assert_eq!(unknown["wait"], 1, "no Retry-After: the snippet's default");

    s.fake.push_fault(
        RouteMatch::route(Route::Data).for_district("d-beta"),
        Fault::rate_limited_retry_after_secs(20),
    );
    let limited = run_python(&s, &snippet, "d-beta").await?;
    assert_eq!(limited["status"], 429, "{limited:#}");
    assert_eq!(limited["source"], "gateway", "{limited:#}");
    assert_eq!(limited["code"], "rate_limited", "{limited:#}");
    let wait = limited["wait"].as_u64().context("wait is a number")?;
    assert!((18..=21).contains(&wait), "Retry-After {wait} s, not ~20");
    Ok(())
}
