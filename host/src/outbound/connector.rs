//! Opens the upstream connections the pooled client ([`super::send::Upstream`]) asks for: TCP,
//! then TLS with the host's rustls configuration (TLS ≥ 1.2, extra CA), within the connect
//! deadline of the attempt that needed the connection.
//!
//! The pool's connector only sees the URI, so the attempt's deadline travels in a task-local
//! set around the request ([`CONNECT_DEADLINE`]); the connector reads it when the pool calls
//! it, which happens while the attempt's own future is being polled.

use http::uri::Scheme;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use wasmtime_wasi_http::Error;

tokio::task_local! {
    /// When the attempt asking for a new connection gives up on connecting.
    pub static CONNECT_DEADLINE: Instant;
}

/// Bounds a connection opened outside any attempt's scope (none is today): no connect may
/// hang forever.
const FALLBACK_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Why a connection could not be opened, kept apart from hyper's errors so that the attempt
/// reports the same wasi:http error a fresh connection did.
#[derive(Debug)]
pub enum ConnectFailure {
    Refused,
    Io(io::ErrorKind, String),
    InvalidName(String),
    Tls { host: String, cause: String },
    Timeout,
    NoHost,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused => write!(f, "connection refused"),
            Self::Io(_, m) => write!(f, "connection error: {m}"),
            Self::InvalidName(host) => write!(f, "invalid server name {host}"),
            Self::Tls { host, cause } => write!(f, "TLS handshake with {host} failed: {cause}"),
            Self::Timeout => write!(f, "connection timeout"),
            Self::NoHost => write!(f, "the request URI has no host"),
        }
    }
}

impl std::error::Error for ConnectFailure {}

impl ConnectFailure {
    /// The wasi:http error the component sees.
    pub fn to_wasi(&self) -> Error {
        match self {
            Self::Refused => Error::ConnectionRefused,
            Self::Io(kind, m) => Error::Connect(io::Error::new(*kind, m.clone())),
            Self::InvalidName(_) | Self::NoHost => Error::HttpRequestUriInvalid,
            Self::Tls { .. } => Error::InternalError(Some(self.to_string())),
            Self::Timeout => Error::ConnectionTimeout,
        }
    }
}

/// The pool's connector: one per process, sharing the host's TLS configuration.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<rustls::ClientConfig>,
}

impl Connector {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectFailure>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let deadline = CONNECT_DEADLINE
            .try_with(|d| *d)
            .unwrap_or_else(|_| Instant::now() + FALLBACK_CONNECT_TIMEOUT);
        let tls = self.tls.clone();
        Box::pin(async move {
            let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
            let host = uri
                .host()
                .ok_or(ConnectFailure::NoHost)?
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
            tokio::time::timeout_at(deadline, open(host, port, use_tls, tls))
                .await
                .map_err(|_| ConnectFailure::Timeout)?
        })
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, ConnectFailure> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string()).map_err(|_| ConnectFailure::InvalidName(host.into()))
}

async fn open(
    host: String,
    port: u16,
    use_tls: bool,
    tls: Arc<rustls::ClientConfig>,
) -> Result<UpstreamIo, ConnectFailure> {
    let tcp = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectFailure::Refused)
        }
        Err(e) => return Err(ConnectFailure::Io(e.kind(), e.to_string())),
    };
    // Requests are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = if use_tls {
        let connector = tokio_rustls::TlsConnector::from(tls);
        match connector.connect(server_name(&host)?, tcp).await {
            Ok(s) => Box::new(s),
            Err(e) => {
                tracing::warn!(host = %host, error = %e, operation = "outbound_tls", "TLS handshake failed");
                return Err(ConnectFailure::Tls {
                    host,
                    cause: e.to_string(),
                });
            }
        }
    } else {
        Box::new(tcp)
    };
    Ok(UpstreamIo(TokioIo::new(stream)))
}

/// One open upstream connection, plain or TLS.
pub struct UpstreamIo(TokioIo<Box<dyn Stream>>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
