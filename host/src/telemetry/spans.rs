//! The spans the host opens, named the way `opentelemetry-application-insights` maps them:
//! a server span per incoming request (→ Request: name `GET /health/clever-auth`, response
//! code, duration) and a client span per outgoing call (→ RemoteDependency: target host,
//! method, result code, duration). URL queries and headers are never recorded.
//!
//! Without telemetry nothing reads a span (the stdout log shows no span fields), so none is
//! opened: each cost an allocation, the registry's bookkeeping and an enter and exit at every
//! poll of the request, twice per gateway request.

use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::Empty;
use tracing::Span;

static READ: AtomicBool = AtomicBool::new(false);

/// The telemetry layers are installed: spans are opened from now on.
pub fn read_from_now_on() {
    READ.store(true, Ordering::Relaxed);
}

fn unread() -> bool {
    !READ.load(Ordering::Relaxed)
}

/// Which dependency a client span calls (`peer.service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Clever,
    KeyVault,
    ManagedIdentity,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Clever => "clever",
            Dependency::KeyVault => "keyvault",
            Dependency::ManagedIdentity => "managed_identity",
        }
    }
}

/// One incoming request. `route` is the matched route; unmatched paths are not recorded.
pub fn server(method: &str, route: Option<&'static str>) -> Span {
    if unread() {
        return Span::none();
    }
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    tracing::info_span!(
        "request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.scheme = "http",
        url.path = route,
        http.response.status_code = Empty,
    )
}

/// Records the response of a server span: 5xx is a failed request.
pub fn record_server_status(span: &Span, status: u16) {
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// One outgoing call. `port` is left out of the target when it is the scheme's default.
pub fn client(
    dependency: Dependency,
    method: &str,
    scheme: &str,
    host: &str,
    port: Option<u16>,
    path: &str,
) -> Span {
    if unread() {
        return Span::none();
    }
    let default_port = match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let port = port.filter(|p| Some(*p) != default_port).map(i64::from);
    tracing::info_span!(
        "dependency",
        otel.name = %format!("{method} {path}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        peer.service = dependency.as_str(),
        http.request.method = method,
        server.address = host,
        server.port = port,
        url.scheme = scheme,
        url.path = path,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Records the response of a client span: 4xx and 5xx are failed calls.
pub fn record_client_status(span: &Span, status: u16) {
    span.record("http.response.status_code", i64::from(status));
    span.record(
        "otel.status_code",
        if status >= 400 { "ERROR" } else { "OK" },
    );
}

/// Records a call that got no response: `kind` is a short error class, `description` the
/// cause (no URL query, no header value).
pub fn record_client_error(span: &Span, kind: &str, description: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
    let description: String = description.chars().take(300).collect();
    span.record("otel.status_description", description.as_str());
}
