//! What a request reads before its first attempt: the district's token records (the shared
//! set's and this instance's own, see `solo`), its pace and its budget, in one
//! `wasi:keyvalue/batch.get-many`. Under the native host on Redis that is one `MGET` where a
//! `GET` each made three round trips before the permit's `INCR` (the own token is the host's,
//! answered from the process, so it costs nothing to ask for it too, and for the host's store
//! record).
//!
//! Spin 4.0.2's Redis provider fails every get-many (it sends `KEYS k1 k2 …`), so a failed
//! get-many means reading one record at a time, as before, and says nothing about the store:
//! a store that does not answer fails those reads too, and they handle that as they always
//! did. Nothing is logged either: under Spin on Redis it would be every request.

use super::token::Tokens;
use crate::kv::{self, Kv};
use crate::token_store;
use clever_auth_core::gateway::budget::BudgetRecord;
use clever_auth_core::gateway::keys;
use clever_auth_core::gateway::pacing::PaceRecord;
use clever_auth_core::status::keys as status_keys;

pub struct FirstRead {
    pub tokens: Tokens,
    /// `None` when read one by one: the attempt then reads them as it goes.
    pub limits: Option<Limits>,
    /// The native host keeps the instance's records in the process and the shared ones on a
    /// shared store (its `HOST_STORE` record is there): permits are worth reserving in
    /// batches. Never under Spin, whose get-many fails and whose "own" records are shared.
    pub shared_store: bool,
}

/// The district's pace and budget, for the attempt that follows the read at once.
pub struct Limits {
    pub pace: Option<PaceRecord>,
    pub budget: Option<BudgetRecord>,
}

pub fn read(kv: &Kv, district: &str) -> FirstRead {
    let wanted = [
        status_keys::token(district),
        status_keys::solo_token(district),
        keys::pace(district),
        keys::budget(district),
        status_keys::HOST_STORE.to_string(),
    ];
    let together = kv
        .get_many(&wanted)
        .ok()
        .and_then(|values| <[Option<Vec<u8>>; 5]>::try_from(values).ok());
    match together {
        Some([shared, own, pace, budget, store]) => FirstRead {
            tokens: Tokens {
                shared: token_store::entry_in(shared),
                own: token_store::entry_in(own),
            },
            limits: Some(Limits {
                pace: kv::parse(pace),
                budget: kv::parse(budget),
            }),
            shared_store: store.is_some(),
        },
        // The attempt reads pace and budget itself, each when it needs it.
        None => FirstRead {
            tokens: Tokens {
                shared: token_store::entry_at(kv, &wanted[0]),
                own: token_store::entry_at(kv, &wanted[1]),
            },
            limits: None,
            shared_store: false,
        },
    }
}
