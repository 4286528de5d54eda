//! Clever's response bodies: token listings, RFC 6749 token responses, error bodies and the
//! API-version signals in data responses.
//!
//! Bodies are read as untyped JSON and walked by hand. serde's typed errors quote the offending
//! value ("invalid type: string \"…\""), and the offending value here may be a token; walking
//! by hand keeps every error message made of our own words. Nothing in this module panics on
//! any input, and nothing it returns formats a token (see [`crate::secret`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::secret::AccessToken;

/// Larger bodies are refused before parsing. A listing of every district Clever serves is far
/// below this; anything bigger is a misrouted download or an attack on our memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Upper bound of [`error_summary`]'s result, in characters: it goes into log lines and the
/// health report.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// Runs of token-like characters at least this long are treated as credentials. Clever tokens
/// are 40 hex characters; Clever ids (24 hex) stay readable.
const MIN_SECRET_RUN: usize = 32;
/// After a credential key and a space, a word this long with a digit in it counts as the value.
const MIN_SPACED_SECRET: usize = 8;

/// A district id becomes part of a URL path and of cache keys, so it is held to Clever's id
/// alphabet; anything else (`../`, spaces, very long strings) is refused.
const MAX_DISTRICT_ID_LEN: usize = 64;

/// Tokens longer than this are not bearer tokens for an HTTP header.
const MAX_TOKEN_LEN: usize = 4096;

const REDACTED: &str = "[redacted]";

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

