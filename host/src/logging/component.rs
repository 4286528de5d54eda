//! The component's stderr: its JSON lines become host `tracing` events with the component as
//! their source, so they share the host's format, level filter, redaction and telemetry.
//! A line that is not a JSON object is still kept, as a plain message.

use super::fields::{COMPONENT_SOURCE, COMPONENT_TARGET};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is cut into pieces rather than held: a component printing without
/// newlines must not grow host memory.
const MAX_LINE: usize = 64 * 1024;

/// The stderr of one instance. Clones share one line buffer; the last one to go flushes a
/// final unterminated line.
#[derive(Clone, Default)]
pub struct ComponentStderr(Arc<LineBuffer>);

#[derive(Default)]
struct LineBuffer(Mutex<Vec<u8>>);

impl LineBuffer {
    fn push(&self, bytes: &[u8]) {
        self.push_to(bytes, &mut |line| reemit(line));
    }

    fn push_to(&self, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.extend_from_slice(bytes);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            emit(&line[..end]);
        }
        if buf.len() > MAX_LINE {
            // Each piece is scrubbed on its own, so the cut must not split a known value:
            // what could be the start of one stays for the next piece (the buffer then holds
            // up to one value's length more than MAX_LINE).
            let cut = crate::redact::safe_cut(&buf);
            if cut >= MAX_LINE {
                let piece: Vec<u8> = buf.drain(..cut).collect();
                emit(&piece);
            }
        }
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let rest = std::mem::take(self.0.get_mut().unwrap_or_else(PoisonError::into_inner));
        if !rest.is_empty() {
            reemit(&rest);
        }
    }
}

impl IsTerminal for ComponentStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentStderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for ComponentStderr {
    async fn ready(&mut self) {}
}

