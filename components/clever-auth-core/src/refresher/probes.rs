//! What a connection probe's answer means for its district, and the API version seen across a
//! batch of probes.

use super::io::{transport_outcome, HttpResult, Reply};
use crate::backoff::classify_status;
use crate::clever_wire;
use crate::ratelimit::RateLimitInfo;
use crate::settings::Settings;
use crate::status::VersionRecord;
use crate::UnixMillis;
use std::collections::BTreeSet;

/// A failed probe, in the terms of the district's health record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
    /// Clever refused the token (401): it must never be served again.
    pub revoked: bool,
    /// A 429: no probe of this district before this instant.
    pub rate_limited_until: Option<UnixMillis>,
}

/// `Ok(())` when the token works.
pub fn verdict(result: &HttpResult, now: UnixMillis) -> Result<(), ProbeFailure> {
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => {
            return Err(ProbeFailure {
                code: transport_outcome(e).1.into(),
                message: format!("probe: {e}"),
                status: None,
                revoked: false,
                rate_limited_until: None,
            });
        }
    };
    if (200..300).contains(&reply.status) {
        return Ok(());
    }
    let unsupported = clever_wire::is_version_not_supported(reply.status, &reply.body);
    let code = if unsupported {
        "version_unsupported".to_string()
    } else if reply.status == 401 {
        "token_revoked".to_string()
    } else {
        classify_status(reply.status).code().to_string()
    };
    let rate_limited_until = (reply.status == 429)
        .then(|| RateLimitInfo::from_headers(&reply.headers, now).wait_until(429))
        .flatten();
    Err(ProbeFailure {
        code,
        message: format!(
            "probe: {}",
            clever_wire::error_summary(reply.status, &reply.body)
        ),
        status: Some(reply.status),
        revoked: reply.status == 401,
        rate_limited_until,
    })
}

/// Collects the version signals of all probes in one batch.
#[derive(Debug, Default)]
pub struct VersionProbe {
    seen: BTreeSet<String>,
    header: Option<String>,
    unsupported: bool,
    answered: bool,
}

impl VersionProbe {
    pub fn observe(&mut self, settings: &Settings, reply: &Reply) {
        self.answered = true;
        if let Some(name) = &settings.version_header {
            if let Some(v) = reply
                .header(name)
                .and_then(|h| clever_wire::version_from_header(&h))
            {
                self.header = Some(v);
            }
        }
        if (200..300).contains(&reply.status) {
            self.seen.extend(clever_wire::detect_versions(&reply.body));
        }
        self.unsupported |= clever_wire::is_version_not_supported(reply.status, &reply.body);
    }

    pub fn finish(self, configured: &str, now: UnixMillis) -> Option<VersionRecord> {
        if !self.answered {
            return None;
        }
        let mut seen = self.seen.clone();
        seen.extend(self.header.clone());
        let check =
            clever_wire::check_version(configured, &self.seen, self.header, self.unsupported);
        let state = check.state();
        Some(VersionRecord {
            configured: configured.to_string(),
            seen: seen.into_iter().collect(),
            state,
            at: now,
        })
    }
}
