//! One function per fuzz target: decode an input, call the core, assert the invariants.
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs` include this file by path) and by
//! `tests/fuzz_regressions.rs`, which replays committed inputs on stable. Keeping decoding and
//! assertions in one place is what makes a replayed crash input fail the test the same way it
//! failed the fuzzer.
//!
//! Input format, the same for every target: an input whose first byte is `0xFF` is decoded with
//! `arbitrary` into structured values (token-shaped strings repeated across fields, extreme
//! numbers, near-boundary times), which byte mutation of text rarely reaches. Any other input
//! is read in a human-writable form, so seeds can be written by hand:
//!
//! - `token_listing`, `token_response`: the HTTP body as received.
//! - `ratelimit_headers`: header lines `Name: value`, received at [`NOW`].
//! - `settings`: lines `key=value`; `key!=reason` makes the lookup of `key` fail with `reason`.
//! - `health_report`: a JSON fixture `{"now", "expiry_skew_ms", "client_id", "client_secret",
//!   "settings_errors": [{"setting", "message"}], "snapshot": <StatusSnapshot>,
//!   "secrets": <HostSecretsStatus>}`, every field optional.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Result as ArbResult, Unstructured};
use serde_json::{json, Map, Value};

use clever_auth_core::clever_wire::{
    is_valid_district_id, parse_district_tokens, parse_token_response, DistrictTokenListing,
    SkipReason, TokenResponse, WireError, MAX_SUMMARY_CHARS,
};
use clever_auth_core::health::{self, CredentialPresence, Districts, HealthInputs, Status, View};
use clever_auth_core::health_summary::HealthSummary;
use clever_auth_core::lifecycle::TokenEntry;
use clever_auth_core::ratelimit::{Bucket, RateLimitInfo, MAX_WARNINGS};
use clever_auth_core::secret::AccessToken;
use clever_auth_core::settings::{self, SettingError, Settings, SETTINGS};
use clever_auth_core::status::{
    CredentialState, DistrictRecord, ErrorRecord, HostSecretsStatus, ServiceStatus, StatusSnapshot,
    VersionRecord, VersionState,
};

/// 2023-11-14T22:13:20Z: the clock of the readable inputs.
pub const NOW: u64 = 1_700_000_000_000;

/// First byte that selects the structured (`arbitrary`) decoding.
const STRUCTURED: u8 = 0xFF;

/// Mirrors `ratelimit::MAX_BUCKETS`.
const MAX_BUCKETS: usize = 16;

/// `clever_wire`'s threshold: word runs this long are credentials and never printed.
const MIN_SECRET_RUN: usize = 32;

/// Planted in fields that the store may carry but the health report must never show.
const MARKER: &str = "SECRET-marker-must-not-be-rendered-7f3a9c";

fn structured(data: &[u8]) -> Option<Unstructured<'_>> {
    match data.split_first() {
        Some((&STRUCTURED, rest)) => Some(Unstructured::new(rest)),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------
// Pools: values near the parsers' decision points, picked by the structured decoders.

const TOKENS: &[&str] = &[
    "0123456789abcdef0123456789abcdef01234567",
    "fedcba9876543210fedcba9876543210fedcba98",
    "short",
    "!#$%&()*+-./:;<=>?@[]^_`{|}~!#$%&()*+-./",
    "has space",
    "",
    "tök",
    "tab\there",
    "Bearer",
];

const DISTRICT_IDS: &[&str] = &[
    "5d8a2e6f1c9d440000a1b2c3",
    "5d8a2e6f1c9d440000a1b2c4",
    "abc-DEF_123",
    "a/b",
    "",
    "a b",
    "../x",
    "ＤＩＳＴ",
];

const TIMESTAMPS: &[&str] = &[
    "2024-01-01T00:00:00.000Z",
    "2025-06-30T12:00:00.000Z",
    "2025-06-30T12:00:00Z",
    "",
];

const TEXTS: &[&str] = &[
    "invalid_client",
    "token 0123456789abcdef0123456789abcdef01234567 was revoked",
    "Authorization: Bearer abc123",
    "client_secret=hunter2",
    "",
    "   ",
    "/v3.0/districts?starting_after=x",
];

fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> ArbResult<String> {
    let i = u.choose_index(pool.len() + 1)?;
    match pool.get(i) {
        Some(s) => Ok((*s).to_owned()),
        None => u.arbitrary(),
    }
}

fn token(u: &mut Unstructured<'_>) -> ArbResult<String> {
    // The length limit of a usable token is 4096: one either side of it.
    match u.choose_index(12)? {
        0 => Ok("a".repeat(4096)),
        1 => Ok("a".repeat(4097)),
        _ => pick(u, TOKENS),
    }
}

/// A time near `base`, or anywhere: most decisions compare times with `now`.
fn time_near(u: &mut Unstructured<'_>, base: u64, skew: u64) -> ArbResult<u64> {
    Ok(match u.choose_index(8)? {
        0 => u.arbitrary()?,
        1 => 0,
        2 => u64::MAX,
        3 => base.wrapping_add(skew),
        4 => base.wrapping_add(skew).wrapping_add(1),
        5 => base.wrapping_add(skew).wrapping_sub(1),
        _ => base.wrapping_add_signed(u.int_in_range(-7_200_000..=7_200_000)?),
    })
}

fn opt_time(u: &mut Unstructured<'_>, base: u64, skew: u64) -> ArbResult<Option<u64>> {
    if u.ratio(1, 4)? {
        Ok(None)
    } else {
        time_near(u, base, skew).map(Some)
    }
}

// ------------------------------------------------------------------------------------------
// Invariants shared by the wire parsers.

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '%')
}

