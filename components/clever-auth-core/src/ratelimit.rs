//! Rate-limit headers: what the server says about its capacity and when to come back.
//!
//! Clever sends `X-Ratelimit-{Bucket,Limit,Remaining,Reset}` on every response, possibly for
//! several buckets at once (repeated headers or comma-joined values), and may send
//! `Retry-After`. Servers and proxies get these wrong in creative ways, so every value is parsed
//! on its own: a bad one is dropped with a warning and never poisons the rest.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

const RETRY_AFTER: &str = "retry-after";
const BUCKET: &str = "x-ratelimit-bucket";
const LIMIT: &str = "x-ratelimit-limit";
const REMAINING: &str = "x-ratelimit-remaining";
const RESET: &str = "x-ratelimit-reset";

/// More buckets than this is not a real rate-limit scheme; stop before a hostile or broken
/// response makes us allocate and log without bound.
const MAX_BUCKETS: usize = 16;

/// Epoch seconds below this (2001-09-09) cannot be a current reset time. Such small values are
/// almost certainly seconds-until-reset from a server that ignores the convention; reading them
/// as an epoch would put the reset in 1970 and turn every 429 into an immediate retry.
const MIN_PLAUSIBLE_EPOCH_SECS: u64 = 1_000_000_000;

/// Quoted header values in warnings are cut to this many characters.
const MAX_QUOTED: usize = 40;

/// Warnings about individual values kept per response. Every bad list item yields one, so
/// without a cap a header of `x,x,x,…` would cost a formatted line per two bytes received.
/// Beyond the cap they are only counted, in one closing line; the (at most two) warnings about
/// the bucket layout as a whole are always kept, so `warnings` never exceeds this plus three.
pub const MAX_WARNINGS: usize = 16;

/// One rate-limit bucket, assembled by position from the `X-Ratelimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bucket {
    pub name: Option<String>,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_at: Option<UnixMillis>,
}

impl Bucket {
    pub fn is_exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Everything the rate-limit headers of one response said.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimitInfo {
    /// When the response was received; relative values (`Retry-After: 30`) are anchored here.
    pub received_at: UnixMillis,
    /// Absolute time named by `Retry-After`, whichever form it came in.
    pub retry_after_at: Option<UnixMillis>,
    pub buckets: Vec<Bucket>,
    /// Values that were ignored, and why. Safe to log: only rate-limit headers are read, and
    /// there are at most [`MAX_WARNINGS`] + 3 of them.
    pub warnings: Vec<String>,
}

/// Warnings about individual values, up to [`MAX_WARNINGS`]; later ones are only counted, and
/// not even formatted.
#[derive(Default)]
struct Warnings {
    kept: Vec<String>,
    omitted: usize,
}

impl Warnings {
    fn push(&mut self, message: impl FnOnce() -> String) {
        if self.kept.len() < MAX_WARNINGS {
            self.kept.push(message());
        } else {
            self.omitted += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.omitted > 0 {
            self.kept
                .push(format!("{} more rate-limit warnings omitted", self.omitted));
        }
        self.kept
    }
}

impl RateLimitInfo {
    /// Parses the rate-limit headers out of a response's header list. Header names are
    /// case-insensitive; other headers are ignored. `received_at` is when the response arrived.
    pub fn from_headers<N, V>(headers: &[(N, V)], received_at: UnixMillis) -> Self
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut info = RateLimitInfo {
            received_at,
            ..RateLimitInfo::default()
        };
        let mut names: Vec<Option<String>> = Vec::new();
        let mut limits: Vec<Option<u64>> = Vec::new();
        let mut remainings: Vec<Option<u64>> = Vec::new();
        let mut resets: Vec<Option<UnixMillis>> = Vec::new();
        let mut warnings = Warnings::default();

        for (name, value) in headers {
            let name = name.as_ref().trim();
            let known = [RETRY_AFTER, BUCKET, LIMIT, REMAINING, RESET]
                .into_iter()
                .find(|k| name.eq_ignore_ascii_case(k));
            let Some(header) = known else { continue };
            let Ok(text) = std::str::from_utf8(value.as_ref()) else {
                warnings.push(|| format!("{header}: value is not UTF-8, ignored"));
                continue;
            };
            match header {
                RETRY_AFTER => info.parse_retry_after(text, &mut warnings),
                BUCKET => {
                    for item in split_list(text) {
                        names.push(clean_name(item));
                    }
                }
                LIMIT => {
                    for item in split_list(text) {
                        limits.push(parse_count(LIMIT, item, &mut warnings));
                    }
                }
                REMAINING => {
                    for item in split_list(text) {
                        remainings.push(parse_count(REMAINING, item, &mut warnings));
                    }
                }
                RESET => {
                    for item in split_list(text) {
                        resets.push(parse_reset(item, received_at, &mut warnings));
                    }
                }
                _ => {}
            }
        }

