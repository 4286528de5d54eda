//! The accept loop of a listener: a connection over the cap is closed at once, before any
//! task, buffer or timer exists for it; refusals are logged at most once a second.

use super::Listener;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

/// After a failed accept (e.g. EMFILE), before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Accepts until `shutdown` resolves, handing each connection under the cap to `hand` with its
/// place under the cap.
pub(super) async fn until(
    listener: &TcpListener,
    shared: &Listener,
    shutdown: impl Future<Output = ()>,
    mut hand: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
) {
    let mut refused = RefusalLog::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Per-connection failures (e.g. the peer reset before accept) are not fatal;
                    // running out of descriptors is, for a moment: do not spin on it.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = shared.connections.clone().try_acquire_owned() else {
            drop(stream);
            refused.one(shared.limits.max_connections);
            continue;
        };
        hand(stream, peer, slot);
    }
}

/// Refused connections are logged at most once a second, with a count: an attack must not
/// turn into a log flood.
#[derive(Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn one(&mut self, cap: usize) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1))
        {
            tracing::warn!(
                refused = self.since_last,
                max_connections = cap,
                "connection cap reached: new connections are closed at once"
            );
            self.since_last = 0;
            self.last = Some(now);
        }
    }
}
