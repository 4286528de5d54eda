//! What an error response says, in a short credential-free line for logs and the health report.

use serde_json::{Map, Value};

use super::body::{body_kind, parse_json, BodyKind, MAX_BODY_BYTES};
use super::redact::{sanitize, truncate_chars};

/// Upper bound of [`error_summary`]'s result, in characters: it goes into log lines and the
/// health report.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// The human-readable error text of an error document, from the fields Clever and RFC 6749
/// use: `error` (string, or object with `message`), `error_description`, `message`,
/// `errors[0].message`.
pub(super) fn error_text(object: &Map<String, Value>) -> Option<String> {
    fn text(value: Option<&Value>) -> Option<&str> {
        value.and_then(Value::as_str)
    }
    let (error_code, error_message) = match object.get("error") {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Object(inner)) => (text(inner.get("code")), text(inner.get("message"))),
        _ => (None, None),
    };
    let first_error = object
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first());
    let candidates = [
        error_code,
        error_message,
        text(object.get("error_description")),
        text(object.get("message")),
        text(first_error.and_then(|e| e.get("message"))),
    ];
    let mut parts: Vec<&str> = Vec::new();
    for part in candidates.into_iter().flatten().map(str::trim) {
        if !part.is_empty() && !parts.contains(&part) {
            parts.push(part);
        }
    }
    (!parts.is_empty()).then(|| parts.join(": "))
}

/// A short, credential-free description of an error response, for logs and the health
/// report: `HTTP 401: invalid_client: bad credentials`, `HTTP 502: non-JSON body (HTML, 1234
/// bytes)`, `HTTP 429: empty body`. At most [`MAX_SUMMARY_CHARS`] characters.
pub fn error_summary(status: u16, body: &[u8]) -> String {
    let len = body.len();
    let detail = match body_kind(body) {
        BodyKind::Empty => "empty body".to_owned(),
        BodyKind::Html => format!("non-JSON body (HTML, {len} bytes)"),
        BodyKind::Binary => format!("non-text body ({len} bytes)"),
        BodyKind::Json if len > MAX_BODY_BYTES => format!("JSON body too large ({len} bytes)"),
        BodyKind::Json => match parse_json(body) {
            Ok(root) => match root.as_object().and_then(error_text) {
                Some(text) => sanitize(&text, MAX_SUMMARY_CHARS),
                None => format!("JSON body without an error message ({len} bytes)"),
            },
            Err(_) => format!("malformed JSON body ({len} bytes)"),
        },
        BodyKind::Text => sanitize(&String::from_utf8_lossy(body), MAX_SUMMARY_CHARS),
    };
    truncate_chars(&format!("HTTP {status}: {detail}"), MAX_SUMMARY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clever_wire::fixtures::{DISTRICT_A, TOKEN_A};

    #[test]
    fn error_summary_of_typical_bodies() {
        let cases: &[(u16, &[u8], &str)] = &[
            (429, b"", "HTTP 429: empty body"),
            (
                401,
                br#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#,
                "HTTP 401: invalid_client: Invalid client credentials",
            ),
            (
                404,
                br#"{"message":"Resource not found"}"#,
                "HTTP 404: Resource not found",
            ),
            (
                400,
                br#"{"error":{"code":"bad_limit","message":"limit too large"}}"#,
                "HTTP 400: bad_limit: limit too large",
            ),
            (500, br#"{"errors":[{"message":"boom"}]}"#, "HTTP 500: boom"),
            (
                500,
                br#"{"status":"down"}"#,
                "HTTP 500: JSON body without an error message (17 bytes)",
            ),
            (
                500,
                b"{\"message\":",
                "HTTP 500: malformed JSON body (11 bytes)",
            ),
            (404, b"Not Found\n", "HTTP 404: Not Found"),
            (
                502,
                b"<html><head><title>502</title></head></html>",
                "HTTP 502: non-JSON body (HTML, 44 bytes)",
            ),
            (500, b"\x00\xff\x10", "HTTP 500: non-text body (3 bytes)"),
            (
                503,
                b"  Service\r\n\tUnavailable  \n",
                "HTTP 503: Service Unavailable",
            ),
        ];
        for (status, body, expected) in cases {
            assert_eq!(error_summary(*status, body), *expected);
        }
    }

    #[test]
    fn error_summary_redacts_credentials() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!(r#"{{"message":"token {TOKEN_A} was revoked"}}"#),
                "HTTP 401: token [redacted] was revoked",
            ),
            (
                r#"{"message":"Authorization: Bearer abc123 rejected"}"#.into(),
                "HTTP 401: Authorization: Bearer [redacted] rejected",
            ),
            (
                "bad header: Basic dXNlcjpwYXNz== (user)".into(),
                "HTTP 401: bad header: Basic [redacted] (user)",
            ),
            (
                "access_token=shorty&client_secret=s3cr3t&ok=1".into(),
                "HTTP 401: access_token=[redacted]&client_secret=[redacted]&ok=1",
            ),
            (
                r#"{"error":"invalid_grant","error_description":"client_secret: \"hunter2\" wrong"}"#
                    .into(),
                "HTTP 401: invalid_grant: client_secret: \"[redacted]\" wrong",
            ),
            (
                "bad client_secret CANARY-1-5f1e0c9a7b3d given; token expired".into(),
                "HTTP 401: bad client_secret [redacted] given; token expired",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc".into(),
                "HTTP 401: jwt [redacted]",
            ),
            (
                format!("district {DISTRICT_A} is not shared"),
                "HTTP 401: district 5d8a2e6f1c9d440000a1b2c3 is not shared",
            ),
            (
                "The token is expired".into(),
                "HTTP 401: The token is expired",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(error_summary(401, body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn error_summary_is_short_and_never_cuts_a_token_in_half() {
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5_000));
        let summary = error_summary(500, long.as_bytes());
        assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);

        for pad in 150..220 {
            let body = format!("{}{TOKEN_A} tail", "a ".repeat(pad / 2));
            let summary = error_summary(500, body.as_bytes());
            assert!(summary.chars().count() <= MAX_SUMMARY_CHARS, "{pad}");
            // No run of 8+ characters of the token survives.
            for start in 0..TOKEN_A.len() - 8 {
                assert!(
                    !summary.contains(&TOKEN_A[start..start + 8]),
                    "{pad}: {summary}"
                );
            }
        }
        let spaces = format!("{}{TOKEN_A}", " ".repeat(10_000));
        assert_eq!(
            error_summary(500, spaces.as_bytes()),
            "HTTP 500: [redacted]"
        );
        let multibyte = "é".repeat(1_000);
        let summary = error_summary(500, multibyte.as_bytes());
        assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
    }
}
