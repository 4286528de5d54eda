//! The clever-auth WebAssembly component: the wasi-bound shell around `clever-auth-core`.
//!
//! It serves `GET /health/clever-auth` from what the refresher left in the key-value store,
//! the Clever gateway under `/clever/…` (Clever calls made with a district's token, which never
//! leaves), and exports `clever:auth/refresher`, which the native host's scheduler calls, and
//! `clever:auth/gateway`, the gateway's decisions for a host that forwards natively. Under
//! Spin, which has no scheduler, the health handler runs due refreshes itself after its
//! response is sent.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "clever:auth/component",
        generate_all,
    });
}

mod clever_client;
mod clock;
mod config;
mod entropy;
mod gateway;
mod health_handler;
mod http_out;
mod kv;
mod lease;
mod log;
mod refresh;
mod solo;
mod token_store;

use bindings::exports::clever::auth::{gateway as gateway_export, refresher};
use bindings::exports::wasi::http::incoming_handler;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Component;

impl incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.starts_with(gateway::PREFIX) {
            gateway::handle(request, response_out);
            // As after health: under Spin nothing else drives the refresher.
            refresh::run_if_due();
            return;
        }
        health_handler::handle(request, response_out);
        // Responding first keeps health fast; the refresh (if one is due) runs afterwards.
        refresh::run_if_due();
    }
}

impl refresher::Guest for Component {
    fn run_due() -> u64 {
        refresh::run_due_scheduled()
    }
}

impl gateway_export::Guest for Component {
    type Call = gateway::export::CallHandle;
}

bindings::export!(Component with_types_in bindings);
