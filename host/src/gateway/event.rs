//! The request's `gateway_request` event, from the record the component's `finish` returns:
//! the same target, source and fields as a component line (see `logging::component`), without
//! a JSON line to write in the guest and parse here for every request.

use crate::bindings::exports::clever::auth::gateway::RequestEvent;
use crate::logging::fields::{COMPONENT_SOURCE, COMPONENT_TARGET};

const EVENT: &str = "gateway_request";

macro_rules! emit {
    ($level:ident, $e:expr) => {{
        let e = $e;
        tracing::$level!(
            target: COMPONENT_TARGET,
            source = COMPONENT_SOURCE,
            event = EVENT,
            district = e.district.as_deref(),
            method = %e.method,
            path = e.path.as_deref(),
            status = u64::from(e.status),
            attempts = u64::from(e.attempts),
            waited_ms = e.waited_ms,
            duration_ms = e.duration_ms,
            error_code = e.error_code.as_deref(),
            "{EVENT}"
        )
    }};
}

pub fn log(e: &RequestEvent) {
    // As the component chose for its line: a 5xx is worth a warning.
    if e.status >= 500 {
        emit!(warn, e);
    } else {
        emit!(info, e);
    }
}
