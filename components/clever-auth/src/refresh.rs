//! The refresher: records what it finds (settings, credentials) and says when to run next.

use crate::{clock, config, kv::Kv};
use clever_auth_core::status::{keys, CredentialState, ServiceStatus};
use clever_auth_core::UnixMillis;
use serde::{Deserialize, Serialize};

/// How soon to look again while credentials or settings are missing: the host's secrets may
/// arrive at any moment (Key Vault recovering), so this stays short.
const RECHECK_MS: u64 = 5_000;

/// With nothing to refresh, how long until the credentials are looked at again.
const IDLE_MS: u64 = 60_000;

const SCHEDULE_KEY: &str = "clever-auth/v1/schedule";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Schedule {
    next_due_at: UnixMillis,
}

/// Runs when the health handler has answered (the path Spin uses), but only if something is due.
pub fn run_if_due() {
    let Ok(kv) = Kv::open() else { return };
    let due = kv
        .get::<Schedule>(SCHEDULE_KEY)
        .ok()
        .flatten()
        .is_none_or(|s| s.next_due_at <= clock::now());
    if due {
        run_due();
    }
}

/// Does every due refresh and returns the delay in milliseconds until the next one.
pub fn run_due() -> u64 {
    let now = clock::now();
    let Ok(kv) = Kv::open() else {
        eprintln!("clever-auth: key-value store `default` unavailable; refresh skipped");
        return RECHECK_MS;
    };
    let mut service = kv
        .get::<ServiceStatus>(keys::SERVICE)
        .ok()
        .flatten()
        .unwrap_or_default();
    service.last_run_at = Some(now);

    let settings_ok = match config::settings() {
        Ok(_) => true,
        Err(errors) => {
            for e in &errors {
                eprintln!("clever-auth: {e}");
            }
            false
        }
    };
    let presence = config::credential_presence();
    let have_credentials = presence.client_id && presence.client_secret;
    if !have_credentials {
        service.credentials = Some(CredentialState::Missing);
    } else if service
        .credentials
        .is_none_or(|c| c == CredentialState::Missing)
    {
        service.credentials = Some(CredentialState::Present);
    }
    service.credentials_checked_at = Some(now);

    let delay = if settings_ok && have_credentials {
        IDLE_MS
    } else {
        RECHECK_MS
    };
    if let Err(e) = kv.put(keys::SERVICE, &service) {
        eprintln!("clever-auth: could not record status: {e}");
    }
    let _ = kv.put(
        SCHEDULE_KEY,
        &Schedule {
            next_due_at: now + delay,
        },
    );
    delay
}
