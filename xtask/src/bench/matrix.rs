//! Part 1, the matrix: the health endpoint under load at each connection count, served by the
//! host, the baseline and Spin in turn while the fake rotates tokens and injects faults.

use super::bench_spin;
use super::build::Bins;
use super::fake_log::{read_log, summarize_matrix_log};
use super::load::load;
use super::options::Options;
use super::servers::{start_baseline, start_host, Fake, HostFlags, Server};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const CONNECTIONS: [usize; 3] = [1, 64, 256];

/// Token lifetimes short enough that the host refreshes during every measured point
/// (lifetime 6 s, refresh at 50 %: every 3 s), retries quick, waits capped.
const MATRIX_SETTINGS: [(&str, &str); 7] = [
    ("CLEVER_TOKEN_LIFETIME_SECS", "6"),
    ("CLEVER_REFRESH_FRACTION", "0.5"),
    ("CLEVER_EXPIRY_SKEW_SECS", "1"),
    ("CLEVER_RETRY_BASE_MS", "100"),
    ("CLEVER_RETRY_MAX_DELAY_MS", "1000"),
    ("CLEVER_HTTP_TIMEOUT_MS", "2000"),
    ("CLEVER_RATE_LIMIT_MAX_WAIT_SECS", "2"),
];

/// What the fake is told during the matrix, one command every [`FAULT_EVERY`], round robin:
/// new tokens, a failed listing (retried after 100 ms), a rate-limited listing (Retry-After
/// 1 s), a failed probe (that district warns until the next cycle).
const FAULTS: [&str; 4] = [
    "rotate all",
    "fail tokens 1 status:503",
    "fail tokens 1 throttle:1",
    "fail data 1 status:503",
];
const FAULT_EVERY: Duration = Duration::from_millis(1500);

pub(super) fn matrix(
    bins: &Bins,
    flags: &HostFlags,
    opts: &Options,
    fake: &mut Fake,
    out_dir: &Path,
) -> Result<Value> {
    let mut hosts = Vec::new();
    for mode in &flags.instance_modes {
        hosts.push(start_host(bins, &fake.url, &MATRIX_SETTINGS, *mode)?);
    }
    let baseline = start_baseline(bins, &fake.url, &MATRIX_SETTINGS, fake.districts.len())?;
    let spin = bench_spin::start(bins, &fake.url, &MATRIX_SETTINGS, out_dir)?;
    // Let start-up work (compilation threads, first refreshes) settle before "idle".
    std::thread::sleep(Duration::from_secs(1));
    let idle: Vec<Value> = hosts
        .iter()
        .chain([&baseline])
        .chain(spin.as_ref().map(|s| &s.server))
        .map(|s| json!({ "server": s.label, "vm_rss_kib": bench_spin::vm_kib(s, "VmRSS") }))
        .collect();

    // Faults and rotations run on their own thread for the whole matrix.
    let stop = AtomicBool::new(false);
    let fake_proc = Mutex::new(&mut fake.proc);
    let mut points = Vec::new();
    let (result, sent) = std::thread::scope(|scope| {
        let driver = scope.spawn(|| {
            let mut sent = Vec::new();
            for line in FAULTS.iter().cycle() {
                std::thread::sleep(FAULT_EVERY);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut proc = fake_proc.lock().unwrap_or_else(PoisonError::into_inner);
                if proc.command(line).is_ok() {
                    sent.push(line.to_string());
                }
            }
            sent
        });
        if let Some(addr) = spin.as_ref().map(|s| s.server.addr) {
            let stop = &stop;
            scope.spawn(move || bench_spin::keep_polled(addr, stop));
        }
        let result = (|| -> Result<()> {
            for (i, &c) in CONNECTIONS.iter().enumerate() {
                let mut servers: Vec<&Server> = hosts
                    .iter()
                    .chain([&baseline])
                    .chain(spin.as_ref().map(|s| &s.server))
                    .collect();
                // Alternate who goes first, so a drift in the machine's load hits both sides.
                if i % 2 == 1 {
                    servers.reverse();
                }
                for s in servers {
                    points.push(load(bins, s, c, opts)?);
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        (result, driver.join().unwrap_or_default())
    });
    result?;

    let hwm: Vec<Value> = hosts
        .iter()
        .chain([&baseline])
        .chain(spin.as_ref().map(|s| &s.server))
        .map(|s| {
            json!({
                "server": s.label,
                "vm_hwm_kib": bench_spin::vm_kib(s, "VmHWM"),
                "vm_rss_kib_end": bench_spin::vm_kib(s, "VmRSS"),
            })
        })
        .collect();
    let log_path = out_dir.join("matrix-fake-log.jsonl");
    fake.command(&format!("log-dump {}", log_path.display()))?;
    let log = read_log(&log_path)?;
    Ok(json!({
        "districts": fake.districts.len(),
        "settings": MATRIX_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "points": points,
        "idle": idle,
        "end": hwm,
        "fake_commands_sent": sent,
        "fake_log": summarize_matrix_log(&log),
    }))
}
