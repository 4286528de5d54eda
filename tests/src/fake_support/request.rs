//! What every fake reads off an arriving request before anything else, and how it words a
//! request log record.

use std::fmt::Debug;
use std::time::Instant;

use hyper::{Method, Request, Uri};

/// What became of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still being handled (e.g. inside a scripted delay).
    Pending,
    /// A response with this status was handed to the connection.
    Responded(u16),
    /// Scripted to never answer.
    Hung,
    /// Scripted connection reset: the socket was dropped without a response.
    Reset,
    /// The client went away (or the fake shut down) before an answer was ready.
    Abandoned,
}

/// When a request arrived and its request line.
pub(crate) struct Arrival {
    /// Arrival time on the monotonic clock.
    pub(crate) at: Instant,
    /// Arrival time as Unix epoch milliseconds.
    pub(crate) unix_ms: u64,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// Path and query, as sent.
    pub(crate) path_and_query: String,
    /// The decoded query parameters, in order.
    pub(crate) query: Vec<(String, String)>,
}

impl Arrival {
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        let at = Instant::now();
        let unix_ms = super::util::unix_ms_now();
        let uri = req.uri().clone();
        Self {
            at,
            unix_ms,
            method: req.method().clone(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            query: uri
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
            uri,
        }
    }
}

/// The status sent, if a response was sent.
pub(crate) fn status_of(outcome: Outcome) -> Option<u16> {
    match outcome {
        Outcome::Responded(status) => Some(status),
        _ => None,
    }
}

/// `200`, or `hung`, `reset`, … for a summary line.
pub(crate) fn outcome_label(outcome: Outcome) -> String {
    match outcome {
        Outcome::Responded(status) => status.to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// ` fault=…` for a summary line, or nothing.
pub(crate) fn fault_label<F: Debug>(fault: Option<&F>) -> String {
    fault.map(|f| format!(" fault={f:?}")).unwrap_or_default()
}
