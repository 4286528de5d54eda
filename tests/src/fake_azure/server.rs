//! Sockets for both Azure fakes: a listener that can be closed and re-opened on the same port
//! (an outage that clients see as "connection refused"), one task per connection, optional
//! TLS, and scripted resets.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
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
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::util::lock;

pub(crate) type Resp = Response<Full<Bytes>>;

/// What a handler decided.
pub(crate) enum Reply {
    Respond(Resp),
    /// Never answer (the connection stays open).
    Hang,
    /// Drop the connection with a TCP RST, without any response.
    Reset,
}

pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

/// A TLS handshake that stalls must not pin a task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening endpoint that can go down and come back on the same address.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    state: Mutex<EndpointState>,
    /// Serialises up/down/shutdown transitions (each awaits the accept task).
    transition: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct EndpointState {
    serving: Option<Serving>,
    /// Shut down for good: no coming back up.
    closed: bool,
}

struct Serving {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr` (port 0 picks one) and serves unless `start_down`, in which case the port
    /// is only reserved long enough to learn it. Must run inside a tokio runtime.
    pub(crate) fn bind(
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        handler: Handler,
        start_down: bool,
    ) -> anyhow::Result<Self> {
        let listener = bind_listener(addr).with_context(|| format!("binding {addr}"))?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let mut state = EndpointState::default();
        if !start_down {
            state.serving = Some(spawn_serving(listener, tls.clone(), handler.clone()));
        }
        Ok(Self {
            addr,
            tls,
            handler,
            state: Mutex::new(state),
            transition: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn is_down(&self) -> bool {
        lock(&self.state).serving.is_none()
    }

    /// `true`: closes the listener (new connections are refused) and resets every open
    /// connection, answered or not. `false`: listens again on the same address. Returns once
    /// the change is in effect.
    pub(crate) async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        let _transition = self.transition.lock().await;
        if down {
            let serving = lock(&self.state).serving.take();
            if let Some(serving) = serving {
                stop_serving(serving).await;
            }
            return Ok(());
        }
        {
            let state = lock(&self.state);
            anyhow::ensure!(!state.closed, "the fake on {} was shut down", self.addr);
            if state.serving.is_some() {
                return Ok(());
            }
        }
        let listener = bind_listener(self.addr)
            .with_context(|| format!("listening again on {}", self.addr))?;
        let serving = spawn_serving(listener, self.tls.clone(), self.handler.clone());
        lock(&self.state).serving = Some(serving);
        Ok(())
    }

    /// Stops for good and waits until the socket is closed. Idempotent.
    pub(crate) async fn shutdown(&self) {
        let _transition = self.transition.lock().await;
        let serving = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.serving.take()
        };
        if let Some(serving) = serving {
            stop_serving(serving).await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Synchronous and runtime-free: the accept task sees the signal and cleans up.
        if let Some(serving) = lock(&self.state).serving.take() {
            serving.stop.send_replace(true);
        }
    }
}

/// SO_REUSEADDR lets the port be bound again right after an outage, while closed connections
/// still linger in TIME_WAIT.
fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn spawn_serving(listener: TcpListener, tls: Option<TlsAcceptor>, handler: Handler) -> Serving {
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, tls, handler, stop_rx));
    Serving { stop, task }
}

async fn stop_serving(serving: Serving) {
    serving.stop.send_replace(true);
    let _ = serving.task.await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) {
    // Set when this listener goes away: every connection then closes with RST.
    let abort_all = Arc::new(AtomicBool::new(false));
    let mut connections = JoinSet::new();
    loop {
        // Err means the endpoint is gone: stop as well. The guard the watch hands back is
        // dropped inside, as it must not live across the select's other awaits.
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            () = stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(
                        stream,
                        tls.clone(),
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
    abort_all.store(true, Ordering::SeqCst);
    connections.shutdown().await;
}

/// Lets a handler tear down its own connection (scripted reset).
#[derive(Default)]
struct ConnCtl {
    reset: AtomicBool,
    kill: Notify,
}

impl ConnCtl {
    fn reset_now(&self) {
        self.reset.store(true, Ordering::SeqCst);
        // notify_one keeps a permit, so the connection task sees it even if not waiting yet.
        self.kill.notify_one();
    }
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
            // Linger 0 turns close() into an abortive RST; best effort.
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
    tls: Option<TlsAcceptor>,
    handler: Handler,
    abort_all: Arc<AtomicBool>,
) {
    let _ = stream.set_nodelay(true);
    let ctl = Arc::new(ConnCtl::default());
    let stream = ConnStream {
        inner: stream,
        ctl: ctl.clone(),
        abort_all,
    };
    match tls {
        None => serve_http(TokioIo::new(stream), handler, ctl).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            // A failed handshake (e.g. a client not trusting the CA) just closes the socket.
            if let Ok(Ok(tls_stream)) = handshake.await {
                serve_http(TokioIo::new(tls_stream), handler, ctl).await;
            }
        }
    }
}

async fn serve_http<I>(io: I, handler: Handler, ctl: Arc<ConnCtl>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handler_ctl = ctl.clone();
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let ctl = handler_ctl.clone();
        async move {
            match handler(req).await {
                Reply::Respond(resp) => Ok::<_, Infallible>(resp),
                // The connection task drops this future when the client leaves or the fake
                // goes down.
                Reply::Hang => std::future::pending().await,
                Reply::Reset => {
                    ctl.reset_now();
                    std::future::pending().await
                }
            }
        }
    });
    let connection = http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        // Connection errors (client hung up, bad request line) only end this connection.
        _ = connection => {}
        // Dropping the connection drops the stream, which sends the RST.
        () = ctl.kill.notified() => {}
    }
}
