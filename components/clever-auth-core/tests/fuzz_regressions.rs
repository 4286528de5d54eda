//! Replays fuzz inputs on stable: every file under `tests/fuzz_regressions/<target>/` (inputs
//! that once broke an invariant, minimised) and the seeds `fuzz/corpus/<target>/seed-*` go
//! through the same function the cargo-fuzz target calls, so a fixed bug stays fixed without
//! nightly or libFuzzer.

mod fuzz_harness;

use std::path::{Path, PathBuf};

fn files_in(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let regressions = files_in(&root.join("tests/fuzz_regressions").join(target));
    // Only the committed seeds: a local fuzz run adds thousands of generated inputs next to them.
    let seeds = files_in(&root.join("../../fuzz/corpus").join(target)).filter(|path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"))
    });
    let mut files: Vec<PathBuf> = regressions.chain(seeds).collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    for path in files {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Name the input in the failure: the harness's own message does not know it.
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} broke an invariant",
            path.display()
        );
    }
}

#[test]
fn token_listing() {
    replay("token_listing", fuzz_harness::token_listing);
}

#[test]
fn token_response() {
    replay("token_response", fuzz_harness::token_response);
}

#[test]
fn ratelimit_headers() {
    replay("ratelimit_headers", fuzz_harness::ratelimit_headers);
}

#[test]
fn settings() {
    replay("settings", fuzz_harness::settings);
}

#[test]
fn health_report() {
    replay("health_report", fuzz_harness::health_report);
}
