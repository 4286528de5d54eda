//! Clever's response bodies: token listings, RFC 6749 token responses, error bodies and the
//! API-version signals in data responses.
//!
//! Bodies are read as untyped JSON and walked by hand. serde's typed errors quote the offending
//! value ("invalid type: string \"…\""), and the offending value here may be a token; walking
//! by hand keeps every error message made of our own words. Nothing in this module panics on
//! any input, and nothing it returns formats a token (see [`crate::secret`]).
//!
//! One file per decision: `body` (what a body is, and reading it as JSON), `json_object` (a
//! body that must be an object, and the server's error when it lacks the expected field),
//! `token` (an RFC 6749 token response), `district` (one entry of the token listing), `listing`
//! (the listing page), `error_summary` (the log line for an error response), `redact` (what
//! counts as a credential in server text) and `version` (which API version the server speaks).
//! Callers use the re-exports below; the files are private.

mod body;
mod district;
mod error_summary;
mod json_object;
mod listing;
mod redact;
mod token;
mod version;

#[cfg(test)]
mod fixtures;

pub use body::{body_kind, BodyKind, WireError, MAX_BODY_BYTES};
pub use district::{is_valid_district_id, DistrictToken, SkipReason};
pub use error_summary::{error_summary, MAX_SUMMARY_CHARS};
pub use listing::{parse_district_tokens, DistrictTokenListing, SkippedEntry};
pub use redact::sanitize;
pub use token::{parse_token_response, TokenResponse};
pub(crate) use version::version_of_uri;
pub use version::{
    check_version, detect_versions, is_version_not_supported, normalize_version,
    version_from_header, VersionCheck,
};
