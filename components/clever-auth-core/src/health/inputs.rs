//! What the report is built from, and what it gives back.

use super::grade::Status;
use crate::health_summary::DistrictCounts;
use crate::settings::SettingError;
use crate::status::{DistrictRecord, ErrorRecord, HostSecretsStatus, ServiceStatus};
use crate::UnixMillis;
use serde_json::Value;

pub const CONTENT_TYPE: &str = "application/health+json";

/// Whether each secret could be read through `wasi:config` just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialPresence {
    pub client_id: bool,
    pub client_secret: bool,
}

/// Which answer to render. The public one is safe for anyone who can reach the endpoint; the
/// detail names districts, the secrets source, rate-limit state and full error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Public,
    /// One page (1-based) of [`DETAIL_PAGE_SIZE`] districts.
    Detail {
        page: u32,
    },
}

/// Districts per detail page: the detail answer stays below ~100 KB however many districts
/// there are.
pub const DETAIL_PAGE_SIZE: usize = 250;

/// Where the district part of the report comes from.
#[derive(Debug, Clone, Copy)]
pub enum Districts<'a> {
    /// Every district's record (the detail view, or when the precomputed record cannot answer).
    Records(&'a [DistrictRecord]),
    /// The precomputed counts ([`crate::health_summary`]) and the newest error among them.
    Counted {
        counts: DistrictCounts,
        latest_error: Option<&'a ErrorRecord>,
    },
}

/// Everything the report is built from.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs<'a> {
    pub now: UnixMillis,
    pub settings_errors: &'a [SettingError],
    pub credentials: CredentialPresence,
    pub service: Option<&'a ServiceStatus>,
    pub districts: Districts<'a>,
    pub expiry_skew_ms: u64,
    /// The native host's secrets provider status, when there is one.
    pub secrets: Option<&'a HostSecretsStatus>,
    /// Which instance answers (`WEBSITE_INSTANCE_ID` on App Service), when known.
    pub instance_id: Option<&'a str>,
    pub view: View,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub status: Status,
    pub body: Value,
}

impl HealthReport {
    pub fn http_status(&self) -> u16 {
        self.status.http_status()
    }
}
