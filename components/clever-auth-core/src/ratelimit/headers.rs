//! Which headers count and how their lists line up: every rate-limit header of a response, in
//! any case, repeated or comma-joined, assembled by position into buckets.

use super::info::{Bucket, RateLimitInfo};
use super::values::{clean_name, parse_count, parse_reset, retry_after_at, split_list};
use super::warnings::{quote, Warnings};
use crate::UnixMillis;

const RETRY_AFTER: &str = "retry-after";
const BUCKET: &str = "x-ratelimit-bucket";
const LIMIT: &str = "x-ratelimit-limit";
const REMAINING: &str = "x-ratelimit-remaining";
const RESET: &str = "x-ratelimit-reset";

/// More buckets than this is not a real rate-limit scheme; stop before a hostile or broken
/// response makes us allocate and log without bound.
const MAX_BUCKETS: usize = 16;

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
                        resets.push(parse_reset(RESET, item, received_at, &mut warnings));
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
        let parsed = retry_after_at(text, self.received_at);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::fixtures::{parse, NOW};
    use crate::ratelimit::warnings::MAX_WARNINGS;

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
    fn accepts_owned_header_lists() {
        let headers: Vec<(String, Vec<u8>)> = vec![
            ("X-Ratelimit-Remaining".into(), b"3".to_vec()),
            ("x-ratelimit-reset".into(), b"1700000005".to_vec()),
        ];
        let info = RateLimitInfo::from_headers(&headers, NOW);
        assert_eq!(info.retry_hint_ms(429, NOW), Some(5_000));
    }
}
