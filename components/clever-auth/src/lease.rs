//! A lease in the key-value store (compare-and-swap), so that one instance at a time acquires
//! tokens: the host's scheduler, a gateway request and Spin health requests can never both
//! call Clever. The holder renews it before each step of its run; a run whose renewal fails
//! (it stalled past the TTL and another run took over) stops without writing, so two runs
//! never overwrite each other's records.
//!
//! A swap's answer is not trusted: every swap is judged by reading the record back. Spin's
//! Redis store (4.0) writes only when the record is unchanged since `current` (WATCH, then
//! MULTI/SET/EXEC), but answers every swap with `cas-failed`, whether it wrote or not (its
//! closing `UNWATCH <key>` is refused by Redis: UNWATCH takes no argument), and would answer an
//! aborted write with success if that call were fixed. What the record holds afterwards is
//! right on every store we run on; holders are random, so ours there means our write landed.

use crate::bindings::wasi::keyvalue::atomics::{self, Cas};
use crate::bindings::wasi::keyvalue::store::Bucket;
use clever_auth_core::status::keys;
use clever_auth_core::UnixMillis;
use serde::{Deserialize, Serialize};

/// See [`Lease::acquire`].
const SEED_AGAIN_EVERY: i64 = 64;

#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    holder: u64,
    until: UnixMillis,
}

pub struct Lease<'a> {
    bucket: &'a Bucket,
    holder: u64,
}

impl<'a> Lease<'a> {
    /// Takes the lease until `now + ttl_ms` unless someone else holds an unexpired one.
    ///
    /// The lease is only ever taken by a swap over an existing record. Spin's SQLite store
    /// (4.0) carries out a swap over an absent key as an unconditional insert (`INSERT … ON
    /// CONFLICT DO UPDATE`), so two instances that both saw no record both took the lease (two
    /// token listings from one burst of health polls); over an existing record it is a
    /// conditional update, which is atomic. So on a new store one instance, the first that
    /// the atomic counter [`keys::LEASE_SEEDS`] counts, creates the record unheld; the others
    /// find it busy until it exists.
    pub fn acquire(bucket: &'a Bucket, now: UnixMillis, ttl_ms: u64) -> Option<Lease<'a>> {
        let (cas, bytes) = match Self::current(bucket)? {
            (cas, Some(bytes)) => (cas, bytes),
            (cas, None) => {
                let seeds = atomics::increment(bucket, keys::LEASE_SEEDS, 1).ok()?;
                // Every 64th attempt seeds again: a first seeder that died between counting
                // and writing must not keep the lease absent for good.
                if seeds % SEED_AGAIN_EVERY != 1 {
                    return None;
                }
                let unheld = serde_json::to_vec(&LeaseRecord {
                    holder: 0,
                    until: 0,
                })
                .ok()?;
                // Whatever the answer, the record is read again.
                let _ = atomics::swap(cas, &unheld);
                match Self::current(bucket)? {
                    (cas, Some(bytes)) => (cas, bytes),
                    (_, None) => return None,
                }
            }
        };
        if let Ok(held) = serde_json::from_slice::<LeaseRecord>(&bytes) {
            if held.until > now {
                return None;
            }
        }
        let holder = crate::entropy::random_u64();
        let record = LeaseRecord {
            holder,
            until: now.saturating_add(ttl_ms),
        };
        let bytes = serde_json::to_vec(&record).ok()?;
        swapped(bucket, cas, &bytes).then_some(Lease { bucket, holder })
    }
}

/// Swaps `cas` to `bytes` and tells whether the record holds them now (see the module doc).
fn swapped(bucket: &Bucket, cas: Cas, bytes: &[u8]) -> bool {
    // Its answer proves nothing on Spin's Redis store.
    let _ = atomics::swap(cas, bytes);
    bucket
        .get(keys::LEASE)
        .ok()
        .flatten()
        .is_some_and(|now| now == bytes)
}

impl Lease<'_> {
    /// A handle on the lease record and what it holds now.
    fn current(bucket: &Bucket) -> Option<(Cas, Option<Vec<u8>>)> {
        let cas = Cas::new(bucket, keys::LEASE).ok()?;
        let bytes = cas.current().ok()?;
        Some((cas, bytes))
    }

    /// Extends the lease to `now + ttl_ms` if it is still ours; false when someone else holds
    /// it now (or the store failed), in which case the run must stop without saving.
    pub fn renew(&self, now: UnixMillis, ttl_ms: u64) -> bool {
        let Ok(cas) = Cas::new(self.bucket, keys::LEASE) else {
            return false;
        };
        let ours = cas
            .current()
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<LeaseRecord>(&b).ok())
            .is_some_and(|l| l.holder == self.holder);
        if !ours {
            return false;
        }
        let record = LeaseRecord {
            holder: self.holder,
            until: now.saturating_add(ttl_ms),
        };
        let Ok(bytes) = serde_json::to_vec(&record) else {
            return false;
        };
        swapped(self.bucket, cas, &bytes)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Release only our own lease: after a very slow cycle someone else may hold it now.
        let Ok(cas) = Cas::new(self.bucket, keys::LEASE) else {
            return;
        };
        let ours = cas
            .current()
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<LeaseRecord>(&b).ok())
            .is_some_and(|l| l.holder == self.holder);
        if ours {
            let released = LeaseRecord {
                holder: self.holder,
                until: 0,
            };
            if let Ok(bytes) = serde_json::to_vec(&released) {
                let _ = atomics::swap(cas, &bytes);
            }
        }
    }
}
