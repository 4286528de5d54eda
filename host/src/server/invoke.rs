//! Hands one HTTP request to an instance of the component.

use super::instances::Instances;
use crate::runtime::Runtime;
use anyhow::{anyhow, Result};
use hyper::body::Incoming;
use std::sync::Arc;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

pub async fn call_component(
    runtime: &Runtime,
    instances: &Arc<Instances>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let mut lease = instances.checkout(runtime).await?;
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
    // (a due refresh under Spin semantics) while the client already has its answer. Only
    // when that work is done does the instance go back for reuse.
    let instances = instances.clone();
    let task = tokio::task::spawn(async move {
        let result = lease
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut lease.store, req, out)
            .await;
        if result.is_ok() {
            instances.checkin(lease);
        }
        result
    });

    match receiver.await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(code)) => Err(anyhow!("the component answered with an error: {code:?}")),
        Err(_) => {
            let e = match task.await {
                Ok(Ok(())) => anyhow!("the component never set a response"),
                Ok(Err(e)) => {
                    anyhow::Error::from(e).context("the component failed before responding")
                }
                Err(e) => anyhow!("the component task failed: {e}"),
            };
            Err(e)
        }
    }
}