/// `sanitize` promises that no run of credential-like characters survives; everything the wire
/// parsers return as text is either sanitised server text or our own words.
fn assert_no_secret_run(text: &str) {
    let mut run = 0;
    for c in text.chars() {
        run = if is_word_char(c) { run + 1 } else { 0 };
        assert!(
            run < MIN_SECRET_RUN,
            "credential-like run survived in {text:?}"
        );
    }
}

fn assert_usable_token(token: &AccessToken) {
    let t = token.expose();
    assert!(!t.is_empty(), "a parsed token is never empty");
    assert!(t.len() <= 4096, "a parsed token fits an HTTP header");
    assert!(
        t.bytes().all(|b| b.is_ascii_graphic()),
        "a parsed token is visible ASCII (no header injection)"
    );
}

fn check_wire_error(e: &WireError) {
    let text = e.to_string();
    assert_no_secret_run(&text);
    // Error texts go into log lines and the health report: bounded whatever the body (the
    // slack covers fixed words and `{:?}` escapes of a 40-character token type).
    assert!(
        text.chars().count() <= MAX_SUMMARY_CHARS + 500,
        "error text too long: {text}"
    );
    if let WireError::Server(s) = e {
        assert!(s.chars().count() <= MAX_SUMMARY_CHARS);
    }
}

/// The parsers' own view of a body: BOM and surrounding whitespace removed.
fn reparse(body: &[u8]) -> Option<Value> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    serde_json::from_slice(body.trim_ascii()).ok()
}

// ------------------------------------------------------------------------------------------
// token_listing

pub fn token_listing(data: &[u8]) {
    let body = match structured(data) {
        Some(mut u) => match listing_body(&mut u) {
            Ok(body) => body,
            Err(_) => return,
        },
        None => data.to_vec(),
    };
    let result = parse_district_tokens(&body);
    assert_eq!(result, parse_district_tokens(&body), "deterministic");
    match result {
        Ok(listing) => check_listing(&body, &listing),
        Err(e) => check_wire_error(&e),
    }
}

fn listing_body(u: &mut Unstructured<'_>) -> ArbResult<Vec<u8>> {
    if u.ratio(1, 16)? {
        let doc = json!({ "error": pick(u, TEXTS)?, "error_description": pick(u, TEXTS)? });
        return Ok(doc.to_string().into_bytes());
    }
    let count = u.int_in_range(0..=10)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(listing_entry(u)?);
    }
    let mut root = json!({ "data": entries });
    if u.ratio(1, 4)? {
        root["links"] = json!([{ "rel": "next", "uri": pick(u, TEXTS)? }]);
    }
    Ok(root.to_string().into_bytes())
}

fn listing_entry(u: &mut Unstructured<'_>) -> ArbResult<Value> {
    if u.ratio(1, 16)? {
        return Ok(json!(pick(u, TEXTS)?));
    }
    let mut owner = Map::new();
    if u.ratio(15, 16)? {
        let kind = pick(
            u,
            &["district", "District", "DISTRICT", "school", "district "],
        )?;
        owner.insert("type".into(), json!(kind));
    }
    if u.ratio(15, 16)? {
        owner.insert("id".into(), json!(pick(u, DISTRICT_IDS)?));
    }
    let mut entry = Map::new();
    if u.ratio(15, 16)? {
        entry.insert("owner".into(), Value::Object(owner));
    }
    match u.choose_index(8)? {
        0 => {}
        1 => {
            entry.insert("access_token".into(), json!(42));
        }
        _ => {
            entry.insert("access_token".into(), json!(token(u)?));
        }
    }
    match u.choose_index(4)? {
        0 => {}
        1 => {
            entry.insert(
                "scopes".into(),
                json!(pick(u, &["read:districts read:students"])?),
            );
        }
        _ => {
            let scopes = vec![pick(u, &["read:districts", "", "a b"])?; u.int_in_range(0..=3)?];
            entry.insert("scopes".into(), json!(scopes));
        }
    }
    if u.ratio(3, 4)? {
        entry.insert("created".into(), json!(pick(u, TIMESTAMPS)?));
    }
    Ok(if u.ratio(1, 8)? {
        json!({ "data": entry })
    } else {
        Value::Object(entry)
    })
}

/// The `access_token` of a listing entry, looking through the `{"data": {…}}` wrapping.
fn entry_token(entry: &Value) -> Option<&str> {
    let object = entry.as_object()?;
    let object = match object.get("data").and_then(Value::as_object) {
        Some(inner) if !object.contains_key("owner") => inner,
        _ => object,
    };
    object.get("access_token")?.as_str()
}

