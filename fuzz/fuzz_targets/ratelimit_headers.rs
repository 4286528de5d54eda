//! Decoding and invariants live in the core crate's test harness, shared with the stable
//! replay test `tests/fuzz_regressions.rs`; see there for the input format.
#![no_main]

#[allow(dead_code)]
#[path = "../../components/clever-auth-core/tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::ratelimit_headers(data));
