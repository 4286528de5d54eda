//! Randomness for jitter and lease holder ids, from std's randomly keyed hasher (which std
//! seeds from wasi:random), so no extra import is needed.

use std::hash::{BuildHasher, Hasher};

pub fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Uniform in [0, 1).
pub fn random01() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