fn check_listing(body: &[u8], listing: &DistrictTokenListing) {
    let root = reparse(body).expect("a body the parser accepted is JSON");
    let entries = root["data"]
        .as_array()
        .expect("an accepted listing has a `data` array");

    // Every entry is accounted for exactly once: kept, or skipped with a reason.
    assert_eq!(
        listing.tokens.len() + listing.skipped.len(),
        entries.len(),
        "kept + skipped == entries"
    );
    let skipped: BTreeSet<usize> = listing.skipped.iter().map(|s| s.index).collect();
    assert_eq!(
        skipped.len(),
        listing.skipped.len(),
        "an entry is skipped once"
    );
    assert!(skipped.iter().all(|&i| i < entries.len()));

    // The kept tokens are exactly the tokens of the entries not skipped.
    let mut kept_in_body: Vec<&str> = (0..entries.len())
        .filter(|i| !skipped.contains(i))
        .filter_map(|i| entry_token(&entries[i]))
        .collect();
    let mut kept: Vec<&str> = listing.tokens.iter().map(|t| t.token.expose()).collect();
    kept_in_body.sort_unstable();
    kept.sort_unstable();
    assert_eq!(kept, kept_in_body, "kept tokens come from the kept entries");

    let mut ids = BTreeSet::new();
    for t in &listing.tokens {
        assert_usable_token(&t.token);
        assert!(is_valid_district_id(&t.district_id), "{:?}", t.district_id);
        assert!(ids.insert(t.district_id.as_str()), "one token per district");
        assert!(t.scopes.iter().all(|s| !s.is_empty()));
    }
    for s in &listing.skipped {
        assert_no_secret_run(&s.reason.to_string());
        if let SkipReason::NotDistrictOwner { owner_type } = &s.reason {
            assert!(owner_type.chars().count() <= 40);
        }
        if let Some(id) = &s.district_id {
            assert!(is_valid_district_id(id));
        }
        if s.reason == SkipReason::DuplicateDistrict {
            let id = s
                .district_id
                .as_deref()
                .expect("a duplicate names its district");
            assert!(ids.contains(id), "a duplicate's district has a kept token");
        }
    }

    // Nothing formats a token: the debug text is the same whatever the token values are.
    let mut blanked = listing.clone();
    for t in &mut blanked.tokens {
        t.token = AccessToken::new("x");
    }
    assert_eq!(format!("{listing:?}"), format!("{blanked:?}"));
}

// ------------------------------------------------------------------------------------------
// token_response

pub fn token_response(data: &[u8]) {
    let (body, clocks) = match structured(data) {
        Some(mut u) => match token_response_input(&mut u) {
            Ok(input) => input,
            Err(_) => return,
        },
        None => (data.to_vec(), Vec::new()),
    };
    let result = parse_token_response(&body);
    assert_eq!(result, parse_token_response(&body), "deterministic");
    match result {
        Ok(response) => check_token_response(&body, &response, &clocks),
        Err(e) => check_wire_error(&e),
    }
}

/// `(now, refresh fraction, skew ms)` triples the structured input adds to the fixed ones.
type Clock = (u64, f64, u64);

fn token_response_input(u: &mut Unstructured<'_>) -> ArbResult<(Vec<u8>, Vec<Clock>)> {
    let mut o = Map::new();
    let access_token = token(u)?;
    match u.choose_index(8)? {
        0 => {}
        1 => {
            o.insert("access_token".into(), json!(42));
        }
        _ => {
            o.insert("access_token".into(), json!(access_token));
        }
    }
    match u.choose_index(4)? {
        0 => {}
        1 => {
            o.insert("token_type".into(), json!(access_token));
        }
        _ => {
            let kind = pick(u, &["bearer", "Bearer", "BEARER", "mac", "", "bearer "])?;
            o.insert("token_type".into(), json!(kind));
        }
    }
    let expires_in = match u.choose_index(9)? {
        0 => None,
        1 => Some(json!(u.arbitrary::<u64>()?)),
        2 => Some(json!(u.arbitrary::<i64>()?)),
        // Non-finite floats become `null` in JSON, which is itself a case worth having.
        3 => Some(json!(u.arbitrary::<f64>()?)),
        4 => Some(json!(u.arbitrary::<u64>()?.to_string())),
        5 => Some(json!(u64::MAX / 1000 + u.int_in_range(0..=2)?)),
        // Lifetimes past 2^53 ms, where `u64 as f64` rounds.
        6 => Some(json!(
            (1u64 << u.int_in_range(43..=54)?) + u.int_in_range(0..=4096)?
        )),
        _ => Some(json!(pick(
            u,
            &["3600", " 7200 ", "0", "-5", "soon", "1e3"]
        )?)),
    };
    if let Some(v) = expires_in {
        o.insert("expires_in".into(), v);
    }
    if u.ratio(1, 2)? {
        let scope = pick(u, &["read:districts read:students", "", "  a  b  "])?;
        o.insert("scope".into(), json!(scope));
    }
    if u.ratio(1, 8)? {
        o.insert("error".into(), json!(pick(u, TEXTS)?));
    }
    let mut clocks = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        clocks.push((u.arbitrary()?, u.arbitrary()?, u.arbitrary()?));
    }
    Ok((Value::Object(o).to_string().into_bytes(), clocks))
}

