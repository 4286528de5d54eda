//! The district token listing page: which entries are kept, which are skipped and why, and
//! where the next page is.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::body::WireError;
use super::district::{listing_entry, DistrictToken, SkipReason};
use super::json_object::{parse_object, server_error_or};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEntry {
    /// Position in the listing's `data` array.
    pub index: usize,
    /// Present when the entry named a well-formed district id.
    pub district_id: Option<String>,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DistrictTokenListing {
    pub tokens: Vec<DistrictToken>,
    pub skipped: Vec<SkippedEntry>,
    /// The `links[rel=next].uri`, when the listing is paged.
    pub next: Option<String>,
}

/// Parses `GET /oauth/tokens?owner_type=district`. A well-formed listing with no entries is
/// `Ok` with no tokens (no district has authorised the app); unusable entries are reported in
/// `skipped` rather than failing the whole listing, so one odd entry cannot take every
/// district down.
pub fn parse_district_tokens(body: &[u8]) -> Result<DistrictTokenListing, WireError> {
    let object = parse_object(body)?;
    let Some(data) = object.get("data") else {
        return Err(server_error_or(&object, WireError::Shape("missing `data`")));
    };
    let Some(entries) = data.as_array() else {
        return Err(WireError::Shape("`data` is not an array"));
    };

    let mut listing = DistrictTokenListing {
        next: link(&object, "next"),
        ..DistrictTokenListing::default()
    };
    // District id -> position in `tokens`; `source` holds each kept token's listing index.
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut source: Vec<usize> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let token = match listing_entry(entry) {
            Ok(token) => token,
            Err((district_id, reason)) => {
                listing.skipped.push(SkippedEntry {
                    index,
                    district_id,
                    reason,
                });
                continue;
            }
        };
        match position.get(&token.district_id) {
            None => {
                position.insert(token.district_id.clone(), listing.tokens.len());
                listing.tokens.push(token);
                source.push(index);
            }
            Some(&kept) => {
                // RFC 3339 timestamps in the same format order lexicographically; without both
                // timestamps the first entry stays, which keeps the choice stable across calls.
                let newer = matches!(
                    (&token.created, &listing.tokens[kept].created),
                    (Some(new), Some(old)) if new > old
                );
                let district_id = Some(token.district_id.clone());
                let dropped = if newer {
                    listing.tokens[kept] = token;
                    std::mem::replace(&mut source[kept], index)
                } else {
                    index
                };
                listing.skipped.push(SkippedEntry {
                    index: dropped,
                    district_id,
                    reason: SkipReason::DuplicateDistrict,
                });
            }
        }
    }
    Ok(listing)
}

