//! Hands one HTTP request to a fresh instance of the component.

use crate::runtime::Runtime;
use anyhow::{anyhow, Result};
use hyper::body::Incoming;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

pub async fn call_component(
    runtime: &Runtime,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let mut store = runtime.new_store();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let pre = runtime.proxy.clone();

    // The instance runs in its own task: after setting the response it may keep working
    // (a due refresh under Spin semantics) while the client already has its answer.
    let task = tokio::task::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
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
