//! Sockets: the shared accept loop ([`crate::fake_support::server`]) serving the routes, with
//! Clever's title-case headers.

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub(crate) use crate::fake_support::server::ConnCtl;
use crate::fake_support::server::{ConnHandler, ServeOptions};

use super::log::{Outcome, RequestLog};
use super::routes;
use super::script::FaultScript;
use super::state::State;

/// Shared by the handle and every connection task.
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    pub(crate) script: Mutex<FaultScript>,
    pub(crate) log: RequestLog,
    /// Per-instance salt so fingerprints cannot be compared across runs.
    pub(crate) salt: u64,
    /// Print one line per finished request on stderr (the demo binary).
    pub(crate) echo: bool,
    /// TCP connections accepted so far (TLS or not, served or not).
    pub(crate) accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl Core {
    pub(crate) fn finish(&self, seq: u64, outcome: Outcome, only_if_pending: bool) {
        if let Some(record) = self.log.set_outcome(seq, outcome, only_if_pending) {
            if self.echo {
                eprintln!("fake-clever: {}", record.summary());
            }
        }
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    core: Arc<Core>,
    shutdown: watch::Receiver<bool>,
) {
    let accepted = core.accepted.clone();
    let handler: ConnHandler =
        Arc::new(move |req, ctl| Box::pin(routes::handle(core.clone(), ctl, req)));
    let options = ServeOptions {
        tls,
        // Clever's headers arrive as `X-Ratelimit-Limit`; title case mirrors that on the wire.
        title_case_headers: true,
        // On shutdown connections are just dropped (a plain close).
        reset_on_stop: false,
        accepted: Some(accepted),
    };
    crate::fake_support::server::accept_loop(listener, options, handler, shutdown).await;
}
