//! Sans-IO heart of the clever-auth component.
//!
//! Nothing here performs I/O or reads a clock: every function is fed `now` (milliseconds since
//! the Unix epoch) and the bytes/headers that arrived, and returns decisions. The wasm shell in
//! `components/clever-auth` does the I/O, so every rule here is tested natively with a fake clock
//! and runs unchanged under Spin and under the native host.

/// Milliseconds since the Unix epoch. The only notion of time this crate knows.
pub type UnixMillis = u64;

pub mod alerts;
pub mod health;
pub mod health_summary;
pub mod health_view;
pub mod lifecycle;
pub mod refresher;
pub mod settings;
pub mod settings_check;
pub mod status;
pub mod store_seal;
pub mod time_fmt;

// --- Clever wire and resilience rules (retry schedule, rate-limit headers, Clever bodies) ---
pub mod backoff;
pub mod clever_wire;
pub mod gateway;
pub mod ratelimit;
pub mod secret;
pub mod secrets_error;