fn check_token_response(body: &[u8], response: &TokenResponse, clocks: &[Clock]) {
    assert_usable_token(&response.access_token);
    if let Some(kind) = &response.token_type {
        assert!(
            kind.eq_ignore_ascii_case("bearer"),
            "only bearer tokens pass"
        );
    }
    assert!(response.scopes.iter().all(|s| !s.is_empty()));

    let root = reparse(body).expect("a body the parser accepted is JSON");
    match &root["expires_in"] {
        Value::Number(n) if n.is_u64() => assert_eq!(response.expires_in, n.as_u64()),
        Value::String(s) => assert_eq!(response.expires_in, s.trim().parse::<u64>().ok()),
        _ => {}
    }

    let mut blanked = response.clone();
    blanked.access_token = AccessToken::new("x");
    assert_eq!(
        format!("{response:?}"),
        format!("{blanked:?}"),
        "Debug hides the token"
    );

    // Expiry arithmetic, as the refresher does it: the server's lifetime (seconds, saturating
    // to ms) or the configured one, from any clock, never wraps and keeps the schedule ordered.
    let lifetime_ms = response
        .expires_in
        .map_or(3_600_000, |s| s.saturating_mul(1000));
    let fixed: [Clock; 6] = [
        (NOW, 0.75, 30_000),
        (NOW, 1.0, 30_000),
        (NOW, 0.999_999_999_999_999_9, 0),
        (0, 0.75, 0),
        (u64::MAX - 1_000, 0.75, 30_000),
        (u64::MAX, 0.5, u64::MAX),
    ];
    for &(now, fraction, skew) in fixed.iter().chain(clocks) {
        let entry = TokenEntry::new(
            "app".into(),
            response.access_token.clone(),
            response.scopes.clone(),
            now,
            lifetime_ms,
            fraction,
        );
        let expected_expiry = (u128::from(now) + u128::from(lifetime_ms)).min(u128::from(u64::MAX));
        assert_eq!(
            u128::from(entry.expires_at),
            expected_expiry,
            "expiry saturates"
        );
        assert_eq!(entry.obtained_at, now);
        assert!(
            entry.obtained_at <= entry.refresh_at && entry.refresh_at <= entry.expires_at,
            "obtained {} <= refresh {} <= expires {} (lifetime {lifetime_ms} ms, fraction {fraction})",
            entry.obtained_at,
            entry.refresh_at,
            entry.expires_at
        );
        for at in [now, entry.refresh_at, entry.expires_at.saturating_sub(skew)] {
            let model = u128::from(at) + u128::from(skew) < u128::from(entry.expires_at);
            assert_eq!(entry.usable(at, skew), model, "usable({at}, {skew})");
        }
    }
}

// ------------------------------------------------------------------------------------------
// ratelimit_headers

const RATE_HEADERS: [&str; 5] = [
    "retry-after",
    "x-ratelimit-bucket",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

pub fn ratelimit_headers(data: &[u8]) {
    let (headers, received_at, extra) = match structured(data) {
        Some(mut u) => match ratelimit_input(&mut u) {
            Ok(input) => input,
            Err(_) => return,
        },
        None => (header_lines(data), NOW, Vec::new()),
    };
    let info = RateLimitInfo::from_headers(&headers, received_at);
    assert_eq!(info, RateLimitInfo::from_headers(&headers, received_at));
    check_ratelimit(&headers, received_at, &info, &extra);
}

/// `Name: value` lines; the value keeps its raw bytes.
fn header_lines(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    data.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &[][..]),
            };
            (String::from_utf8_lossy(name).into_owned(), value.to_vec())
        })
        .collect()
}

type RateInput = (Vec<(String, Vec<u8>)>, u64, Vec<(u16, u64)>);

fn ratelimit_input(u: &mut Unstructured<'_>) -> ArbResult<RateInput> {
    let received_at = time_near(u, NOW, 0)?;
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=24)? {
        let name = match u.choose_index(8)? {
            0 => u.arbitrary()?,
            1 => "content-type".to_owned(),
            i => {
                let base = RATE_HEADERS[(i - 2) % RATE_HEADERS.len()];
                match u.choose_index(3)? {
                    0 => base.to_owned(),
                    1 => base.to_ascii_uppercase(),
                    _ => format!(" {base} "),
                }
            }
        };
        let value: Vec<u8> = match u.choose_index(4)? {
            0 => u.arbitrary()?,
            _ => pick(
                u,
                &[
                    "0",
                    "30",
                    "1700000042",
                    "1700000001.250",
                    "Tue, 14 Nov 2023 22:14:00 GMT",
                    "district, token",
                    "200,,1200",
                    "99999999999999999999999",
                    "x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x",
                    "",
                ],
            )?
            .into_bytes(),
        };
        headers.push((name, value));
    }
    let mut extra = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        extra.push((u.arbitrary()?, u.arbitrary()?));
    }
    Ok((headers, received_at, extra))
}

fn is_rate_header(name: &str) -> bool {
    RATE_HEADERS
        .iter()
        .any(|k| name.trim().eq_ignore_ascii_case(k))
}

fn check_ratelimit(
    headers: &[(String, Vec<u8>)],
    received_at: u64,
    info: &RateLimitInfo,
    extra: &[(u16, u64)],
) {
    assert_eq!(info.received_at, received_at);
    assert!(info.buckets.len() <= MAX_BUCKETS, "bucket count is bounded");
    for b in &info.buckets {
        if let Some(name) = &b.name {
            assert!(!name.is_empty() && name.chars().count() <= 40, "{name:?}");
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
    }
    // Warnings are safe to log: short, single-line, and (like the buckets) bounded in number
    // whatever the response sends.
    assert!(
        info.warnings.len() <= MAX_WARNINGS + 3,
        "{} warnings",
        info.warnings.len()
    );
    for w in &info.warnings {
        assert!(w.chars().count() < 200, "{w}");
        assert!(!w.chars().any(char::is_control), "{w:?}");
    }

    if !headers.iter().any(|(n, _)| is_rate_header(n)) {
        assert!(
            info.is_empty() && info.warnings.is_empty(),
            "other headers are ignored"
        );
    }
    let retry_after: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.as_slice())
        .collect();
    if retry_after.is_empty() {
        assert_eq!(info.retry_after_at, None);
    }
    // A single delay-seconds value is anchored at the receipt time, saturating.
    if let [value] = retry_after[..] {
        let text = std::str::from_utf8(value).map(str::trim).unwrap_or("");
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let secs = text.parse::<u64>().unwrap_or(u64::MAX);
            let expected = received_at.saturating_add(secs.saturating_mul(1000));
            assert_eq!(info.retry_after_at, Some(expected));
        }
    }

    assert_eq!(info.binding().is_some(), !info.buckets.is_empty());
    if let Some(binding) = info.binding() {
        let lowest = info.buckets.iter().filter_map(|b| b.remaining).min();
        if lowest.is_some() {
            assert_eq!(binding.remaining, lowest, "binding bucket runs out first");
        }
    }
    let any_reset = info.buckets.iter().any(|b| b.reset_at.is_some());
    let exhausted = info.buckets.iter().any(Bucket::is_exhausted);
    let clocks = [
        (429, received_at),
        (503, received_at),
        (200, 0),
        (429, u64::MAX),
    ];
    for &(status, now) in clocks.iter().chain(extra) {
        let hint = info.server_hint_ms(now);
        assert_eq!(hint.is_some(), info.retry_after_at.is_some() || any_reset);
        if let Some(at) = info.retry_after_at {
            assert_eq!(hint, Some(at.saturating_sub(now)));
        }
        let wait = info.wait_until(status);
        match info.retry_after_at {
            Some(at) => assert_eq!(wait, Some(at)),
            None if status != 429 && !exhausted => assert_eq!(wait, None),
            None => assert_eq!(wait.is_some(), any_reset),
        }
        assert_eq!(
            info.retry_hint_ms(status, now),
            wait.map(|at| at.saturating_sub(now))
        );
    }

    let json = serde_json::to_string(info).expect("serialises");
    let back: RateLimitInfo = serde_json::from_str(&json).expect("reads back");
    assert_eq!(&back, info, "round-trips through serde");
}

