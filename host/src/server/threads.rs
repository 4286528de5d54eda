//! A listener served by threads of its own, each running a single-threaded tokio runtime, the
//! way nginx's workers serve: a connection, its requests, their upstream connections (each
//! thread has its own pool) and their bodies stay on the thread that accepted it. On the
//! shared work-stealing runtime a gateway request crossed threads several times (the request
//! to hyper-util's connection task, the answer and its body back), each crossing a wake-up of
//! another thread.
//!
//! Every thread accepts from the same socket: a busy thread comes back to `accept` later, so
//! the idler one takes more of the new connections.

use super::{serve, Listener};
use crate::outbound::Upstream;
use anyhow::{anyhow, Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// Serves `shared` on `listener` with `threads` threads until `stop` turns true, then drains
/// each for at most `drain`. The returned future ends when every thread has.
pub fn serve_on_threads(
    listener: TcpListener,
    threads: usize,
    shared: Arc<Listener>,
    upstream: &Upstream,
    stop: watch::Receiver<bool>,
    drain: Duration,
) -> Result<impl Future<Output = Result<()>>> {
    let socket = listener
        .into_std()
        .context("taking the gateway socket off the main runtime")?;
    let mut ends = Vec::with_capacity(threads);
    for n in 0..threads.max(1) {
        let socket = socket
            .try_clone()
            .context("sharing the gateway socket with its threads")?;
        let shared = shared.clone();
        let upstream = upstream.sibling();
        let mut stop = stop.clone();
        let (end, ended) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("gateway-{n}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting a gateway thread's runtime")
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(socket)?;
                            let stopped = async move {
                                let _ = stop.wait_for(|s| *s).await;
                            };
                            serve(listener, shared, upstream, stopped, drain).await
                        })
                    });
                let _ = end.send(result);
            })
            .context("starting a gateway thread")?;
        ends.push(ended);
    }
    Ok(async move {
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
