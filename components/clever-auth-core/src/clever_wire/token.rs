//! An RFC 6749 token response, and what makes a token usable as a bearer credential.

use serde_json::Value;

use super::body::WireError;
use super::json_object::{parse_object, server_error_or};
use super::redact::sanitize;
use crate::secret::AccessToken;

/// Tokens longer than this are not bearer tokens for an HTTP header.
const MAX_TOKEN_LEN: usize = 4096;

/// An RFC 6749 §5.1 access-token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    /// Checked to be `bearer` (any case) when present.
    pub token_type: Option<String>,
    /// Seconds; `None` when absent or unreadable, in which case the configured lifetime applies.
    pub expires_in: Option<u64>,
    pub scopes: Vec<String>,
}

pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, WireError> {
    let object = parse_object(body)?;
    let access_token = match object.get("access_token").and_then(Value::as_str) {
        None | Some("") => return Err(server_error_or(&object, WireError::MissingToken)),
        Some(token) if !is_valid_token(token) => return Err(WireError::InvalidToken),
        Some(token) => AccessToken::new(token),
    };
    let token_type = object
        .get("token_type")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(kind) = &token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(WireError::UnsupportedTokenType(sanitize(kind, 40)));
        }
    }
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in: object.get("expires_in").and_then(seconds),
        scopes: scopes(object.get("scope")),
    })
}

/// `expires_in` is a number per the RFC, but some servers send `"3600"` or `3600.0`.
fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// Visible ASCII only: anything else would break or inject into the `Authorization` header.
pub(super) fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Scopes as an array of strings (Clever) or a space-separated string (RFC 6749).
pub(super) fn scopes(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clever_wire::body::BodyKind;
    use crate::clever_wire::fixtures::TOKEN_A;

    #[test]
    fn token_response_rfc6749() {
        let body = format!(
            r#"{{"access_token":"{TOKEN_A}","token_type":"Bearer","expires_in":3600,"scope":"read:districts read:students"}}"#
        );
        let response = parse_token_response(body.as_bytes()).unwrap();
        assert_eq!(response.access_token.expose(), TOKEN_A);
        assert_eq!(response.token_type.as_deref(), Some("Bearer"));
        assert_eq!(response.expires_in, Some(3600));
        assert_eq!(response.scopes, ["read:districts", "read:students"]);
    }

    #[test]
    fn token_response_tolerates_variants() {
        let minimal = format!(r#"{{"access_token":"{TOKEN_A}"}}"#);
        let r = parse_token_response(minimal.as_bytes()).unwrap();
        assert_eq!(r.token_type, None);
        assert_eq!(r.expires_in, None);
        assert!(r.scopes.is_empty());

        for (raw, expected) in [
            ("\"7200\"", Some(7200)),
            ("7200.9", Some(7200)),
            ("-5", None),
            ("\"soon\"", None),
            ("null", None),
            ("1e400", None),
            ("0", Some(0)),
        ] {
            let body = format!(
                r#"{{"access_token":"{TOKEN_A}","token_type":"bearer","expires_in":{raw}}}"#
            );
            match parse_token_response(body.as_bytes()) {
                Ok(r) => assert_eq!(r.expires_in, expected, "{raw}"),
                // serde_json refuses out-of-range floats; that is a malformed body, not a panic.
                Err(e) => assert!(matches!(e, WireError::MalformedJson { .. }), "{raw}: {e}"),
            }
        }
    }

    #[test]
    fn token_response_errors() {
        assert_eq!(
            parse_token_response(br#"{"token_type":"bearer"}"#),
            Err(WireError::MissingToken)
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":42}"#),
            Err(WireError::MissingToken)
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"a b"}"#),
            Err(WireError::InvalidToken)
        );
        assert_eq!(
            parse_token_response(
                format!(r#"{{"access_token":"{TOKEN_A}","token_type":"mac"}}"#).as_bytes()
            ),
            Err(WireError::UnsupportedTokenType("mac".into()))
        );
        assert_eq!(
            parse_token_response(br#"{"error":"unauthorized_client"}"#),
            Err(WireError::Server("unauthorized_client".into()))
        );
        assert!(matches!(
            parse_token_response(b"<html>oops</html>"),
            Err(WireError::NotJson {
                kind: BodyKind::Html,
                ..
            })
        ));
        assert_eq!(parse_token_response(b""), Err(WireError::Empty));
    }
}
