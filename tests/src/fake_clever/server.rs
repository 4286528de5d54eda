//! Sockets: the accept loop, one task per connection, TLS, and scripted resets.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

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

/// Lets a handler tear down its own connection (scripted reset).
#[derive(Default)]
pub(crate) struct ConnCtl {
    reset: AtomicBool,
    kill: Notify,
}

impl ConnCtl {
    pub(crate) fn reset_now(&self) {
        self.reset.store(true, Ordering::SeqCst);
        // notify_one keeps a permit, so the connection task sees it even if not waiting yet.
        self.kill.notify_one();
    }
}

/// A TCP stream that closes with RST instead of FIN when its connection was scripted to reset,
/// so clients see "connection reset by peer" exactly as with a crashed upstream.
struct ResettableStream {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.ctl.reset.load(Ordering::SeqCst) {
            // Linger 0 turns close() into an abortive RST. Best effort: a plain close still
            // delivers "no response" to the client.
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A TLS handshake that stalls must not pin a task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    core: Arc<Core>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        // Err means every handle is gone: shut down as well. The guard the watch hands back
        // is dropped inside, as it must not live across the select's other awaits.
        let stop = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::select! {
            () = stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, tls.clone(), core.clone()));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Aborting drops every connection (and any hanging handler) at once.
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, tls: Option<TlsAcceptor>, core: Arc<Core>) {
    let _ = stream.set_nodelay(true);
    let ctl = Arc::new(ConnCtl::default());
    let stream = ResettableStream {
        inner: stream,
        ctl: ctl.clone(),
    };
    match tls {
        None => serve_http(TokioIo::new(stream), core, ctl).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            // A failed handshake (e.g. an untrusting client) just closes the socket.
            if let Ok(Ok(tls_stream)) = handshake.await {
                serve_http(TokioIo::new(tls_stream), core, ctl).await;
            }
        }
    }
}

async fn serve_http<I>(io: I, core: Arc<Core>, ctl: Arc<ConnCtl>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handler_ctl = ctl.clone();
    let service = service_fn(move |req| routes::handle(core.clone(), handler_ctl.clone(), req));
    let connection = http1::Builder::new()
        // Clever's headers arrive as `X-Ratelimit-Limit`; title case mirrors that on the wire.
        .title_case_headers(true)
        .serve_connection(io, service);
    tokio::select! {
        // Connection errors (client hung up, bad request line) only end this connection.
        _ = connection => {}
        // Dropping the connection drops the stream, which sends the RST.
        _ = ctl.kill.notified() => {}
    }
}
