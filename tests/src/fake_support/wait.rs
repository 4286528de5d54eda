//! Waiting until a fake's request log satisfies a condition, woken by the log's change counter
//! instead of polling.

use std::time::Duration;

use tokio::sync::watch;

/// Waits until `done` holds for `snapshot()`; returns that snapshot. `changes` must be
/// subscribed before this is called, so no change can slip in unseen. Errs after `timeout`
/// with the last records (`summary` of each) in the message, or with `dropped` once the log
/// is gone.
pub(crate) async fn wait_for_log<R>(
    mut changes: watch::Receiver<u64>,
    timeout: Duration,
    dropped: &str,
    snapshot: impl Fn() -> Vec<R>,
    summary: impl Fn(&R) -> String,
    mut done: impl FnMut(&[R]) -> bool,
) -> anyhow::Result<Vec<R>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let records = snapshot();
        if done(&records) {
            return Ok(records);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => anyhow::bail!("{dropped}"),
            Err(_) => {
                let tail: Vec<String> = records.iter().rev().take(20).rev().map(&summary).collect();
                anyhow::bail!(
                    "timed out after {timeout:?}; {} requests recorded, last ones:\n  {}",
                    records.len(),
                    tail.join("\n  ")
                );
            }
        }
    }
}
