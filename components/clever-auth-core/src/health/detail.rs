//! The parts only the detail view shows: full error text and the per-district pages.

use super::grade::district_status;
use super::inputs::DETAIL_PAGE_SIZE;
use crate::status::{DistrictRecord, ErrorRecord};
use crate::time_fmt::rfc3339;
use crate::UnixMillis;
use serde_json::{json, Value};

/// One page of the per-district checks, and where the page sits among all of them.
pub(super) fn district_page(
    records: &[DistrictRecord],
    page: u32,
    now: UnixMillis,
    skew: u64,
) -> (Vec<Value>, Value) {
    let pages = records.len().div_ceil(DETAIL_PAGE_SIZE).max(1);
    let page = usize::try_from(page).unwrap_or(usize::MAX).clamp(1, pages);
    let mut checks: Vec<Value> = records
        .iter()
        .skip((page - 1) * DETAIL_PAGE_SIZE)
        .take(DETAIL_PAGE_SIZE)
        .map(|d| {
            json!({
                "componentId": d.district_id,
                "componentType": "district",
                "status": district_status(d, now, skew).as_str(),
                "time": rfc3339(now),
                "expiresAt": d.expires_at.map(rfc3339),
                "refreshAt": d.refresh_at.map(rfc3339),
                "lastSuccess": d.last_success.map(rfc3339),
                "lastError": d.last_error.as_ref().map(error_json),
                "consecutiveFailures": d.consecutive_failures,
                "rateLimitedUntil": d.rate_limited_until.filter(|t| *t > now).map(rfc3339),
            })
        })
        .collect();
    if checks.is_empty() {
        checks.push(json!({
            "componentType": "district",
            "status": "fail",
            "time": rfc3339(now),
            "output": "no district token has been obtained yet",
        }));
    }
    let info = json!({
        "page": page,
        "pages": pages,
        "pageSize": DETAIL_PAGE_SIZE,
        "total": records.len(),
    });
    (checks, info)
}

pub(super) fn error_json(e: &ErrorRecord) -> Value {
    json!({ "code": e.code, "message": e.message, "at": rfc3339(e.at) })
}
