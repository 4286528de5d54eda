//! One entry of the district token listing: whether it names a district and a usable token.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::redact::sanitize;
use super::token::{is_valid_token, scopes};
use crate::secret::AccessToken;

/// A district id becomes part of a URL path and of cache keys, so it is held to Clever's id
/// alphabet; anything else (`../`, spaces, very long strings) is refused.
const MAX_DISTRICT_ID_LEN: usize = 64;

/// One district's token from the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistrictToken {
    pub district_id: String,
    pub token: AccessToken,
    pub scopes: Vec<String>,
    /// As Clever sent it (RFC 3339), for diagnostics.
    pub created: Option<String>,
}

/// Why a listing entry was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum SkipReason {
    NotAnObject,
    MissingOwner,
    NotDistrictOwner {
        owner_type: String,
    },
    MissingDistrictId,
    InvalidDistrictId,
    MissingToken,
    InvalidToken,
    /// Another entry for the same district was kept (the more recently created one).
    DuplicateDistrict,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotAnObject => f.write_str("entry is not a JSON object"),
            SkipReason::MissingOwner => f.write_str("entry has no owner"),
            SkipReason::NotDistrictOwner { owner_type } => {
                write!(f, "owner type is {owner_type:?}, not \"district\"")
            }
            SkipReason::MissingDistrictId => f.write_str("owner has no district id"),
            SkipReason::InvalidDistrictId => f.write_str("district id has unexpected characters"),
            SkipReason::MissingToken => f.write_str("entry has no access token"),
            SkipReason::InvalidToken => f.write_str("access token is not usable in an HTTP header"),
            SkipReason::DuplicateDistrict => {
                f.write_str("another token for this district was kept")
            }
        }
    }
}

type EntryError = (Option<String>, SkipReason);

pub(super) fn listing_entry(entry: &Value) -> Result<DistrictToken, EntryError> {
    let Some(mut object) = entry.as_object() else {
        return Err((None, SkipReason::NotAnObject));
    };
    // Tolerate the data API's `{"data": {…}}` wrapping should the listing ever adopt it.
    if !object.contains_key("owner") {
        if let Some(inner) = object.get("data").and_then(Value::as_object) {
            object = inner;
        }
    }
    let Some(owner) = object.get("owner").and_then(Value::as_object) else {
        return Err((None, SkipReason::MissingOwner));
    };
    let owner_type = owner.get("type").and_then(Value::as_str).unwrap_or("");
    if !owner_type.eq_ignore_ascii_case("district") {
        return Err((
            None,
            SkipReason::NotDistrictOwner {
                owner_type: sanitize(owner_type, 40),
            },
        ));
    }
    let district_id = match owner.get("id").and_then(Value::as_str) {
        None | Some("") => return Err((None, SkipReason::MissingDistrictId)),
        Some(id) if !is_valid_district_id(id) => return Err((None, SkipReason::InvalidDistrictId)),
        Some(id) => id.to_owned(),
    };
    let token = match object.get("access_token").and_then(Value::as_str) {
        None | Some("") => return Err((Some(district_id), SkipReason::MissingToken)),
        Some(token) if !is_valid_token(token) => {
            return Err((Some(district_id), SkipReason::InvalidToken))
        }
        Some(token) => AccessToken::new(token),
    };
    Ok(DistrictToken {
        district_id,
        token,
        scopes: scopes(object.get("scopes")),
        created: object
            .get("created")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

pub fn is_valid_district_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DISTRICT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clever_wire::fixtures::DISTRICT_A;

    #[test]
    fn district_id_validation() {
        assert!(is_valid_district_id(DISTRICT_A));
        assert!(is_valid_district_id("abc-DEF_123"));
        assert!(!is_valid_district_id(""));
        assert!(!is_valid_district_id("a/b"));
        assert!(!is_valid_district_id("a b"));
        assert!(!is_valid_district_id(&"a".repeat(65)));
    }
}
