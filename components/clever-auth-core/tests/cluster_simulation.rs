//! Seeded simulation of several instances sharing one store (issue #19): each runs the
//! refresher machine the way `components/clever-auth/src/refresh.rs` does, on one simulated
//! store with a compare-and-swap lease, a copy per instance of what it last read, crashes (an
//! instance stops mid-run and restarts later with nothing), freezes (a run stalls past its
//! lease), store outages seen by every instance, and the solo rule of
//! `clever_auth_core::refresher::solo`. No wasm, no sockets, no sleeping.
//!
//! Invariants, checked as the world runs:
//! 1. at most one run holds the lease: none is taken while another live run's lasts;
//! 2. a run that lost the lease writes nothing: every shared write is by the holder, inside
//!    its lease;
//! 3. the retry schedule: token-endpoint calls made under the lease obey it cluster-wide (from
//!    the schedule the last saved run left); calls made alone obey it per instance, from the
//!    last shared schedule that instance read. During an outage several instances may each
//!    call: cluster-wide it holds only while the store answers;
//! 4. no instance hands out an expired token;
//! 5. an instance refreshes alone only while the store really does not answer, and only past
//!    the grace;
//! 6. in worlds where Clever answers and a token's refresh margin covers the grace, an
//!    instance that served a district keeps serving it, through outages and others' crashes.
//!
//! `SIM_SEED=n` replays one seed; `SIM_SEEDS=n` runs that many (default 60, 8 unoptimised);
//! `SIM_TRACE=1` prints each seed's trace.

#[path = "simulation/clever.rs"]
#[allow(dead_code)]
mod clever;
#[path = "simulation/rng.rs"]
#[allow(dead_code)]
mod rng;

use clever::{Class, SimClever, Storm, API_URL, TOKEN_URL};
use clever_auth_core::lifecycle::TokenEntry;
use clever_auth_core::refresher::lease::{lease_ttl_ms, LEASE_BUSY_MS};
use clever_auth_core::refresher::solo::{self, Refresher, SoloInputs, SoloRecord};
use clever_auth_core::refresher::{
    credentials_fingerprint, Action, Cycle, HttpResult, Inputs, Machine, Request, SecretsView,
    BAD_CREDENTIALS_PAUSE_MS,
};
use clever_auth_core::secret::Secret;
use clever_auth_core::settings::{self, Settings};
use clever_auth_core::status::{HostStoreStatus, StatusSnapshot};
use clever_auth_core::UnixMillis;
use rng::Rng;
use std::collections::{BTreeMap, BTreeSet};

const START: UnixMillis = 1_760_000_000_000;
const HOUR_MS: u64 = 3_600_000;
/// How often the host's scheduler looks at a shared cycle it is not due on (others change it).
const POLL_MS: u64 = 2_000;
/// How often each instance's gateway asks for a token.
const READ_EVERY_MS: u64 = 3_000;
const DEFAULT_SEEDS: u64 = 60;
const DEBUG_SEEDS: u64 = 8;
const HOURS: u64 = 12;

/// The last acquisition a schedule knows of, and the run of transient failures before it.
#[derive(Debug, Clone, Copy, Default)]
struct Lineage {
    last: Option<Acq>,
    transients: u32,
}

#[derive(Debug, Clone, Copy)]
struct Acq {
    end: UnixMillis,
    class: Class,
    hint_at: Option<UnixMillis>,
    k: u32,
}

struct Lease {
    holder: u64,
    until: UnixMillis,
}

