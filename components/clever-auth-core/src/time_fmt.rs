//! RFC 3339 rendering of [`UnixMillis`] for the health body and logs.

use crate::UnixMillis;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats `at` as RFC 3339 in UTC with millisecond precision, e.g. `2026-11-25T17:34:32.123Z`.
///
/// Falls back to the raw number for instants `time` cannot represent, so a corrupt record in
/// the store degrades the health body instead of failing it.
pub fn rfc3339(at: UnixMillis) -> String {
    let nanos = i128::from(at) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{at}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_and_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_091_672_123), "2025-11-25T17:27:52.123Z");
    }

    #[test]
    fn out_of_range_does_not_panic() {
        assert_eq!(rfc3339(u64::MAX), format!("@{}ms", u64::MAX));
    }
}
