//! Reading one header value: a count, a reset time or a `Retry-After`, each on its own so a bad
//! one is dropped without touching the rest.

use super::warnings::{quote, Warnings, MAX_QUOTED};
use crate::UnixMillis;

/// Epoch seconds below this (2001-09-09) cannot be a current reset time. Such small values are
/// almost certainly seconds-until-reset from a server that ignores the convention; reading them
/// as an epoch would put the reset in 1970 and turn every 429 into an immediate retry.
const MIN_PLAUSIBLE_EPOCH_SECS: u64 = 1_000_000_000;

/// `Retry-After` as an instant: delay-seconds anchored at `received_at`, or an HTTP-date.
/// `None` when the (trimmed) value is neither.
pub(super) fn retry_after_at(text: &str, received_at: UnixMillis) -> Option<UnixMillis> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "a very long time", not garbage.
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        Some(received_at.saturating_add(secs.saturating_mul(1_000)))
    } else {
        httpdate::parse_http_date(text)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Splits a list-valued header. Empty items are kept so positions still line up with the other
/// headers (`200,,1200`).
pub(super) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let text = text.trim();
    // An empty header value carries no item at all, rather than one empty item.
    let items = if text.is_empty() { None } else { Some(text) };
    items.into_iter().flat_map(|t| t.split(',').map(str::trim))
}

/// Bucket names end up in logs and the health report; keep them printable and short.
pub(super) fn clean_name(item: &str) -> Option<String> {
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

pub(super) fn parse_count(header: &str, item: &str, warnings: &mut Warnings) -> Option<u64> {
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
pub(super) fn parse_reset(
    header: &str,
    item: &str,
    received_at: UnixMillis,
    warnings: &mut Warnings,
) -> Option<u64> {
    if item.is_empty() {
        return None;
    }
    let (whole, fraction) = item.split_once('.').unwrap_or((item, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        warnings.push(|| format!("{header}: {} is not epoch seconds, ignored", quote(item)));
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
                "{header}: {} is too small for epoch seconds, read as seconds from now",
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

#[cfg(test)]
mod tests {
    use crate::ratelimit::fixtures::{parse, NOW};
    use crate::ratelimit::info::{Bucket, RateLimitInfo};

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
}
