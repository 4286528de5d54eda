//! The refresher as a sans-IO state machine: it decides *when* to call Clever and *what* the
//! answers mean; the wasm shell only executes the [`Action`]s it asks for and feeds back the
//! results, the way quinn-proto's `Connection` is driven by its endpoint.
//!
//! One run: [`Machine::start`] with what the store holds, then `poll_action` /
//! `on_http` until no action is left, then [`Machine::finish`] for the records to save and
//! the instant of the next run ([`Finished::next_due_at`], the machine's `poll_timeout`).
//! No clock, store, HTTP or randomness inside: `now`, the random draws and every reply are
//! inputs, which is what lets `tests/simulation.rs` drive it through thousands of virtual days.

mod cycle;
mod io;
pub mod lease;
mod listing;
mod machine;
mod probes;
pub mod solo;

pub use cycle::{
    credentials_fingerprint, Cycle, SecretsView, BAD_CREDENTIALS_PAUSE_MS, CREDENTIALS_RECHECK_MS,
    RECHECK_MS,
};
pub use io::{Action, HttpResult, LogEvent, Reply, Request, TransportError};
pub use listing::MAX_PAGES;
pub use machine::{Finished, Inputs, Machine};

#[cfg(test)]
mod tests;
