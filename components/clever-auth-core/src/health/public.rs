//! What the public answer may say about an error: a stable code and a fixed line for it.

use crate::secrets_error;
use crate::status::ErrorRecord;
use crate::time_fmt::rfc3339;
use serde_json::{json, Value};

/// What the public answer says about an error: its stable code and a fixed description of
/// that code. The recorded message may name hosts, districts or Clever's own words; those stay
/// in the detail view.
pub fn public_message(code: &str) -> &'static str {
    match code {
        "credentials_missing" => "the Clever client credentials are not available yet",
        "settings_invalid" => "a setting has an unusable value",
        "no_valid_token" => "no valid Clever token is available",
        "version_unsupported" => "Clever does not support the configured API version",
        "bad_credentials" => "Clever rejected the client credentials",
        "timeout" => "a call to Clever timed out",
        "connection_error" => "Clever could not be reached",
        "rate_limited" => "Clever is rate limiting this application",
        "server_error" => "Clever answered with a server error",
        "malformed_response" => "Clever's response could not be used",
        "token_revoked" => "Clever refused a district token",
        "outbound_denied" => "the outbound policy refused a call",
        "component_deadline" => "a component call overran its deadline",
        "store_unreachable" => {
            "the shared store does not answer; unexpired tokens are still served"
        }
        "bad_request" | "forbidden" | "not_found" | "payload_too_large" | "not_implemented"
        | "client_error" | "unexpected_status" | "request_invalid" => {
            "Clever refused a request; it is not retried"
        }
        other => secrets_error::public_message(other)
            .unwrap_or("see the detail view of the health answer"),
    }
}

pub(super) fn public_error_json(e: &ErrorRecord) -> Value {
    json!({ "code": e.code, "message": public_message(&e.code), "at": rfc3339(e.at) })
}
