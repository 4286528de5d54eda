//! Which outcomes are worth another attempt: HTTP statuses and transport failures sorted into
//! success, transient and permanent, with the codes logs and health use.

use serde::{Deserialize, Serialize};

/// Why an attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum TransientKind {
    /// The per-attempt timeout fired, or the server answered 408.
    Timeout,
    /// DNS, connect, TLS or reset: no HTTP response arrived.
    Connection,
    /// 429.
    RateLimited,
    /// 500, 502, 503, 504 and other 5xx except 501 and 505.
    ServerError(u16),
}

/// Why repeating an attempt cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum PermanentKind {
    /// 401: bad client credentials or a revoked token. The caller should re-read secrets or
    /// re-list tokens rather than retry the same request.
    Unauthorized,
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404: unavailable, unshared, deleted, or the wrong kind of token.
    NotFound,
    /// 413: `limit` too large.
    PayloadTooLarge,
    /// 501.
    NotImplemented,
    /// Any other 4xx.
    ClientError(u16),
    /// A status no rule covers (1xx, 3xx, 505, out-of-range).
    UnexpectedStatus(u16),
    /// The runtime's outbound policy refused the request before it left (Spin's
    /// `allowed_outbound_hosts`): a configuration error that only a configuration change fixes.
    OutboundDenied,
}

/// The result of one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    Success,
    Transient(TransientKind),
    Permanent(PermanentKind),
}

/// The code of [`PermanentKind::OutboundDenied`] in logs and health.
pub const OUTBOUND_DENIED: &str = "outbound_denied";

/// A failure below HTTP, reported by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportFailure {
    Timeout,
    Connection,
    /// Refused by the runtime's outbound policy; nothing was sent.
    Denied,
}

/// Maps an HTTP status to an [`Outcome`]. 2xx is success; see the kind enums for the rest.
pub fn classify_status(status: u16) -> Outcome {
    use Outcome::{Permanent, Success, Transient};
    match status {
        200..=299 => Success,
        // 408 means the server gave up waiting for our request: the same request can succeed.
        408 => Transient(TransientKind::Timeout),
        429 => Transient(TransientKind::RateLimited),
        400 => Permanent(PermanentKind::BadRequest),
        401 => Permanent(PermanentKind::Unauthorized),
        403 => Permanent(PermanentKind::Forbidden),
        404 => Permanent(PermanentKind::NotFound),
        413 => Permanent(PermanentKind::PayloadTooLarge),
        402..=499 => Permanent(PermanentKind::ClientError(status)),
        501 => Permanent(PermanentKind::NotImplemented),
        // 505 says the server will never speak our HTTP version.
        505 => Permanent(PermanentKind::UnexpectedStatus(status)),
        // Proxies and CDNs in front of Clever use other 5xx (e.g. 520-524) for upstream trouble.
        500..=599 => Transient(TransientKind::ServerError(status)),
        _ => Permanent(PermanentKind::UnexpectedStatus(status)),
    }
}

pub fn classify_transport(failure: TransportFailure) -> Outcome {
    match failure {
        TransportFailure::Timeout => Outcome::Transient(TransientKind::Timeout),
        TransportFailure::Connection => Outcome::Transient(TransientKind::Connection),
        TransportFailure::Denied => Outcome::Permanent(PermanentKind::OutboundDenied),
    }
}

