//! The stdout writer behind every log line: scrubs known secrets before the bytes leave, and
//! hands the line to a writer thread that writes whatever has queued up in one go.
//!
//! Why a thread: a busy gateway logs one line per request, and a `write` to the pipe that App
//! Service (or a terminal) reads costs a system call and a wake-up of the reader each time,
//! in the request's own task. The thread writes every line that waited while it wrote the
//! last batch with one call, and flushes as soon as nothing more waits, so a quiet service
//! still shows each line at once.

use std::io::{self, BufWriter, Write};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Up to this many bytes of lines go out in one write.
const BATCH_BYTES: usize = 64 * 1024;
/// Lines waiting for the thread, at most (about 1 MiB of JSON lines); beyond that loggers
/// wait. The crate's default, 128,000, let a slow reader of stdout hold some 40 MiB.
const QUEUED_LINES: usize = 4096;

/// `fmt` formats a whole event into one buffer and writes it with a single `write_all`, so a
/// value cannot be split across two writes and slip past the scrubber.
pub struct ScrubbedStdout(NonBlocking);

/// Writes what is still queued when dropped: hold it until the process ends.
pub struct Flush(#[allow(dead_code)] WorkerGuard);

impl ScrubbedStdout {
    pub fn start() -> (ScrubbedStdout, Flush) {
        // Not lossy: a line is never dropped; if stdout stops taking lines, loggers wait, as
        // they did when they wrote it themselves.
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(QUEUED_LINES)
            .thread_name("clever-auth-log")
            .finish(BufWriter::with_capacity(BATCH_BYTES, io::stdout()));
        (ScrubbedStdout(writer), Flush(guard))
    }
}

pub struct Writer(NonBlocking);

impl<'a> MakeWriter<'a> for ScrubbedStdout {
    type Writer = Writer;

    fn make_writer(&'a self) -> Writer {
        Writer(self.0.clone())
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = crate::redact::scrub_bytes(buf);
        self.0
            .write_all(&with_instance(&line, super::instance_id()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
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
