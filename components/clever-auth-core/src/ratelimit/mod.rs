//! Rate-limit headers: what the server says about its capacity and when to come back.
//!
//! Clever sends `X-Ratelimit-{Bucket,Limit,Remaining,Reset}` on every response, possibly for
//! several buckets at once (repeated headers or comma-joined values), and may send
//! `Retry-After`. Servers and proxies get these wrong in creative ways, so every value is parsed
//! on its own: a bad one is dropped with a warning and never poisons the rest.
//!
//! One file per decision: `info` (what one response said), `headers` (which headers count and
//! how their lists line up into buckets), `values` (reading one value: counts, resets,
//! `Retry-After`), `warnings` (how much is said about bad values) and `wait` (which bucket binds
//! and how long to wait). Callers use the re-exports below; the files are private.

mod headers;
mod info;
mod values;
mod wait;
mod warnings;

#[cfg(test)]
mod fixtures;

pub use info::{Bucket, RateLimitInfo};
pub use warnings::MAX_WARNINGS;
