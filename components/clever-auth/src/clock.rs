//! The component's only clock read; everything below it is fed `now`.

use clever_auth_core::UnixMillis;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
