//! Writing the gateway's answer: its own JSON errors, or Clever's response streamed through
//! in pieces (the body is never held whole) through the echo mask, with the first bytes kept
//! for version checks.

use crate::bindings::wasi::http::types::{
    Fields, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::{OutputStream, StreamError};
use crate::http_out::Streaming;
use clever_auth_core::gateway as gw;
use gw::echo::EchoMask;
use gw::versions::OBSERVE_LIMIT;
use gw::{GatewayError, SOURCE_HEADER};

type Header = (String, Vec<u8>);

/// `output-stream.blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;

fn fields(headers: &[(String, Vec<u8>)]) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers {
        // A header the HTTP stack refuses (forbidden or malformed) is left out, not fatal.
        let _ = fields.append(name, value);
    }
    fields
}

/// The gateway's own error as status, headers and body (empty for HEAD).
pub fn own_answer(e: &GatewayError, head: bool) -> (u16, Vec<Header>, Vec<u8>) {
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), b"application/json".to_vec()),
        ("cache-control".into(), b"no-store".to_vec()),
        (SOURCE_HEADER.into(), b"gateway".to_vec()),
    ];
    for (n, v) in e.extra_headers() {
        headers.push((n.into(), v.into_bytes()));
    }
    let body = if head {
        Vec::new()
    } else {
        e.body().into_bytes()
    };
    (e.status(), headers, body)
}

/// The gateway's own error; the body is left out for HEAD.
pub fn error(out: ResponseOutparam, e: &GatewayError, head: bool) {
    let (status, headers, body_bytes) = own_answer(e, head);
    let response = OutgoingResponse::new(fields(&headers));
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if !body_bytes.is_empty() {
        if let Ok(stream) = body.write() {
            for chunk in body_bytes.chunks(WRITE_CHUNK) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

/// What passing Clever's body on showed.
pub struct Passed {
    /// The first bytes of the body (at most [`OBSERVE_LIMIT`]).
    pub prefix: Vec<u8>,
    /// `prefix` is the whole body.
    pub complete: bool,
    /// The body did not reach the client whole (Clever or the client went away).
    pub broken: bool,
}

/// Writes all of `bytes`, as much per call as the stream takes.
fn write_all(sink: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
    while !bytes.is_empty() {
        let permit = sink.check_write()?;
        if permit == 0 {
            sink.subscribe().block();
            continue;
        }
        let n = usize::try_from(permit)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        sink.write(&bytes[..n])?;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Clever's status and headers (already filtered, the source header included), then its body, streamed through `mask`
/// (the token the request carried never reaches the client, even if Clever echoes it).
pub fn pass(
    out: ResponseOutparam,
    mut upstream: Streaming,
    headers: &[(String, Vec<u8>)],
    head: bool,
    mask: &mut EchoMask,
) -> Passed {
    let response = OutgoingResponse::new(fields(headers));
    let _ = response.set_status_code(upstream.status);
    let mut passed = Passed {
        prefix: Vec::new(),
        complete: false,
        broken: false,
    };
    let Ok(body) = response.body() else {
        passed.broken = true;
        upstream.finish();
        return passed;
    };
    ResponseOutparam::set(out, Ok(response));
    if head {
        passed.complete = true;
        let _ = OutgoingBody::finish(body, None);
        upstream.finish();
        return passed;
    }
    let Ok(sink) = body.write() else {
        passed.broken = true;
        upstream.finish();
        return passed;
    };
    let Some(source) = upstream.stream() else {
        passed.broken = true;
        drop(sink);
        upstream.finish();
        return passed;
    };
    // Every byte passes through the component: the first ones are kept for the version
    // check, and all of them go through the echo mask before the client sees them.
    let mut out = Vec::with_capacity(READ_CHUNK as usize);
    let mut total = 0usize;
    loop {
        match source.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                total += chunk.len();
                if passed.prefix.len() < OBSERVE_LIMIT {
                    let take = (OBSERVE_LIMIT - passed.prefix.len()).min(chunk.len());
                    passed.prefix.extend_from_slice(&chunk[..take]);
                }
                out.clear();
                mask.push(&chunk, &mut out);
                if write_all(&sink, &out).is_err() {
                    passed.broken = true;
                    break;
                }
            }
            Err(StreamError::Closed) => {
                passed.complete = total == passed.prefix.len();
                out.clear();
                mask.finish(&mut out);
                if write_all(&sink, &out).is_err() {
                    passed.broken = true;
                }
                break;
            }
            Err(StreamError::LastOperationFailed(_)) => {
                passed.broken = true;
                break;
            }
        }
    }
    let _ = sink.blocking_flush();
    drop(sink);
    upstream.finish();
    if passed.broken {
        // Ending without finishing tells the client the body is incomplete.
        drop(body);
    } else {
        let _ = OutgoingBody::finish(body, None);
    }
    passed
}
