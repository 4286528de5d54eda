//! Which API version the server speaks: the versions a response points at, the refusal of a
//! retired one, and how they compare with the configured version.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::parse_json;

/// Normalises `v3.0`, `V3.0`, `3.0` to `v3.0`; a bare major (`3`) means its `.0` release.
pub fn normalize_version(text: &str) -> Option<String> {
    let text = text.trim();
    let digits = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    version_digits(digits)
}

fn version_digits(digits: &str) -> Option<String> {
    let (major, minor) = digits.split_once('.').unwrap_or((digits, "0"));
    let number = |s: &str| {
        if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    Some(format!("v{}.{}", number(major)?, number(minor)?))
}

/// The version a response header names, normalised; the first item that reads as a version
/// wins (`3.0`, `v3.0; deprecated`, `v3.1, v3.0`).
pub fn version_from_header(value: &str) -> Option<String> {
    value
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .find_map(normalize_version)
}

/// The version prefix of a URI's path (`/v3.0/districts/…` or
/// `https://api.clever.com/v3.1/…`). In paths the `v` is required, so `/oauth/tokens` or an
/// id segment never reads as a version.
pub(crate) fn version_of_uri(uri: &str) -> Option<String> {
    let path = match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => uri,
    };
    let first = path.trim_start_matches('/').split(['/', '?', '#']).next()?;
    version_digits(first.strip_prefix('v')?)
}

/// The API versions a data-API response points at, from `links[].uri`, `uri`, `data.uri`,
/// `data.links[].uri` and each `data[].uri` / `data[].links[].uri`. Empty when the body is not
/// JSON or carries no versioned URI.
pub fn detect_versions(body: &[u8]) -> BTreeSet<String> {
    let mut versions = BTreeSet::new();
    let Ok(root) = parse_json(body) else {
        return versions;
    };
    let mut uris: Vec<&str> = Vec::new();
    collect_uris(&root, &mut uris);
    match root.get("data") {
        Some(data @ Value::Object(_)) => collect_uris(data, &mut uris),
        Some(Value::Array(items)) => items.iter().for_each(|item| collect_uris(item, &mut uris)),
        _ => {}
    }
    versions.extend(uris.into_iter().filter_map(version_of_uri));
    versions
}

fn collect_uris<'a>(node: &'a Value, uris: &mut Vec<&'a str>) {
    if let Some(uri) = node.get("uri").and_then(Value::as_str) {
        uris.push(uri);
    }
    if let Some(links) = node.get("links").and_then(Value::as_array) {
        uris.extend(
            links
                .iter()
                .filter_map(|l| l.get("uri").and_then(Value::as_str)),
        );
    }
}

const UNSUPPORTED_PHRASES: [&[u8]; 4] = [
    b"version not supported",
    b"version is not supported",
    b"unsupported version",
    b"unsupported api version",
];

/// Clever's answer to a retired API version. A successful response never counts, whatever
/// its data says.
pub fn is_version_not_supported(status: u16, body: &[u8]) -> bool {
    if (200..300).contains(&status) {
        return false;
    }
    UNSUPPORTED_PHRASES.iter().any(|phrase| {
        body.windows(phrase.len())
            .any(|window| window.eq_ignore_ascii_case(phrase))
    })
}

/// The configured API version against what the server showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum VersionCheck {
    Match,
    /// The server pointed at other versions too (or only at others): worth an alert, not a
    /// failure, since the configured version still answered.
    Mismatch {
        configured: String,
        seen: BTreeSet<String>,
    },
    /// The server refused the configured version.
    Unsupported {
        configured: String,
    },
    /// Nothing in the response named a version.
    Unknown,
}

impl VersionCheck {
    /// The state health and alerts record for this check.
    pub fn state(&self) -> crate::status::VersionState {
        use crate::status::VersionState;
        match self {
            VersionCheck::Match => VersionState::Match,
            VersionCheck::Mismatch { .. } => VersionState::Mismatch,
            VersionCheck::Unsupported { .. } => VersionState::Unsupported,
            VersionCheck::Unknown => VersionState::Unknown,
        }
    }
}

impl VersionCheck {
    pub fn is_failure(&self) -> bool {
        matches!(self, VersionCheck::Unsupported { .. })
    }

    pub fn is_alert(&self) -> bool {
        matches!(self, VersionCheck::Mismatch { .. })
    }
}

