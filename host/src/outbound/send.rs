//! Sends one outbound request over a fresh connection, with the host's TLS configuration.
//!
//! Shaped after wasmtime-wasi-http's `default_send_request`, which hard-codes its own rustls
//! configuration; this one takes ours (TLS ≥ 1.2, extra CA) and reports TLS failures with
//! their cause so the component can show it.

use crate::telemetry::spans;
use http::uri::Scheme;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::Instrument;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The wasi:http default when the component sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string()).map_err(Error::from)
}

/// Sends `req` in a client span (→ an Application Insights dependency on Clever): method,
/// host, port, path and response status, never the query or a header.
pub async fn send(
    req: Request<WasiBody>,
    options: Option<RequestOptions>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<
    (
        Response<WasiBody>,
        impl Future<Output = Result<(), Error>> + Send,
    ),
    Error,
> {
    let uri = req.uri();
    let span = spans::client(
        spans::Dependency::Clever,
        req.method().as_str(),
        uri.scheme_str().unwrap_or("https"),
        uri.host().unwrap_or_default().trim_matches(['[', ']']),
        uri.port_u16(),
        uri.path(),
    );
    let result = send_inner(req, options, tls).instrument(span.clone()).await;
    match &result {
        Ok((response, _)) => spans::record_client_status(&span, response.status().as_u16()),
        Err(e) => {
            let description = format!("{e:?}");
            let kind = description
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or("error")
                .to_string();
            spans::record_client_error(&span, &kind, &description);
        }
    }
    result
}

async fn send_inner(
    mut req: Request<WasiBody>,
    options: Option<RequestOptions>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<
    (
        Response<WasiBody>,
        impl Future<Output = Result<(), Error>> + Send,
    ),
    Error,
> {
    // Whatever credential the component sends is known to the scrubber before any response,
    // error or log line about this request can exist.
    if let Some(auth) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        crate::redact::register_authorization(auth);
    }
    let uri = req.uri().clone();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let port = authority
        .port_u16()
        .unwrap_or(if use_tls { 443 } else { 80 });
    let host = authority.host().trim_matches(['[', ']']).to_string();
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);

    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), port)))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Error::ConnectionRefused)
        }
        Ok(Err(e)) => return Err(Error::Connect(e)),
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let stream: Box<dyn Stream> = if use_tls {
        let connector = tokio_rustls::TlsConnector::from(tls);
        let handshake = connector.connect(server_name(&host)?, tcp);
        match tokio::time::timeout(connect_timeout, handshake).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => {
                tracing::warn!(host = %host, error = %e, operation = "outbound_tls", "TLS handshake failed");
                return Err(Error::InternalError(Some(format!(
                    "TLS handshake with {host} failed: {e}"
                ))));
            }
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries only path and query when not talking to a proxy.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let driver = tokio::spawn(conn);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(req))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|b| b.map_err(Error::from).boxed_unsync());
    let io = async move {
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(e) => Err(Error::InternalError(Some(format!("connection task: {e}")))),
        }
    };
    Ok((response, io))
}