struct Shared {
    up: bool,
    cycle: Cycle,
    status: StatusSnapshot,
    tokens: BTreeMap<String, TokenEntry>,
    lease: Lease,
    /// The schedule the last saved run left (what `cycle` encodes).
    lineage: Lineage,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Target {
    Shared,
    Own,
}

struct Pending {
    ready: UnixMillis,
    result: HttpResult,
    class: Class,
    hint_at: Option<UnixMillis>,
    listing: bool,
    last_page: bool,
}

struct Run {
    machine: Machine,
    target: Target,
    holder: u64,
    /// The lease as this run believes it holds it.
    until: UnixMillis,
    renewed: bool,
    pending: Option<Pending>,
    lineage: Lineage,
}

struct Inst {
    alive: bool,
    restart_at: UnixMillis,
    next_crash: UnixMillis,
    /// The host's `clever-auth/v1/host/store` record.
    view: HostStoreStatus,
    copy_cycle: Cycle,
    copy_status: StatusSnapshot,
    copy_tokens: BTreeMap<String, TokenEntry>,
    copy_lineage: Lineage,
    solo: Option<SoloRecord>,
    solo_lineage: Lineage,
    own: BTreeMap<String, TokenEntry>,
    next_due: UnixMillis,
    next_read: UnixMillis,
    run: Option<Run>,
    /// Districts this instance served since it (re)started.
    served: BTreeSet<String>,
}

impl Inst {
    fn fresh(now: UnixMillis, next_crash: UnixMillis) -> Inst {
        Inst {
            alive: true,
            restart_at: 0,
            next_crash,
            // The host publishes a reachable store at start.
            view: HostStoreStatus {
                kind: "redis".into(),
                reachable: true,
                unreachable_since: None,
                last_error: None,
            },
            copy_cycle: Cycle::default(),
            copy_status: StatusSnapshot::default(),
            copy_tokens: BTreeMap::new(),
            copy_lineage: Lineage::default(),
            solo: None,
            solo_lineage: Lineage::default(),
            own: BTreeMap::new(),
            next_due: now,
            next_read: now + 500,
            run: None,
            served: BTreeSet::new(),
        }
    }

    /// What `Stores::observe` does with each shared call's result.
    fn observe(&mut self, up: bool, now: UnixMillis) {
        if self.view.reachable != up {
            self.view.reachable = up;
            self.view.unreachable_since = (!up).then_some(now);
        }
    }

