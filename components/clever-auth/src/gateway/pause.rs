//! Waiting inside a request (rate-limit holds, retry delays, token polls) on the host's clock.

use crate::bindings::wasi::clocks::monotonic_clock;
use crate::clock;
use clever_auth_core::UnixMillis;

/// Blocks until the wall clock reaches `at` (returns at once for a time already past).
pub fn until(at: UnixMillis) {
    let ms = at.saturating_sub(clock::now());
    if ms > 0 {
        monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }
}
