//! The gateway in `cargo xtask bench` (alone: `cargo xtask bench --only gateway`): what a
//! request to Clever costs through the host's gateway, against the same request sent
//! **direct** to the upstream and through **nginx** as a reverse proxy adding a fixed
//! `Authorization` header with upstream keep-alive: 1, 64 and 256 connections, 1 KB and 1 MB
//! bodies, side by side (for each point the three run one after the other, `--gateway-rounds`
//! times in turn; the ratios are taken within a round, since the machine's speed drifts).
//!
//! The upstream is `clever-auth-bench upstream`, a fast stand-in for Clever's data API (the
//! fake Clever is single-threaded and logs every request: it would be the bottleneck); the
//! fake Clever still issues the gateway's tokens. nginx runs as one process
//! (`master_process off`, one worker); missing, it is installed with apt-get when running as
//! root, else left out with the command that installs it.

use super::build::Bins;
use super::load::run_generator;
use super::options::Options;
use super::servers::{
    host_command, listening_addr, start_fake, wait_health, Server, HOST_START_TIMEOUT,
};
use crate::procs::{self, Proc};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BODIES: [(usize, &str); 2] = [(1024, "1 KB"), (1 << 20, "1 MB")];
const CONNECTIONS: [usize; 3] = [1, 64, 256];
/// Any bearer value: the stand-in upstream checks only that one is present.
const DIRECT_TOKEN: &str = "Bearer bench-direct-token";
const API_VERSION: &str = "v3.0";

/// Runs the section alone and writes `gateway.md` (and its JSON twin) next to `opts.out`.
pub fn only(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<()> {
    let result = run(bins, opts, out_dir)?;
    write_section(out_dir, "gateway", &result, &render(&result))
}

/// Prints a section run alone and writes it as `<name>.md` with its JSON twin in `out_dir`.
pub(super) fn write_section(
    out_dir: &Path,
    name: &str,
    result: &Value,
    markdown: &str,
) -> Result<()> {
    print!("{markdown}");
    let md = out_dir.join(format!("{name}.md"));
    std::fs::write(&md, markdown)?;
    std::fs::write(
        md.with_extension("json"),
        serde_json::to_string_pretty(result)?,
    )?;
    eprintln!("xtask bench: wrote {}", md.display());
    Ok(())
}

struct Target {
    label: &'static str,
    addr: SocketAddr,
    path_prefix: String,
    headers: Vec<String>,
    /// The process whose CPU and memory the point reports.
    pid: u32,
}

pub fn run(bins: &Bins, opts: &Options, out_dir: &Path) -> Result<Value> {
    let dir = out_dir.join("gateway");
    std::fs::create_dir_all(&dir)?;
    let fake = start_fake(bins, 1)?;
    let district = fake
        .districts
        .first()
        .context("the fake made no district")?;
    let upstream = start_upstream(bins)?;
    let upstream_url = format!("http://{}", upstream.addr);
    let host = start_gateway_host(bins, &fake.url, &upstream_url)?;
    let nginx = start_nginx(&dir, upstream.addr)?;

    let mut targets = vec![
        Target {
            label: "direct",
            addr: upstream.addr,
            path_prefix: String::new(),
            headers: vec![format!("Authorization: {DIRECT_TOKEN}")],
            pid: upstream.proc.pid(),
        },
        Target {
            label: "gateway",
            addr: host.gateway,
            path_prefix: format!("/clever/{district}"),
            headers: vec![],
            pid: host.server.proc.pid(),
        },
    ];
    if let Some(n) = &nginx {
        targets.push(Target {
            label: "nginx",
            addr: n.addr,
            path_prefix: String::new(),
            headers: vec![],
            pid: n.proc.pid(),
        });
    }

    let rounds = opts.gateway_rounds.max(1);
    let mut points = Vec::new();
    for (bytes, body_label) in BODIES {
        for connections in CONNECTIONS {
            for (round, t) in (1..=rounds).flat_map(|r| targets.iter().map(move |t| (r, t))) {
                let url = format!(
                    "http://{}{}/{API_VERSION}/bytes/{bytes}",
                    t.addr, t.path_prefix
                );
                eprintln!(
                    "xtask bench: gateway section: {} {body_label} at {connections} connections",
                    t.label
                );
                let mut p = load(bins, &url, &t.headers, connections, t.pid, opts)?;
                if p["body_bytes"] != json!(bytes) && p["ok_2xx"].as_u64().unwrap_or(0) > 0 {
                    bail!(
                        "{} answered {} bytes instead of {bytes}",
                        t.label,
                        p["body_bytes"]
                    );
                }
                p["target"] = json!(t.label);
                p["body"] = json!(body_label);
                p["round"] = json!(round);
                points.push(p);
            }
        }
    }
    Ok(json!({
        "upstream": "clever-auth-bench upstream (1 thread)",
        "nginx": nginx.as_ref().map(|n| n.version.clone()),
        "nginx_missing": nginx.is_none().then_some("nginx not found: apt-get install -y nginx-light"),
        "points": points,
        "machine_after": { "loadavg_1m": procs::loadavg() },
    }))
}

// ----- processes -----

pub(super) struct Upstream {
    pub(super) proc: Proc,
    pub(super) addr: SocketAddr,
}

pub(super) fn start_upstream(bins: &Bins) -> Result<Upstream> {
    let mut proc = Proc::spawn(
        "upstream",
        Command::new(&bins.bench).args(["upstream", "--listen", "127.0.0.1:0"]),
        false,
    )?;
    let addr = proc.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("listening ").and_then(|a| a.parse().ok())
    })?;
    proc.quiet();
    Ok(Upstream { proc, addr })
}

