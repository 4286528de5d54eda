//! What the machine asks the shell to do, and what the shell reports back.

use crate::backoff::{classify_transport, Outcome, PermanentKind, TransientKind, TransportFailure};
use crate::lifecycle::TokenEntry;
use crate::secret::AccessToken;
use serde_json::Value;

/// A response from Clever, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Why no response arrived. Messages never carry request headers (they hold credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Timeout,
    Connection(String),
    /// The request could not be sent at all (bad URL, refused by the native host's policy).
    Invalid(String),
    /// The runtime's outbound policy refused the request for this host (wasi:http's
    /// `HttpRequestDenied`, e.g. a host missing from Spin's `allowed_outbound_hosts`): a
    /// configuration error, never retried in a loop.
    Denied {
        host: String,
    },
}

/// How a transport failure counts for the retry policy, and its health code.
pub fn transport_outcome(e: &TransportError) -> (Outcome, &'static str) {
    match e {
        TransportError::Timeout => {
            let o = Outcome::Transient(TransientKind::Timeout);
            (o, o.code())
        }
        TransportError::Connection(_) => {
            let o = Outcome::Transient(TransientKind::Connection);
            (o, o.code())
        }
        TransportError::Invalid(_) => (
            Outcome::Permanent(PermanentKind::UnexpectedStatus(0)),
            "request_invalid",
        ),
        TransportError::Denied { .. } => {
            let o = classify_transport(TransportFailure::Denied);
            (o, o.code())
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Timeout => write!(f, "timed out"),
            TransportError::Connection(m) => write!(f, "connection failed: {m}"),
            TransportError::Invalid(m) => write!(f, "request not sent: {m}"),
            TransportError::Denied { host } => write!(
                f,
                "denied by the runtime's outbound policy: `{host}` is not an allowed outbound host"
            ),
        }
    }
}

pub type HttpResult = Result<Reply, TransportError>;

/// One HTTP call to Clever. The shell adds the credentials (Basic) or the token (Bearer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A page of `GET <token url>?owner_type=district`: `None` for the first page, else the
    /// absolute URL of `links[rel=next]` (already checked to be on the token URL's origin).
    ListPage { url: Option<String> },
    /// RFC 6749 §4.4 against the token URL.
    ClientCredentials,
    /// The connection probe with a district's (or the application's) token.
    Probe {
        district_id: String,
        token: AccessToken,
    },
}

/// A structured log line; `fields` never holds a secret (the machine never sees one apart
/// from tokens, which it never puts in an event).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub level: &'static str,
    pub event: &'static str,
    pub fields: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this and report the result with `Machine::on_http` before polling again.
    Http(Request),
    PutToken(TokenEntry),
    DeleteToken(String),
    Log(LogEvent),
}