    fn next_event(&self) -> UnixMillis {
        if !self.alive {
            return self.restart_at;
        }
        let run = match &self.run {
            Some(r) => r.pending.as_ref().map_or(0, |p| p.ready),
            None => self.next_due,
        };
        run.min(self.next_read).min(self.next_crash)
    }
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    token_calls: u64,
    solo_calls: u64,
    solo_starts: u64,
    hand_backs: u64,
    lost_leases: u64,
    crashes: u64,
    outages: u64,
    reads: u64,
    served: u64,
    served_in_outage: u64,
    reads_in_outage: u64,
    availability_checked: bool,
}

struct World {
    rng: Rng,
    now: UnixMillis,
    end: UnixMillis,
    settings: Settings,
    lifetime_ms: u64,
    skew_ms: u64,
    ttl_ms: u64,
    grace_ms: u64,
    clever: SimClever,
    secrets: SecretsView,
    store: Shared,
    insts: Vec<Inst>,
    outage_at: UnixMillis,
    outage_until: UnixMillis,
    /// Clever answers without faults all along: invariant 6 applies when margins allow.
    calm: bool,
    /// In the other worlds Clever also fails every call for a while (long enough for tokens
    /// to expire), from `clever_down_at` to `clever_down_until`; `storm_p` is its usual rate.
    clever_down_at: UnixMillis,
    clever_down_until: UnixMillis,
    storm_p: f64,
    counts: Counts,
    tracing: bool,
    trace: Vec<String>,
}

macro_rules! trace {
    ($w:expr, $($arg:tt)*) => {
        if $w.tracing {
            let line = format!("{} {}", $w.now - START, format!($($arg)*));
            $w.trace.push(line);
        }
    };
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let mut vars: BTreeMap<&str, String> = BTreeMap::new();
        vars.insert("clever_token_url", TOKEN_URL.into());
        vars.insert("clever_api_base_url", API_URL.into());
        let base = rng.range(100, 5_000);
        vars.insert(
            "clever_token_lifetime_secs",
            rng.range(300, 3_600).to_string(),
        );
        vars.insert(
            "clever_refresh_fraction",
            format!("{:.2}", 0.4 + rng.f64() * 0.4),
        );
        vars.insert("clever_expiry_skew_secs", rng.range(0, 30).to_string());
        vars.insert("clever_retry_max", rng.range(0, 6).to_string());
        vars.insert("clever_retry_base_ms", base.to_string());
        vars.insert(
            "clever_retry_max_delay_ms",
            rng.range(base, 60_000).to_string(),
        );
        if rng.chance(0.3) {
            vars.insert("clever_retry_jitter", format!("{:.2}", rng.f64()));
        }
        vars.insert(
            "clever_http_timeout_ms",
            rng.range(1_000, 10_000).to_string(),
        );
        let settings = settings::load(|k| Ok(vars.get(k).cloned())).expect("legal settings");
        let mut clever = SimClever::new(rng.range(1, 6) as usize, settings.http_timeout_ms);
        let calm = rng.chance(0.5);
        if !calm {
            clever.storm = Storm::ServerErrors;
            clever.storm_p = 0.2 + rng.f64() * 0.5;
        }
        let secrets = SecretsView {
            generation: 1,
            fingerprint: Some(credentials_fingerprint(
                &clever.client_id,
                &Secret::new(clever.secret.clone()),
            )),
        };
        let n = rng.range(2, 5) as usize;
        let mut insts = Vec::new();
        for _ in 0..n {
            let crash = START + exp(&mut rng, 3 * HOUR_MS);
            insts.push(Inst::fresh(START, crash));
        }
        let ttl_ms = lease_ttl_ms(settings.http_timeout_ms);
        let outage_at = START + rng.range(10 * 60_000, 2 * HOUR_MS);
        let mut w = World {
            now: START,
            end: START + HOURS * HOUR_MS,
            lifetime_ms: settings.token_lifetime_secs * 1000,
            skew_ms: settings.expiry_skew_secs * 1000,
            ttl_ms,
            grace_ms: solo::solo_grace_ms(settings.http_timeout_ms),
            settings,
            clever,
            secrets,
            store: Shared {
                up: true,
                cycle: Cycle::default(),
                status: StatusSnapshot::default(),
                tokens: BTreeMap::new(),
                lease: Lease {
                    holder: 0,
                    until: 0,
                },
                lineage: Lineage::default(),
            },
            insts,
            outage_at,
            outage_until: 0,
            calm,
            clever_down_at: if calm { u64::MAX } else { outage_at },
            clever_down_until: 0,
            storm_p: 0.0,
            counts: Counts::default(),
            tracing: false,
            trace: Vec::new(),
            rng,
        };
        w.outage_until = w.outage_at + w.outage_length();
        w.storm_p = w.clever.storm_p;
        if !calm {
            w.clever_down_at = START + w.rng.range(0, 2 * HOUR_MS);
            w.clever_down_until = w.clever_down_at + w.rng.range(60_000, 2 * w.lifetime_ms);
        }
        w.counts.availability_checked = w.availability_applies();
        w
    }

    fn outage_length(&mut self) -> u64 {
        let long = (4 * self.lifetime_ms).max(3 * self.grace_ms);
        self.rng.range(self.grace_ms / 2, long)
    }

    /// Invariant 6 holds only where a token read just before the grace ended is still
    /// usable after it, with room for a lapsed lease, a read and a listing.
    fn availability_applies(&self) -> bool {
        let refresh_after = (self.lifetime_ms as f64 * self.settings.refresh_fraction) as u64;
        let margin = self.lifetime_ms - refresh_after;
        let needed = self.grace_ms + 2 * self.ttl_ms + READ_EVERY_MS + POLL_MS + self.skew_ms;
        self.calm && margin > needed + 2 * self.settings.http_timeout_ms
    }

