//! A body that must be one JSON object, and what it says when the field we came for is missing:
//! the first and the last word of both the token response and the token listing.

use serde_json::{Map, Value};

use super::body::{parse_json, WireError};
use super::error_summary::{error_text, MAX_SUMMARY_CHARS};
use super::redact::sanitize;

/// [`parse_json`], refusing anything but an object.
pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    match parse_json(body)? {
        Value::Object(object) => Ok(object),
        _ => Err(WireError::Shape("expected a JSON object")),
    }
}

/// The error for an object that lacks what we came for: the server's own words when it is an
/// error document, else `otherwise`.
pub(super) fn server_error_or(object: &Map<String, Value>, otherwise: WireError) -> WireError {
    match error_text(object) {
        Some(text) => WireError::Server(sanitize(&text, MAX_SUMMARY_CHARS)),
        None => otherwise,
    }
}