impl OutputStream for ComponentStderr {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for ComponentStderr {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One component line, parsed into the fields every event shares.
#[derive(Debug, Default, PartialEq)]
pub struct ComponentEvent {
    pub level: String,
    pub event: String,
    pub district: Option<String>,
    pub operation: Option<String>,
    pub attempt: Option<u64>,
    pub delay_ms: Option<u64>,
    pub status: Option<u64>,
    pub duration_ms: Option<u64>,
    pub error_code: Option<String>,
    pub alert: Option<String>,
    pub error: Option<String>,
    /// Every other field, as one JSON object (empty when there were none).
    pub detail: Option<String>,
}

impl ComponentEvent {
    /// `None` when the line is not a JSON object with an `event` name.
    pub fn parse(line: &str) -> Option<ComponentEvent> {
        let Value::Object(mut map) = serde_json::from_str::<Value>(line).ok()? else {
            return None;
        };
        let event = take_string(&mut map, "event")?;
        let level = take_string(&mut map, "level").unwrap_or_else(|| "info".into());
        map.remove("source");
        let mut ev = ComponentEvent {
            level,
            event,
            district: take_string(&mut map, "district"),
            operation: take_string(&mut map, "operation"),
            attempt: take_u64(&mut map, "attempt"),
            delay_ms: take_u64(&mut map, "delay_ms"),
            status: take_u64(&mut map, "status"),
            duration_ms: take_u64(&mut map, "duration_ms"),
            error_code: take_string(&mut map, "error_code"),
            alert: take_string(&mut map, "alert"),
            error: take_string(&mut map, "error"),
            detail: None,
        };
        if !map.is_empty() {
            ev.detail = Some(Value::Object(map).to_string());
        }
        Some(ev)
    }
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(_) => match map.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        Value::Number(n) => {
            let s = n.to_string();
            map.remove(key);
            Some(s)
        }
        _ => None,
    }
}

fn take_u64(map: &mut Map<String, Value>, key: &str) -> Option<u64> {
    let n = map.get(key)?.as_u64()?;
    map.remove(key);
    Some(n)
}

macro_rules! emit {
    ($level:ident, $ev:expr) => {{
        let ev = $ev;
        tracing::$level!(
            target: COMPONENT_TARGET,
            source = COMPONENT_SOURCE,
            event = %ev.event,
            district = ev.district.as_deref(),
            operation = ev.operation.as_deref(),
            attempt = ev.attempt,
            delay_ms = ev.delay_ms,
            status = ev.status,
            duration_ms = ev.duration_ms,
            error_code = ev.error_code.as_deref(),
            alert = ev.alert.as_deref(),
            error = ev.error.as_deref(),
            detail = ev.detail.as_deref(),
            "{}",
            ev.event
        )
    }};
}

/// Re-emits one stderr line of the component as a host event.
///
/// The line is scrubbed here, before parsing, and a line that needed it is reported
/// (`component_output_scrubbed`, never the value): the component's own sanitiser should have
/// kept every secret out, so this event means it missed one. The leak test fails on it.
pub fn reemit(raw: &[u8]) {
    let scrubbed = crate::redact::scrub_bytes(raw);
    if matches!(scrubbed, std::borrow::Cow::Owned(_)) {
        tracing::warn!(
            event = "component_output_scrubbed",
            "a known secret value was masked in a component log line"
        );
    }
    let line = String::from_utf8_lossy(&scrubbed);
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() {
        return;
    }
    match ComponentEvent::parse(line) {
        Some(ev) => match ev.level.as_str() {
            "error" => emit!(error, &ev),
            "warn" | "warning" => emit!(warn, &ev),
            "debug" => emit!(debug, &ev),
            "trace" => emit!(trace, &ev),
            _ => emit!(info, &ev),
        },
        None => tracing::info!(
            target: COMPONENT_TARGET,
            source = COMPONENT_SOURCE,
            event = "component_output",
            "{line}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_are_lifted_and_the_rest_kept_as_detail() {
        let ev = ComponentEvent::parse(
            r#"{"level":"warn","event":"acquisition_retry","source":"clever-auth-component","district":"d1","attempt":2,"delay_ms":4000,"status":503,"error_code":"http_503","bucket":"x"}"#,
        )
        .expect("a component event");
        assert_eq!(ev.level, "warn");
        assert_eq!(ev.event, "acquisition_retry");
        assert_eq!(ev.district.as_deref(), Some("d1"));
        assert_eq!(
            (ev.attempt, ev.delay_ms, ev.status),
            (Some(2), Some(4000), Some(503))
        );
        assert_eq!(ev.error_code.as_deref(), Some("http_503"));
        assert_eq!(ev.detail.as_deref(), Some(r#"{"bucket":"x"}"#));
    }

    #[test]
    fn lines_that_are_not_events_are_not_parsed() {
        assert_eq!(ComponentEvent::parse("thread panicked at src/lib.rs"), None);
        assert_eq!(ComponentEvent::parse("[1,2]"), None);
        assert_eq!(ComponentEvent::parse(r#"{"level":"info"}"#), None);
    }

    #[test]
    fn a_field_of_an_unexpected_type_stays_in_detail() {
        let ev = ComponentEvent::parse(r#"{"event":"x","attempt":"two"}"#).expect("event");
        assert_eq!(ev.attempt, None);
        assert_eq!(ev.detail.as_deref(), Some(r#"{"attempt":"two"}"#));
    }

    #[test]
    fn the_buffer_splits_lines_across_writes() {
        // Drives the buffer directly; emitted events go to the (absent) subscriber, so this
        // checks the buffering, not the output.
        let buf = LineBuffer::default();
        buf.push(b"{\"event\":\"a\"}\n{\"ev");
        assert_eq!(
            buf.0.lock().map(|b| b.clone()).unwrap_or_default(),
            b"{\"ev".to_vec()
        );
        buf.push(b"ent\":\"b\"}\n");
        assert!(buf.0.lock().map(|b| b.is_empty()).unwrap_or(false));
    }

    #[test]
    fn a_long_line_is_never_cut_inside_a_known_value() {
        let secret = "canary-stderr-JJJJ-0000-a-long-secret-value";
        crate::redact::register(secret);
        // The value straddles the 64 KiB mark, written in small pieces as a guest would.
        let mut line = vec![b'x'; MAX_LINE - 10];
        line.extend_from_slice(secret.as_bytes());
        line.extend_from_slice(&[b'y'; 100]);
        let buf = LineBuffer::default();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for chunk in line.chunks(7) {
            buf.push_to(chunk, &mut |p| pieces.push(p.to_vec()));
        }
        buf.push_to(b"\n", &mut |p| pieces.push(p.to_vec()));
        assert!(pieces.len() >= 2, "the line was cut");
        assert_eq!(pieces.concat(), line, "nothing lost or repeated");
        let whole = pieces
            .iter()
            .filter(|p| String::from_utf8_lossy(p).contains(secret))
            .count();
        assert_eq!(whole, 1, "the value arrives whole in exactly one piece");
        assert!(pieces
            .iter()
            .all(|p| p.len() <= MAX_LINE + 8 * secret.len()));
    }
}
