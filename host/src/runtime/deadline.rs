//! The wall-clock bound on every component call. Two mechanisms, because each misses what the
//! other catches:
//! - epoch interruption: a ticker thread advances the engine's epoch every [`TICK`]; a store
//!   checks it in the guest's loops and calls, and at each slice's end [`verdict`] decides to
//!   yield to the executor and go on, or to trap. This stops a guest spinning in its own code,
//!   which never returns to the executor and so could not be stopped by a timer.
//! - a timer around the call's future: stops a guest waiting in the host (outbound HTTP,
//!   a pollable), where no guest code runs to notice the epoch.
//!
//! An instance that hit its deadline is dropped, never reused: its state is whatever it was
//! when it was cut off. The overrun is logged and written to the key-value store, where the
//! component's health rendering reads it (`clever-auth/v1/host/deadlines`).

use crate::keyvalue::{MemoryStore, DEFAULT_LABEL};
use clever_auth_core::status::{keys, DeadlineOverrun, HostDeadlineStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store, UpdateDeadline};

/// One epoch tick. The guest yields to the executor at most every [`SLICE_TICKS`] ticks.
pub const TICK: Duration = Duration::from_millis(10);
/// A running guest gives the executor back its thread this often (other requests, timers).
const SLICE_TICKS: u64 = 5;

/// Per call kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadlines {
    /// A health request's answer must be set within this.
    pub health: Duration,
    /// A `run-due` call, and a health call that goes on to refresh after answering (as
    /// under Spin, when no scheduler drives the refresher), must end within this.
    pub refresh: Duration,
    /// A gateway request's answer head (it may wait on Clever: 429 waits and retries within
    /// the component's `clever_gateway_deadline_ms`) must be set within this.
    pub gateway: Duration,
}

impl Default for CallDeadlines {
    fn default() -> Self {
        Self {
            health: Duration::from_secs(10),
            refresh: Duration::from_secs(300),
            gateway: Duration::from_secs(60),
        }
    }
}

/// Advances `engine`'s epoch every [`TICK`] on its own thread (a tokio task would starve when
/// guests occupy every worker), until the engine is gone.
pub fn start_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .map(drop)
}

/// Where one call stands, shared between its store's epoch callback and the caller.
#[derive(Debug)]
pub struct CallClock {
    started: Instant,
    /// Until the answer is set (health) — for `run-due`, the whole call.
    before_answer: Duration,
    /// The whole call.
    total: Duration,
    answered: AtomicBool,
    /// Set by the first of the mechanisms that stops the call, so it is reported once.
    overran: AtomicBool,
}

impl CallClock {
    pub fn health(d: &CallDeadlines) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            before_answer: d.health,
            total: d.refresh.max(d.health),
            answered: AtomicBool::new(false),
            overran: AtomicBool::new(false),
        })
    }

    pub fn gateway(d: &CallDeadlines) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            before_answer: d.gateway,
            total: d.refresh.max(d.gateway),
            answered: AtomicBool::new(false),
            overran: AtomicBool::new(false),
        })
    }

    pub fn run_due(d: &CallDeadlines) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            before_answer: d.refresh,
            total: d.refresh,
            answered: AtomicBool::new(false),
            overran: AtomicBool::new(false),
        })
    }

    pub fn answered(&self) {
        self.answered.store(true, Ordering::SeqCst);
    }

    /// True for the first caller only: the one that reports the overrun.
    pub fn first_overrun(&self) -> bool {
        !self.overran.swap(true, Ordering::SeqCst)
    }

    pub fn answer_deadline(&self) -> Duration {
        self.before_answer
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    /// The deadline that applies now, for reports.
    pub fn deadline(&self) -> Duration {
        if self.answered.load(Ordering::SeqCst) {
            self.total
        } else {
            self.before_answer
        }
    }
}

/// Go on, or stop the guest: it is past the answer deadline without an answer, or past the
/// whole call's deadline. Pure, for the unit tests.
pub fn verdict(
    elapsed: Duration,
    answered: bool,
    before_answer: Duration,
    total: Duration,
) -> bool {
    let limit = if answered { total } else { before_answer };
    elapsed < limit
}

/// Arms `store` for one call timed by `clock`.
pub fn arm<T: 'static>(store: &mut Store<T>, clock: Arc<CallClock>) {
    store.set_epoch_deadline(SLICE_TICKS);
    store.epoch_deadline_callback(move |_| {
        let answered = clock.answered.load(Ordering::SeqCst);
        if verdict(
            clock.started.elapsed(),
            answered,
            clock.before_answer,
            clock.total,
        ) {
            Ok(UpdateDeadline::Yield(SLICE_TICKS))
        } else {
            Ok(UpdateDeadline::Interrupt)
        }
    });
}

/// A component call stopped at its deadline (the client gets a 503 saying so).
#[derive(Debug, thiserror::Error)]
#[error("the component call `{call}` overran its deadline of {deadline_ms} ms")]
pub struct DeadlineExceeded {
    pub call: &'static str,
    pub deadline_ms: u64,
}

