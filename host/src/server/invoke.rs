//! Hands one health request to an instance of the component, within its call's deadline.

use super::instances::Instances;
use super::scrub;
use crate::runtime::deadline::{self, CallClock, DeadlineExceeded};
use crate::runtime::Runtime;
use anyhow::{anyhow, Result};
use hyper::body::Incoming;
use std::sync::Arc;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

/// The component's health answer, with every known secret value masked. It must be complete,
/// body included, within the health deadline. The instance may go on working (a due refresh
/// under Spin semantics) until the refresh deadline. (The gateway has its own carrier,
/// `crate::gateway`.)
pub async fn call_component(
    runtime: &Runtime,
    instances: &Arc<Instances>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let call_name = "health";
    let mut lease = instances.checkout(runtime).await?;
    // Waiting for a turn is not the component's time: the clock starts with the call.
    let clock = CallClock::health(&runtime.deadlines);
    deadline::arm(&mut lease.store, clock.clone());
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = lease
        .store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = lease
        .store
        .data_mut()
        .http()
        .new_response_outparam(sender)?;

    // The instance runs in its own task: after setting the response it may keep working
    // while the client already has its answer. Only when that work is done does the
    // instance go back for reuse; one stopped at its deadline is dropped.
    let task_instances = instances.clone();
    let task_clock = clock.clone();
    let shared = runtime.shared.clone();
    let task = tokio::task::spawn(async move {
        let call = lease
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut lease.store, req, out);
        match tokio::time::timeout(task_clock.total(), call).await {
            Ok(Ok(())) => {
                task_instances.checkin(lease);
                Ok(())
            }
            Ok(Err(e)) => {
                if deadline::is_interrupt(&e) && task_clock.first_overrun() {
                    deadline::report_overrun(&shared.kv.local, call_name, task_clock.deadline());
                }
                Err(anyhow::Error::from(e))
            }
            Err(_) => {
                if task_clock.first_overrun() {
                    deadline::report_overrun(&shared.kv.local, call_name, task_clock.total());
                }
                Err(DeadlineExceeded::new(call_name, task_clock.total()).into())
            }
        }
    });

    let stop = task.abort_handle();
    let answer = async {
        let response = match receiver.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => return Err(anyhow!("the component answered with an error: {code:?}")),
            Err(_) => {
                return Err(match task.await {
                    Ok(Ok(())) => anyhow!("the component never set a response"),
                    Ok(Err(e)) if e.is::<DeadlineExceeded>() => e,
                    Ok(Err(e)) if deadline::is_interrupt_anyhow(&e) => {
                        DeadlineExceeded::new(call_name, clock.answer_deadline()).into()
                    }
                    Ok(Err(e)) => e.context("the component failed before responding"),
                    Err(e) => anyhow!("the component task failed: {e}"),
                })
            }
        };
        scrub::scrubbed(response).await
    };
    match tokio::time::timeout(clock.answer_deadline(), answer).await {
        Ok(result) => {
            clock.answered();
            result
        }
        Err(_) => {
            // A guest waiting in the host, or one that set its response and never finished
            // the body: no epoch check would stop it.
            stop.abort();
            if clock.first_overrun() {
                deadline::report_overrun(
                    &runtime.shared.kv.local,
                    call_name,
                    clock.answer_deadline(),
                );
            }
            Err(DeadlineExceeded::new(call_name, clock.answer_deadline()).into())
        }
    }
}