/// `seen` is typically [`detect_versions`] of the probe's body, `header` the raw value of the
/// configured version header, `unsupported` [`is_version_not_supported`] of the probe.
pub fn check_version(
    configured: &str,
    seen: &BTreeSet<String>,
    header: Option<String>,
    unsupported: bool,
) -> VersionCheck {
    let configured = normalize_version(configured).unwrap_or_else(|| configured.trim().to_owned());
    if unsupported {
        return VersionCheck::Unsupported { configured };
    }
    let mut all: BTreeSet<String> = seen.iter().filter_map(|v| normalize_version(v)).collect();
    // An unreadable header value says nothing; it must not read as a mismatch.
    all.extend(header.as_deref().and_then(version_from_header));
    if all.is_empty() {
        VersionCheck::Unknown
    } else if all.iter().all(|v| *v == configured) {
        VersionCheck::Match
    } else {
        VersionCheck::Mismatch {
            configured,
            seen: all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_versions_in_single_resource_and_paging_envelopes() {
        let district = br#"{"data":{"id":"5d8a2e6f1c9d440000a1b2c3","name":"Demo District"},"links":[{"rel":"self","uri":"/v3.0/districts/5d8a2e6f1c9d440000a1b2c3"}]}"#;
        assert_eq!(
            detect_versions(district),
            BTreeSet::from(["v3.0".to_owned()])
        );

        let page = br#"{"data":[{"data":{"id":"s1"},"uri":"/v3.1/students/s1"},{"data":{"id":"s2"},"uri":"/v3.1/students/s2"}],"links":[{"rel":"self","uri":"/v3.1/students?limit=2"},{"rel":"next","uri":"/v3.1/students?limit=2&starting_after=s2"}]}"#;
        assert_eq!(detect_versions(page), BTreeSet::from(["v3.1".to_owned()]));

        let me = br#"{"data":{"id":"abc","district":"d1","type":"district"},"links":[{"rel":"self","uri":"/v3.0/me"},{"rel":"canonical","uri":"/v3.0/districts/d1"}]}"#;
        assert_eq!(detect_versions(me), BTreeSet::from(["v3.0".to_owned()]));

        let mixed = br#"{"data":{"uri":"https://api.clever.com/v2.1/districts/d1"},"links":[{"rel":"self","uri":"/v3.0/districts/d1"}]}"#;
        assert_eq!(
            detect_versions(mixed),
            BTreeSet::from(["v2.1".to_owned(), "v3.0".to_owned()])
        );
    }

    #[test]
    fn detect_versions_ignores_non_versions_and_garbage() {
        let unversioned = br#"{"data":[],"links":[{"rel":"self","uri":"/oauth/tokens?owner_type=district"},{"uri":42},{"rel":"x"},"str"]}"#;
        assert!(detect_versions(unversioned).is_empty());
        for body in [
            &b""[..],
            b"<html></html>",
            b"not json",
            b"{\"links\":",
            b"[]",
            b"{\"links\":{\"uri\":\"/v3.0/x\"}}",
            b"{\"links\":[{\"uri\":\"/version/x\"},{\"uri\":\"/v/x\"},{\"uri\":\"/v3.x/x\"},{\"uri\":\"https://host\"}]}",
        ] {
            assert!(detect_versions(body).is_empty(), "{body:?}");
        }
    }

    #[test]
    fn version_normalisation() {
        for (input, expected) in [
            ("v3.0", Some("v3.0")),
            ("V3.1", Some("v3.1")),
            ("3.0", Some("v3.0")),
            (" 3 ", Some("v3.0")),
            ("v03.0", Some("v3.0")),
            ("", None),
            ("v", None),
            ("3.", None),
            ("three", None),
            ("v3.0.1", None),
            ("v99999.0", None),
        ] {
            assert_eq!(normalize_version(input).as_deref(), expected, "{input:?}");
        }
        assert_eq!(version_from_header("3.0").as_deref(), Some("v3.0"));
        assert_eq!(
            version_from_header("v3.1; deprecated").as_deref(),
            Some("v3.1")
        );
        assert_eq!(version_from_header("api v3.0").as_deref(), Some("v3.0"));
        assert_eq!(version_from_header("none"), None);
        assert_eq!(version_from_header(""), None);
    }

    #[test]
    fn version_not_supported_detection() {
        assert!(is_version_not_supported(
            400,
            br#"{"message":"Version not supported"}"#
        ));
        assert!(is_version_not_supported(404, b"API VERSION NOT SUPPORTED"));
        assert!(is_version_not_supported(
            410,
            br#"{"error":"This version is not supported"}"#
        ));
        assert!(!is_version_not_supported(
            200,
            br#"{"data":{"name":"version not supported"}}"#
        ));
        assert!(!is_version_not_supported(
            404,
            br#"{"message":"Resource not found"}"#
        ));
        assert!(!is_version_not_supported(500, b""));
    }

    #[test]
    fn version_check_outcomes() {
        let v30 = BTreeSet::from(["v3.0".to_owned()]);
        let v31 = BTreeSet::from(["v3.1".to_owned()]);
        let none = BTreeSet::new();
        assert_eq!(
            check_version("v3.0", &v30, None, false),
            VersionCheck::Match
        );
        assert_eq!(check_version("3.0", &v30, None, false), VersionCheck::Match);
        assert_eq!(
            check_version("v3.0", &none, Some("3.0".into()), false),
            VersionCheck::Match
        );
        assert_eq!(
            check_version("v3.0", &none, None, false),
            VersionCheck::Unknown
        );
        assert_eq!(
            check_version("v3.0", &none, Some("garbage".into()), false),
            VersionCheck::Unknown
        );
        let mismatch = check_version("v3.0", &v31, None, false);
        assert_eq!(
            mismatch,
            VersionCheck::Mismatch {
                configured: "v3.0".into(),
                seen: v31.clone()
            }
        );
        assert!(mismatch.is_alert() && !mismatch.is_failure());
        assert_eq!(
            check_version("v3.0", &v30, Some("v3.1".into()), false),
            VersionCheck::Mismatch {
                configured: "v3.0".into(),
                seen: BTreeSet::from(["v3.0".to_owned(), "v3.1".to_owned()])
            }
        );
        let unsupported = check_version("v1.2", &none, None, true);
        assert_eq!(
            unsupported,
            VersionCheck::Unsupported {
                configured: "v1.2".into()
            }
        );
        assert!(unsupported.is_failure());
        let json = serde_json::to_string(&mismatch).unwrap();
        assert_eq!(
            serde_json::from_str::<VersionCheck>(&json).unwrap(),
            mismatch
        );
    }

    #[test]
    fn probe_flow_end_to_end() {
        let body = br#"{"message":"version not supported"}"#;
        let check = check_version(
            "v1.2",
            &detect_versions(body),
            None,
            is_version_not_supported(404, body),
        );
        assert!(check.is_failure());
    }
}
