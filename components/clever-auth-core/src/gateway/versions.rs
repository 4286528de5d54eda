//! API versions on real traffic: the versions in the `uri`s of gateway responses (only the
//! first [`OBSERVE_LIMIT`] bytes are looked at) and Clever's "version not supported" feed the
//! same `clever:apiVersion` check and alerts as the refresher's probes. The latest observation
//! wins, from whichever side it came.

use crate::clever_wire;
use crate::status::{VersionRecord, VersionState};
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How much of a body is kept for looking: enough for `links` and the first records of a page.
pub const OBSERVE_LIMIT: usize = 64 * 1024;

/// Stored under [`super::keys::VERSIONS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionObservation {
    pub seen: Vec<String>,
    pub unsupported: bool,
    pub at: UnixMillis,
}

/// What the start of one response body says. `complete` means `prefix` is the whole body, so
/// it can be parsed as JSON; a cut prefix is scanned for `"uri":"…"` values instead.
pub fn observe(
    status: u16,
    prefix: &[u8],
    complete: bool,
    now: UnixMillis,
) -> Option<VersionObservation> {
    let unsupported = clever_wire::is_version_not_supported(status, prefix);
    let mut seen = BTreeSet::new();
    // A body without a `"uri"` key names no version and is not parsed (a key
    // written with JSON escapes, `"\u0075ri"`, would be missed; Clever writes it plainly).
    if (200..300).contains(&status) && find(prefix, URI_KEY).is_some() {
        if complete {
            seen = clever_wire::detect_versions(prefix);
        }
        if seen.is_empty() {
            seen = scan_uris(prefix);
        }
    }
    (unsupported || !seen.is_empty()).then(|| VersionObservation {
        seen: seen.into_iter().collect(),
        unsupported,
        at: now,
    })
}

/// The versions of every `"uri": "…"` string in `bytes`, JSON or not, cut or whole.
fn scan_uris(bytes: &[u8]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = find(&bytes[i..], URI_KEY) {
        let mut j = i + pos + URI_KEY.len();
        while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        if bytes.get(j) == Some(&b':') {
            j += 1;
            while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
                j += 1;
            }
            if bytes.get(j) == Some(&b'"') {
                let start = j + 1;
                if let Some(len) = bytes[start..].iter().take(2048).position(|b| *b == b'"') {
                    if let Ok(uri) = std::str::from_utf8(&bytes[start..start + len]) {
                        // JSON may escape the slashes.
                        let uri = uri.replace("\\/", "/");
                        out.extend(clever_wire::version_of_uri(&uri));
                    }
                }
            }
        }
        i = j.max(i + pos + 1);
    }
    out
}

const URI_KEY: &[u8] = b"\"uri\"";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The record the health check and the alerts read: the newer of the probes' record and the
/// gateway's observation.
pub fn merge(
    probe: Option<&VersionRecord>,
    observed: Option<&VersionObservation>,
    configured: &str,
) -> Option<VersionRecord> {
    match (probe, observed) {
        (Some(p), Some(o)) if p.at >= o.at => Some(p.clone()),
        (_, Some(o)) => {
            let seen: BTreeSet<String> = o.seen.iter().cloned().collect();
            let state = clever_wire::check_version(configured, &seen, None, o.unsupported).state();
            Some(VersionRecord {
                configured: configured.to_string(),
                seen: o.seen.clone(),
                state,
                at: o.at,
            })
        }
        (p, None) => p.cloned(),
    }
}

/// `mismatch` or `unsupported` when an observation is a problem for the configured version.
pub fn problem(observed: &VersionObservation, configured: &str) -> Option<&'static str> {
    match merge(None, Some(observed), configured)?.state {
        VersionState::Mismatch => Some("mismatch"),
        VersionState::Unsupported => Some("unsupported"),
        VersionState::Match | VersionState::Unknown => None,
    }
}

/// Whether an observation says something other than the one before (worth one log line,
/// not one per request).
pub fn changed(previous: Option<&VersionObservation>, now: &VersionObservation) -> bool {
    previous.is_none_or(|p| p.seen != now.seen || p.unsupported != now.unsupported)
}

/// How long an observation that keeps saying the same may go unwritten to the shared record.
/// Health takes the newer of the probes' record and the gateway's ([`merge`]), so the
/// gateway's view there is at most this much older than its traffic.
pub const RESHARE_AFTER_MS: u64 = 60_000;

