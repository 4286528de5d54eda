//! Sockets: the shared accept loop ([`crate::fake_support::server`]) serving the routes, with
//! Clever's title-case headers.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub(crate) use crate::fake_support::server::ConnCtl;
use crate::fake_support::server::{ConnHandler, ServeOptions};

use super::routes;
use super::shared::Core;

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
