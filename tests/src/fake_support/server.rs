//! Sockets shared by the fakes: the accept loop, one task per connection, optional TLS, and
//! scripted resets (a connection that closes with RST instead of FIN).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::request::Outcome;

pub(crate) type Resp = Response<Full<Bytes>>;

/// What a handler decided.
pub(crate) enum Reply {
    Respond(Resp),
    /// Never answer (the connection stays open).
    Hang,
    /// Drop the connection with a TCP RST, without any response.
    Reset,
}

/// The future a connection handler returns.
pub(crate) type ConnFuture = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;
/// Answers one request; the [`ConnCtl`] lets it reset its own connection.
pub(crate) type ConnHandler =
    Arc<dyn Fn(Request<Incoming>, Arc<ConnCtl>) -> ConnFuture + Send + Sync>;

/// How connections are served.
#[derive(Clone)]
pub(crate) struct ServeOptions {
    pub(crate) tls: Option<TlsAcceptor>,
    /// Write response headers in title case (`X-Ratelimit-Limit`).
    pub(crate) title_case_headers: bool,
    /// When the listener stops, close every open connection with RST (a crashed server)
    /// rather than a plain close.
    pub(crate) reset_on_stop: bool,
    /// Counts accepted TCP connections, when set (the fake Clever's, for connection reuse).
    pub(crate) accepted: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// A TLS handshake that stalls must not pin a task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Serves `listener` until `stop` turns true (or its sender is gone), then closes the listener
/// and every connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    options: ServeOptions,
    handler: ConnHandler,
    mut stop: watch::Receiver<bool>,
) {
    // Set when this listener goes away with `reset_on_stop`: every connection then closes
    // with RST.
    let abort_all = Arc::new(AtomicBool::new(false));
    let mut connections = JoinSet::new();
    loop {
        // Err means every handle is gone: stop as well. The guard the watch hands back is
        // dropped inside, as it must not live across the select's other awaits.
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            () = stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if let Some(accepted) = &options.accepted {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    connections.spawn(serve_connection(
                        stream,
                        options.clone(),
                        handler.clone(),
                        abort_all.clone(),
                    ));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Closing the listener first: from here on, connecting is refused.
    drop(listener);
    if options.reset_on_stop {
        abort_all.store(true, Ordering::SeqCst);
    }
    // Aborting drops every connection (and any hanging handler) at once.
    connections.shutdown().await;
}

/// A TCP stream that closes with RST instead of FIN when its connection was scripted to reset
/// or the whole endpoint went down, as with a crashed server.
struct ConnStream {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
    abort_all: Arc<AtomicBool>,
}

impl Drop for ConnStream {
    fn drop(&mut self) {
        if self.ctl.reset.load(Ordering::SeqCst) || self.abort_all.load(Ordering::SeqCst) {
            // Linger 0 turns close() into an abortive RST. Best effort: a plain close still
            // delivers "no response" to the client.
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnStream {
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

async fn serve_connection(
    stream: TcpStream,
    options: ServeOptions,
    handler: ConnHandler,
    abort_all: Arc<AtomicBool>,
) {
    let _ = stream.set_nodelay(true);
    let ctl = Arc::new(ConnCtl::default());
    let stream = ConnStream {
        inner: stream,
        ctl: ctl.clone(),
        abort_all,
    };
    let title_case = options.title_case_headers;
    match options.tls {
        None => serve_http(TokioIo::new(stream), title_case, handler, ctl).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            // A failed handshake (e.g. a client not trusting the CA) just closes the socket.
            if let Ok(Ok(tls_stream)) = handshake.await {
                serve_http(TokioIo::new(tls_stream), title_case, handler, ctl).await;
            }
        }
    }
}

async fn serve_http<I>(io: I, title_case: bool, handler: ConnHandler, ctl: Arc<ConnCtl>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handler_ctl = ctl.clone();
    let service = service_fn(move |req| handler(req, handler_ctl.clone()));
    let connection = http1::Builder::new()
        .title_case_headers(title_case)
        .serve_connection(io, service);
    tokio::select! {
        // Connection errors (client hung up, bad request line) only end this connection.
        _ = connection => {}
        // Dropping the connection drops the stream, which sends the RST.
        () = ctl.kill.notified() => {}
    }
}

/// Turns a handler's [`Reply`] into what the connection does: answer, hang, or reset.
pub(crate) async fn play_reply(reply: Reply, ctl: &ConnCtl) -> Result<Resp, Infallible> {
    match reply {
        Reply::Respond(resp) => Ok(resp),
        // The connection task drops this future when the client leaves or the fake goes down.
        Reply::Hang => std::future::pending().await,
        Reply::Reset => {
            ctl.reset_now();
            std::future::pending().await
        }
    }
}

impl Reply {
    /// What the request log records for this reply.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Reply::Respond(resp) => Outcome::Responded(resp.status().as_u16()),
            Reply::Hang => Outcome::Hung,
            Reply::Reset => Outcome::Reset,
        }
    }
}
