//! The stdout writer behind every log line: scrubs known secrets before the bytes leave, and
//! queues the line for a writer thread that writes whatever has queued up in one go.
//!
//! Why a thread: a busy gateway logs one line per request, and a `write` to the pipe that App
//! Service (or a terminal) reads costs a system call and a wake-up of the reader each time,
//! in the request's own task. The thread writes every line that waited while it wrote the
//! last batch with one call; a line that finds it idle wakes it, so a quiet service still
//! shows each line at once.
//!
//! Why not `tracing-appender`'s non-blocking writer: its thread waits on a crossbeam channel,
//! which spins and yields before it sleeps. Under gateway load it woke for every few lines and
//! spent up to a tenth of the host's CPU spinning. Here the thread sleeps on a condition
//! variable, and after each write pauses [`BATCH_PAUSE`] so the next batch can gather.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of lines waiting for the thread, at most; beyond that loggers wait (never dropped).
/// A slow reader of stdout cannot make the host hold more than this.
const MAX_QUEUED: usize = 1024 * 1024;
/// After a write, the thread waits this long before the next: at most about a thousand
/// writes (and wake-ups) a second, and no line waits longer than this plus one write.
const BATCH_PAUSE: Duration = Duration::from_millis(1);

/// `fmt` formats a whole event into one buffer and writes it with a single `write_all`, so a
/// value cannot be split across two writes and slip past the scrubber.
#[derive(Clone)]
pub struct ScrubbedStdout(Arc<Queue>);

/// Writes what is still queued when dropped: hold it until the process ends.
pub struct Flush {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    /// The thread waits here for lines.
    lines: Condvar,
    /// Loggers wait here for room.
    room: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The thread is waiting for lines: the next one wakes it.
    idle: bool,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A logger that panicked mid-push left whole lines behind it: carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line`; false once the queue is closed (the line is not taken).
    fn push(&self, line: &[u8]) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        while !state.pending.is_empty() && state.pending.len() + line.len() > MAX_QUEUED {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.pending.extend_from_slice(line);
        if state.idle {
            state.idle = false;
            self.lines.notify_one();
        }
        true
    }

    /// The thread: takes everything queued, writes it in one go, pauses, and again, until
    /// closed and empty.
    fn drain_into(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            {
                let mut state = self.lock();
                while state.pending.is_empty() && !state.closed {
                    state.idle = true;
                    state = self
                        .lines
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if state.pending.is_empty() {
                    return;
                }
                std::mem::swap(&mut batch, &mut state.pending);
                self.room.notify_all();
            }
            // Nothing to do about a closed stdout but to go on (the lines are lost either way).
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > MAX_QUEUED {
                batch.shrink_to(MAX_QUEUED);
            }
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}

impl ScrubbedStdout {
    pub fn start() -> (ScrubbedStdout, Flush) {
        Self::start_with(io::stdout(), "clever-auth-log")
    }

    fn start_with(out: impl Write + Send + 'static, name: &str) -> (ScrubbedStdout, Flush) {
        let queue = Arc::new(Queue::default());
        let thread = {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || queue.drain_into(out))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // Without the thread, lines would queue until loggers block: say so and let
                // them write themselves.
                eprintln!("the log writer thread did not start ({e}): writing lines directly");
                queue.lock().closed = true;
                None
            }
        };
        (ScrubbedStdout(queue.clone()), Flush { queue, thread })
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.lines.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct Writer(Arc<Queue>);

impl<'a> MakeWriter<'a> for ScrubbedStdout {
    type Writer = Writer;

    fn make_writer(&'a self) -> Writer {
        Writer(self.0.clone())
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = crate::redact::scrub_bytes(buf);
        let line = with_instance(&line, super::instance_id());
        if !self.0.push(&line) {
            // After the flush at exit (or without a thread): straight to stdout.
            io::stdout().lock().write_all(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON line with `"instance_id"` as its first field (text lines are left alone).
fn with_instance<'a>(line: &'a [u8], id: Option<&str>) -> std::borrow::Cow<'a, [u8]> {
    let (Some(id), Some(rest)) = (id, line.strip_prefix(b"{")) else {
        return std::borrow::Cow::Borrowed(line);
    };
    let id = serde_json::Value::from(id).to_string();
    let mut out = Vec::with_capacity(line.len() + id.len() + 20);
    out.extend_from_slice(b"{\"instance_id\":");
    out.extend_from_slice(id.as_bytes());
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout stand-in: what was written, and how many writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            sink.0.extend_from_slice(buf);
            sink.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_in_fewer_writes() {
        const THREADS: usize = 4;
        const LINES: usize = 2_000;
        let sink = Sink::default();
        let (out, flush) = ScrubbedStdout::start_with(sink.clone(), "test-log");
        let loggers: Vec<_> = (0..THREADS)
            .map(|t| {
                let out = out.clone();
                std::thread::spawn(move || {
                    for n in 0..LINES {
                        let mut w = out.make_writer();
                        let _ = w.write_all(format!("{{\"t\":{t},\"n\":{n}}}\n").as_bytes());
                    }
                })
            })
            .collect();
        for l in loggers {
            l.join().expect("logger");
        }
        drop(flush);
        let (bytes, writes) = sink.0.lock().expect("sink").clone();
        let mut next = [0usize; THREADS];
        for line in String::from_utf8(bytes).expect("utf-8").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a whole line");
            let t = v["t"].as_u64().expect("t") as usize;
            assert_eq!(
                v["n"].as_u64(),
                Some(next[t] as u64),
                "thread {t} out of order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [LINES; THREADS], "lines lost");
        assert!(
            writes < THREADS * LINES,
            "{writes} writes for {} lines",
            THREADS * LINES
        );
    }

    #[test]
    fn a_stalled_stdout_holds_loggers_at_the_bound_without_losing_lines() {
        /// Takes nothing until released.
        struct Stalled(Arc<(Mutex<bool>, Condvar)>, Sink);
        impl Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let (open, turn) = &*self.0;
                let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
                while !*open {
                    open = turn.wait(open).unwrap_or_else(PoisonError::into_inner);
                }
                self.1.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (out, flush) =
            ScrubbedStdout::start_with(Stalled(gate.clone(), sink.clone()), "test-stall");
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        let logger = {
            let out = out.clone();
            std::thread::spawn(move || {
                for _ in 0..4 * MAX_QUEUED / 1024 {
                    let _ = out.make_writer().write_all(&line);
                }
            })
        };
        // The logger soon fills the queue and waits; the queue never passes the bound.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!logger.is_finished(), "the logger never waited");
        assert!(out.0.lock().pending.len() <= MAX_QUEUED);
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        logger.join().expect("logger");
        drop(flush);
        let written = sink.0.lock().expect("sink").0.len();
        assert_eq!(written, 4 * MAX_QUEUED, "lines lost");
    }

    #[test]
    fn json_lines_gain_the_instance_and_stay_json() {
        let out = with_instance(br#"{"level":"INFO","message":"x"}"#, Some("ab\"c"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["instance_id"], "ab\"c");
        assert_eq!(v["message"], "x");
        let empty = with_instance(b"{}", Some("i"));
        assert_eq!(empty.as_ref(), br#"{"instance_id":"i"}"#);
    }

    #[test]
    fn without_an_instance_or_json_nothing_changes() {
        assert_eq!(with_instance(b"{}", None).as_ref(), b"{}");
        assert_eq!(
            with_instance(b"2026 INFO x", Some("i")).as_ref(),
            b"2026 INFO x"
        );
    }
}