pub(super) struct GatewayHost {
    pub(super) server: Server,
    pub(super) gateway: SocketAddr,
}

/// The release host, its tokens from the fake Clever, its data API the stand-in upstream.
fn start_gateway_host(bins: &Bins, fake_url: &str, upstream_url: &str) -> Result<GatewayHost> {
    start_gateway_host_with(bins, fake_url, upstream_url, &[], &[])
}

/// [`start_gateway_host`] with more settings and flags (a store, its key).
pub(super) fn start_gateway_host_with(
    bins: &Bins,
    fake_url: &str,
    upstream_url: &str,
    settings: &[(&str, &str)],
    extra: &[String],
) -> Result<GatewayHost> {
    // As in the container image (Dockerfile: `--precompile`): the measured host loads the
    // compiled component instead of compiling it at start, whose memory glibc keeps and the
    // peak RSS figures counted (43 MiB more in one run).
    let precompiled = Command::new(&bins.host)
        .arg("--component")
        .arg(&bins.component)
        .arg("--precompile")
        .stdout(Stdio::null())
        .status()?;
    if !precompiled.success() {
        bail!("clever-auth-host --precompile failed ({precompiled})");
    }
    let mut cmd = host_command(bins, fake_url, settings, extra);
    cmd.env("CLEVER_API_BASE_URL", upstream_url);
    let mut proc = Proc::spawn("gateway host", &mut cmd, false)?;
    let gateway = proc.wait_line(HOST_START_TIMEOUT, |line| {
        let v: Value = serde_json::from_str(line).ok()?;
        (v.get("message")?.as_str()? == "gateway listening")
            .then(|| v.get("addr")?.as_str()?.parse().ok())
            .flatten()
    })?;
    let addr = proc.wait_line(HOST_START_TIMEOUT, listening_addr)?;
    proc.quiet();
    let server = Server {
        label: "gateway host".into(),
        proc,
        addr,
    };
    wait_health(&server, HOST_START_TIMEOUT, |status, body| {
        status == 200 && body["status"] == "pass"
    })?;
    Ok(GatewayHost { server, gateway })
}

struct Nginx {
    proc: Proc,
    addr: SocketAddr,
    version: String,
}

