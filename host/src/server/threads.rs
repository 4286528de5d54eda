//! A listener served by threads of its own, each running a single-threaded tokio runtime, the
//! way nginx's workers serve: a connection, its requests, their upstream connections (each
//! thread has its own pool) and their bodies stay on one thread. On the shared work-stealing
//! runtime a gateway request crossed threads several times (the request to hyper-util's
//! connection task, the answer and its body back), each crossing a wake-up of another thread.
//!
//! The main runtime accepts and hands each connection to the thread with the fewest open:
//! threads that each accepted for themselves took 2/3 and 1/3 of 64 connections, and the
//! busier one was the bottleneck.

use super::{accept, drain_connections, serve_connection, App, Listener};
use crate::outbound::Upstream;
use anyhow::{anyhow, Context, Result};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

/// A connection on its way to the thread that serves it.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

/// A connection's place under the listener's cap and in its thread's count of open ones,
/// both given back when it closes.
struct Slot {
    _cap: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One serving thread, as the acceptor sees it.
struct Worker {
    hand: mpsc::UnboundedSender<Handed>,
    open: Arc<AtomicUsize>,
}

/// Serves `shared` on `listener` with `threads` threads until `stop` turns true, then drains
/// each for at most `drain`. The returned future accepts (run it on the main runtime) and
/// ends when every thread has.
pub fn serve_on_threads(
    listener: TcpListener,
    threads: usize,
    shared: Arc<Listener>,
    upstream: &Upstream,
    stop: watch::Receiver<bool>,
    drain: Duration,
) -> Result<impl Future<Output = Result<()>>> {
    let mut workers = Vec::with_capacity(threads);
    let mut ends = Vec::with_capacity(threads);
    for n in 0..threads.max(1) {
        let (hand, handed) = mpsc::unbounded_channel();
        let (end, ended) = oneshot::channel();
        let app = Arc::new(App {
            shared: shared.clone(),
            upstream: upstream.sibling(),
        });
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("gateway-{n}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting a gateway thread's runtime")
                    .map(|runtime| runtime.block_on(serve_handed(app, handed, stop, drain)));
                let _ = end.send(result);
            })
            .context("starting a gateway thread")?;
        workers.push(Worker {
            hand,
            open: Arc::default(),
        });
        ends.push(ended);
    }
    Ok(async move {
        let mut stop = stop;
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        accept::until(&listener, &shared, stopped, |stream, peer, cap| {
            hand_to_least_busy(&workers, stream, peer, cap);
        })
        .await;
        drop(listener);
        drop(workers);
        let mut first_error = None;
        for ended in ends {
            let result = ended
                .await
                .unwrap_or_else(|_| Err(anyhow!("a gateway thread ended without a word")));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

fn hand_to_least_busy(
    workers: &[Worker],
    stream: TcpStream,
    peer: SocketAddr,
    cap: OwnedSemaphorePermit,
) {
    let Some(worker) = workers
        .iter()
        .filter(|w| !w.hand.is_closed())
        .min_by_key(|w| w.open.load(Ordering::Relaxed))
    else {
        tracing::error!(%peer, "no gateway thread is running: connection closed");
        return;
    };
    // Leaves the acceptor's event loop; the thread registers it with its own.
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "an accepted connection could not be handed on");
            return;
        }
    };
    worker.open.fetch_add(1, Ordering::Relaxed);
    let slot = Slot {
        _cap: cap,
        open: worker.open.clone(),
    };
    // A thread that has just stopped drops the connection: it closes.
    let _ = worker.hand.send(Handed { stream, peer, slot });
}

/// One thread's loop: serves the connections handed to it until `stop`, then drains them.
async fn serve_handed(
    app: Arc<App>,
    mut handed: mpsc::UnboundedReceiver<Handed>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            next = handed.recv() => match next {
                Some(Handed { stream, peer, slot }) => match TcpStream::from_std(stream) {
                    Ok(stream) => serve_connection(&app, &graceful, stream, peer, slot),
                    Err(e) => tracing::warn!(%peer, error = %e, "a handed connection could not be served"),
                },
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    drop(handed);
    drain_connections(graceful, drain).await;
}