impl DeadlineExceeded {
    pub fn new(call: &'static str, deadline: Duration) -> Self {
        Self {
            call,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Whether a call's error is the epoch deadline's trap.
pub fn is_interrupt(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
}

/// The same, once the error went through `anyhow`.
pub fn is_interrupt_anyhow(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| cause.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt))
}

/// Logs an overrun and records it where health reads it.
pub fn report_overrun(kv: &MemoryStore, call: &'static str, deadline: Duration) {
    let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    tracing::error!(
        operation = "component_call",
        call,
        deadline_ms,
        "component call overran its deadline; the instance was stopped and dropped"
    );
    // Read-modify-write of one record: overruns may be reported from several tasks at once.
    static WRITE: Mutex<()> = Mutex::new(());
    let _guard = WRITE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut status = kv
        .get(DEFAULT_LABEL, keys::HOST_DEADLINES)
        .and_then(|b| serde_json::from_slice::<HostDeadlineStatus>(&b).ok())
        .unwrap_or_default();
    status.overruns = status.overruns.saturating_add(1);
    status.last = Some(DeadlineOverrun {
        call: call.to_string(),
        deadline_ms,
        at: now_ms(),
    });
    if let Ok(bytes) = serde_json::to_vec(&status) {
        kv.set(DEFAULT_LABEL, keys::HOST_DEADLINES, bytes);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn before_the_answer_the_answer_deadline_applies() {
        assert!(verdict(S * 9, false, S * 10, S * 300));
        assert!(!verdict(S * 10, false, S * 10, S * 300));
    }

    #[test]
    fn after_the_answer_the_whole_call_may_run_to_the_total() {
        assert!(verdict(S * 10, true, S * 10, S * 300));
        assert!(verdict(S * 299, true, S * 10, S * 300));
        assert!(!verdict(S * 300, true, S * 10, S * 300));
    }

    #[test]
    fn a_run_due_clock_has_one_deadline() {
        let d = CallDeadlines::default();
        let clock = CallClock::run_due(&d);
        assert_eq!(clock.deadline(), d.refresh);
        clock.answered();
        assert_eq!(clock.deadline(), d.refresh);
        assert!(clock.first_overrun());
        assert!(!clock.first_overrun(), "an overrun is reported once");
    }

    /// A guest that spins in its own code never returns to the executor: only the epoch stops
    /// it. It must stop at the deadline, not before, and yield on the way so other tasks on
    /// the same thread keep running.
    #[tokio::test(flavor = "current_thread")]
    async fn a_spinning_guest_is_stopped_at_its_deadline_and_yields_meanwhile() -> anyhow::Result<()>
    {
        let engine = super::super::engine::engine()?;
        start_ticker(&engine)?;
        // `(module (func (export "spin") (loop (br 0))))`, encoded by hand (no wat parser here).
        const SPIN: &[u8] = &[
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
            0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // types: () -> ()
            0x03, 0x02, 0x01, 0x00, // functions: one of type 0
            0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
            0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop br 0
        ];
        let module = wasmtime::Module::new(&engine, SPIN)?;
        let mut store = Store::new(&engine, ());
        let deadline = Duration::from_millis(300);
        let clock = CallClock::run_due(&CallDeadlines {
            health: deadline,
            refresh: deadline,
            gateway: deadline,
        });
        arm(&mut store, clock);
        let instance = wasmtime::Instance::new_async(&mut store, &module, &[]).await?;
        let spin = instance.get_typed_func::<(), ()>(&mut store, "spin")?;

        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = ticks.clone();
        let other = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        });
        let started = Instant::now();
        let result = spin.call_async(&mut store, ()).await;
        let took = started.elapsed();
        other.abort();

        let err = result.expect_err("the spinning guest was stopped");
        assert!(is_interrupt(&err), "{err:?}");
        assert!(
            took >= deadline && took < deadline + Duration::from_millis(400),
            "stopped after {took:?}"
        );
        // One thread: the other task can only have run when the guest yielded (every slice).
        let ran = ticks.load(Ordering::SeqCst);
        assert!(ran >= 2, "the other task ran {ran} times");
        Ok(())
    }

    #[test]
    fn an_overrun_is_counted_in_the_record_health_reads() {
        let kv = MemoryStore::new([DEFAULT_LABEL.to_string()]);
        report_overrun(&kv, "health", Duration::from_millis(1500));
        report_overrun(&kv, "run-due", Duration::from_secs(300));
        let status: HostDeadlineStatus = kv
            .get(DEFAULT_LABEL, keys::HOST_DEADLINES)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .expect("a record");
        assert_eq!(status.overruns, 2);
        let last = status.last.expect("the last overrun");
        assert_eq!((last.call.as_str(), last.deadline_ms), ("run-due", 300_000));
        assert!(last.at > 0);
    }
}
