//! A stand-in for a team's sync component, for `tests/tests/spin_gateway_e2e.rs`: in the same
//! Spin app as clever-auth, it answers `GET /consumer/{rest}` by calling
//! `http://clever-auth.spin.internal/clever/{rest}` (Spin's service chaining: no network hop,
//! no token in this component) and returns the gateway's status, content type and body.
//! A request header `x-forward-{name}` reaches the gateway as `{name}`, so a test can send what
//! a careless sync component would (its own `Authorization`, say).

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, IncomingResponse, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

const PREFIX: &str = "/consumer/";
/// Request headers with this prefix are passed on to the gateway without it.
const FORWARD: &str = "x-forward-";
/// clever-auth's component id in spin.toml, as Spin's service chaining names it.
const GATEWAY: &str = "clever-auth.spin.internal";
/// `output-stream.blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

struct Consumer;

impl Guest for Consumer {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let answer = match path.strip_prefix(PREFIX) {
            Some(rest) => call_gateway(&format!("/clever/{rest}"), forwarded(&request)),
            None => Ok((404, "text/plain".into(), b"not a consumer path".to_vec())),
        };
        let (status, content_type, body) =
            answer.unwrap_or_else(|e| (502, "text/plain".into(), e.into_bytes()));
        respond(out, status, &content_type, &body);
    }
}

/// The `x-forward-*` headers of `request`, named without the prefix.
fn forwarded(request: &IncomingRequest) -> Vec<(String, Vec<u8>)> {
    request
        .headers()
        .entries()
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let rest = name.strip_prefix(FORWARD)?;
            Some((rest.to_string(), value))
        })
        .collect()
}

/// One GET to the gateway; its status, content type and whole body.
fn call_gateway(
    path: &str,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<(u16, String, Vec<u8>), String> {
    let headers = Fields::from_list(&headers).map_err(|e| format!("forwarded headers: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(GATEWAY));
    let _ = request.set_path_with_query(Some(path));
    let pending =
        outgoing_handler::handle(request, None).map_err(|e| format!("gateway call: {e:?}"))?;
    pending.subscribe().block();
    let response: IncomingResponse = pending
        .get()
        .ok_or("gateway call: no answer")?
        .map_err(|()| "gateway call: answer taken twice")?
        .map_err(|e| format!("gateway call: {e:?}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "application/octet-stream".into());
    let body = response.consume().map_err(|()| "gateway body taken")?;
    let stream = body.stream().map_err(|()| "gateway body stream taken")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("gateway body: {}", e.to_debug_string()))
            }
        }
    }
    Ok((status, content_type, bytes))
}

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".into(), content_type.as_bytes().to_vec()),
        ("content-length".into(), body.len().to_string().into_bytes()),
    ])
    .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasip2::http::proxy::export!(Consumer);
