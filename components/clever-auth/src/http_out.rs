//! Outgoing HTTP through `wasi:http/outgoing-handler`, blocking, with per-attempt timeouts and
//! a cap on how much of a response body is read.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};

/// Clever's bodies are small (a listing of hundreds of districts is well under 1 MiB).
const MAX_BODY_BYTES: usize = 4 << 20;
const READ_CHUNK: u64 = 64 * 1024;
const WRITE_CHUNK: usize = 4096;

pub struct Request<'a> {
    pub method: Method,
    pub url: &'a url::Url,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    // The refresher reads headers in core (`refresher::Reply`); kept for callers in the shell
    // that read a reply directly.
    #[allow(dead_code)]
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Why no response arrived. Messages never carry request headers (they hold credentials).
#[derive(Debug)]
pub enum Failure {
    Timeout,
    Connection(String),
    Invalid(String),
    /// The runtime's outbound policy refused to send to `host` (wasi-http's
    /// `HttpRequestDenied`, e.g. Spin's `allowed_outbound_hosts`): a configuration error.
    Denied {
        host: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => write!(f, "timed out"),
            Failure::Connection(m) => write!(f, "connection failed: {m}"),
            Failure::Invalid(m) => write!(f, "request not sent: {m}"),
            Failure::Denied { host } => write!(
                f,
                "denied by the runtime's outbound policy: {host} is not an allowed outbound host (under Spin: allowed_outbound_hosts, derived from clever_oauth_base_url and clever_api_base_url)"
            ),
        }
    }
}

/// `host` is the authority the request was for, named in a denial.
fn from_error_code(e: ErrorCode, host: &str) -> Failure {
    match e {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => Failure::Timeout,
        ErrorCode::HttpRequestDenied => Failure::Denied {
            host: host.to_string(),
        },
        // The native host's outbound policy refuses with this prefix: a configuration problem
        // that retrying cannot fix.
        ErrorCode::InternalError(Some(m)) if m.starts_with("outbound policy:") => {
            Failure::Invalid(m)
        }
        ErrorCode::InternalError(Some(m)) => Failure::Connection(m),
        other => Failure::Connection(format!("{other:?}")),
    }
}

pub fn send(req: Request<'_>) -> Result<Response, Failure> {
    let response = dispatch(req)?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| Failure::Connection("no response body".into()))?;
    let body = read_body(&incoming)?;
    let _ = IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A response whose body is still unread, for passing it on piece by piece (the gateway):
/// memory stays bounded whatever the body's size.
pub struct Streaming {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    // Field order is drop order: a child resource must go before its parent.
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Streaming {
    /// The body's stream (taken once).
    pub fn stream(&mut self) -> Option<&InputStream> {
        if self.stream.is_none() {
            self.stream = self.body.as_ref().and_then(|b| b.stream().ok());
        }
        self.stream.as_ref()
    }

    /// Done with the body (read whole or abandoned).
    pub fn finish(mut self) {
        self.stream = None;
        if let Some(body) = self.body.take() {
            let _ = IncomingBody::finish(body);
        }
    }
}

/// Sends the request and returns as soon as the status and headers are in.
pub fn send_streaming(req: Request<'_>) -> Result<Streaming, Failure> {
    let response = dispatch(req)?;
    let status = response.status();
    let headers = response.headers().entries();
    let body = response
        .consume()
        .map_err(|()| Failure::Connection("no response body".into()))?;
    Ok(Streaming {
        status,
        headers,
        stream: None,
        body: Some(body),
        _response: response,
    })
}

/// Sends the request; the response's body is left to the caller.
fn dispatch(req: Request<'_>) -> Result<IncomingResponse, Failure> {
    let url = req.url;
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => return Err(Failure::Invalid(format!("unsupported scheme `{other}`"))),
    };
    let host = url
        .host_str()
        .ok_or_else(|| Failure::Invalid("URL without host".into()))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];

    let headers = Fields::from_list(&req.headers)
        .map_err(|e| Failure::Invalid(format!("bad header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let set = [
        outgoing.set_method(&req.method).is_ok(),
        outgoing.set_scheme(Some(&scheme)).is_ok(),
        outgoing.set_authority(Some(&authority)).is_ok(),
        outgoing.set_path_with_query(Some(path)).is_ok(),
    ];
    if set.contains(&false) {
        return Err(Failure::Invalid("the URL was rejected by wasi:http".into()));
    }
    let options = RequestOptions::new();
    let timeout_ns = Some(req.timeout_ms.saturating_mul(1_000_000));
    // Unsupported options are not fatal: the host then applies its own defaults.
    let _ = options.set_connect_timeout(timeout_ns);
    let _ = options.set_first_byte_timeout(timeout_ns);
    let _ = options.set_between_bytes_timeout(timeout_ns);

    let body = outgoing
        .body()
        .map_err(|_| Failure::Invalid("request body unavailable".into()))?;
    let future = outgoing_handler::handle(outgoing, Some(options))
        .map_err(|e| from_error_code(e, &authority))?;
    if let Some(bytes) = req.body {
        let stream = body
            .write()
            .map_err(|_| Failure::Invalid("request body unavailable".into()))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| Failure::Connection(format!("writing the request body: {e:?}")))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(body, None).map_err(|e| from_error_code(e, &authority))?;

    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    response
        .map_err(|()| Failure::Connection("response already taken".into()))?
        .map_err(|e| from_error_code(e, &authority))
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, Failure> {
    let stream = incoming
        .stream()
        .map_err(|()| Failure::Connection("no response body stream".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY_BYTES {
                    return Err(Failure::Connection(format!(
                        "response body larger than {MAX_BODY_BYTES} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Failure::Connection(format!(
                    "reading the response body: {}",
                    e.to_debug_string()
                )))
            }
        }
    }
}