// ------------------------------------------------------------------------------------------
// settings

/// What `lookup` answers for one key.
type Answer = Result<Option<String>, String>;

pub fn settings(data: &[u8]) {
    let answers = match structured(data) {
        Some(mut u) => match settings_input(&mut u) {
            Ok(answers) => answers,
            Err(_) => return,
        },
        None => settings_lines(data),
    };
    // Secrets live in the same source; `load` must not read them, so they cannot leak into its
    // errors. The marker makes a leak visible.
    let mut source = answers.clone();
    for spec in SETTINGS.iter().filter(|s| s.secret) {
        source.insert(spec.name.to_owned(), Ok(Some(MARKER.to_owned())));
    }
    let mut asked: Vec<String> = Vec::new();
    let result = settings::load(|key| {
        asked.push(key.to_owned());
        source.get(key).cloned().unwrap_or(Ok(None))
    });
    check_settings(&answers, &asked, &result);
}

fn settings_lines(data: &[u8]) -> BTreeMap<String, Answer> {
    let text = String::from_utf8_lossy(data);
    let mut answers = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.strip_suffix('!') {
            Some(key) => answers.insert(key.trim().to_owned(), Err(value.to_owned())),
            None => answers.insert(key.trim().to_owned(), Ok(Some(value.to_owned()))),
        };
    }
    answers
}

fn settings_input(u: &mut Unstructured<'_>) -> ArbResult<BTreeMap<String, Answer>> {
    let mut answers = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=20)? {
        let key = match u.choose_index(SETTINGS.len() + 1)? {
            i if i < SETTINGS.len() => SETTINGS[i].name.to_owned(),
            _ => u.arbitrary()?,
        };
        let answer = match u.choose_index(8)? {
            0 => Ok(None),
            1 => Err(u.arbitrary()?),
            2 => Ok(Some(u.arbitrary()?)),
            _ => Ok(Some(pick(
                u,
                &[
                    "0",
                    "1",
                    "-1",
                    " 3600 ",
                    "31536000",
                    "31536001",
                    "18446744073709551615",
                    "18446744073709551616",
                    "0.75",
                    "1",
                    "1.0",
                    "0.0",
                    "NaN",
                    "inf",
                    "1e-400",
                    "-0",
                    "http://127.0.0.1:9/",
                    "https://clever.com/oauth/tokens/",
                    "https://",
                    "file:///etc/passwd",
                    "mailto:a@b",
                    "v3.0",
                    "3",
                    "v",
                    "v3..0",
                    "client_credentials",
                    "district_tokens",
                    "a, b,,c",
                    "",
                    "  ",
                ],
            )?)),
        };
        answers.insert(key, answer);
    }
    Ok(answers)
}

fn check_settings(
    answers: &BTreeMap<String, Answer>,
    asked: &[String],
    result: &Result<Settings, Vec<SettingError>>,
) {
    // `load` reads every documented non-secret setting once, and no secret.
    let mut expected: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| !s.secret)
        .map(|s| s.name)
        .collect();
    let mut asked_sorted: Vec<&str> = asked.iter().map(String::as_str).collect();
    expected.sort_unstable();
    asked_sorted.sort_unstable();
    assert_eq!(
        asked_sorted, expected,
        "load reads each non-secret setting once"
    );

    let marker_in_input = answers.values().any(|a| match a {
        Ok(Some(v)) | Err(v) => v.contains(MARKER),
        Ok(None) => false,
    });
    match result {
        Ok(s) => {
            if !marker_in_input {
                assert!(!format!("{s:?}").contains(MARKER));
            }
            check_valid_settings(s);
        }
        Err(errors) => {
            assert!(
                !errors.is_empty(),
                "an error result names at least one problem"
            );
            for e in errors {
                assert!(
                    SETTINGS.iter().any(|s| s.name == e.setting && !s.secret),
                    "error names a documented non-secret setting: {}",
                    e.setting
                );
                if !marker_in_input {
                    assert!(!e.to_string().contains(MARKER), "a secret leaked: {e}");
                }
            }
        }
    }
    // A configuration source that failed for a setting is always reported for that setting.
    for (key, answer) in answers {
        let documented = SETTINGS.iter().any(|s| s.name == key && !s.secret);
        if documented && answer.is_err() {
            let errors = result.as_ref().err().map_or(&[][..], Vec::as_slice);
            assert!(
                errors.iter().any(|e| e.setting == key),
                "source failure for {key} not reported"
            );
        }
    }
}

