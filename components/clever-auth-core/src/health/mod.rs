//! The health report for `GET /health/clever-auth`, in the IETF "Health Check Response Format
//! for HTTP APIs" shape (`application/health+json`).
//!
//! Built only from records already in memory, so answering never waits on Clever or Key Vault.
//! Status rules follow App Service's health check: `warn` is still HTTP 200 (the instance can
//! serve); 503 means this instance has no usable token or cannot get one.

mod checks;
mod deadlines;
mod detail;
mod grade;
mod inputs;
mod public;
mod report;
mod store;

pub use crate::health_summary::DistrictCounts;
pub use deadlines::{with_host_deadlines, DEADLINE_OVERRUN_WARN_MS};
pub use grade::{district_status, Status};
pub use inputs::{
    CredentialPresence, Districts, HealthInputs, HealthReport, View, CONTENT_TYPE, DETAIL_PAGE_SIZE,
};
pub use public::public_message;
pub use report::report;
pub use store::{with_host_store, STORE_UNREACHABLE};

#[cfg(test)]
mod tests;