        info.warnings = warnings.finish();
        info.zip_buckets(names, limits, remainings, resets);
        info
    }

    fn parse_retry_after(&mut self, text: &str, warnings: &mut Warnings) {
        let text = text.trim();
        let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            // Too many digits for u64 is still "a very long time", not garbage.
            let secs = text.parse::<u64>().unwrap_or(u64::MAX);
            Some(self.received_at.saturating_add(secs.saturating_mul(1_000)))
        } else {
            httpdate::parse_http_date(text)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        match (parsed, self.retry_after_at) {
            (None, _) => warnings.push(|| {
                format!(
                    "{RETRY_AFTER}: {} is neither delay-seconds nor an HTTP-date, ignored",
                    quote(text)
                )
            }),
            (Some(at), None) => self.retry_after_at = Some(at),
            // Duplicates disagree only through a misbehaving proxy; the longer wait is the one
            // that cannot earn us another 429.
            (Some(at), Some(previous)) => {
                warnings.push(|| format!("{RETRY_AFTER}: repeated, the later time is used"));
                self.retry_after_at = Some(previous.max(at));
            }
        }
    }

    fn zip_buckets(
        &mut self,
        names: Vec<Option<String>>,
        limits: Vec<Option<u64>>,
        remainings: Vec<Option<u64>>,
        resets: Vec<Option<UnixMillis>>,
    ) {
        let lens = [names.len(), limits.len(), remainings.len(), resets.len()];
        let count = lens.into_iter().max().unwrap_or(0);
        if count == 0 {
            return;
        }
        if lens.iter().any(|&len| len != 0 && len != count) {
            self.warnings.push(format!(
                "rate-limit headers disagree on the number of buckets \
                 (bucket {}, limit {}, remaining {}, reset {}); values are matched by position",
                lens[0], lens[1], lens[2], lens[3]
            ));
        }
        if count > MAX_BUCKETS {
            self.warnings.push(format!(
                "{count} rate-limit buckets, only the first {MAX_BUCKETS} are kept"
            ));
        }
        let at = |list: &[Option<u64>], i: usize| list.get(i).copied().flatten();
        self.buckets = (0..count.min(MAX_BUCKETS))
            .map(|i| Bucket {
                name: names.get(i).cloned().flatten(),
                limit: at(&limits, i),
                remaining: at(&remainings, i),
                reset_at: at(&resets, i),
            })
            .collect();
    }

    /// No rate-limit information at all.
    pub fn is_empty(&self) -> bool {
        self.retry_after_at.is_none() && self.buckets.is_empty()
    }

    /// The bucket that will run out first: lowest `remaining`; among equals the one resetting
    /// last. Buckets without a `remaining` value rank after all others.
    pub fn binding(&self) -> Option<&Bucket> {
        self.buckets.iter().min_by_key(|b| {
            (
                b.remaining.is_none(),
                b.remaining,
                std::cmp::Reverse(b.reset_at),
            )
        })
    }

    /// The binding bucket's reset, or, when that bucket did not say, the latest reset any
    /// bucket announced (waiting for the latest one cannot be too early).
    fn binding_reset(&self) -> Option<UnixMillis> {
        self.binding()
            .and_then(|b| b.reset_at)
            .or_else(|| self.buckets.iter().filter_map(|b| b.reset_at).max())
    }

    /// How long the server asked us to wait, measured from `now`: `Retry-After` when present,
    /// else the binding bucket's reset. Never negative: a time in the past gives 0.
    ///
    /// This reads the reset even when capacity remains; to decide whether to wait at all after a
    /// given response, use [`Self::retry_hint_ms`].
    pub fn server_hint_ms(&self, now: UnixMillis) -> Option<u64> {
        self.retry_after_at
            .or_else(|| self.binding_reset())
            .map(|at| at.saturating_sub(now))
    }