impl Outcome {
    pub fn from_status(status: u16) -> Self {
        classify_status(status)
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Transient(_))
    }

    pub fn is_bad_credentials(&self) -> bool {
        matches!(self, Outcome::Permanent(PermanentKind::Unauthorized))
    }

    /// A failure that only a change of configuration can fix: retrying the same request is
    /// pointless, so the refresher pauses as after rejected credentials instead of cycling.
    pub fn is_configuration_error(&self) -> bool {
        matches!(self, Outcome::Permanent(PermanentKind::OutboundDenied))
    }

    /// Whether the refresher should stop acquiring until the inputs change (or a long pause
    /// passes), rather than follow the retry schedule or the cooldown.
    pub fn pauses_acquisition(&self) -> bool {
        self.is_bad_credentials() || self.is_configuration_error()
    }

    /// A stable machine-readable code for logs and the health report.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Success => "ok",
            Outcome::Transient(TransientKind::Timeout) => "timeout",
            Outcome::Transient(TransientKind::Connection) => "connection_error",
            Outcome::Transient(TransientKind::RateLimited) => "rate_limited",
            Outcome::Transient(TransientKind::ServerError(_)) => "server_error",
            Outcome::Permanent(PermanentKind::Unauthorized) => "bad_credentials",
            Outcome::Permanent(PermanentKind::BadRequest) => "bad_request",
            Outcome::Permanent(PermanentKind::Forbidden) => "forbidden",
            Outcome::Permanent(PermanentKind::NotFound) => "not_found",
            Outcome::Permanent(PermanentKind::PayloadTooLarge) => "payload_too_large",
            Outcome::Permanent(PermanentKind::NotImplemented) => "not_implemented",
            Outcome::Permanent(PermanentKind::ClientError(_)) => "client_error",
            Outcome::Permanent(PermanentKind::UnexpectedStatus(_)) => "unexpected_status",
            Outcome::Permanent(PermanentKind::OutboundDenied) => OUTBOUND_DENIED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        use Outcome::*;
        let table: &[(u16, Outcome)] = &[
            (200, Success),
            (201, Success),
            (204, Success),
            (408, Transient(TransientKind::Timeout)),
            (429, Transient(TransientKind::RateLimited)),
            (500, Transient(TransientKind::ServerError(500))),
            (502, Transient(TransientKind::ServerError(502))),
            (503, Transient(TransientKind::ServerError(503))),
            (504, Transient(TransientKind::ServerError(504))),
            (522, Transient(TransientKind::ServerError(522))),
            (400, Permanent(PermanentKind::BadRequest)),
            (401, Permanent(PermanentKind::Unauthorized)),
            (403, Permanent(PermanentKind::Forbidden)),
            (404, Permanent(PermanentKind::NotFound)),
            (413, Permanent(PermanentKind::PayloadTooLarge)),
            (501, Permanent(PermanentKind::NotImplemented)),
            (405, Permanent(PermanentKind::ClientError(405))),
            (409, Permanent(PermanentKind::ClientError(409))),
            (422, Permanent(PermanentKind::ClientError(422))),
            (499, Permanent(PermanentKind::ClientError(499))),
            (505, Permanent(PermanentKind::UnexpectedStatus(505))),
            (100, Permanent(PermanentKind::UnexpectedStatus(100))),
            (302, Permanent(PermanentKind::UnexpectedStatus(302))),
            (0, Permanent(PermanentKind::UnexpectedStatus(0))),
            (600, Permanent(PermanentKind::UnexpectedStatus(600))),
            (
                u16::MAX,
                Permanent(PermanentKind::UnexpectedStatus(u16::MAX)),
            ),
        ];
        for &(status, expected) in table {
            assert_eq!(classify_status(status), expected, "status {status}");
            assert_eq!(Outcome::from_status(status), expected);
        }
        assert_eq!(
            classify_transport(TransportFailure::Timeout),
            Transient(TransientKind::Timeout)
        );
        assert_eq!(
            classify_transport(TransportFailure::Connection),
            Transient(TransientKind::Connection)
        );
    }

    #[test]
    fn outcome_helpers() {
        assert!(classify_status(401).is_bad_credentials());
        assert!(!classify_status(403).is_bad_credentials());
        assert!(classify_status(503).is_retryable());
        assert!(!classify_status(404).is_retryable());
        assert!(classify_status(200).is_success());
        assert_eq!(classify_status(401).code(), "bad_credentials");
        assert_eq!(classify_status(429).code(), "rate_limited");
        assert_eq!(
            classify_transport(TransportFailure::Connection).code(),
            "connection_error"
        );
    }

    #[test]
    fn an_outbound_denial_is_a_configuration_error_that_pauses() {
        let denied = classify_transport(TransportFailure::Denied);
        assert_eq!(denied, Outcome::Permanent(PermanentKind::OutboundDenied));
        assert_eq!(denied.code(), "outbound_denied");
        assert!(!denied.is_retryable(), "no retry schedule for a denial");
        assert!(denied.is_configuration_error() && denied.pauses_acquisition());
        assert!(!denied.is_bad_credentials());
        assert!(classify_status(401).pauses_acquisition());
        for other in [
            classify_status(403),
            classify_status(503),
            classify_transport(TransportFailure::Connection),
        ] {
            assert!(!other.is_configuration_error() && !other.pauses_acquisition());
        }
    }
}
