//! Calls the component's `clever:auth/refresher.run-due` at start-up and whenever the next
//! refresh is due, in a fresh instance each time (the component keeps its state in the store).
//!
//! Other runs (a gateway request, a health request) can move the schedule earlier: a relist,
//! or a retry that run planned. The store tells the scheduler whenever the refresher's cycle
//! record is written, and the scheduler then shortens its sleep to the record's `next_due_at`
//! (the machine's persisted `poll_timeout`); it never lengthens it, so the worst a stale or
//! odd record can cause is one early `run-due` that finds nothing due.

use crate::keyvalue::{MemoryStore, Stores, DEFAULT_LABEL};
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
/// On a shared store, how often the cycle record is read for other instances' changes (a
/// relist one of them asked for, a retry it planned). One GET per instance per period.
const SHARED_CYCLE_POLL: Duration = Duration::from_secs(2);

/// Lets other parts of the host (e.g. secrets arriving) ask for a run now.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn now(&self) {
        self.0.notify_one();
    }
}

pub async fn run(runtime: Runtime, wake: Wake) {
    let stores = runtime.shared.kv.clone();
    let kv = stores.local.clone();
    let cycle_written = Arc::new(Notify::new());
    // On a shared store this process's copy of the cycle record is written by its own runs
    // and by the poll below, which copies what other instances wrote.
    kv.watch(DEFAULT_LABEL, keys::CYCLE, cycle_written.clone());
    if stores.is_shared() {
        tokio::spawn(poll_shared_cycle(stores));
    }
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

/// Reads the shared cycle record now and then; the read refreshes this process's copy, which
/// wakes the scheduler when it changed. A failed read is retried at the next period.
async fn poll_shared_cycle(stores: Stores) {
    let mut tick = tokio::time::interval(SHARED_CYCLE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let _ = stores.get(DEFAULT_LABEL, keys::CYCLE).await;
    }
}

/// How long until the stored cycle says the refresher is next due. A cycle record that went
/// away is due at once: the shared store lost the refresher's state (a Redis restarted without
/// persistence, as it must run, or flushed), and the deployment has no tokens until a run.
fn next_due_in(kv: &MemoryStore) -> Option<Duration> {
    let Some(bytes) = kv.get(DEFAULT_LABEL, keys::CYCLE) else {
        return Some(Duration::ZERO);
    };
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
                deadline::report_overrun(&runtime.shared.kv.local, CALL, clock.total());
                return Err(DeadlineExceeded::new(CALL, clock.total()).into());
            }
            Err(e.into())
        }
        Err(_) => {
            if clock.first_overrun() {
                deadline::report_overrun(&runtime.shared.kv.local, CALL, clock.total());
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
        // The record gone (a Redis restarted empty, mirrored into the copy): due at once.
        kv.delete(DEFAULT_LABEL, keys::CYCLE);
        tokio::time::timeout(Duration::from_secs(1), written.notified())
            .await
            .expect("woken by the deletion");
        assert_eq!(next_due_in(&kv), Some(Duration::ZERO));
        // Deleting what is not there is no news.
        kv.delete(DEFAULT_LABEL, keys::CYCLE);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), written.notified())
                .await
                .is_err()
        );
    }
}
