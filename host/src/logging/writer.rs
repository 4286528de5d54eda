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
        let line = crate::redact::scrub_bytes(buf);
        self.0
            .lock()
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
