//! Calls the component's `clever:auth/refresher.run-due` at start-up and whenever the next
//! refresh is due, in a fresh instance each time (the component keeps its state in the store).
//!
//! Other runs (a gateway request, a health request) can move the schedule earlier: a relist,
//! or a retry that run planned. The store tells the scheduler whenever the refresher's cycle
//! record is written, and the scheduler then shortens its sleep to the record's `next_due_at`
//! (the machine's persisted `poll_timeout`); it never lengthens it, so the worst a stale or
//! odd record can cause is one early `run-due` that finds nothing due.

use crate::keyvalue::{MemoryStore, DEFAULT_LABEL};
use crate::runtime::deadline::{self, CallClock, DeadlineExceeded};
use crate::runtime::Runtime;
use clever_auth_core::refresher::Cycle;
use clever_auth_core::status::keys;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Upper bound on one sleep, so a wrong answer from the component cannot park the scheduler.
const MAX_SLEEP: Duration = Duration::from_secs(300);
/// Pause after the refresher itself failed (a trap), before trying again.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Lets other parts of the host (e.g. secrets arriving) ask for a run now.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn now(&self) {
        self.0.notify_one();
    }
}

pub async fn run(runtime: Runtime, wake: Wake) {
    let kv = runtime.shared.kv.clone();
    let cycle_written = Arc::new(Notify::new());
    kv.watch(DEFAULT_LABEL, keys::CYCLE, cycle_written.clone());
    loop {
        let sleep = match run_once(&runtime).await {
            Ok(next_ms) => Duration::from_millis(next_ms).min(MAX_SLEEP),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    operation = "refresh",
                    "refresher failed"
                );
                AFTER_FAILURE
            }
        };
        tracing::debug!(
            operation = "refresh",
            next_in_ms = sleep.as_millis() as u64,
            "next refresh scheduled"
        );
        let mut deadline = Instant::now() + sleep;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = wake.0.notified() => break,
                () = cycle_written.notified() => {
                    if let Some(due) = next_due_in(&kv) {
                        deadline = deadline.min(Instant::now() + due);
                    }
                }
            }
        }
    }
}

/// How long until the stored cycle says the refresher is next due.
fn next_due_in(kv: &MemoryStore) -> Option<Duration> {
    let bytes = kv.get(DEFAULT_LABEL, keys::CYCLE)?;
    let cycle: Cycle = serde_json::from_slice(&bytes).ok()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Some(Duration::from_millis(
        cycle.next_due_at.saturating_sub(now_ms),
    ))
}

/// One call of `run-due` within the refresh deadline; returns the component's "next due in"
/// milliseconds. A call stopped at its deadline is reported and its instance dropped.
pub async fn run_once(runtime: &Runtime) -> anyhow::Result<u64> {
    const CALL: &str = "run-due";
    let clock = CallClock::run_due(&runtime.deadlines);
    let mut store = runtime.new_store();
    deadline::arm(&mut store, clock.clone());
    let call = async {
        let instance = runtime.platform.instantiate_async(&mut store).await?;
        instance
            .clever_auth_refresher()
            .call_run_due(&mut store)
            .await
    };
    match tokio::time::timeout(clock.total(), call).await {
        Ok(Ok(next_ms)) => Ok(next_ms),
        Ok(Err(e)) => {
            if deadline::is_interrupt(&e) && clock.first_overrun() {
                deadline::report_overrun(&runtime.shared.kv, CALL, clock.total());
                return Err(DeadlineExceeded::new(CALL, clock.total()).into());
            }
            Err(e.into())
        }
        Err(_) => {
            if clock.first_overrun() {
                deadline::report_overrun(&runtime.shared.kv, CALL, clock.total());
            }
            Err(DeadlineExceeded::new(CALL, clock.total()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cycle_written_by_another_run_wakes_the_scheduler_with_its_due_time() {
        let kv = MemoryStore::new([DEFAULT_LABEL.to_string()]);
        let written = Arc::new(Notify::new());
        kv.watch(DEFAULT_LABEL, keys::CYCLE, written.clone());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let cycle = Cycle {
            next_due_at: now_ms + 2_000,
            ..Cycle::default()
        };
        let bytes = serde_json::to_vec(&cycle).expect("serialises");
        // Another key does not wake it; the cycle key does.
        kv.set(DEFAULT_LABEL, "clever-auth/v1/status", b"{}".to_vec());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), written.notified())
                .await
                .is_err()
        );
        kv.set(DEFAULT_LABEL, keys::CYCLE, bytes);
        tokio::time::timeout(Duration::from_secs(1), written.notified())
            .await
            .expect("woken by the write");
        let due = next_due_in(&kv).expect("a cycle record");
        assert!(
            due <= Duration::from_millis(2_000) && due >= Duration::from_millis(1_000),
            "{due:?}"
        );
    }
}
