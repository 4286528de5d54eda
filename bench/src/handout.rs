//! The cost of one token hand-out from the cache, natively: read the district's
//! `clever-auth/v1/token/<id>` record from the host's in-memory store, deserialise the
//! `TokenEntry`, and ask `lifecycle::hand_out` for the token.

use crate::seed;
use clever_auth_core::lifecycle::{self, TokenEntry};
use clever_auth_core::status::keys;
use clever_auth_host::keyvalue::{MemoryStore, DEFAULT_LABEL};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Hand-outs to time.
    #[arg(long, default_value_t = 1_000_000)]
    iters: u64,
    /// Districts in the store (the hand-outs cycle through them).
    #[arg(long, default_value_t = 500)]
    districts: usize,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let districts = args.districts.max(1);
    let store = MemoryStore::new([DEFAULT_LABEL.to_string()]);
    let ids = seed::district_ids(districts);
    let now = seed::now_ms();
    seed::seed(&store, &ids, now)?;
    let keys: Vec<String> = ids.iter().map(|id| keys::token(id)).collect();
    let skew_ms = 30_000;

    let hand_out = |i: usize| -> usize {
        let id = &ids[i % districts];
        let bytes = store.get(DEFAULT_LABEL, &keys[i % districts]);
        let entry: Option<TokenEntry> = bytes.and_then(|b| serde_json::from_slice(&b).ok());
        lifecycle::hand_out(entry.as_ref(), id, now, skew_ms).map_or(0, |t| t.expose().len())
    };
    // Warm the caches and the allocator, and make sure every hand-out succeeds.
    for i in 0..districts.max(10_000) {
        anyhow::ensure!(hand_out(i) == 40, "a seeded token was not handed out");
    }
    let iters = usize::try_from(args.iters.max(1))?;
    let started = Instant::now();
    let mut total = 0usize;
    for i in 0..iters {
        total = total.wrapping_add(hand_out(black_box(i)));
    }
    let elapsed = started.elapsed();
    black_box(total);
    let ns_per_op = elapsed.as_nanos() as f64 / iters as f64;
    println!(
        "{}",
        json!({
            "iters": iters,
            "districts": districts,
            "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
            "ns_per_op": ns_per_op,
        })
    );
    Ok(())
}
