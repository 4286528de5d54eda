//! What `/proc` says about a process: CPU time used and resident memory (Linux only).

use std::time::Duration;

/// The kernel's USER_HZ, the unit of `utime`/`stime` in `/proc/<pid>/stat`: 100 on every
/// Linux platform this runs on.
const TICKS_PER_SEC: u64 = 100;

/// User + system CPU time of every thread of `pid` so far (`self` for this process).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come state (field 3), ...; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SEC,
    ))
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(cpu_time("self").is_some());
        assert!(status_kib("self", "VmRSS").is_some_and(|k| k > 0));
        assert!(status_kib("self", "NoSuchField").is_none());
    }
}
