//! Sends one outbound request over a kept-alive upstream connection, with the host's TLS
//! configuration.
//!
//! Connections are pooled per (scheme, authority) by hyper-util's client (one client per
//! process, so one TLS configuration): a gateway request to Clever no longer pays a TCP and a
//! TLS handshake. hyper hands a connection back to the pool only once its response was read
//! to the end; a connection whose response was dropped half-read, or that failed, is closed,
//! never reused. Idle connections close after [`IDLE_TIMEOUT`], and at most
//! [`MAX_IDLE_PER_HOST`] wait per host.
//!
//! Deadlines, so that one attempt ends within the component's timeout whatever the server
//! does: a new connection's TCP connect and TLS handshake end by `connect-timeout` from the
//! attempt's start (three separate timeouts let a "10 s" attempt last 30 s); the response
//! head must arrive within `first-byte-timeout` of the attempt's start, not of the end of the
//! handshake; after the head, the body fails when `between-bytes-timeout` passes without a
//! byte. A server trickling one byte per gap is bounded by the component's body-size cap and,
//! for the refresher, by the wall-clock bound on the whole component call.

use super::body_timeout::BetweenBytes;
use super::connector::{ConnectFailure, Connector, CONNECT_DEADLINE};
use crate::telemetry::spans;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The wasi:http default when the component sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A few seconds below the 60 s idle timeout of the load balancers in front of HTTPS APIs
/// such as Clever's (AWS's default): the pool drops a connection before the server does, so
/// a request rarely meets a connection closing under it (hyper retries those that were not
/// sent yet anyway).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// As many as the gateway can have requests in flight at once (at most 160): with fewer, a
/// burst of 64 gateway calls closed half its connections on return and opened them again on
/// the next request (a TCP, and against Clever a TLS, handshake each time).
pub const MAX_IDLE_PER_HOST: usize = 160;

/// The most an upstream connection buffers of what Clever sent ahead of the component's
/// reads. hyper's default (≈400 KiB) grows with a fast upstream, and the gateway holds one per
/// call in flight: bounded, a 1 MB page costs the host little more than the component's reads.
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

/// The process's pool of upstream connections.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, WasiBody>,
    tls: Arc<rustls::ClientConfig>,
    max_idle: usize,
}

impl Upstream {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self::with_max_idle(tls, MAX_IDLE_PER_HOST)
    }

    /// `max_idle` 0 turns reuse off: every request opens its own connection.
    pub fn with_max_idle(tls: Arc<rustls::ClientConfig>, max_idle: usize) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(max_idle)
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            .build(Connector::new(tls.clone()));
        Self {
            client,
            tls,
            max_idle,
        }
    }

    /// A pool of its own with the same settings. hyper-util drives each connection in a task
    /// spawned on the runtime that opened it: a gateway thread with its own pool keeps the
    /// request, its connection and its body on one thread, with no wake-up crossing threads.
    pub fn sibling(&self) -> Self {
        Self::with_max_idle(self.tls.clone(), self.max_idle)
    }
}

/// Sends `req` in a client span (→ an Application Insights dependency on Clever): method,
/// host, port, path and response status, never the query or a header.
pub async fn send(
    req: Request<WasiBody>,
    options: Option<RequestOptions>,
    upstream: &Upstream,
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
    let result = send_inner(req, options, upstream)
        .instrument(span.clone())
        .await;
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
    req: Request<WasiBody>,
    options: Option<RequestOptions>,
    upstream: &Upstream,
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
    if req.uri().authority().is_none() {
        return Err(Error::HttpRequestUriInvalid);
    }
    let started = tokio::time::Instant::now();
    let connect_deadline = started
        + options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
    let head_deadline = started
        + options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);

    // Dropping the request future on the deadline closes its connection (hyper does not pool
    // a connection whose response nobody waits for).
    let sent = CONNECT_DEADLINE.scope(
        connect_deadline.min(head_deadline),
        upstream.client.request(req),
    );
    let response = match tokio::time::timeout_at(head_deadline, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(client_error(&e)),
        Err(_) => return Err(Error::ConnectionReadTimeout),
    };
    let response = response.map(|b| {
        let body = b.map_err(Error::from).boxed_unsync();
        BetweenBytes::new(body, between_bytes).boxed_unsync()
    });
    // The pool's tasks drive the connection; nothing is left for the caller to drive.
    Ok((response, async { Ok(()) }))
}

/// The connector's own failure when there is one (the same error a fresh connection gave),
/// else hyper's, named.
fn client_error(e: &hyper_util::client::legacy::Error) -> Error {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(failure) = cause.downcast_ref::<ConnectFailure>() {
            return failure.to_wasi();
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return Error::InternalError(Some(format!("upstream connection: {hyper}")));
        }
        source = cause.source();
    }
    Error::InternalError(Some(format!("upstream connection: {e}")))
}

#[cfg(test)]
mod tests {
    //! Real sockets on loopback, each playing one way a server can hold an attempt: the
    //! attempt must end within [timeout, timeout + margin] whatever it does.