    fn fail(&self, what: String) -> Result<(), String> {
        let tail: Vec<&String> = self.trace.iter().rev().take(60).collect();
        let mut report = format!("invariant broken at {}: {what}", self.now - START);
        for line in tail.into_iter().rev() {
            report.push_str("\n  ");
            report.push_str(line);
        }
        Err(report)
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            self.fail(what())
        }
    }

    fn run(&mut self) -> Result<(), String> {
        while self.now < self.end {
            let (i, at) = self
                .insts
                .iter()
                .enumerate()
                .map(|(i, inst)| (i, inst.next_event()))
                .min_by_key(|&(_, at)| at)
                .expect("at least two instances");
            let store_event = if self.store.up {
                self.outage_at
            } else {
                self.outage_until
            };
            if store_event <= at {
                self.now = self.now.max(store_event);
                self.store_changes();
                continue;
            }
            let clever_event = if self.clever.storm_p < 1.0 {
                self.clever_down_at
            } else {
                self.clever_down_until
            };
            if clever_event <= at {
                self.now = self.now.max(clever_event);
                self.clever_changes();
                continue;
            }
            self.now = self.now.max(at);
            self.step(i)?;
        }
        Ok(())
    }

    fn store_changes(&mut self) {
        if self.store.up {
            self.store.up = false;
            self.counts.outages += 1;
            trace!(self, "store down until {}", self.outage_until - START);
        } else {
            self.store.up = true;
            let gap = self.rng.range(10 * 60_000, 3 * HOUR_MS);
            self.outage_at = self.now + gap;
            self.outage_until = self.outage_at + self.outage_length();
            trace!(self, "store up");
        }
    }

    fn clever_changes(&mut self) {
        if self.clever.storm_p < 1.0 {
            self.clever.storm_p = 1.0;
            trace!(
                self,
                "clever fails every call until {}",
                self.clever_down_until - START
            );
        } else {
            self.clever.storm_p = self.storm_p;
            self.clever_down_at = self.now + self.rng.range(30 * 60_000, 4 * HOUR_MS);
            self.clever_down_until =
                self.clever_down_at + self.rng.range(60_000, 2 * self.lifetime_ms);
            trace!(self, "clever answers again");
        }
    }

    fn step(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let inst = &self.insts[i];
        if !inst.alive {
            let crash = now + exp(&mut self.rng, 3 * HOUR_MS);
            self.insts[i] = Inst::fresh(now, crash);
            trace!(self, "i{i} restarts");
            return Ok(());
        }
        if now >= inst.next_crash {
            self.counts.crashes += 1;
            let back = now + self.rng.range(1_000, 120_000);
            let inst = &mut self.insts[i];
            inst.alive = false;
            inst.restart_at = back;
            // Its run is gone mid-step; a lease it held stays until it lapses.
            inst.run = None;
            trace!(self, "i{i} crashes");
            return Ok(());
        }
        if now >= inst.next_read {
            self.insts[i].next_read = now + READ_EVERY_MS;
            return self.read(i);
        }
        if inst.run.is_some() {
            return self.step_run(i);
        }
        self.run_due(i)
    }

    /// A shared read (the cycle, a token): the copy follows the store while it answers.
    fn read_shared(&mut self, i: usize) {
        let up = self.store.up;
        let now = self.now;
        let inst = &mut self.insts[i];
        inst.observe(up, now);
        if up {
            inst.copy_cycle = self.store.cycle.clone();
            inst.copy_status = self.store.status.clone();
            inst.copy_tokens = self.store.tokens.clone();
            inst.copy_lineage = self.store.lineage;
        }
    }

    /// A gateway request for a district's token (`gateway::token` then `solo::token`).
    fn read(&mut self, i: usize) -> Result<(), String> {
        let ids: Vec<String> = self.clever.districts.keys().cloned().collect();
        let Some(d) = self.rng.pick(&ids).cloned() else {
            return Ok(());
        };
        let (now, skew) = (self.now, self.skew_ms);
        let up = self.store.up;
        let inst = &mut self.insts[i];
        inst.observe(up, now);
        if up {
            match self.store.tokens.get(&d) {
                Some(t) => inst.copy_tokens.insert(d.clone(), t.clone()),
                None => inst.copy_tokens.remove(&d),
            };
        }
        let shared = inst.copy_tokens.get(&d).cloned();
        let own = inst.own.get(&d).cloned();
        let own = match own {
            Some(o) if solo::own_is_stale(shared.as_ref(), &o, now, skew) => {
                inst.own.remove(&d);
                None
            }
            o => o,
        };
        let picked = solo::pick(shared, own, now, skew);
        let was_served = inst.served.contains(&d);
        self.counts.reads += 1;
        if !up {
            self.counts.reads_in_outage += 1;
        }
        match picked {
            Some(t) => {
                let (exp, obtained) = (t.expires_at, t.obtained_at);
                self.check(
                    now < exp.saturating_sub(skew) && exp == obtained + self.lifetime_ms,
                    || format!("i{i} handed out {d}'s token expiring at {exp} (obtained {obtained}, skew {skew})"),
                )?;
                self.insts[i].served.insert(d);
                self.counts.served += 1;
                if !up {
                    self.counts.served_in_outage += 1;
                }
            }
            None if was_served && self.counts.availability_checked => {
                let view = &self.insts[i].view;
                return self.fail(format!(
                    "i{i} served {d} before and has no usable token now (store up: {up}, its view {:?} since {:?}, alone: {})",
                    view.reachable,
                    view.unreachable_since.map(|s| s - START),
                    self.insts[i].solo.is_some()
                ));
            }
            None => {}
        }
        Ok(())
    }

    fn inputs(&mut self) -> Inputs {
        Inputs {
            now: self.now,
            settings: self.settings.clone(),
            secrets: self.secrets,
            relist: None,
            random: [self.rng.f64(), self.rng.f64()],
        }
    }

    /// What `refresh::run_due` does.
    fn run_due(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        self.read_shared(i);
        let inst = &self.insts[i];
        let decision = if inst.view.reachable {
            Refresher::Shared
        } else {
            let held = solo::merge(inst.copy_tokens.values().cloned(), inst.own.clone());
            solo::decide(&SoloInputs {
                now,
                store: Some(&inst.view),
                alone: inst.solo.is_some(),
                earliest_refresh_at: solo::earliest_refresh_at(&held),
                http_timeout_ms: self.settings.http_timeout_ms,
            })
        };
        match decision {
            Refresher::Alone => self.start_alone(i),
            Refresher::Shared => {
                if self.insts[i].solo.is_some() && self.insts[i].view.reachable {
                    self.insts[i].solo = None;
                    self.counts.hand_backs += 1;
                    trace!(self, "i{i} hands back");
                }
                self.start_shared(i)
            }
        }
    }

    fn start_alone(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let since = self.insts[i].view.unreachable_since.unwrap_or(now);
        let (up, grace) = (self.store.up, self.grace_ms);
        self.check(!up && now >= since + grace, || {
            format!("i{i} refreshes alone with the store up: {up}, {} ms into its outage (grace {grace})", now - since)
        })?;
        let inst = &mut self.insts[i];
        if inst.solo.is_none() {
            inst.solo = Some(SoloRecord {
                since: now,
                cycle: inst.copy_cycle.clone(),
                status: inst.copy_status.clone(),
            });
            inst.solo_lineage = inst.copy_lineage;
            self.counts.solo_starts += 1;
            trace!(self, "i{i} starts refreshing alone");
        }
        let inst = &mut self.insts[i];
        let record = inst.solo.as_ref().expect("just set");
        if !record.cycle.due(now, &self.secrets, None) {
            inst.next_due = record.cycle.next_due_at.max(now + 1);
            return Ok(());
        }
        let tokens: Vec<TokenEntry> =
            solo::merge(inst.copy_tokens.values().cloned(), inst.own.clone());
        let (cycle, status) = (record.cycle.clone(), record.status.clone());
        let lineage = inst.solo_lineage;
        let inputs = self.inputs();
        self.insts[i].run = Some(Run {
            machine: Machine::start(inputs, cycle, status, tokens),
            target: Target::Own,
            holder: 0,
            until: 0,
            renewed: true,
            pending: None,
            lineage,
        });
        trace!(self, "i{i} runs alone");
        self.step_run(i)
    }

    fn start_shared(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let inst = &mut self.insts[i];
        if !inst.copy_cycle.due(now, &self.secrets, None) {
            inst.next_due = inst.copy_cycle.next_due_at.min(now + POLL_MS).max(now + 1);
            return Ok(());
        }
        let up = self.store.up;
        inst.observe(up, now);
        if !up || self.store.lease.until > now {
            inst.next_due = now + LEASE_BUSY_MS;
            return Ok(());
        }
        // Invariant 1.
        let other = self.insts.iter().enumerate().find(|(j, o)| {
            *j != i
                && o.alive
                && o.run
                    .as_ref()
                    .is_some_and(|r| r.target == Target::Shared && r.until > now)
        });
        if let Some((j, _)) = other {
            return self.fail(format!(
                "i{i} took the lease while i{j}'s run still held it"
            ));
        }
        let holder = self.rng.next_u64() | 1;
        self.store.lease = Lease {
            holder,
            until: now + self.ttl_ms,
        };
        let cycle = self.store.cycle.clone();
        if !cycle.due(now, &self.secrets, None) {
            self.store.lease.until = 0;
            self.insts[i].next_due = cycle.next_due_at.min(now + POLL_MS).max(now + 1);
            return Ok(());
        }
        let status = self.store.status.clone();
        let tokens: Vec<TokenEntry> = self.store.tokens.values().cloned().collect();
        let lineage = self.store.lineage;
        let inputs = self.inputs();
        self.insts[i].run = Some(Run {
            machine: Machine::start(inputs, cycle, status, tokens),
            target: Target::Shared,
            holder,
            until: now + self.ttl_ms,
            renewed: true,
            pending: None,
            lineage,
        });
        trace!(self, "i{i} runs under the lease");
        self.step_run(i)
    }

    /// Renews the lease of `i`'s run (a shared call); false when the run lost it.
    fn renew(&mut self, i: usize) -> bool {
        let now = self.now;
        let up = self.store.up;
        self.insts[i].observe(up, now);
        let Some(run) = self.insts[i].run.as_mut() else {
            return false;
        };
        if !up || self.store.lease.holder != run.holder {
            return false;
        }
        self.store.lease.until = now + self.ttl_ms;
        run.until = now + self.ttl_ms;
        run.renewed = true;
        true
    }

    /// Invariant 2, at every shared write.
    fn check_holder(&self, i: usize, run: u64, what: &str) -> Result<(), String> {
        let lease = &self.store.lease;
        let now = self.now;
        self.check(lease.holder == run && lease.until > now, || {
            format!(
                "i{i} wrote {what} without holding the lease (holder {}, until {})",
                lease.holder == run,
                lease.until
            )
        })
    }

    fn lose(&mut self, i: usize) -> Result<(), String> {
        self.counts.lost_leases += 1;
        trace!(self, "i{i} lost the lease; stops without writing");
        let inst = &mut self.insts[i];
        inst.run = None;
        inst.next_due = self.now + LEASE_BUSY_MS;
        Ok(())
    }

    /// Guards a write the way `refresh::Run::drive` does: a shared run renews before the
    /// first write after an answer.
    fn guard_write(&mut self, i: usize) -> bool {
        let run = self.insts[i].run.as_ref().expect("running");
        match run.target {
            Target::Own => true,
            Target::Shared if run.renewed => true,
            Target::Shared => self.renew(i),
        }
    }

    fn step_run(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let run = self.insts[i].run.as_mut().expect("running");
        if let Some(p) = run.pending.take() {
            if p.listing && (p.class != Class::Ok || p.last_page) {
                let l = &mut run.lineage;
                let k = if p.class == Class::Transient {
                    l.transients + 1
                } else {
                    0
                };
                l.transients = if p.class == Class::Transient && k <= self.settings.retry_max {
                    k
                } else {
                    0
                };
                l.last = Some(Acq {
                    end: now,
                    class: p.class,
                    hint_at: p.hint_at,
                    k,
                });
            }
            run.machine.on_http(now, p.result);
            run.renewed = false;
        }
        loop {
            let run = self.insts[i].run.as_mut().expect("running");
            let target = run.target;
            let Some(action) = run.machine.poll_action() else {
                return self.finish(i);
            };
            match action {
                Action::Http(request) => {
                    if target == Target::Shared && !self.renew(i) {
                        return self.lose(i);
                    }
                    return self.send(i, request);
                }
                Action::PutToken(entry) => {
                    if !self.guard_write(i) {
                        return self.lose(i);
                    }
                    let (obtained, exp) = (entry.obtained_at, entry.expires_at);
                    self.check(
                        exp == obtained + self.lifetime_ms && obtained <= now,
                        || format!("token stored expiring at {exp}, obtained {obtained}"),
                    )?;
                    if target == Target::Shared {
                        let holder = self.insts[i].run.as_ref().map_or(0, |r| r.holder);
                        self.check_holder(i, holder, "a token")?;
                        self.store.tokens.insert(entry.district_id.clone(), entry);
                    } else {
                        self.insts[i].own.insert(entry.district_id.clone(), entry);
                    }
                }
                Action::DeleteToken(id) => {
                    if !self.guard_write(i) {
                        return self.lose(i);
                    }
                    if target == Target::Shared {
                        let holder = self.insts[i].run.as_ref().map_or(0, |r| r.holder);
                        self.check_holder(i, holder, "a token deletion")?;
                        self.store.tokens.remove(&id);
                    } else {
                        self.insts[i].own.remove(&id);
                    }
                }
                Action::Log(_) => {}
            }
        }
    }

    fn send(&mut self, i: usize, request: Request) -> Result<(), String> {
        let now = self.now;
        let creds = (self.clever.client_id.clone(), self.clever.secret.clone());
        let (answer, listing) = match request {
            Request::ListPage { url } => {
                if url.is_none() {
                    self.token_call(i)?;
                }
                let a = self
                    .clever
                    .list(&mut self.rng, now, url.as_deref(), (&creds.0, &creds.1));
                (a, true)
            }
            Request::Probe { district_id, token } => {
                let a = self
                    .clever
                    .probe(&mut self.rng, now, &district_id, token.expose());
                (a, false)
            }
            Request::ClientCredentials => {
                return self.fail("client_credentials under district_tokens".into())
            }
        };
        // Now and then the process stalls with the answer in hand, sometimes past its lease.
        let freeze = if self.rng.chance(0.02) {
            self.rng.range(0, 2 * self.ttl_ms)
        } else {
            0
        };
        trace!(
            self,
            "i{i} {} -> {}",
            if listing { "list" } else { "probe" },
            answer.description
        );
        let run = self.insts[i].run.as_mut().expect("running");
        run.pending = Some(Pending {
            ready: now + answer.latency_ms + freeze,
            result: answer.result,
            class: answer.class,
            hint_at: answer.hint_at,
            listing,
            last_page: answer.last_page,
        });
        Ok(())
    }

    /// Invariant 3 at each token-endpoint call.
    fn token_call(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let run = self.insts[i].run.as_ref().expect("running");
        let (target, lineage) = (run.target, run.lineage);
        self.counts.token_calls += 1;
        if target == Target::Own {
            self.counts.solo_calls += 1;
        }
        if let Some(prev) = lineage.last {
            let earliest = self.earliest_after(&prev);
            let scope = if target == Target::Own {
                "alone, on its own schedule"
            } else {
                "under the lease, cluster-wide"
            };
            self.check(now >= earliest, || {
                format!(
                    "i{i} called the token endpoint {scope} {} ms after a {:?} answer (attempt {}); the schedule allows no earlier than {} ms",
                    now - prev.end, prev.class, prev.k, earliest - prev.end
                )
            })?;
        }
        Ok(())
    }

    /// The earliest instant the retry schedule allows a call after `prev` (the refresher
    /// simulation's rule, lower bounds only).
    fn earliest_after(&self, prev: &Acq) -> UnixMillis {
        let s = &self.settings;
        let hint = prev.hint_at.unwrap_or(0);
        let cooldown = s.retry_max_delay_ms;
        match prev.class {
            Class::Ok => prev.end + s.retry_base_ms,
            Class::Transient if prev.k <= s.retry_max => {
                let exp = (prev.k.max(1) - 1).min(40);
                let step = s
                    .retry_base_ms
                    .saturating_mul(1u64 << exp)
                    .min(s.retry_max_delay_ms);
                let backoff =
                    (((step as f64) * (1.0 - s.retry_jitter)).floor() as u64).saturating_sub(1);
                let max_wait = s.rate_limit_max_wait_secs * 1000;
                (prev.end + backoff.min(max_wait)).max(hint)
            }
            Class::Transient | Class::Permanent => (prev.end + cooldown).max(hint),
            Class::BadCredentials => (prev.end + BAD_CREDENTIALS_PAUSE_MS.max(cooldown)).max(hint),
        }
    }

    fn finish(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let target = self.insts[i].run.as_ref().expect("running").target;
        if target == Target::Shared && !self.renew(i) {
            return self.lose(i);
        }
        let run = self.insts[i].run.take().expect("running");
        let (finished, _) = run.machine.finish(now);
        match target {
            Target::Shared => {
                self.check_holder(i, run.holder, "the cycle and status")?;
                self.store.cycle = finished.cycle;
                self.store.status = finished.status;
                self.store.lineage = run.lineage;
                if self.store.lease.holder == run.holder {
                    self.store.lease.until = 0;
                }
                self.insts[i].next_due = finished.next_due_at.min(now + POLL_MS).max(now + 1);
            }
            Target::Own => {
                let inst = &mut self.insts[i];
                let since = inst.solo.as_ref().map_or(now, |s| s.since);
                inst.solo = Some(SoloRecord {
                    since,
                    cycle: finished.cycle,
                    status: finished.status,
                });
                inst.solo_lineage = run.lineage;
                inst.next_due = finished.next_due_at.max(now + 1);
            }
        }
        trace!(
            self,
            "i{i} run ends; next due {}",
            self.insts[i].next_due - START
        );
        Ok(())
    }
}

