//! The `clever:auth/gateway` export: the native host forwards the request and streams
//! Clever's body itself, and asks the component at every turn (see [`super::call`]).

use super::call::{self, Call, Step};
use super::respond;
use crate::bindings::exports::clever::auth::gateway as wit;
use crate::http_out::Failure;
use std::cell::RefCell;

/// One request's [`Call`], owned by the host's handle.
pub struct CallHandle(RefCell<Call>);

impl wit::GuestCall for CallHandle {
    fn start(
        method: String,
        path_with_query: String,
        headers: Vec<wit::Header>,
    ) -> (wit::Call, wit::Step) {
        let mut call = Call::new(method, path_with_query, headers);
        let step = call.start();
        let step = to_wit(step, call.head());
        (wit::Call::new(CallHandle(RefCell::new(call))), step)
    }

    fn sent(&self, reply: wit::Reply) -> wit::Step {
        let sent = match reply {
            wit::Reply::Answered((status, headers)) => Ok(call::Reply { status, headers }),
            wit::Reply::TimedOut => Err(Failure::Timeout),
            wit::Reply::ConnectionFailed(m) => Err(Failure::Connection(m)),
            wit::Reply::NotSent(m) => Err(Failure::Invalid(m)),
        };
        let mut call = self.0.borrow_mut();
        let step = call.sent(sent);
        to_wit(step, call.head())
    }

    fn finish(call: wit::Call, body: Option<wit::BodyReport>) -> wit::RequestEvent {
        let handle: CallHandle = call.into_inner();
        let event = handle.0.into_inner().finish(body.map(|b| call::BodyReport {
            prefix: b.prefix,
            complete: b.complete,
            broken: b.broken,
            masked: b.masked,
        }));
        wit::RequestEvent {
            district: event.district,
            method: event.method,
            path: event.path,
            status: event.status,
            attempts: event.attempts,
            waited_ms: event.waited_ms,
            duration_ms: event.duration_ms,
            error_code: event.error_code.map(str::to_string),
        }
    }
}

fn to_wit(step: Step, head: bool) -> wit::Step {
    match step {
        Step::Send(a) => wit::Step::Send(wit::Attempt {
            method: a.method.as_str().to_string(),
            url: a.url.as_str().to_string(),
            bearer: a.token.expose().to_string(),
            headers: a.headers,
            timeout_ms: a.timeout_ms,
        }),
        Step::Answer(e) => {
            let (status, headers, body) = respond::own_answer(&e, head);
            wit::Step::Answer(wit::OwnAnswer {
                status,
                headers,
                body,
            })
        }
        Step::Deliver { headers, token } => wit::Step::Deliver(wit::Deliver {
            headers,
            mask: token.expose().to_string(),
        }),
    }
}