    /// The instant before which the next request should not be sent, given the response's
    /// status: `Retry-After` always counts; the bucket reset only after a 429 or when a bucket
    /// is exhausted. Clever sends the reset on every response, so taking it unconditionally
    /// would turn the 2 s backoff after a 503 into a wait for the end of the minute.
    pub fn wait_until(&self, status: u16) -> Option<UnixMillis> {
        if self.retry_after_at.is_some() {
            return self.retry_after_at;
        }
        let exhausted = self.buckets.iter().any(Bucket::is_exhausted);
        if status == 429 || exhausted {
            self.binding_reset()
        } else {
            None
        }
    }

    /// [`Self::wait_until`] as a delay from `now`, floored at 0; the hint to feed the backoff.
    pub fn retry_hint_ms(&self, status: u16, now: UnixMillis) -> Option<u64> {
        self.wait_until(status).map(|at| at.saturating_sub(now))
    }
}

/// Splits a list-valued header. Empty items are kept so positions still line up with the other
/// headers (`200,,1200`).
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let text = text.trim();
    // An empty header value carries no item at all, rather than one empty item.
    let items = if text.is_empty() { None } else { Some(text) };
    items.into_iter().flat_map(|t| t.split(',').map(str::trim))
}

/// Bucket names end up in logs and the health report; keep them printable and short.
fn clean_name(item: &str) -> Option<String> {
    if item.is_empty() {
        return None;
    }
    Some(
        item.chars()
            .take(MAX_QUOTED)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

fn parse_count(header: &str, item: &str, warnings: &mut Warnings) -> Option<u64> {
    if item.is_empty() {
        return None;
    }
    match item.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            warnings.push(|| {
                format!(
                    "{header}: {} is not a non-negative integer, ignored",
                    quote(item)
                )
            });
            None
        }
    }
}

