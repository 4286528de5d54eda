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
//! instance's memory (docs/benchmarks.md, "The gateway vs direct vs nginx").

mod body;
mod event;
mod forward;

use crate::bindings::exports::clever::auth::gateway::{BodyReport, Header, OwnAnswer, Step};
use crate::outbound::Upstream;
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
use wasmtime::component::ResourceAny;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiBody;

const CALL_NAME: &str = "gateway";

/// Serves one gateway request. The component's turns up to the answer's head run in the
/// client's connection task, within the gateway's call deadline; the body then streams, and a
/// task of its own waits for its end to report it to the component (bounded by the call's
/// total deadline) before the instance goes back.
pub async fn serve(
    runtime: &Runtime,
    instances: &Arc<Instances>,
    upstream: &Upstream,
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
    let head = request.method == "HEAD";
    let shared = &runtime.shared;
    // On the deadline the turns are dropped mid-way, and the instance with them (a guest
    // waiting in the host for a token, a rate limit or Clever is not stopped by the epoch).
    let decided = match tokio::time::timeout(
        clock.answer_deadline(),
        decide(shared, upstream, &mut lease, request),
    )
    .await
    {
        Ok(Ok(decided)) => decided,
        Ok(Err(e)) => {
            if deadline::is_interrupt_anyhow(&e) {
                if clock.first_overrun() {
                    deadline::report_overrun(&shared.kv.local, CALL_NAME, clock.deadline());
                }
                return Err(DeadlineExceeded::new(CALL_NAME, clock.answer_deadline()).into());
            }
            return Err(e.context("the component failed before answering"));
        }
        Err(_) => {
            if clock.first_overrun() {
                deadline::report_overrun(&shared.kv.local, CALL_NAME, clock.answer_deadline());
            }
            return Err(DeadlineExceeded::new(CALL_NAME, clock.answer_deadline()).into());
        }
    };
    clock.answered();
    let (response, report) = match decided.ending {
        Ending::Own(own) => (own_response(own), None),
        Ending::Clever(delivery) => {
            let Delivery {
                response,
                headers,
                mask,
            } = *delivery;
            let (parts, upstream_body) = response.into_parts();
            if head {
                (with_head(parts.status, &headers, empty()), None)
            } else {
                let (body, report) = MaskedBody::new(upstream_body, mask);
                let response = with_head(parts.status, &headers, body.boxed_unsync());
                (response, Some(report))
            }
        }
    };
    let instances = instances.clone();
    let shared = shared.clone();
    let call = decided.call;
    tokio::task::spawn(async move {
        let finish = finish(&mut lease, call, report);
        match tokio::time::timeout(clock.total(), finish).await {
            Ok(Ok(())) => instances.checkin(lease),
            Ok(Err(e)) if deadline::is_interrupt_anyhow(&e) => {
                if clock.first_overrun() {
                    deadline::report_overrun(&shared.kv.local, CALL_NAME, clock.deadline());
                }
            }
            Ok(Err(e)) => tracing::error!(
                error = format!("{e:#}"),
                "recording a gateway request failed"
            ),
            Err(_) => {
                if clock.first_overrun() {
                    deadline::report_overrun(&shared.kv.local, CALL_NAME, clock.total());
                }
            }
        }
    });
    Ok(response)
}

/// The caller's request as the component sees it.
struct Request {
    method: String,
    path_with_query: String,
    headers: Vec<Header>,
}

/// Where the component's turns ended.
struct Decided {
    call: ResourceAny,
    ending: Ending,
}

enum Ending {
    /// An answer of the gateway's own.
    Own(OwnAnswer),
    /// Clever's answer, its body unread, to pass on.
    Clever(Box<Delivery>),
}

struct Delivery {
    response: http::Response<WasiBody>,
    /// The headers the component passes on.
    headers: Vec<Header>,
    /// Masks the token the attempt carried wherever the body echoes it.
    mask: EchoMask,
}

/// The turns of one request up to its answer: the component decides, this executes.
async fn decide(
    shared: &Shared,
    upstream: &Upstream,
    lease: &mut Lease,
    request: Request,
) -> Result<Decided> {
    let gateway = lease.platform.clever_auth_gateway().call();
    let store = &mut lease.store;
    let (call, mut step) = gateway
        .call_start(
            &mut *store,
            &request.method,
            &request.path_with_query,
            &request.headers,
        )
        .await?;
    // The last attempt's response, its body unread until it is delivered.
    let mut answered = None;
    loop {
        match step {
            Step::Send(attempt) => {
                drop(answered.take());
                let (reply, response) = forward::send(&shared.outbound, upstream, attempt).await;
                answered = response;
                step = gateway.call_sent(&mut *store, call, &reply).await?;
            }
            Step::Answer(own) => {
                return Ok(Decided {
                    call,
                    ending: Ending::Own(own),
                })
            }
            Step::Deliver(deliver) => {
                let response = answered
                    .take()
                    .ok_or_else(|| anyhow!("the component delivered without a reply"))?;
                let mask = EchoMask::new(deliver.mask.as_bytes());
                return Ok(Decided {
                    call,
                    ending: Ending::Clever(Box::new(Delivery {
                        response,
                        headers: deliver.headers,
                        mask,
                    })),
                });
            }
        }
    }
}

/// Reports the request's end (what its body showed) to the component, which ends the call and
/// gives back the request's event.
async fn finish(
    lease: &mut Lease,
    call: ResourceAny,
    report: Option<oneshot::Receiver<BodyReport>>,
) -> Result<()> {
    let report = match report {
        // The client's connection streams the body; its report comes at the end.
        Some(rx) => Some(rx.await.unwrap_or(BodyReport {
            prefix: Vec::new(),
            complete: false,
            broken: true,
            masked: 0,
        })),
        None => None,
    };
    // `finish` takes the call: the component drops it.
    let gateway = lease.platform.clever_auth_gateway().call();
    let recorded = gateway
        .call_finish(&mut lease.store, call, report.as_ref())
        .await?;
    event::log(&recorded);
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