/// Exponentially distributed, mean `mean_ms`.
fn exp(rng: &mut Rng, mean_ms: u64) -> u64 {
    let u = rng.f64().max(1e-12);
    (-(u.ln()) * mean_ms as f64) as u64
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn instances_on_one_store_keep_the_invariants_through_crashes_and_outages() {
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let default = if cfg!(debug_assertions) {
                DEBUG_SEEDS
            } else {
                DEFAULT_SEEDS
            };
            (0..env_u64("SIM_SEEDS").unwrap_or(default)).collect()
        }
    };
    let tracing = std::env::var_os("SIM_TRACE").is_some();
    let mut total = Counts::default();
    let mut availability_worlds = 0;
    let mut failures = Vec::new();
    for &seed in &seeds {
        let mut w = World::new(seed);
        w.tracing = tracing;
        let result = w.run();
        if let Err(report) = result {
            let mut replay = World::new(seed);
            replay.tracing = true;
            match replay.run() {
                Err(traced) => eprintln!("seed {seed}: {traced}"),
                Ok(()) => eprintln!("seed {seed}: {report}\n(the traced replay passed!)"),
            }
            failures.push(seed);
        }
        if tracing {
            println!("seed {seed}:\n{}", w.trace.join("\n"));
        }
        let c = w.counts;
        availability_worlds += u64::from(c.availability_checked);
        total.token_calls += c.token_calls;
        total.solo_calls += c.solo_calls;
        total.solo_starts += c.solo_starts;
        total.hand_backs += c.hand_backs;
        total.lost_leases += c.lost_leases;
        total.crashes += c.crashes;
        total.outages += c.outages;
        total.reads += c.reads;
        total.served += c.served;
        total.reads_in_outage += c.reads_in_outage;
        total.served_in_outage += c.served_in_outage;
    }
    println!(
        "cluster simulation: {} seeds x {HOURS} h, {} outages, {} crashes, {} token-endpoint calls ({} alone), {} solo starts, {} hand-backs, {} leases lost, {}/{} reads served ({}/{} during outages), {availability_worlds} worlds held to uninterrupted service, {:.1} s",
        seeds.len(),
        total.outages,
        total.crashes,
        total.token_calls,
        total.solo_calls,
        total.solo_starts,
        total.hand_backs,
        total.lost_leases,
        total.served,
        total.reads,
        total.served_in_outage,
        total.reads_in_outage,
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "seeds that broke an invariant: {failures:?} (replay one with SIM_SEED=<seed>)"
    );
    if seeds.len() >= DEBUG_SEEDS as usize {
        // The worlds must exercise what they claim to check.
        assert!(total.solo_calls > 0 && total.hand_backs > 0 && total.lost_leases > 0);
        assert!(availability_worlds > 0);
    }
}
