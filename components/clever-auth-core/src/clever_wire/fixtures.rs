//! Canary values shared by the tests of the body parsers: a token that must never be printed
//! and district ids that must stay readable.

pub(super) const TOKEN_A: &str = "4f1e2d3c4b5a69788796a5b4c3d2e1f001234567";
pub(super) const TOKEN_B: &str = "aa11bb22cc33dd44ee55ff6677889900abcdef12";
pub(super) const DISTRICT_A: &str = "5d8a2e6f1c9d440000a1b2c3";
pub(super) const DISTRICT_B: &str = "5d8a2e6f1c9d440000d4e5f6";
