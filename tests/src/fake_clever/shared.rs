//! What the handle and every connection task share: the fake's world, its fault script and
//! its request log.

use std::sync::{Arc, Mutex};

use super::log::RequestLog;
use super::script::FaultScript;
use super::state::State;
use crate::fake_support::request::Outcome;

/// Shared by the handle and every connection task.
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    pub(crate) script: Mutex<FaultScript>,
    pub(crate) log: RequestLog,
    /// Per-instance salt so fingerprints cannot be compared across runs.
    pub(crate) salt: u64,
    /// Print one line per finished request on stderr (the demo binary).
    pub(crate) echo: bool,
    /// TCP connections accepted so far (TLS or not, served or not).
    pub(crate) accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl Core {
    pub(crate) fn finish(&self, seq: u64, outcome: Outcome, only_if_pending: bool) {
        if let Some(record) = self.log.set_outcome(seq, outcome, only_if_pending) {
            if self.echo {
                eprintln!("fake-clever: {}", record.summary());
            }
        }
    }
}