fn is_http_url_with_host(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn check_valid_settings(s: &Settings) {
    assert!(is_http_url_with_host(&s.token_url), "{}", s.token_url);
    assert!(is_http_url_with_host(&s.api_base_url), "{}", s.api_base_url);
    assert!(
        !s.api_base_url.ends_with('/'),
        "base URL has no trailing slash"
    );
    let version = s
        .api_version
        .strip_prefix('v')
        .expect("version starts with v");
    assert!(version
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
    for d in &s.districts {
        assert!(!d.is_empty() && d.trim() == d && !d.contains(','), "{d:?}");
    }
    if let Some(h) = &s.version_header {
        assert!(!h.is_empty() && h.trim() == h);
    }
    assert!((1..=31_536_000).contains(&s.token_lifetime_secs));
    assert!(
        s.expiry_skew_secs < s.token_lifetime_secs,
        "skew below lifetime"
    );
    assert!(
        s.refresh_fraction >= clever_auth_core::settings::MIN_REFRESH_FRACTION
            && s.refresh_fraction < 1.0
    );
    assert!((0.0..=1.0).contains(&s.retry_jitter));
    assert!(s.retry_max <= 100);
    assert!(s.retry_base_ms >= 1 && s.retry_max_delay_ms >= 1 && s.http_timeout_ms >= 1);

    // What the refresher derives from valid settings cannot overflow or invert.
    let timing = clever_auth_core::lifecycle::Timing::from_settings(s);
    assert_eq!(timing.default_lifetime_ms, s.token_lifetime_secs * 1000);
    assert_eq!(timing.skew_ms, s.expiry_skew_secs * 1000);
    let entry = TokenEntry::new(
        "app".into(),
        AccessToken::new("x"),
        Vec::new(),
        NOW,
        timing.default_lifetime_ms,
        timing.refresh_fraction,
    );
    assert!(entry.refresh_at <= entry.expires_at);
    assert!(entry.usable(NOW, timing.skew_ms), "a fresh token is usable");
}

// ------------------------------------------------------------------------------------------
// health_report

struct HealthCase {
    now: u64,
    skew_ms: u64,
    credentials: CredentialPresence,
    settings_errors: Vec<SettingError>,
    snapshot: Option<StatusSnapshot>,
    secrets: Option<HostSecretsStatus>,
    /// Whether the marker may legitimately appear (the input itself contains it).
    marker_in_input: bool,
}

pub fn health_report(data: &[u8]) {
    let case = match structured(data) {
        Some(mut u) => match health_input(&mut u) {
            Ok(case) => case,
            Err(_) => return,
        },
        None => match health_fixture(data) {
            Some(case) => case,
            None => return,
        },
    };
    check_health(&case);
}

/// Documented setting name, or the one the health handler uses for an unreadable store.
fn setting_name(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .map_or("key_value_stores", |s| s.name)
}

/// Plants [`MARKER`] as token-like unknown fields in a stored record (and its districts), as
/// a record written by another build might carry them: they are ignored, never rendered.
fn plant_marker(value: &mut Value) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    for key in ["access_token", "token", "client_secret"] {
        object.insert(key.into(), json!(MARKER));
    }
    if let Some(service) = object.get_mut("service") {
        plant_marker(service);
    }
    if let Some(Value::Object(districts)) = object.get_mut("districts") {
        districts.values_mut().for_each(plant_marker);
    }
}

/// Reads a stored record as the health handler does: a record that does not load is a named
/// problem (`key_value_stores`), not a panic.
fn load_record<T: serde::de::DeserializeOwned>(
    value: Option<&Value>,
    errors: &mut Vec<SettingError>,
) -> Option<T> {
    let mut value = value.filter(|v| !v.is_null())?.clone();
    plant_marker(&mut value);
    match serde_json::from_value(value) {
        Ok(record) => Some(record),
        Err(e) => {
            errors.push(SettingError {
                setting: "key_value_stores",
                message: e.to_string(),
            });
            None
        }
    }
}

fn health_fixture(data: &[u8]) -> Option<HealthCase> {
    let fixture: Value = serde_json::from_slice(data).ok()?;
    let object = fixture.as_object()?;
    let mut settings_errors: Vec<SettingError> = object
        .get("settings_errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| SettingError {
            setting: setting_name(e["setting"].as_str().unwrap_or("")),
            message: e["message"].as_str().unwrap_or("").to_owned(),
        })
        .collect();
    let snapshot = load_record(object.get("snapshot"), &mut settings_errors);
    let secrets = load_record(object.get("secrets"), &mut settings_errors);
    let flag = |key: &str| object.get(key).and_then(Value::as_bool).unwrap_or(true);
    Some(HealthCase {
        now: object.get("now").and_then(Value::as_u64).unwrap_or(NOW),
        skew_ms: object
            .get("expiry_skew_ms")
            .and_then(Value::as_u64)
            .unwrap_or(30_000),
        credentials: CredentialPresence {
            client_id: flag("client_id"),
            client_secret: flag("client_secret"),
        },
        settings_errors,
        snapshot,
        secrets,
        marker_in_input: fixture.to_string().contains(MARKER),
    })
}

