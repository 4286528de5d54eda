//! The response time and header-list shorthand the tests share.

use super::info::RateLimitInfo;
use crate::UnixMillis;

pub(super) const NOW: UnixMillis = 1_700_000_000_000;

pub(super) fn parse(headers: &[(&str, &str)]) -> RateLimitInfo {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    RateLimitInfo::from_headers(&headers, NOW)
}
