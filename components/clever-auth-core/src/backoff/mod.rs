//! Retry policy: which failures are worth another attempt, and when.
//!
//! The spec fixes the default schedule (5 retries after 2 s, 4 s, 8 s, 16 s, 32 s); everything
//! else is configurable. Randomness for jitter is passed in so the schedule is reproducible in
//! tests, and the attempt counter lives in [`RetryState`], which the component persists between
//! invocations because a wasm instance does not survive a 32 s wait.
//!
//! One file per decision: `policy` (the schedule and its jitter), `outcome` (which failures are
//! worth another attempt), `delay` (one retry's wait against the server's hint and the maximum
//! wait) and `state` (the persisted bookkeeping and what each attempt leads to). Callers use
//! the re-exports below; the files are private.

mod delay;
mod outcome;
mod policy;
mod state;

pub use delay::{next_delay, plan_delay, DelaySource, PlannedDelay};
pub use outcome::{
    classify_status, classify_transport, Outcome, PermanentKind, TransientKind, TransportFailure,
    OUTBOUND_DENIED,
};
pub use policy::{RetryPolicy, RetryPolicyError};
pub use state::{Decision, RetryState};