fn link(object: &Map<String, Value>, rel: &str) -> Option<String> {
    object
        .get("links")?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|l| l.get("rel").and_then(Value::as_str) == Some(rel))
        .and_then(|l| l.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clever_wire::body::{BodyKind, MAX_BODY_BYTES};
    use crate::clever_wire::error_summary::{error_summary, MAX_SUMMARY_CHARS};
    use crate::clever_wire::fixtures::{DISTRICT_A, DISTRICT_B, TOKEN_A, TOKEN_B};
    use crate::clever_wire::token::parse_token_response;

    fn listing_body() -> String {
        format!(
            r#"{{
  "data": [
    {{"id": "603698a7c1e1b4000185e1a1", "created": "2021-02-24T22:24:55.985Z",
      "owner": {{"type": "district", "id": "{DISTRICT_A}"}},
      "access_token": "{TOKEN_A}", "scopes": ["read:districts", "read:students"]}},
    {{"id": "603698a7c1e1b4000185e1a2", "created": "2022-08-01T10:00:00.000Z",
      "owner": {{"type": "district", "id": "{DISTRICT_B}"}},
      "access_token": "{TOKEN_B}", "scopes": ["read:districts"]}}
  ],
  "links": [{{"rel": "self", "uri": "/oauth/tokens?owner_type=district"}}]
}}"#
        )
    }

    #[test]
    fn parses_a_realistic_listing() {
        let listing = parse_district_tokens(listing_body().as_bytes()).unwrap();
        assert_eq!(listing.tokens.len(), 2);
        assert!(listing.skipped.is_empty());
        assert_eq!(listing.next, None);
        let a = &listing.tokens[0];
        assert_eq!(a.district_id, DISTRICT_A);
        assert_eq!(a.token.expose(), TOKEN_A);
        assert_eq!(a.scopes, ["read:districts", "read:students"]);
        assert_eq!(a.created.as_deref(), Some("2021-02-24T22:24:55.985Z"));
        assert_eq!(listing.tokens[1].district_id, DISTRICT_B);
        assert_eq!(listing.tokens[1].token.expose(), TOKEN_B);
    }

    #[test]
    fn empty_listing_is_ok() {
        let body =
            br#"{"data":[],"links":[{"rel":"self","uri":"/oauth/tokens?owner_type=district"}]}"#;
        let listing = parse_district_tokens(body).unwrap();
        assert!(listing.tokens.is_empty());
        assert!(listing.skipped.is_empty());
    }

    #[test]
    fn listing_next_link_is_kept() {
        let body = br#"{"data":[],"links":[{"rel":"self","uri":"/oauth/tokens"},{"rel":"next","uri":"/oauth/tokens?owner_type=district&starting_after=abc"}]}"#;
        let listing = parse_district_tokens(body).unwrap();
        assert_eq!(
            listing.next.as_deref(),
            Some("/oauth/tokens?owner_type=district&starting_after=abc")
        );
    }

    #[test]
    fn unusable_entries_are_skipped_with_reasons() {
        let body = format!(
            r#"{{"data":[
              42,
              {{"access_token":"{TOKEN_A}"}},
              {{"owner":{{"type":"user","id":"{DISTRICT_A}"}},"access_token":"{TOKEN_A}"}},
              {{"owner":{{"type":"district"}},"access_token":"{TOKEN_A}"}},
              {{"owner":{{"type":"district","id":"../../etc"}},"access_token":"{TOKEN_A}"}},
              {{"owner":{{"type":"district","id":"{DISTRICT_A}"}}}},
              {{"owner":{{"type":"district","id":"{DISTRICT_A}"}},"access_token":""}},
              {{"owner":{{"type":"district","id":"{DISTRICT_A}"}},"access_token":"abc\r\nX-Evil: 1"}},
              {{"owner":{{"type":"district","id":"{DISTRICT_B}"}},"access_token":"{TOKEN_B}"}},
              {{"owner":{{"type":"District","id":123}},"access_token":"{TOKEN_B}"}}
            ]}}"#
        );
        let listing = parse_district_tokens(body.as_bytes()).unwrap();
        assert_eq!(listing.tokens.len(), 1);
        assert_eq!(listing.tokens[0].district_id, DISTRICT_B);
        assert_eq!(listing.tokens[0].scopes, Vec::<String>::new());
        assert_eq!(listing.tokens[0].created, None);
        let reasons: Vec<(usize, SkipReason)> = listing
            .skipped
            .iter()
            .map(|s| (s.index, s.reason.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (0, SkipReason::NotAnObject),
                (1, SkipReason::MissingOwner),
                (
                    2,
                    SkipReason::NotDistrictOwner {
                        owner_type: "user".into()
                    }
                ),
                (3, SkipReason::MissingDistrictId),
                (4, SkipReason::InvalidDistrictId),
                (5, SkipReason::MissingToken),
                (6, SkipReason::MissingToken),
                (7, SkipReason::InvalidToken),
                (9, SkipReason::MissingDistrictId),
            ]
        );
        assert_eq!(listing.skipped[5].district_id.as_deref(), Some(DISTRICT_A));
        assert_eq!(listing.skipped[4].district_id, None);
        for skipped in &listing.skipped {
            let text = format!("{} {:?}", skipped.reason, skipped);
            assert!(!text.contains(TOKEN_A) && !text.contains(TOKEN_B), "{text}");
        }
    }

    #[test]
    fn duplicate_districts_keep_the_newest_token() {
        let body = format!(
            r#"{{"data":[
              {{"created":"2021-01-01T00:00:00.000Z","owner":{{"type":"district","id":"{DISTRICT_A}"}},"access_token":"{TOKEN_A}"}},
              {{"created":"2023-01-01T00:00:00.000Z","owner":{{"type":"district","id":"{DISTRICT_A}"}},"access_token":"{TOKEN_B}"}},
              {{"owner":{{"type":"district","id":"{DISTRICT_A}"}},"access_token":"{TOKEN_A}"}}
            ]}}"#
        );
        let listing = parse_district_tokens(body.as_bytes()).unwrap();
        assert_eq!(listing.tokens.len(), 1);
        assert_eq!(listing.tokens[0].token.expose(), TOKEN_B);
        assert_eq!(listing.skipped.len(), 2);
        assert!(listing
            .skipped
            .iter()
            .all(|s| s.reason == SkipReason::DuplicateDistrict));
        // The dropped entries are the older first one and the undated third one.
        let dropped: Vec<usize> = listing.skipped.iter().map(|s| s.index).collect();
        assert_eq!(dropped, [0, 2]);
    }

    #[test]
    fn wrapped_entries_and_string_scopes_are_tolerated() {
        let body = format!(
            r#"{{"data":[{{"data":{{"owner":{{"type":"district","id":"{DISTRICT_A}"}},"access_token":"{TOKEN_A}","scopes":"read:districts read:schools"}}}}]}}"#
        );
        let listing = parse_district_tokens(body.as_bytes()).unwrap();
        assert_eq!(listing.tokens[0].scopes, ["read:districts", "read:schools"]);
    }

    #[test]
    fn malformed_listings_are_errors() {
        let html = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>";
        let cases: Vec<(&[u8], WireError)> = vec![
            (b"", WireError::Empty),
            (b"   \n", WireError::Empty),
            (
                html,
                WireError::NotJson {
                    kind: BodyKind::Html,
                    len: html.len(),
                },
            ),
            (
                b"Not Found",
                WireError::NotJson {
                    kind: BodyKind::Text,
                    len: 9,
                },
            ),
            (
                b"\x00\x01\x02",
                WireError::NotJson {
                    kind: BodyKind::Binary,
                    len: 3,
                },
            ),
            (b"[1,2]", WireError::Shape("expected a JSON object")),
            (b"{}", WireError::Shape("missing `data`")),
            (b"{\"data\":{}}", WireError::Shape("`data` is not an array")),
            (
                b"{\"data\":null}",
                WireError::Shape("`data` is not an array"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_district_tokens(body), Err(expected), "{body:?}");
        }
        assert!(matches!(
            parse_district_tokens(b"{\"data\":[{\"owner\""),
            Err(WireError::MalformedJson { line: 1, .. })
        ));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            parse_district_tokens(deep.as_bytes()),
            Err(WireError::MalformedJson { .. })
        ));
    }

    #[test]
    fn listing_error_document_becomes_server_error() {
        let body =
            br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#;
        assert_eq!(
            parse_district_tokens(body),
            Err(WireError::Server(
                "invalid_client: Client authentication failed".into()
            ))
        );
    }

    #[test]
    fn byte_order_mark_and_whitespace_are_tolerated() {
        let mut body = b"\xEF\xBB\xBF \n".to_vec();
        body.extend_from_slice(listing_body().as_bytes());
        assert_eq!(parse_district_tokens(&body).unwrap().tokens.len(), 2);
    }

    #[test]
    fn very_long_bodies() {
        let mut entries = Vec::new();
        for i in 0..5_000 {
            entries.push(format!(
                r#"{{"owner":{{"type":"district","id":"d{i:023}"}},"access_token":"{TOKEN_A}","scopes":["read:districts"]}}"#
            ));
        }
        let body = format!(r#"{{"data":[{}]}}"#, entries.join(","));
        let listing = parse_district_tokens(body.as_bytes()).unwrap();
        assert_eq!(listing.tokens.len(), 5_000);

        let oversized = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_district_tokens(&oversized),
            Err(WireError::TooLarge {
                len: MAX_BODY_BYTES + 1
            })
        );

        let long_html = format!("<html>{}</html>", "x".repeat(1_000_000));
        let summary = error_summary(502, long_html.as_bytes());
        assert_eq!(
            summary,
            format!("HTTP 502: non-JSON body (HTML, {} bytes)", long_html.len())
        );
        let long_text = format!("{} {TOKEN_A}", "word ".repeat(200_000));
        let summary = error_summary(500, long_text.as_bytes());
        assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
        assert!(!summary.contains(TOKEN_A));
    }

    #[test]
    fn nothing_that_holds_a_token_prints_it() {
        let listing = parse_district_tokens(listing_body().as_bytes()).unwrap();
        let response = parse_token_response(
            format!(r#"{{"access_token":"{TOKEN_A}","token_type":"bearer"}}"#).as_bytes(),
        )
        .unwrap();
        let texts = [
            format!("{listing:?}"),
            format!("{listing:#?}"),
            format!("{:?}", listing.tokens[0]),
            format!("{}", listing.tokens[0].token),
            format!("{response:?}"),
            format!("{response:#?}"),
            format!("{}", response.access_token),
        ];
        for text in &texts {
            assert!(!text.contains(TOKEN_A), "{text}");
            assert!(!text.contains(TOKEN_B), "{text}");
        }
        // Errors from token-bearing bodies never quote them either.
        let bad_type = format!(r#"{{"access_token":"{TOKEN_A}","token_type":"{TOKEN_B}"}}"#);
        let err = parse_token_response(bad_type.as_bytes()).unwrap_err();
        assert!(!err.to_string().contains(TOKEN_B), "{err}");
        assert!(!format!("{err:?}").contains(TOKEN_B));
        let leaky =
            format!(r#"{{"error":"invalid_token","error_description":"token {TOKEN_A} revoked"}}"#);
        let err = parse_district_tokens(leaky.as_bytes()).unwrap_err();
        assert!(!err.to_string().contains(TOKEN_A), "{err}");
    }
}