fn error_record(u: &mut Unstructured<'_>, now: u64) -> ArbResult<Option<ErrorRecord>> {
    if u.ratio(1, 2)? {
        return Ok(None);
    }
    Ok(Some(ErrorRecord {
        code: pick(
            u,
            &[
                "http_503",
                "no_valid_token",
                "",
                "vault_forbidden",
                "secret_not_found",
            ],
        )?,
        message: pick(u, TEXTS)?,
        at: time_near(u, now, 0)?,
    }))
}

fn health_input(u: &mut Unstructured<'_>) -> ArbResult<HealthCase> {
    let now = match u.choose_index(4)? {
        0 => u.arbitrary()?,
        _ => NOW,
    };
    let skew_ms = match u.choose_index(4)? {
        0 => u.arbitrary()?,
        1 => 0,
        _ => 30_000,
    };
    let credentials = CredentialPresence {
        client_id: u.ratio(7, 8)?,
        client_secret: u.ratio(7, 8)?,
    };
    let mut settings_errors = Vec::new();
    if u.ratio(1, 8)? {
        for _ in 0..u.int_in_range(1..=2)? {
            let i = u.choose_index(SETTINGS.len())?;
            settings_errors.push(SettingError {
                setting: SETTINGS[i].name,
                message: pick(u, TEXTS)?,
            });
        }
    }
    let service = ServiceStatus {
        last_run_at: opt_time(u, now, skew_ms)?,
        last_successful_auth: opt_time(u, now, skew_ms)?,
        last_error: error_record(u, now)?,
        credentials: *u.choose(&[
            None,
            Some(CredentialState::Present),
            Some(CredentialState::Missing),
            Some(CredentialState::Rejected),
            Some(CredentialState::Accepted),
        ])?,
        credentials_checked_at: opt_time(u, now, skew_ms)?,
        consecutive_failures: u.arbitrary()?,
        failing_since: opt_time(u, now, skew_ms)?,
        rate_limited_until: opt_time(u, now, skew_ms)?,
        rate_limited_since: opt_time(u, now, skew_ms)?,
        rate_limit: if u.ratio(1, 2)? {
            Some(Bucket {
                name: if u.ratio(1, 2)? {
                    Some(pick(u, &["district", ""])?)
                } else {
                    None
                },
                limit: u.arbitrary()?,
                remaining: u.arbitrary()?,
                reset_at: opt_time(u, now, skew_ms)?,
            })
        } else {
            None
        },
        api_version: if u.ratio(1, 2)? {
            Some(VersionRecord {
                configured: pick(u, &["v3.0", ""])?,
                seen: vec![pick(u, &["v3.1", "v3.0"])?; u.int_in_range(0..=2)?],
                state: *u.choose(&[
                    VersionState::Match,
                    VersionState::Mismatch,
                    VersionState::Unsupported,
                    VersionState::Unknown,
                ])?,
                at: time_near(u, now, 0)?,
            })
        } else {
            None
        },
    };
    let mut districts = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let id = pick(u, DISTRICT_IDS)?;
        let record = DistrictRecord {
            district_id: if u.ratio(7, 8)? {
                id.clone()
            } else {
                u.arbitrary()?
            },
            expires_at: opt_time(u, now, skew_ms)?,
            refresh_at: opt_time(u, now, skew_ms)?,
            last_success: opt_time(u, now, skew_ms)?,
            last_error: error_record(u, now)?,
            consecutive_failures: *u.choose(&[0, 1, 5, u32::MAX])?,
            rate_limited_until: opt_time(u, now, skew_ms)?,
        };
        districts.insert(id, record);
    }
    let snapshot = StatusSnapshot {
        service,
        districts,
        alerts: Default::default(),
    };
    let secrets = if u.ratio(1, 2)? {
        Some(HostSecretsStatus {
            provider: pick(u, &["keyvault", "env", "none"])?,
            source: pick(u, &["clever.vault.azure.net", ""])?,
            last_success: opt_time(u, now, skew_ms)?,
            last_error: error_record(u, now)?,
            consecutive_failures: u.arbitrary()?,
            generation: u.arbitrary()?,
        })
    } else {
        None
    };

    // The records reach the health handler through the store as JSON: they must read back
    // unchanged, with unknown (here: token-bearing) fields ignored.
    let mut errors = Vec::new();
    let stored = serde_json::to_value(&snapshot).expect("a snapshot serialises");
    let loaded: Option<StatusSnapshot> = load_record(Some(&stored), &mut errors);
    assert_eq!(
        loaded.as_ref(),
        Some(&snapshot),
        "snapshot round-trips: {errors:?}"
    );
    let stored = serde_json::to_value(&secrets).expect("secrets status serialises");
    let loaded: Option<HostSecretsStatus> = load_record(Some(&stored), &mut errors);
    assert_eq!(loaded, secrets, "secrets status round-trips: {errors:?}");

    let marker_in_input = serde_json::to_string(&(&snapshot, &secrets))
        .expect("serialises")
        .contains(MARKER)
        || settings_errors.iter().any(|e| e.message.contains(MARKER));
    Ok(HealthCase {
        now,
        skew_ms,
        credentials,
        settings_errors,
        snapshot: Some(snapshot),
        secrets,
        marker_in_input,
    })
}

