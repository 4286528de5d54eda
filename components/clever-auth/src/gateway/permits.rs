//! The district's shared budget as store calls: taking a call's permits (from this instance's
//! reserved balance where it has one, see `clever_auth_core::gateway::reserve`) and writing
//! back what an answer's rate-limit headers teach (`clever_auth_core::gateway::budget`).

use crate::kv::Kv;
use clever_auth_core::gateway::budget::{self, BudgetRecord, Meter};
use clever_auth_core::gateway::keys;
use clever_auth_core::gateway::reserve::{self, Seen};
use clever_auth_core::ratelimit::RateLimitInfo;

/// One permit for `meter`: its count in the window (see `budget::verdict`), or `None` when the
/// store could not count. `batches`: this instance keeps a balance of its own (the native
/// host on a shared store), so most permits cost the shared store nothing.
pub fn take(kv: &Kv, meter: &Meter, batches: bool) -> Option<i64> {
    if !(batches && reserve::batched(meter)) {
        return kv.increment(&meter.key, 1).ok();
    }
    let balance_key = reserve::balance_key(meter);
    match kv.increment(&balance_key, -1) {
        Ok(balance) if reserve::held(balance) => return Some(reserve::HELD),
        Ok(_) => {}
        // The instance's own records are in the process; if they fail, count directly.
        Err(_) => return kv.increment(&meter.key, 1).ok(),
    }
    let seen_key = reserve::seen_key(meter);
    let seen = kv.get::<Seen>(&seen_key).ok().flatten();
    let plan = reserve::plan(meter, seen.as_ref());
    if let Some(old) = &plan.retire {
        let _ = kv.delete(old);
    }
    let batch = i64::try_from(plan.batch).unwrap_or(1);
    match kv.increment(&meter.key, batch) {
        Ok(count) => {
            let r = reserve::reserved(meter, plan.batch, count);
            let _ = kv.increment(&balance_key, r.add);
            let _ = kv.put(&seen_key, &r.seen);
            Some(r.count)
        }
        Err(_) => {
            // Nothing was reserved: the call's -1 goes back, and it goes unmetered as a call
            // does whenever the store cannot count.
            let _ = kv.increment(&balance_key, 1);
            None
        }
    }
}

/// What an answer's rate-limit headers teach the deployment's budget, written to the store.
pub fn learn(
    kv: &Kv,
    district: &str,
    record: Option<&BudgetRecord>,
    metered: &[Meter],
    limits: &RateLimitInfo,
) {
    let learned = budget::after_response(record, limits, district, metered);
    if let Some(record) = &learned.record {
        let _ = kv.put(&keys::budget(district), record);
    }
    for u in &learned.uncounted {
        if let Ok(count) = kv.increment(&u.key, 1) {
            let short = budget::shortfall(u, count);
            if short > 0 {
                let _ = kv.increment(&u.key, short);
            }
        }
    }
    for key in &learned.release {
        let _ = kv.increment(key, -1);
    }
    for key in &learned.stale {
        let _ = kv.delete(key);
    }
}
