//! The stdout writer behind every log line: scrubs known secrets before the bytes leave.

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// `fmt` formats a whole event into one buffer and writes it with a single `write_all`, so a
/// value cannot be split across two writes and slip past the scrubber.
pub struct ScrubbedStdout;

pub struct Writer(io::Stdout);

impl<'a> MakeWriter<'a> for ScrubbedStdout {
    type Writer = Writer;

    fn make_writer(&'a self) -> Writer {
        Writer(io::stdout())
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().write_all(&crate::redact::scrub_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