    use super::*;
    use http_body_util::Empty;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_millis(400);
    /// Generous: timers and a loaded 2-core machine, but well below a second stage's timeout.
    const MARGIN: Duration = Duration::from_millis(350);

    fn options() -> Option<RequestOptions> {
        Some(RequestOptions {
            connect_timeout: Some(TIMEOUT),
            first_byte_timeout: Some(TIMEOUT),
            between_bytes_timeout: Some(TIMEOUT),
        })
    }

    fn request(scheme: &str, port: u16) -> Request<WasiBody> {
        let body = Empty::<bytes::Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        Request::builder()
            .uri(format!("{scheme}://localhost:{port}/oauth/tokens"))
            .body(body)
            .expect("a valid request")
    }

    struct TestTls {
        client: Arc<rustls::ClientConfig>,
        acceptor: tokio_rustls::TlsAcceptor,
        _dir: tempfile::TempDir,
    }

    /// A throw-away CA (trusted by the client through `--extra-ca`, as in production) and a
    /// server certificate for `localhost` signed by it.
    fn test_tls() -> anyhow::Result<TestTls> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_params = CertificateParams::new(vec!["localhost".to_string()])?;
        let leaf_key = KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        let dir = tempfile::tempdir()?;
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_cert.pem())?;
        let client = crate::outbound::tls::client_config(Some(&ca_path))?;
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
        Ok(TestTls {
            client,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            _dir: dir,
        })
    }

    /// Reads until the end of a request head (the test requests have no body).
    async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Runs one attempt to its end: the head, then the whole body. Returns whether it
    /// succeeded and how long it took.
    async fn attempt(
        req: Request<WasiBody>,
        tls: Arc<rustls::ClientConfig>,
    ) -> (Result<(), String>, Duration) {
        let started = Instant::now();
        let result = async {
            let upstream = Upstream::new(tls);
            let (response, _io) = send_inner(req, options(), &upstream)
                .await
                .map_err(|e| e.to_string())?;
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        (result, started.elapsed())
    }

    fn assert_within_deadline(result: &Result<(), String>, took: Duration) {
        assert!(result.is_err(), "the attempt succeeded after {took:?}");
        assert!(
            took >= TIMEOUT && took <= TIMEOUT + MARGIN,
            "the attempt ended after {took:?}, outside [{TIMEOUT:?}, {:?}]: {result:?}",
            TIMEOUT + MARGIN
        );
    }

    #[tokio::test]
    async fn a_server_that_sends_headers_then_stalls_ends_the_attempt_after_the_gap(
    ) -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            read_head(&mut stream).await?;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"data\":")
                .await?;
            // Stalls with the connection open, as a wedged server or proxy would.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
            std::io::Result::Ok(())
        });
        let (result, took) = attempt(request("http", port), test_tls()?.client).await;
        server.abort();
        assert_within_deadline(&result, took);
        Ok(())
    }

    #[tokio::test]
    async fn a_server_that_never_completes_tls_ends_the_attempt_at_the_timeout(
    ) -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            // Takes the ClientHello and never answers.
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            std::io::Result::Ok(())
        });
        let (result, took) = attempt(request("https", port), test_tls()?.client).await;
        server.abort();
        assert_within_deadline(&result, took);
        Ok(())
    }

    /// Each stage alone stays under the timeout; together they exceed it. With a timeout per
    /// stage this attempt succeeded after ≈ 1.5 × the timeout.
    #[tokio::test]
    async fn slow_tls_then_a_slow_head_share_one_deadline() -> anyhow::Result<()> {
        let tls = test_tls()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stage = TIMEOUT * 3 / 4;
        let acceptor = tls.acceptor.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            tokio::time::sleep(stage).await;
            let mut stream = acceptor.accept(stream).await?;
            read_head(&mut stream).await?;
            tokio::time::sleep(stage).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            std::io::Result::Ok(())
        });
        let (result, took) = attempt(request("https", port), tls.client.clone()).await;
        server.abort();
        assert_within_deadline(&result, took);
        Ok(())
    }

    /// The deadlines bound an attempt; they do not cut a healthy one short: a body that keeps
    /// arriving, chunk by chunk, for longer than the gap in total is read whole.
    #[tokio::test]
    async fn a_body_that_keeps_arriving_is_read_whole() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            read_head(&mut stream).await?;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
                .await?;
            for chunk in [b"ab", b"cd", b"ef"] {
                tokio::time::sleep(TIMEOUT / 2).await;
                stream.write_all(chunk).await?;
                stream.flush().await?;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            std::io::Result::Ok(())
        });
        let (result, took) = attempt(request("http", port), test_tls()?.client).await;
        server.abort();
        assert!(result.is_ok(), "{result:?} after {took:?}");
        assert!(took >= TIMEOUT * 3 / 2, "the body arrived after {took:?}");
        Ok(())
    }
}
