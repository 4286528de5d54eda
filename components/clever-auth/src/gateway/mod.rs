//! The gateway: `GET`/`HEAD` `/clever/{district}/{version}/{path…}` is sent to
//! `{clever_api_base_url}/{version}/{path…}` with the district's token, and Clever's answer
//! comes back with the token never leaving. [`call`] decides every turn of a request (with the
//! rules of `clever_auth_core::gateway`); two carriers execute them: [`handle`], the
//! component's own wasi:http handler (under Spin), and [`export`], the `clever:auth/gateway`
//! export through which the native host forwards and streams natively.

mod call;
pub mod export;
mod first_read;
mod pause;
mod permits;
mod respond;
mod token;

use crate::bindings::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use crate::http_out::{self, Streaming};
use call::{BodyReport, Call, Reply, Step};
use clever_auth_core::gateway::echo::EchoMask;
use clever_auth_core::gateway::target;

pub use target::PREFIX;

/// Serves one gateway request through wasi:http: Clever's body passes through the component.
pub fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let method = method_name(&request.method());
    let path = request.path_with_query().unwrap_or_default();
    let headers = request.headers().entries();
    drop(request);
    let mut call = Call::new(method, path, headers);
    let head = call.head();
    // The response of the last attempt, kept for delivery (its body still unread).
    let mut upstream: Option<Streaming> = None;
    let mut step = call.start();
    loop {
        step = match step {
            Step::Send(attempt) => {
                if let Some(previous) = upstream.take() {
                    previous.finish();
                }
                let sent = http_out::send_streaming(http_out::Request {
                    method: match attempt.method {
                        target::Method::Get => Method::Get,
                        target::Method::Head => Method::Head,
                    },
                    url: &attempt.url,
                    headers: attempt.headers_with_token(),
                    body: None,
                    timeout_ms: attempt.timeout_ms,
                });
                match sent {
                    Ok(response) => {
                        let reply = Reply {
                            status: response.status,
                            headers: response.headers.clone(),
                        };
                        upstream = Some(response);
                        call.sent(Ok(reply))
                    }
                    Err(failure) => call.sent(Err(failure)),
                }
            }
            Step::Answer(e) => {
                if let Some(previous) = upstream.take() {
                    previous.finish();
                }
                respond::error(out, &e, head);
                call.finish(None).log();
                return;
            }
            Step::Deliver { headers, token } => {
                let Some(response) = upstream.take() else {
                    // `sent` delivers only after a reply; nothing to pass on otherwise.
                    call.finish(None).log();
                    return;
                };
                let mut mask = EchoMask::new(token.expose().as_bytes());
                let passed = respond::pass(out, response, &headers, head, &mut mask);
                let report = (!head).then_some(BodyReport {
                    prefix: passed.prefix,
                    complete: passed.complete,
                    broken: passed.broken,
                    masked: mask.masked(),
                });
                call.finish(report).log();
                return;
            }
        };
    }
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Patch => "PATCH".into(),
        Method::Options => "OPTIONS".into(),
        Method::Connect => "CONNECT".into(),
        Method::Trace => "TRACE".into(),
        Method::Other(o) => o.chars().take(16).collect(),
    }
}
