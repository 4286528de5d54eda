//! Part 2: process start to first token, cold and with the component cache, and one token
//! hand-out from the cache.

use super::build::Bins;
use super::options::Options;
use super::servers::HostFlags;
use super::stats::median;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub(super) fn first_token(
    bins: &Bins,
    flags: &HostFlags,
    fake_url: &str,
    opts: &Options,
    out_dir: &Path,
) -> Result<Value> {
    let runs = opts.first_token_runs.max(1);
    let summary = |results: &[(Duration, Duration)]| {
        let mut tokens: Vec<f64> = results.iter().map(|(_, t)| t.as_secs_f64() * 1e3).collect();
        let mut listening: Vec<f64> = results.iter().map(|(l, _)| l.as_secs_f64() * 1e3).collect();
        json!({
            "runs": results.len(),
            "token_ms": tokens.clone(),
            "listening_ms": listening.clone(),
            "token_median_ms": median(&mut tokens),
            "listening_median_ms": median(&mut listening),
        })
    };
    eprintln!("xtask bench: first token, {runs} runs");
    let cold = crate::first_token_runs(&bins.host, &bins.component, fake_url, runs, &[])?;
    let mut result = json!({ "cold": summary(&cold) });
    if flags.component_cache {
        let dir = out_dir.join("component-cache");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let args = vec!["--component-cache".to_string(), dir.display().to_string()];
        // One run fills the cache; the measured runs find it.
        crate::first_token_runs(&bins.host, &bins.component, fake_url, 1, &args)?;
        let cached = crate::first_token_runs(&bins.host, &bins.component, fake_url, runs, &args)?;
        result["cached"] = summary(&cached);
    }
    Ok(result)
}

pub(super) fn handout(bins: &Bins, opts: &Options) -> Result<Value> {
    let mut results = Vec::new();
    for districts in [2, opts.districts.max(1)] {
        let out = Command::new(&bins.bench)
            .args([
                "handout",
                "--iters",
                "2000000",
                "--districts",
                &districts.to_string(),
            ])
            .output()
            .context("running the hand-out benchmark")?;
        if !out.status.success() {
            bail!(
                "the hand-out benchmark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().context("no output")?;
        results.push(serde_json::from_str::<Value>(line)?);
    }
    Ok(Value::Array(results))
}
