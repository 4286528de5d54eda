//! Calls the component's `clever:auth/refresher.run-due` at start-up and whenever the next
//! refresh is due, in a fresh instance each time (the component keeps its state in the store).

use crate::runtime::deadline::{self, CallClock, DeadlineExceeded};
use crate::runtime::Runtime;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

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
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = wake.0.notified() => {}
        }
    }
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