fn check_health(case: &HealthCase) {
    let districts: Vec<DistrictRecord> = case
        .snapshot
        .iter()
        .flat_map(|s| s.districts.values().cloned())
        .collect();
    let service = case.snapshot.as_ref().map(|s| &s.service);
    let inputs = HealthInputs {
        now: case.now,
        settings_errors: &case.settings_errors,
        credentials: case.credentials,
        service,
        districts: Districts::Records(&districts),
        expiry_skew_ms: case.skew_ms,
        secrets: case.secrets.as_ref(),
        instance_id: None,
        view: View::Detail { page: 1 },
    };
    let report = health::report(&inputs);
    check_public(case, &inputs, &report);
    assert_eq!(
        report,
        health::report(&inputs),
        "pure: same inputs, same report"
    );
    let body = &report.body;

    // Valid JSON that reads back as itself.
    let text = body.to_string();
    let reread: Value = serde_json::from_str(&text).expect("the body is valid JSON");
    assert_eq!(&reread, body);

    // Status, HTTP code and body agree.
    let status = body["status"].as_str().expect("status is a string");
    assert!(matches!(status, "pass" | "warn" | "fail"), "{status}");
    assert_eq!(status, report.status.as_str());
    let expected_code = match report.status {
        Status::Pass | Status::Warn => 200,
        Status::Fail => 503,
    };
    assert_eq!(report.http_status(), expected_code);
    assert!(body["time"].is_string());

    // Fail exactly when the instance cannot serve, naming the first reason.
    let now = u128::from(case.now);
    let skew = u128::from(case.skew_ms);
    let usable = |d: &DistrictRecord| d.expires_at.is_some_and(|e| now + skew < u128::from(e));
    let unsupported = service
        .and_then(|s| s.api_version.as_ref())
        .is_some_and(|v| v.state == VersionState::Unsupported);
    let credentials_missing = !case.credentials.client_id || !case.credentials.client_secret;
    // A missing credential is named by the secrets provider's own failure, when it has one.
    let missing_code = case
        .secrets
        .as_ref()
        .and_then(|s| s.last_error.as_ref())
        .map(|e| e.code.as_str())
        .filter(|code| matches!(*code, "vault_forbidden" | "secret_not_found"))
        .unwrap_or("credentials_missing");
    let rejected = service.and_then(|s| s.credentials) == Some(CredentialState::Rejected);
    let blocking = [
        (!case.settings_errors.is_empty(), "settings_invalid"),
        (credentials_missing, missing_code),
        (unsupported, "version_unsupported"),
        (
            !districts.iter().any(usable),
            if rejected {
                "bad_credentials"
            } else {
                "no_valid_token"
            },
        ),
    ]
    .into_iter()
    .find_map(|(blocks, code)| blocks.then_some(code));
    assert_eq!(
        report.status == Status::Fail,
        blocking.is_some(),
        "fail iff blocked"
    );
    if let Some(code) = blocking {
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"].is_string());
    }
    if report.status == Status::Pass {
        assert!(body["error"].is_null());
    }

    // Every check is well-formed; `pass` means every check passed, `warn` that one did not.
    let checks = body["checks"].as_object().expect("checks is an object");
    let mut all_pass = true;
    for (name, entries) in checks {
        let entries = entries.as_array().expect("a check is an array");
        assert!(!entries.is_empty(), "{name}");
        for entry in entries {
            let s = entry["status"].as_str().expect("check status is a string");
            assert!(matches!(s, "pass" | "warn" | "fail"), "{name}: {s}");
            assert!(entry["time"].is_string(), "{name}: time");
            all_pass &= s == "pass";
        }
    }
    match report.status {
        Status::Pass => assert!(all_pass, "pass with a non-passing check"),
        Status::Warn => assert!(!all_pass, "warn without a non-passing check"),
        Status::Fail => {}
    }

    // One entry per district (or the placeholder), failing exactly when its token is unusable.
    let district_checks = checks["clever:districtTokens"]
        .as_array()
        .expect("district checks");
    assert_eq!(
        district_checks.len(),
        districts.len().clamp(1, health::DETAIL_PAGE_SIZE)
    );
    for (d, entry) in districts.iter().zip(district_checks) {
        assert_eq!(entry["status"] == "fail", !usable(d), "{}", d.district_id);
        assert_eq!(entry["componentId"], d.district_id.as_str());
        let limited = d.rate_limited_until.filter(|&t| u128::from(t) > now);
        assert_eq!(entry["rateLimitedUntil"].is_null(), limited.is_none());
    }

    if !case.marker_in_input {
        assert!(
            !text.contains(MARKER),
            "a stored secret reached the health body"
        );
    }
}

/// The public answer agrees with the detail on status and error code, shows no checks, and is
/// the same whether built from the records or from the precomputed record.
fn check_public(
    case: &HealthCase,
    detail_inputs: &HealthInputs<'_>,
    detail: &health::HealthReport,
) {
    let public_inputs = HealthInputs {
        view: View::Public,
        ..*detail_inputs
    };
    let public = health::report(&public_inputs);
    assert_eq!(public.status, detail.status);
    assert_eq!(public.body["error"]["code"], detail.body["error"]["code"]);
    assert!(public.body.get("checks").is_none());
    assert_eq!(public.body["districts"], detail.body["districts"]);
    let Some(snapshot) = case.snapshot.as_ref() else {
        return;
    };
    let summary = HealthSummary::compute(snapshot, case.now, case.skew_ms);
    if let Some(counts) = summary.counts_at(case.now, case.skew_ms) {
        let from_summary = health::report(&HealthInputs {
            districts: Districts::Counted {
                counts,
                latest_error: summary.latest_error.as_ref(),
            },
            ..public_inputs
        });
        assert_eq!(from_summary, public, "the precomputed record answers alike");
    }
}