/// Epoch seconds, optionally with a fractional part (some servers send `1700000000.250`).
fn parse_reset(item: &str, received_at: UnixMillis, warnings: &mut Warnings) -> Option<u64> {
    if item.is_empty() {
        return None;
    }
    let (whole, fraction) = item.split_once('.').unwrap_or((item, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        warnings.push(|| format!("{RESET}: {} is not epoch seconds, ignored", quote(item)));
        return None;
    }
    let secs = whole.parse::<u64>().unwrap_or(u64::MAX);
    let millis_part: u64 = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'));
    if secs < MIN_PLAUSIBLE_EPOCH_SECS {
        warnings.push(|| {
            format!(
                "{RESET}: {} is too small for epoch seconds, read as seconds from now",
                quote(item)
            )
        });
        return Some(
            received_at
                .saturating_add(secs.saturating_mul(1_000))
                .saturating_add(millis_part),
        );
    }
    Some(secs.saturating_mul(1_000).saturating_add(millis_part))
}

/// A header value for a warning, in quotes with Rust string escapes. The cut counts escaped
/// characters: a combining mark escapes to seven (`\u{301}`), so cutting the value before
/// escaping let a 40-character value become a 280-character warning.
fn quote(value: &str) -> String {
    let mut out = String::from('"');
    let mut width = 0;
    for c in value.chars() {
        let c = if c.is_control() { '?' } else { c };
        // `str`'s Debug, one character at a time: the same escapes as quoting the whole value.
        let quoted = format!("{:?}", c.to_string());
        let escaped = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(&quoted);
        width += escaped.chars().count();
        if width > MAX_QUOTED {
            out.push('…');
            break;
        }
        out.push_str(escaped);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_700_000_000_000;

    fn parse(headers: &[(&str, &str)]) -> RateLimitInfo {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        RateLimitInfo::from_headers(&headers, NOW)
    }

    #[test]
    fn no_headers_no_information() {
        let info = parse(&[("content-type", "application/json")]);
        assert!(info.is_empty());
        assert_eq!(info.binding(), None);
        assert_eq!(info.server_hint_ms(NOW), None);
        assert_eq!(info.retry_hint_ms(429, NOW), None);
        assert!(info.warnings.is_empty());
    }

    #[test]
    fn retry_after_delta_seconds() {
        let info = parse(&[("Retry-After", "30")]);
        assert_eq!(info.retry_after_at, Some(NOW + 30_000));
        assert_eq!(info.server_hint_ms(NOW), Some(30_000));
        // Time spent since the response arrived counts against the wait.
        assert_eq!(info.server_hint_ms(NOW + 10_000), Some(20_000));
        assert_eq!(info.server_hint_ms(NOW + 40_000), Some(0));
        assert_eq!(
            parse(&[("retry-after", " 0 ")]).server_hint_ms(NOW),
            Some(0)
        );
    }

    #[test]
    fn retry_after_http_date() {
        // NOW is 2023-11-14T22:13:20Z.
        let info = parse(&[("Retry-After", "Tue, 14 Nov 2023 22:14:00 GMT")]);
        assert_eq!(info.retry_after_at, Some(NOW + 40_000));
        assert_eq!(info.server_hint_ms(NOW), Some(40_000));
        // Obsolete formats HTTP still allows.
        let rfc850 = parse(&[("Retry-After", "Tuesday, 14-Nov-23 22:14:00 GMT")]);
        assert_eq!(rfc850.server_hint_ms(NOW), Some(40_000));
        let asctime = parse(&[("Retry-After", "Tue Nov 14 22:14:00 2023")]);
        assert_eq!(asctime.server_hint_ms(NOW), Some(40_000));
    }

    #[test]
    fn past_dates_give_zero() {
        let info = parse(&[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(info.server_hint_ms(NOW), Some(0));
        let info = parse(&[
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1699999990"),
        ]);
        assert_eq!(info.server_hint_ms(NOW), Some(0));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(0));
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let info = parse(&[
            ("Retry-After", "5"),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1700000060"),
        ]);
        assert_eq!(info.server_hint_ms(NOW), Some(5_000));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(5_000));
        assert_eq!(info.retry_hint_ms(503, NOW), Some(5_000));
    }

    #[test]
    fn single_bucket_epoch_reset() {
        let info = parse(&[
            ("X-Ratelimit-Bucket", "api.clever.com"),
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1700000042"),
        ]);
        assert_eq!(
            info.buckets,
            vec![Bucket {
                name: Some("api.clever.com".into()),
                limit: Some(1200),
                remaining: Some(0),
                reset_at: Some(1_700_000_042_000),
            }]
        );
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
        assert!(info.binding().unwrap().is_exhausted());
        assert_eq!(info.server_hint_ms(NOW), Some(42_000));
        assert_eq!(info.wait_until(429), Some(1_700_000_042_000));
    }

    #[test]
    fn reset_only_matters_after_429_or_when_exhausted() {
        let info = parse(&[
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", "1100"),
            ("X-Ratelimit-Reset", "1700000042"),
        ]);
        assert_eq!(info.retry_hint_ms(503, NOW), None);
        assert_eq!(info.retry_hint_ms(200, NOW), None);
        assert_eq!(info.retry_hint_ms(429, NOW), Some(42_000));
        // The raw hint is still available for callers that want it.
        assert_eq!(info.server_hint_ms(NOW), Some(42_000));

        let exhausted = parse(&[
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1700000042"),
        ]);
        assert_eq!(exhausted.retry_hint_ms(503, NOW), Some(42_000));
    }

    #[test]
    fn fractional_reset() {
        let info = parse(&[("X-Ratelimit-Reset", "1700000001.25")]);
        assert_eq!(info.buckets[0].reset_at, Some(1_700_000_001_250));
        let info = parse(&[("X-Ratelimit-Reset", "1700000001.123456")]);
        assert_eq!(info.buckets[0].reset_at, Some(1_700_000_001_123));
    }

    #[test]
    fn small_reset_is_read_as_a_delta() {
        let info = parse(&[("X-Ratelimit-Remaining", "0"), ("X-Ratelimit-Reset", "30")]);
        assert_eq!(info.buckets[0].reset_at, Some(NOW + 30_000));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(30_000));
        assert_eq!(info.warnings.len(), 1);
    }

    #[test]
    fn comma_joined_buckets() {
        let info = parse(&[
            ("X-Ratelimit-Bucket", "district, token"),
            ("X-Ratelimit-Limit", "200, 1200"),
            ("X-Ratelimit-Remaining", "150,3"),
            ("X-Ratelimit-Reset", "1700000030, 1700000050"),
        ]);
        assert_eq!(info.buckets.len(), 2);
        assert_eq!(info.buckets[0].name.as_deref(), Some("district"));
        assert_eq!(info.buckets[0].limit, Some(200));
        assert_eq!(info.buckets[1].limit, Some(1200));
        let binding = info.binding().unwrap();
        assert_eq!(binding.name.as_deref(), Some("token"));
        assert_eq!(binding.remaining, Some(3));
        assert_eq!(info.server_hint_ms(NOW), Some(50_000));
        assert!(info.warnings.is_empty());
    }

    #[test]
    fn repeated_headers_buckets_any_case() {
        let info = parse(&[
            ("x-ratelimit-bucket", "a"),
            ("X-RATELIMIT-BUCKET", "b"),
            ("X-RateLimit-Limit", "200"),
            ("x-ratelimit-limit", "1200"),
            ("X-Ratelimit-Remaining", "0"),
            ("x-ratelimit-remaining", "900"),
            ("X-Ratelimit-Reset", "1700000010"),
            ("X-Ratelimit-Reset", "1700000059"),
        ]);
        assert_eq!(info.buckets.len(), 2);
        let binding = info.binding().unwrap();
        assert_eq!(binding.name.as_deref(), Some("a"));
        assert_eq!(info.server_hint_ms(NOW), Some(10_000));
    }

    #[test]
    fn mixed_repeated_and_comma_joined() {
        let info = parse(&[
            ("X-Ratelimit-Limit", "100, 200"),
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", "5, 6, 7"),
        ]);
        let limits: Vec<_> = info.buckets.iter().map(|b| b.limit).collect();
        assert_eq!(limits, [Some(100), Some(200), Some(1200)]);
        assert_eq!(info.binding().unwrap().limit, Some(100));
    }

    #[test]
    fn mismatched_counts_zip_by_position_with_a_warning() {
        let info = parse(&[
            ("X-Ratelimit-Limit", "200, 1200"),
            ("X-Ratelimit-Remaining", "7"),
            ("X-Ratelimit-Reset", "1700000020"),
        ]);
        assert_eq!(info.buckets.len(), 2);
        assert_eq!(info.buckets[0].remaining, Some(7));
        assert_eq!(info.buckets[1].remaining, None);
        assert_eq!(info.buckets[1].reset_at, None);
        assert_eq!(info.warnings.len(), 1);
        assert!(info.warnings[0].contains("disagree"));
        // The bucket with a known remaining count binds.
        assert_eq!(info.binding().unwrap().limit, Some(200));
    }

    #[test]
    fn binding_without_reset_falls_back_to_latest_reset() {
        let info = parse(&[
            ("X-Ratelimit-Remaining", "10, 0"),
            ("X-Ratelimit-Reset", "1700000020"),
        ]);
        assert_eq!(info.binding().unwrap().remaining, Some(0));
        assert_eq!(info.retry_hint_ms(429, NOW), Some(20_000));
    }

    #[test]
    fn ties_on_remaining_pick_the_later_reset() {
        let info = parse(&[
            ("X-Ratelimit-Remaining", "0, 0"),
            ("X-Ratelimit-Reset", "1700000010, 1700000050"),
        ]);
        assert_eq!(info.binding().unwrap().reset_at, Some(1_700_000_050_000));
    }

    #[test]
    fn garbage_is_ignored_with_warnings() {
        let info = parse(&[
            ("Retry-After", "soon"),
            ("X-Ratelimit-Limit", "lots, 1200"),
            ("X-Ratelimit-Remaining", "-1, 5"),
            ("X-Ratelimit-Reset", "tomorrow, 1700000009"),
        ]);
        assert_eq!(info.retry_after_at, None);
        assert_eq!(info.buckets.len(), 2);
        assert_eq!(info.buckets[0], Bucket::default());
        assert_eq!(info.buckets[1].limit, Some(1200));
        assert_eq!(info.buckets[1].remaining, Some(5));
        assert_eq!(info.warnings.len(), 4, "{:?}", info.warnings);
        assert_eq!(info.server_hint_ms(NOW), Some(9_000));
    }

    #[test]
    fn more_garbage_never_panics() {
        let long = "9".repeat(500);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("Retry-After", b"".to_vec()),
            ("Retry-After", b"-5".to_vec()),
            ("Retry-After", b"1.5".to_vec()),
            ("Retry-After", vec![0xff, 0xfe]),
            ("Retry-After", b"Mon, 99 Foo 2023 25:61:61 GMT".to_vec()),
            ("X-Ratelimit-Reset", b".".to_vec()),
            ("X-Ratelimit-Reset", b"1.2.3".to_vec()),
            ("X-Ratelimit-Reset", long.clone().into_bytes()),
            ("X-Ratelimit-Limit", long.clone().into_bytes()),
            ("X-Ratelimit-Remaining", b",,,".to_vec()),
            ("X-Ratelimit-Bucket", "naïve\u{0}bucket".as_bytes().to_vec()),
            ("X-Ratelimit-Limit", "١٢٠٠".as_bytes().to_vec()),
        ];
        for (name, value) in &cases {
            let info = RateLimitInfo::from_headers(&[(*name, value.as_slice())], NOW);
            let _ = info.server_hint_ms(NOW);
            let _ = info.retry_hint_ms(429, 0);
            if let Some(name) = info.binding().and_then(|b| b.name.as_ref()) {
                assert!(!name.contains('\0'));
            }
            for w in &info.warnings {
                assert!(w.chars().count() < 200, "{w}");
            }
        }
        // Overlong numbers saturate rather than wrap.
        let info = parse(&[("Retry-After", &long)]);
        assert_eq!(info.retry_after_at, Some(u64::MAX));
        let info = parse(&[("X-Ratelimit-Reset", &long)]);
        assert_eq!(info.buckets[0].reset_at, Some(u64::MAX));
    }

    #[test]
    fn empty_items_keep_positions() {
        let info = parse(&[
            ("X-Ratelimit-Limit", "200,,1200"),
            ("X-Ratelimit-Remaining", "1,2,3"),
        ]);
        let limits: Vec<_> = info.buckets.iter().map(|b| b.limit).collect();
        assert_eq!(limits, [Some(200), None, Some(1200)]);
        assert!(info.warnings.is_empty());
        // An entirely empty header contributes nothing.
        let info = parse(&[("X-Ratelimit-Limit", "  ")]);
        assert!(info.buckets.is_empty());
    }

    #[test]
    fn repeated_retry_after_takes_the_later() {
        let info = parse(&[("Retry-After", "10"), ("Retry-After", "20")]);
        assert_eq!(info.server_hint_ms(NOW), Some(20_000));
        assert_eq!(info.warnings.len(), 1);
    }

    #[test]
    fn bucket_count_is_bounded() {
        let many = vec!["1"; 100].join(",");
        let info = parse(&[("X-Ratelimit-Limit", &many)]);
        assert_eq!(info.buckets.len(), MAX_BUCKETS);
        assert_eq!(info.warnings.len(), 1);
    }

    #[test]
    fn warning_count_is_bounded() {
        // Found by the `ratelimit_headers` fuzz target: one warning per bad item, unbounded.
        let many = vec!["x"; 1_000].join(",");
        let info = parse(&[
            ("X-Ratelimit-Limit", &many),
            ("X-Ratelimit-Remaining", &many),
        ]);
        assert_eq!(info.buckets.len(), MAX_BUCKETS);
        // 16 value warnings, the count of the omitted ones, and the bucket-count warning.
        assert_eq!(info.warnings.len(), MAX_WARNINGS + 2, "{:?}", info.warnings);
        assert_eq!(
            info.warnings[MAX_WARNINGS],
            "1984 more rate-limit warnings omitted"
        );
        assert!(info.warnings[MAX_WARNINGS + 1].contains("1000 rate-limit buckets"));
    }

    #[test]
    fn quoted_values_are_cut_after_escaping() {
        let combining = "\u{301}".repeat(45);
        let info = parse(&[("Retry-After", &combining)]);
        let w = &info.warnings[0];
        assert!(w.chars().count() < 200, "{w}");
        assert!(w.starts_with(r#"retry-after: "\u{301}"#), "{w}");
        assert!(w.contains(r#"\u{301}…""#), "{w}");

        let info = parse(&[("X-Ratelimit-Limit", r#"say "hi""#)]);
        assert_eq!(
            info.warnings,
            [r#"x-ratelimit-limit: "say \"hi\"" is not a non-negative integer, ignored"#]
        );
        let long = "y".repeat(41);
        let info = parse(&[("X-Ratelimit-Limit", &long)]);
        assert!(info.warnings[0].contains(&format!("\"{}…\"", "y".repeat(40))));
    }

    #[test]
    fn accepts_owned_header_lists() {
        let headers: Vec<(String, Vec<u8>)> = vec![
            ("X-Ratelimit-Remaining".into(), b"3".to_vec()),
            ("x-ratelimit-reset".into(), b"1700000005".to_vec()),
        ];
        let info = RateLimitInfo::from_headers(&headers, NOW);
        assert_eq!(info.retry_hint_ms(429, NOW), Some(5_000));
    }

    #[test]
    fn round_trips_through_serde() {
        let info = parse(&[
            ("Retry-After", "3"),
            ("X-Ratelimit-Bucket", "x"),
            ("X-Ratelimit-Limit", "oops"),
        ]);
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<RateLimitInfo>(&json).unwrap(), info);
    }
}
