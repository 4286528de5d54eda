//! The HTTP/1.1 server: accepts connections, routes, drains on shutdown.

mod accept;
mod guarded_io;
pub mod health_view;
pub(crate) mod instances;
mod invoke;
pub mod limits;
mod scrub;

pub use health_view::HealthView;
pub use instances::{InstanceMode, MAX_IN_FLIGHT};
pub mod routing;
pub mod threads;

use crate::outbound::Upstream;
use crate::runtime::deadline::DeadlineExceeded;
use crate::runtime::Runtime;
use crate::telemetry;
use anyhow::{Context, Result};
use bytes::Bytes;
use guarded_io::{GuardedIo, InProgress};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulShutdown;
use instances::Instances;
pub use limits::ListenerLimits;
use routing::{Route, Routes};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Binds `addr`, saying clearly when the port is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| match addr.port() {
            0 => format!("cannot listen on {addr}"),
            port => format!("cannot listen on {addr} (is port {port} already in use?)"),
        })
}

/// What one listener's connections share, on whichever thread they are served: its limits,
/// routes and health view, its instances and admission count, and its connection cap. Each
/// listener has its own, so gateway requests waiting on Clever never hold up health.
pub struct Listener {
    limits: ListenerLimits,
    routes: Routes,
    runtime: Runtime,
    instances: Arc<Instances>,
    view: HealthView,
    connections: Arc<Semaphore>,
}

impl Listener {
    pub fn new(
        limits: ListenerLimits,
        routes: Routes,
        runtime: Runtime,
        mode: InstanceMode,
        view: HealthView,
    ) -> Arc<Listener> {
        Arc::new(Listener {
            limits,
            routes,
            runtime,
            instances: Instances::new(mode, limits.max_in_flight),
            view,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
        })
    }
}

/// Serves `shared`'s routes on `listener` until `shutdown` resolves, then stops accepting and
/// lets open connections finish for at most `drain`. Gateway requests go to Clever over
/// `upstream`'s connections.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Listener>,
    upstream: Upstream,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<()> {
    let app = Arc::new(App {
        shared: shared.clone(),
        upstream,
    });
    let graceful = GracefulShutdown::new();
    accept::until(&listener, &shared, shutdown, |stream, peer, slot| {
        serve_connection(&app, &graceful, stream, peer, slot);
    })
    .await;
    drop(listener);
    drain_connections(graceful, drain).await;
    Ok(())
}

/// Serves one accepted connection in a task of its own; `slot` (its place under the
/// connection cap) is held until it closes.
pub(super) fn serve_connection(
    app: &Arc<App>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    slot: impl Send + 'static,
) {
    let limits = app.shared.limits;
    // Best effort: without it the connection still has every other limit.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(limits.send_buffer_bytes);
    // A response goes out in several writes (head, then body pieces): with Nagle on, each
    // one after the first waited for the client's delayed ACK, 40 ms per request.
    let _ = stream.set_nodelay(true);
    let in_progress = InProgress::default();
    let io = GuardedIo::new(
        stream,
        in_progress.clone(),
        limits.idle_timeout,
        limits.write_timeout,
    );
    let app = app.clone();
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        // Held while the request is served, so the idle clock does not run meanwhile.
        let serving = in_progress.start();
        async move {
            let response = handle(&app, req).await;
            drop(serving);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(limits.read_buffer())
        .serve_connection(TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(slot);
    });
}

/// After the listener stopped accepting: open connections finish, for at most `drain`.
pub(super) async fn drain_connections(graceful: GracefulShutdown, drain: Duration) {
    tracing::info!(
        drain_secs = drain.as_secs(),
        "shutting down: draining open connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain timed out; closing remaining connections"),
    }
}

/// What every connection served by one thread shares.
pub(super) struct App {
    shared: Arc<Listener>,
    /// This thread's upstream connections.
    upstream: Upstream,
}

async fn handle(app: &App, mut req: hyper::Request<Incoming>) -> Response<HyperOutgoingBody> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = routing::route(app.shared.routes, &method, &path);
    // The signal is for the health answer only: on a gateway request it would be forwarded to
    // Clever with the caller's headers.
    if matches!(route, Route::Component) {
        health_view::apply(req.headers_mut(), app.shared.view);
    }
    // Unmatched paths are not recorded: they are whatever a client sent. Gateway requests are
    // named by their template: district ids and Clever paths stay out of telemetry names.
    let span = telemetry::spans::server(
        method.as_str(),
        match route {
            Route::NotFound => None,
            Route::Gateway => Some(routing::GATEWAY_ROUTE),
            Route::Component | Route::MethodNotAllowed => Some(routing::HEALTH_PATH),
        },
    );
    let response = respond(app, req, route).instrument(span.clone()).await;
    let status = response.status().as_u16();
    telemetry::spans::record_server_status(&span, status);
    match route {
        Route::Component => telemetry::metrics::record_health(started.elapsed(), status),
        Route::Gateway => telemetry::metrics::record_gateway(started.elapsed(), status),
        Route::NotFound | Route::MethodNotAllowed => {}
    }
    tracing::debug!(
        method = %method,
        path = %path,
        status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn respond(
    app: &App,
    req: hyper::Request<Incoming>,
    route: Route,
) -> Response<HyperOutgoingBody> {
    match route {
        Route::NotFound => plain(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
        Route::MethodNotAllowed => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed"}"#,
            );
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
        // The component sees only the path; an absolute-form target (`GET http://x/...`)
        // would have its authority silently ignored, so it is refused here.
        Route::Gateway if req.uri().authority().is_some() => gateway_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"bad_request","message":"absolute URLs are not accepted: send the path /clever/{district}/{version}/{path}"}}"#,
        ),
        Route::Gateway => match crate::gateway::serve(
            &app.shared.runtime,
            &app.shared.instances,
            &app.upstream,
            req,
        )
        .await
        {
            Ok(r) => r,
            // Already logged as an overrun.
            Err(e) if e.is::<DeadlineExceeded>() => gateway_error(
                StatusCode::GATEWAY_TIMEOUT,
                r#"{"error":{"code":"upstream_timeout","message":"no answer within the gateway's call deadline"}}"#,
            ),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "gateway request failed inside the component"
                );
                gateway_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"error":{"code":"component_error","message":"the gateway failed; see the host log"}}"#,
                )
            }
        },
        Route::Component => match component_answer(app, req).await {
            Ok(r) => r,
            // Already logged as an overrun.
            Err(e) if e.is::<DeadlineExceeded>() => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"fail","error":{"code":"component_deadline","message":"the component did not answer in time; see the host log"}}"#,
            ),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "health request failed inside the component"
                );
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"status":"fail","error":{"code":"component_error","message":"the component failed; see the host log"}}"#,
                )
            }
        },
    }
}

/// The component's answer, with every known secret value masked.
async fn component_answer(
    app: &App,
    req: hyper::Request<Incoming>,
) -> Result<Response<HyperOutgoingBody>> {
    invoke::call_component(&app.shared.runtime, &app.shared.instances, req).await
}

/// An error the host answers for the gateway, marked as the gateway's own.
fn gateway_error(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let mut r = plain(status, body);
    r.headers_mut().insert(
        "x-clever-auth-source",
        hyper::header::HeaderValue::from_static("gateway"),
    );
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
