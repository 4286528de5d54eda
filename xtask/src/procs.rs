//! Child processes for the benchmark: output drained on threads (a closed pipe would kill a
//! child at its next line), the last lines kept for error messages, lines forwarded to whoever
//! waits for one, and a kill on drop so nothing outlives the run. Plus what `/proc` says about
//! a process and a minimal HTTP/1.0 GET for health polls.

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const TAIL_LINES: usize = 40;

type Forward = Arc<Mutex<Option<Sender<(Instant, String)>>>>;

/// A running child; killed (and reaped) when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    forward: Forward,
    tail: Arc<Mutex<VecDeque<String>>>,
    pub started: Instant,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr piped (and stdin piped when `stdin` is true).
    pub fn spawn(name: &str, cmd: &mut Command, stdin: bool) -> Result<Proc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let (tx, lines) = mpsc::channel();
        let forward: Forward = Arc::new(Mutex::new(Some(tx)));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(stderr) as Box<dyn Read + Send>,
        ] {
            let (forward, tail) = (forward.clone(), tail.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(tx) = lock(&forward).as_ref() {
                        let _ = tx.send((Instant::now(), line.clone()));
                    }
                    let mut tail = lock(&tail);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Proc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            forward,
            tail,
            started,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for an output line (stdout or stderr) for which `pick` returns something.
    pub fn wait_line<T>(
        &mut self,
        timeout: Duration,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        self.wait_line_at(timeout, pick).map(|(_, found)| found)
    }

    /// Like [`Self::wait_line`], also returning when the line was read from the child.
    pub fn wait_line_at<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<(Instant, T)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    if let Some(found) = pick(&line) {
                        return Ok((at, found));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "{} said nothing expected within {timeout:?}:\n{}",
                        self.name,
                        self.tail()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!("{} exited ({status:?}):\n{}", self.name, self.tail())
                }
            }
        }
    }

    /// Stops forwarding lines (nobody will wait for more, so they must not pile up); they are
    /// still drained and kept in the tail. [`Self::wait_line`] and [`Self::command`] fail after.
    pub fn quiet(&mut self) {
        lock(&self.forward).take();
        while self.lines.try_recv().is_ok() {}
    }

    /// Writes a command line to stdin and waits for its `ok …` / `error …` answer.
    pub fn command(&mut self, line: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("stdin not piped")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        let answer = self.wait_line(Duration::from_secs(30), |l| {
            (l.starts_with("ok ") || l.starts_with("error ")).then(|| l.to_string())
        })?;
        match answer.strip_prefix("ok ") {
            Some(ok) => Ok(ok.to_string()),
            None => bail!("{}: `{line}` failed: {answer}", self.name),
        }
    }

    pub fn tail(&self) -> String {
        lock(&self.tail)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn vm_kib(&self, field: &str) -> Option<u64> {
        status_kib(self.pid(), field)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU time a process has used (`/proc/<pid>/stat`, in clock ticks of
/// 10 ms, Linux's `USER_HZ` of 100).
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many processes on the machine run a compiler or cargo right now (others' builds).
pub fn builds_running() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|comm| matches!(comm.trim(), "rustc" | "cc" | "ld" | "cc1" | "lld"))
        .count()
}

/// `GET path` over HTTP/1.0 (so the body ends with the connection, never chunked); returns
/// the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the answer has no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the answer has no status")?;
    Ok((status, body.to_string()))
}
