//! What `cargo xtask bench` was asked for.

use std::path::PathBuf;

#[derive(Clone)]
pub struct Options {
    pub secs: f64,
    pub warmup_secs: f64,
    pub out: PathBuf,
    pub districts: usize,
    pub gen_threads: usize,
    pub max_requests: u64,
    pub first_token_runs: u32,
    /// Rounds of each gateway point (direct, gateway, nginx in turn each round).
    pub gateway_rounds: u32,
    /// Run one part only (`scale10k`, `spin`, `gateway`).
    pub only: Option<String>,
    /// Another build's component to measure instead of this one's.
    pub component: Option<PathBuf>,
}