fn nginx_binary() -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", "command -v nginx || ls /usr/sbin/nginx"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!path.is_empty()).then_some(path)
}

fn ensure_nginx() -> Option<String> {
    if let Some(path) = nginx_binary() {
        return Some(path);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        eprintln!("xtask bench: nginx left out: not installed (apt-get install -y nginx-light)");
        return None;
    }
    eprintln!("xtask bench: installing nginx-light with apt-get");
    let installed = Command::new("sh")
        .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light"])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("xtask bench: nginx left out: apt-get install -y nginx-light failed");
    }
    nginx_binary()
}

/// One nginx process (no master, one worker) proxying to `upstream` with a fixed bearer
/// token and a keep-alive upstream pool, responses streamed through 64 KiB buffers (never
/// spooled to disk).
fn start_nginx(dir: &Path, upstream: SocketAddr) -> Result<Option<Nginx>> {
    let Some(nginx) = ensure_nginx() else {
        return Ok(None);
    };
    let version = Command::new(&nginx)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = dir.canonicalize()?.join("nginx");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp"))?;
    let d = dir.display();
    let conf = format!(
        r#"worker_processes 1;
master_process off;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    upstream clever {{
        server {upstream};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://clever;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "{DIRECT_TOKEN}";
            proxy_buffers 8 64k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut proc = Proc::spawn(
        "nginx",
        Command::new(&nginx)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .args(["-c", "nginx.conf", "-g", "daemon off;"]),
        false,
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("nginx did not listen on {addr}: {}", proc.tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    proc.quiet();
    Ok(Some(Nginx {
        proc,
        addr,
        version,
    }))
}

// ----- load -----

pub(super) fn load(
    bins: &Bins,
    url: &str,
    headers: &[String],
    connections: usize,
    pid: u32,
    opts: &Options,
) -> Result<Value> {
    let loadavg = procs::loadavg();
    let mut cmd = Command::new(&bins.bench);
    cmd.args(["load", "--url", url])
        .args(["--connections", &connections.to_string()])
        .args(["--secs", &opts.secs.to_string()])
        .args(["--warmup-secs", &opts.warmup_secs.to_string()])
        .args(["--threads", &opts.gen_threads.to_string()])
        .args(["--max-requests", &opts.max_requests.to_string()])
        .args(["--watch-pid", &pid.to_string()]);
    for h in headers {
        cmd.args(["--header", h]);
    }
    let mut result = run_generator(&mut cmd, "load generator")?;
    result["loadavg_1m"] = json!(loadavg);
    Ok(result)
}

// ----- report -----

/// A point's runs, one per round, in order.
fn runs<'a>(r: &'a Value, target: &str, body: &str, connections: usize) -> Vec<&'a Value> {
    r["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["target"] == target && p["body"] == body && p["connections"] == json!(connections)
        })
        .collect()
}

/// `f` of the gateway's and the other target's runs of the same round, round by round.
fn per_round(
    r: &Value,
    other: &str,
    body: &str,
    connections: usize,
    f: impl Fn(&Value, &Value) -> f64,
) -> Vec<f64> {
    runs(r, "gateway", body, connections)
        .into_iter()
        .zip(runs(r, other, body, connections))
        .map(|(g, o)| f(g, o))
        .collect()
}

/// The median, and the range when there is more than one value.
pub(super) fn median_and_range(mut values: Vec<f64>, unit: &str, digits: usize) -> Option<String> {
    values.sort_by(f64::total_cmp);
    let median = *values.get(values.len() / 2)?;
    let (lo, hi) = (values[0], values[values.len() - 1]);
    Some(if values.len() > 1 {
        format!(
            "**{median:.digits$}{unit}** (median of {} rounds; {lo:.digits$}–{hi:.digits$}{unit})",
            values.len()
        )
    } else {
        format!("**{median:.digits$}{unit}**")
    })
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Server CPU per answered request, µs.
fn cpu_us(p: &Value) -> f64 {
    num(&p["server_cpu_secs"]) * 1e6 / num(&p["requests"]).max(1.0)
}

pub fn render(r: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Gateway vs direct vs nginx\n");
    let _ = writeln!(
        s,
        "Upstream: {}. nginx: {}. Each point: closed-loop load, the three targets one after the other, round after round. CPU and peak RSS are the proxy's (for direct: the upstream's).\n",
        r["upstream"].as_str().unwrap_or("?"),
        r["nginx"].as_str().or(r["nginx_missing"].as_str()).unwrap_or("?"),
    );
    let _ = writeln!(
        s,
        "| body | conns | round | target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | non-2xx+errors | loadavg |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for p in r["points"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {:.2} |",
            p["body"].as_str().unwrap_or("?"),
            p["connections"],
            p["round"].as_u64().unwrap_or(1),
            p["target"].as_str().unwrap_or("?"),
            num(&p["rps"]),
            num(&p["latency_us"]["p50"]) / 1000.0,
            num(&p["latency_us"]["p99"]) / 1000.0,
            cpu_us(p),
            num(&p["server_rss_max_kib"]) / 1024.0,
            p["non_2xx"].as_u64().unwrap_or(0) + p["errors"].as_u64().unwrap_or(0),
            num(&p["loadavg_1m"]),
        );
    }
    let _ = writeln!(s);
    let added = per_round(r, "direct", "1 KB", 1, |g, d| {
        (num(&g["latency_us"]["p50"]) - num(&d["latency_us"]["p50"])) / 1000.0
    });
    if let Some(ms) = median_and_range(added, " ms", 3) {
        let _ = writeln!(
            s,
            "- Added p50 at 1 connection, 1 KB, gateway vs direct: {ms} (target ≤ 0.5 ms)."
        );
    }
    for body in ["1 KB", "1 MB"] {
        let ratios = per_round(r, "nginx", body, 64, |g, n| {
            100.0 * num(&g["rps"]) / num(&n["rps"])
        });
        if let Some(pct) = median_and_range(ratios, " %", 0) {
            let _ = writeln!(
                s,
                "- Gateway req/s at 64 connections, {body}: {pct} of nginx's, round by round (target ≥ 50 %)."
            );
        }
    }
    let rss: Vec<f64> = runs(r, "gateway", "1 MB", 256)
        .into_iter()
        .map(|g| num(&g["server_rss_max_kib"]) / 1024.0)
        .collect();
    if let Some(mib) = median_and_range(rss, " MiB", 1) {
        let _ = writeln!(
            s,
            "- Gateway host peak RSS streaming 1 MB at 256 connections: {mib} (target < 128 MiB)."
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, round: u64, rps: f64) -> Value {
        json!({ "target": target, "body": "1 KB", "connections": 64, "round": round, "rps": rps })
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round_and_report_the_median() {
        // A machine twice as fast in round 2: the ratio stays 40 % within each round, while
        // pairing across rounds would give 20 % or 80 %.
        let r = json!({ "points": [
            run("gateway", 1, 400.0), run("nginx", 1, 1000.0),
            run("gateway", 2, 800.0), run("nginx", 2, 2000.0),
            run("gateway", 3, 300.0), run("nginx", 3, 1000.0),
        ]});
        let ratios = per_round(&r, "nginx", "1 KB", 64, |g, n| {
            100.0 * num(&g["rps"]) / num(&n["rps"])
        });
        assert_eq!(ratios, [40.0, 40.0, 30.0]);
        assert_eq!(
            median_and_range(ratios, " %", 0).as_deref(),
            Some("**40 %** (median of 3 rounds; 30–40 %)")
        );
        assert_eq!(
            median_and_range(vec![1.25], " ms", 2).as_deref(),
            Some("**1.25 ms**")
        );
        assert_eq!(median_and_range(Vec::new(), " %", 0), None);
    }
}
