//! What a body looks like at a glance, and reading it as JSON: the size and kind checks every
//! Clever body passes before any of its fields is read.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Larger bodies are refused before parsing. A listing of every district Clever serves is far
/// below this; anything bigger is a misrouted download or an attack on our memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What a body looks like at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    Empty,
    /// Starts like a JSON object or array (it may still be malformed).
    Json,
    Html,
    Text,
    Binary,
}

impl fmt::Display for BodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyKind::Empty => "empty",
            BodyKind::Json => "JSON",
            BodyKind::Html => "HTML",
            BodyKind::Text => "text",
            BodyKind::Binary => "binary",
        })
    }
}

pub fn body_kind(body: &[u8]) -> BodyKind {
    let trimmed = trim_body(body);
    match trimmed.first() {
        None => BodyKind::Empty,
        Some(b'{' | b'[') => BodyKind::Json,
        Some(b'<') => BodyKind::Html,
        Some(_) => match std::str::from_utf8(trimmed) {
            Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
                BodyKind::Text
            }
            _ => BodyKind::Binary,
        },
    }
}
pub(super) fn trim_body(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.trim_ascii()
}

/// Why a body could not be used. Display texts are built from fixed words plus sanitised
/// server text, never from token values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("empty body")]
    Empty,
    #[error("body too large ({len} bytes)")]
    TooLarge { len: usize },
    #[error("non-JSON body ({kind}, {len} bytes)")]
    NotJson { kind: BodyKind, len: usize },
    #[error("malformed JSON at line {line}, column {column}")]
    MalformedJson { line: usize, column: usize },
    #[error("unexpected JSON shape: {0}")]
    Shape(&'static str),
    /// The body was an error document (`{"error": …}` / `{"message": …}`), sanitised.
    #[error("server error: {0}")]
    Server(String),
    #[error("missing or empty `access_token`")]
    MissingToken,
    #[error("`access_token` is not usable in an HTTP header")]
    InvalidToken,
    #[error("unsupported token_type {0:?} (only bearer tokens are supported)")]
    UnsupportedTokenType(String),
}

pub(super) fn parse_json(body: &[u8]) -> Result<Value, WireError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WireError::TooLarge { len: body.len() });
    }
    match body_kind(body) {
        BodyKind::Empty => return Err(WireError::Empty),
        BodyKind::Json => {}
        kind => {
            return Err(WireError::NotJson {
                kind,
                len: body.len(),
            })
        }
    }
    serde_json::from_slice(trim_body(body)).map_err(|e| WireError::MalformedJson {
        line: e.line(),
        column: e.column(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_kinds() {
        assert_eq!(body_kind(b""), BodyKind::Empty);
        assert_eq!(body_kind(b" {"), BodyKind::Json);
        assert_eq!(body_kind(b"\n<!doctype html>"), BodyKind::Html);
        assert_eq!(body_kind(b"plain"), BodyKind::Text);
        assert_eq!(body_kind(b"\xff\xfe"), BodyKind::Binary);
        assert_eq!(body_kind(b"a\x00b"), BodyKind::Binary);
    }
}
