//! The Clever gateway under the native host: the request is forwarded and Clever's body
//! streamed natively (the outbound pool, hyper), while the component decides every turn
//! through its `clever:auth/gateway` export: which token and URL, whether to wait, retry,
//! replay with a new token or answer itself, and what the request's event and figures say.
//! Under Spin the component carries the bytes itself over wasi:http; the decisions are the
//! same code.
//!
//! Why not wasi:http here too: each request then crossed the component boundary some hundred
//! times (resources, streams, pollables for the outgoing request and both bodies), about
//! 160 µs of CPU a request, and every byte of a 1 MB page was copied into and out of the
//! instance's memory (README, "Calling Clever from your sync code").

mod body;
mod forward;

use crate::bindings::exports::clever::auth::gateway::{BodyReport, Header, OwnAnswer, Step};
use crate::runtime::deadline::{self, CallClock, DeadlineExceeded};
use crate::runtime::Runtime;
use crate::server::instances::{Instances, Lease};
use crate::state::Shared;
use anyhow::{anyhow, Result};
use body::MaskedBody;
use bytes::Bytes;
use clever_auth_core::gateway::echo::EchoMask;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Response;
use std::sync::Arc;
use tokio::sync::oneshot;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

const CALL_NAME: &str = "gateway";

/// Serves one gateway request. The answer's head must come within the gateway's call
/// deadline; its body then streams while the instance waits to record the request, bounded
/// by the call's total deadline.
pub async fn serve(
    runtime: &Runtime,
    instances: &Arc<Instances>,
    req: hyper::Request<Incoming>,
) -> Result<Response<HyperOutgoingBody>> {
    let mut lease = instances.checkout(runtime).await?;
    // Waiting for a turn is not the component's time: the clock starts with the call.
    let clock = CallClock::gateway(&runtime.deadlines);
    deadline::arm(&mut lease.store, clock.clone());
    let (parts, _body) = req.into_parts();
    let request = Request {
        method: parts.method.as_str().to_string(),
        path_with_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
    };

    let (sender, receiver) = oneshot::channel();
    let task_instances = instances.clone();
    let task_clock = clock.clone();
    let shared = runtime.shared.clone();
    let task = tokio::task::spawn(async move {
        let run = run(&shared, &mut lease, request, sender);
        match tokio::time::timeout(task_clock.total(), run).await {
            Ok(Ok(())) => {
                task_instances.checkin(lease);
                Ok(())
            }
            Ok(Err(e)) => {
                if deadline::is_interrupt_anyhow(&e) && task_clock.first_overrun() {
                    deadline::report_overrun(&shared.kv, CALL_NAME, task_clock.deadline());
                }
                Err(e)
            }
            Err(_) => {
                if task_clock.first_overrun() {
                    deadline::report_overrun(&shared.kv, CALL_NAME, task_clock.total());
                }
                Err(DeadlineExceeded::new(CALL_NAME, task_clock.total()).into())
            }
        }
    });

    let stop = task.abort_handle();
    let answer = async {
        match receiver.await {
            Ok(response) => Ok(response),
            Err(_) => Err(match task.await {
                Ok(Ok(())) => anyhow!("the gateway ended without an answer"),
                Ok(Err(e)) if e.is::<DeadlineExceeded>() => e,
                Ok(Err(e)) if deadline::is_interrupt_anyhow(&e) => {
                    DeadlineExceeded::new(CALL_NAME, clock.answer_deadline()).into()
                }
                Ok(Err(e)) => e.context("the component failed before answering"),
                Err(e) => anyhow!("the gateway task failed: {e}"),
            }),
        }
    };
    match tokio::time::timeout(clock.answer_deadline(), answer).await {
        Ok(result) => {
            clock.answered();
            result
        }
        Err(_) => {
            // A guest waiting in the host (a token, a rate limit), or Clever slower than the
            // call's deadline: no epoch check would stop the wait.
            stop.abort();
            if clock.first_overrun() {
                deadline::report_overrun(&runtime.shared.kv, CALL_NAME, clock.answer_deadline());
            }
            Err(DeadlineExceeded::new(CALL_NAME, clock.answer_deadline()).into())
        }
    }
}

/// The caller's request as the component sees it.
struct Request {
    method: String,
    path_with_query: String,
    headers: Vec<Header>,
}

/// The turns of one request: the component decides, this executes.
async fn run(
    shared: &Shared,
    lease: &mut Lease,
    request: Request,
    answer: oneshot::Sender<Response<HyperOutgoingBody>>,
) -> Result<()> {
    let head = request.method == "HEAD";
    let gateway = lease.platform.clever_auth_gateway().call();
    let store = &mut lease.store;
    let call = gateway
        .call_constructor(
            &mut *store,
            &request.method,
            &request.path_with_query,
            &request.headers,
        )
        .await?;
    let mut step = gateway.call_start(&mut *store, call).await?;
    // The last attempt's response, its body unread until it is delivered.
    let mut upstream = None;
    loop {
        match step {
            Step::Send(attempt) => {
                drop(upstream.take());
                let (reply, response) = forward::send(&shared.outbound, attempt).await;
                upstream = response;
                step = gateway.call_sent(&mut *store, call, &reply).await?;
            }
            Step::Answer(own) => {
                drop(upstream.take());
                let _ = answer.send(own_response(own));
                gateway.call_finish(&mut *store, call, None).await?;
                break;
            }
            Step::Deliver(deliver) => {
                let Some(response) = upstream.take() else {
                    gateway.call_finish(&mut *store, call, None).await?;
                    return Err(anyhow!("the component delivered without a reply"));
                };
                let mask = EchoMask::new(deliver.mask.as_bytes());
                drop(deliver.mask);
                let (parts, upstream_body) = response.into_parts();
                let report = if head {
                    let _ = answer.send(with_head(parts.status, &deliver.headers, empty()));
                    None
                } else {
                    let (body, report) = MaskedBody::new(upstream_body, mask);
                    let body = body.boxed_unsync();
                    let _ = answer.send(with_head(parts.status, &deliver.headers, body));
                    // The client's connection streams the body; its report comes at the end.
                    Some(report.await.unwrap_or(BodyReport {
                        prefix: Vec::new(),
                        complete: false,
                        broken: true,
                        masked: 0,
                    }))
                };
                gateway
                    .call_finish(&mut *store, call, report.as_ref())
                    .await?;
                break;
            }
        }
    }
    call.resource_drop_async(&mut *store).await?;
    Ok(())
}

fn own_response(own: OwnAnswer) -> Response<HyperOutgoingBody> {
    // The component's own words: a known value in them would be a bug, masked all the same.
    let body = match crate::redact::scrub_bytes(&own.body) {
        std::borrow::Cow::Borrowed(_) => Bytes::from(own.body),
        std::borrow::Cow::Owned(masked) => Bytes::from(masked),
    };
    let body = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    let status =
        http::StatusCode::from_u16(own.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    with_head(status, &own.headers, body)
}

fn with_head(
    status: http::StatusCode,
    headers: &[Header],
    body: HyperOutgoingBody,
) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        // A header hyper refuses (malformed) is left out, as wasi:http's `fields` does.
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

fn empty() -> HyperOutgoingBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
