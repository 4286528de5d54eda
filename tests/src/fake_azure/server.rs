//! Endpoints for both Azure fakes: a listener that can be closed and re-opened on the same port
//! (an outage that clients see as "connection refused"), one task per connection, optional
//! TLS, and scripted resets.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper::Request;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::util::lock;

use crate::fake_support::server::{accept_loop, play_reply, ConnHandler, ServeOptions};
pub(crate) use crate::fake_support::server::{Reply, Resp};

pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

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
    let handler: ConnHandler = Arc::new(move |req, ctl| {
        let handler = handler.clone();
        Box::pin(async move { play_reply(handler(req).await, &ctl).await })
    });
    let options = ServeOptions {
        tls,
        title_case_headers: false,
        // Going down resets every open connection, answered or not.
        reset_on_stop: true,
        accepted: None,
    };
    let task = tokio::spawn(accept_loop(listener, options, handler, stop_rx));
    Serving { stop, task }
}

async fn stop_serving(serving: Serving) {
    serving.stop.send_replace(true);
    let _ = serving.task.await;
}