fn trim_body(body: &[u8]) -> &[u8] {
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

fn parse_json(body: &[u8]) -> Result<Value, WireError> {
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
    let root = parse_json(body)?;
    let Some(object) = root.as_object() else {
        return Err(WireError::Shape("expected a JSON object"));
    };
    let Some(data) = object.get("data") else {
        return Err(match error_text(&root) {
            Some(text) => WireError::Server(sanitize(&text, MAX_SUMMARY_CHARS)),
            None => WireError::Shape("missing `data`"),
        });
    };
    let Some(entries) = data.as_array() else {
        return Err(WireError::Shape("`data` is not an array"));
    };

    let mut listing = DistrictTokenListing {
        next: link(object, "next"),
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

type EntryError = (Option<String>, SkipReason);

fn listing_entry(entry: &Value) -> Result<DistrictToken, EntryError> {
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

/// Visible ASCII only: anything else would break or inject into the `Authorization` header.
fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Scopes as an array of strings (Clever) or a space-separated string (RFC 6749).
fn scopes(value: Option<&Value>) -> Vec<String> {
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
    let root = parse_json(body)?;
    let Some(object) = root.as_object() else {
        return Err(WireError::Shape("expected a JSON object"));
    };
    let access_token = match object.get("access_token").and_then(Value::as_str) {
        None | Some("") => {
            return Err(match error_text(&root) {
                Some(text) => WireError::Server(sanitize(&text, MAX_SUMMARY_CHARS)),
                None => WireError::MissingToken,
            })
        }
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

/// The human-readable error text of an error document, from the fields Clever and RFC 6749
/// use: `error` (string, or object with `message`), `error_description`, `message`,
/// `errors[0].message`.
fn error_text(root: &Value) -> Option<String> {
    fn text(value: Option<&Value>) -> Option<&str> {
        value.and_then(Value::as_str)
    }
    let object = root.as_object()?;
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
            Ok(root) => match error_text(&root) {
                Some(text) => sanitize(&text, MAX_SUMMARY_CHARS),
                None => format!("JSON body without an error message ({len} bytes)"),
            },
            Err(_) => format!("malformed JSON body ({len} bytes)"),
        },
        BodyKind::Text => sanitize(&String::from_utf8_lossy(body), MAX_SUMMARY_CHARS),
    };
    truncate_chars(&format!("HTTP {status}: {detail}"), MAX_SUMMARY_CHARS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Idle,
    /// A word like `token` or `client_secret` was just seen; a following `:`/`=` arms.
    KeySeen,
    /// The next value is a credential.
    Armed,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '%')
}

fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '"' | '\'' | ',' | ';' | '&' | ')' | ']' | '}' | '<' | '>'
        )
}

fn is_auth_scheme(word: &str) -> bool {
    ["bearer", "basic"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}

fn is_sensitive_key(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|k| lower.ends_with(k))
}

/// Consumes a run of characters matching `keep`, returning its length and its first
/// `MIN_SECRET_RUN` characters (enough to classify it and to print it when it is short).
fn take_run(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    keep: impl Fn(char) -> bool,
) -> (String, usize) {
    let mut head = String::new();
    let mut count = 0;
    while let Some(&c) = chars.peek() {
        if !keep(c) {
            break;
        }
        if count < MIN_SECRET_RUN {
            head.push(c);
        }
        count += 1;
        chars.next();
    }
    (head, count)
}

/// Makes server-supplied text safe to log: collapses whitespace, drops control characters,
/// replaces credentials (values after `Bearer`/`Basic`, after `token=`/`secret:`-like keys,
/// and any run of 32+ token characters) with `[redacted]`, and stops at `max_chars`.
///
/// Words are consumed whole before anything is emitted, so the cut at `max_chars` can never
/// leave a fragment of a credential behind.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut emitted = 0usize;
    let mut state = Arm::Idle;
    let mut chars = text.chars().peekable();
    let push = |out: &mut String, emitted: &mut usize, s: &str| {
        out.push_str(s);
        *emitted += s.chars().count();
        *emitted
    };
    while let Some(&c) = chars.peek() {
        let written = if state == Arm::Armed && !ends_value(c) && !matches!(c, ':' | '=') {
            let (head, count) = take_run(&mut chars, |c| !ends_value(c));
            if count < MIN_SECRET_RUN && is_auth_scheme(&head) {
                // `Authorization: Bearer xyz`: the scheme is harmless, the next value is not.
                push(&mut out, &mut emitted, &head)
            } else {
                state = Arm::Idle;
                push(&mut out, &mut emitted, REDACTED)
            }
        } else if is_word_char(c) {
            let (head, count) = take_run(&mut chars, is_word_char);
            // `client_secret s3cr3tValue9`: a key followed by a space, then a word that looks
            // like a credential (long, with a digit). Plain words after a key ("token
            // expired") stay readable.
            let credential_after_key = state == Arm::KeySeen
                && count >= MIN_SPACED_SECRET
                && head.chars().any(|c| c.is_ascii_digit());
            if count >= MIN_SECRET_RUN || credential_after_key {
                state = Arm::Idle;
                push(&mut out, &mut emitted, REDACTED)
            } else {
                state = if is_auth_scheme(&head) {
                    Arm::Armed
                } else if is_sensitive_key(&head) {
                    Arm::KeySeen
                } else {
                    Arm::Idle
                };
                push(&mut out, &mut emitted, &head)
            }
        } else {
            chars.next();
            let quote_or_space = c.is_whitespace() || c.is_control() || c == '"' || c == '\'';
            state = match state {
                Arm::KeySeen if matches!(c, ':' | '=') => Arm::Armed,
                Arm::KeySeen if quote_or_space => Arm::KeySeen,
                Arm::Armed if quote_or_space || matches!(c, ':' | '=') => Arm::Armed,
                _ => Arm::Idle,
            };
            if c.is_whitespace() || c.is_control() {
                if out.is_empty() || out.ends_with(' ') {
                    emitted
                } else {
                    push(&mut out, &mut emitted, " ")
                }
            } else {
                let mut buf = [0u8; 4];
                push(&mut out, &mut emitted, c.encode_utf8(&mut buf))
            }
        };
        if written > max_chars {
            break;
        }
    }
    truncate_chars(out.trim_end(), max_chars)
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

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

    const TOKEN_A: &str = "4f1e2d3c4b5a69788796a5b4c3d2e1f001234567";
    const TOKEN_B: &str = "aa11bb22cc33dd44ee55ff6677889900abcdef12";
    const DISTRICT_A: &str = "5d8a2e6f1c9d440000a1b2c3";
    const DISTRICT_B: &str = "5d8a2e6f1c9d440000d4e5f6";

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

    #[test]
    fn district_id_validation() {
        assert!(is_valid_district_id(DISTRICT_A));
        assert!(is_valid_district_id("abc-DEF_123"));
        assert!(!is_valid_district_id(""));
        assert!(!is_valid_district_id("a/b"));
        assert!(!is_valid_district_id("a b"));
        assert!(!is_valid_district_id(&"a".repeat(65)));
    }

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
