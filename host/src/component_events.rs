//! The component's stderr: JSON event lines (`{"level","event","source",…}`).
//!
//! PLACEHOLDER until the host re-emits those lines as `tracing` events (target
//! `clever_auth_component`, fields `event`, `district`, `status`, `attempt`, `delay_ms`,
//! `duration_ms`, `error_code`, `alert`), which is being done separately. Until then the lines
//! still go to the host's stderr unchanged, exactly as before, and each one is also emitted as
//! such a `tracing` event to the telemetry layers alone (`telemetry::component_events`), so
//! log records, counters and alerts see the component. At merge, delete this file and its use
//! in `state.rs`: the re-emitted events reach the same layers through the global subscriber.

use crate::telemetry;
use serde_json::Value;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// A longer line is not an event; it is passed through and otherwise ignored.
const MAX_LINE: usize = 64 * 1024;

/// One instance's stderr. Streams opened on it share one line buffer, since a line may be
/// written in pieces.
#[derive(Clone, Default)]
pub struct ComponentStderr {
    line: Arc<Mutex<Vec<u8>>>,
}

impl ComponentStderr {
    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::stderr().write_all(bytes)?;
        if telemetry::component_events().is_none() {
            return Ok(());
        }
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        for &b in bytes {
            if b == b'\n' {
                emit(&line);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
        Ok(())
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

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for ComponentStderr {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        ComponentStderr::write(self, &bytes).map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        std::io::stderr()
            .flush()
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ComponentStderr {
    async fn ready(&mut self) {}
}

impl AsyncWrite for ComponentStderr {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(ComponentStderr::write(&self, buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(std::io::stderr().flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One line as a `tracing` event for the telemetry layers; lines that are not JSON objects
/// with an `event` are skipped.
fn emit(line: &[u8]) {
    let Some(dispatch) = telemetry::component_events() else {
        return;
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(line) else {
        return;
    };
    let Some(event) = fields.get("event").and_then(Value::as_str) else {
        return;
    };
    let text = |k: &str| fields.get(k).and_then(Value::as_str);
    let number = |k: &str| fields.get(k).and_then(Value::as_u64);
    let district = text("district");
    let status = number("status");
    let attempt = number("attempt").or_else(|| number("attempts"));
    let delay_ms = number("delay_ms");
    let duration_ms = number("duration_ms");
    let error_code = text("error_code").or_else(|| text("code"));
    let alert = text("alert");
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                target: "clever_auth_component",
                $level,
                event,
                district,
                status,
                attempt,
                delay_ms,
                duration_ms,
                error_code,
                alert,
                "{event}"
            )
        };
    }
    tracing::dispatcher::with_default(dispatch, || match text("level") {
        Some("error") => at!(tracing::Level::ERROR),
        Some("warn") => at!(tracing::Level::WARN),
        Some("debug") => at!(tracing::Level::DEBUG),
        Some("trace") => at!(tracing::Level::TRACE),
        _ => at!(tracing::Level::INFO),
    });
}