/// Whether an observation goes to the shared record, given the one this instance wrote last.
/// Nearly every 2xx body names versions, nearly always the same ones: writing each would cost
/// every gateway call a shared read and write (two Redis round trips on a shared store).
pub fn worth_sharing(last_shared: Option<&VersionObservation>, now: &VersionObservation) -> bool {
    changed(last_shared, now)
        || last_shared.is_none_or(|l| now.at.saturating_sub(l.at) >= RESHARE_AFTER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_links_of_a_whole_body() {
        let body = br#"{"data":[{"data":{"id":"s1"},"uri":"/v3.1/schools/s1"}],"links":[{"rel":"self","uri":"/v3.1/schools?limit=1"}]}"#;
        let o = observe(200, body, true, 5).expect("seen");
        assert_eq!(o.seen, ["v3.1"]);
        assert!(!o.unsupported);
    }

    #[test]
    fn a_cut_prefix_is_scanned() {
        let mut body = br#"{"links": [{"rel":"next","uri" : "https:\/\/api.clever.com\/v3.0\/schools?starting_after=x"}], "data":[{"id":"#.to_vec();
        body.extend(std::iter::repeat_n(b'x', 100));
        let o = observe(200, &body, false, 5).expect("seen");
        assert_eq!(o.seen, ["v3.0"]);
    }

    #[test]
    fn version_not_supported_is_observed_on_errors_only() {
        let o = observe(404, b"{\"error\":\"version not supported\"}", true, 5).expect("seen");
        assert!(o.unsupported);
        assert!(observe(200, b"{\"note\":\"version not supported\"}", true, 5).is_none());
        assert!(observe(200, b"not json at all", true, 5).is_none());
    }

    #[test]
    fn problems_are_named_and_reported_once_per_change() {
        let o = |seen: &[&str], unsupported| VersionObservation {
            seen: seen.iter().map(|s| s.to_string()).collect(),
            unsupported,
            at: 1,
        };
        assert_eq!(problem(&o(&["v3.1"], false), "v3.0"), Some("mismatch"));
        assert_eq!(problem(&o(&[], true), "v3.0"), Some("unsupported"));
        assert_eq!(problem(&o(&["v3.0"], false), "v3.0"), None);
        let a = o(&["v3.1"], false);
        assert!(changed(None, &a));
        assert!(!changed(
            Some(&a),
            &VersionObservation { at: 9, ..a.clone() }
        ));
        assert!(changed(Some(&a), &o(&["v3.0"], false)));
    }

    #[test]
    fn an_unchanged_observation_is_shared_again_only_after_a_while() {
        let at = |at| VersionObservation {
            seen: vec!["v3.0".into()],
            unsupported: false,
            at,
        };
        let last = at(1_000);
        assert!(worth_sharing(None, &at(1_000)));
        assert!(!worth_sharing(Some(&last), &at(1_001)));
        assert!(!worth_sharing(
            Some(&last),
            &at(1_000 + RESHARE_AFTER_MS - 1)
        ));
        assert!(worth_sharing(Some(&last), &at(1_000 + RESHARE_AFTER_MS)));
        // A clock that went back shares nothing new.
        assert!(!worth_sharing(Some(&last), &at(10)));
        let other = VersionObservation {
            seen: vec!["v3.1".into()],
            ..at(1_001)
        };
        assert!(worth_sharing(Some(&last), &other));
        let unsupported = VersionObservation {
            unsupported: true,
            ..at(1_001)
        };
        assert!(worth_sharing(Some(&last), &unsupported));
    }

    #[test]
    fn the_newer_observation_wins() {
        let probe = VersionRecord {
            configured: "v3.0".into(),
            seen: vec!["v3.0".into()],
            state: VersionState::Match,
            at: 100,
        };
        let newer = VersionObservation {
            seen: vec!["v3.1".into()],
            unsupported: false,
            at: 200,
        };
        let merged = merge(Some(&probe), Some(&newer), "v3.0").expect("record");
        assert_eq!(merged.state, VersionState::Mismatch);
        assert_eq!(merged.at, 200);
        let older = VersionObservation { at: 50, ..newer };
        assert_eq!(
            merge(Some(&probe), Some(&older), "v3.0"),
            Some(probe.clone())
        );
        let unsupported = VersionObservation {
            seen: vec![],
            unsupported: true,
            at: 300,
        };
        assert_eq!(
            merge(Some(&probe), Some(&unsupported), "v3.0").map(|r| r.state),
            Some(VersionState::Unsupported)
        );
        assert_eq!(merge(None, None, "v3.0"), None);
    }
}
