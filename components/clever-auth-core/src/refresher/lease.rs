//! How long one refresher run holds the deployment's lease, and how soon an instance that
//! found it held asks again. The holder renews the lease before each HTTP attempt, so it
//! needs to cover one attempt and the writes after it; a holder that died (`kill -9`, a lost
//! instance) is replaced once that much time has passed.

/// The lease's lifetime never falls below this: the writes after an attempt need time even
/// when attempts are given very little.
pub const LEASE_TTL_FLOOR_MS: u64 = 5_000;

/// An instance that found the lease held asks again after this long.
pub const LEASE_BUSY_MS: u64 = 200;

/// Four attempts' worth (`clever_http_timeout_ms`), at least [`LEASE_TTL_FLOOR_MS`]: 40 s
/// with the default 10 s timeout.
pub fn lease_ttl_ms(http_timeout_ms: u64) -> u64 {
    http_timeout_ms.saturating_mul(4).max(LEASE_TTL_FLOOR_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_attempts_with_a_floor() {
        assert_eq!(lease_ttl_ms(10_000), 40_000);
        assert_eq!(lease_ttl_ms(1_000), LEASE_TTL_FLOOR_MS);
        assert_eq!(lease_ttl_ms(0), LEASE_TTL_FLOOR_MS);
        assert_eq!(lease_ttl_ms(u64::MAX), u64::MAX);
    }
}
