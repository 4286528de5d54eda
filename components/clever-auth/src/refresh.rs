//! The refresher's shell: it executes what `clever_auth_core::refresher::Machine` asks for
//! (HTTP to Clever, token writes, log lines) and feeds the results back. Every decision about
//! when and whether lives in the machine; this file only reads the clock, the store, the
//! secrets and the entropy source, under the lease.

use crate::clever_client;
use crate::config::{self, Credentials};
use crate::http_out::{Failure, Response};
use crate::kv::Kv;
use crate::lease::Lease;
use crate::token_store::Stored;
use crate::{clock, entropy, log};
use clever_auth_core::lifecycle::{TokenEntry, APP_TOKEN_ID};
use clever_auth_core::refresher::lease::{self, LEASE_BUSY_MS};
use clever_auth_core::refresher::solo::{self, Refresher, SoloInputs, SoloRecord};
use clever_auth_core::refresher::{
    credentials_fingerprint, Action, Cycle, Finished, HttpResult, Inputs, Machine, Reply, Request,
    SecretsView, TransportError, RECHECK_MS,
};
use clever_auth_core::settings::Settings;
use clever_auth_core::status::{
    keys, HostSecretsStatus, HostStoreStatus, RelistRequest, StatusSnapshot,
};
use clever_auth_core::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How soon to look again when the host changed the secrets while they were being read.
const SECRETS_SETTLING_MS: u64 = 50;
/// Marks that this instance's host scheduler drives the refresher (so its health requests need
/// not). Kept per instance, as the native host keeps every `host/` record: read after every
/// health answer, it would otherwise be a shared-store round trip each time.
const SCHEDULER_KEY: &str = "clever-auth/v1/host/scheduler";
/// How long past its announced next call a scheduler still counts as alive.
const SCHEDULER_GRACE_MS: u64 = 5_000;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct SchedulerMark {
    alive_until: UnixMillis,
}

/// The `clever:auth/refresher.run-due` export, called by the native host's scheduler.
pub fn run_due_scheduled() -> u64 {
    let next_in = run_due();
    if let Ok(kv) = Kv::open() {
        let mark = SchedulerMark {
            alive_until: clock::now()
                .saturating_add(next_in)
                .saturating_add(SCHEDULER_GRACE_MS),
        };
        let _ = kv.put(SCHEDULER_KEY, &mark);
    }
    next_in
}

/// Runs after a health response has been sent (the path Spin uses, which has no scheduler),
/// but only when due and only when no host scheduler is driving the refresher. "Due" is judged
/// from the stored cycle alone: under Spin with Key Vault every secret read is a vault call,
/// so a health request that finds nothing due reads none.
pub fn run_if_due() {
    let Ok(kv) = Kv::open() else { return };
    let now = clock::now();
    let scheduled = kv
        .get::<SchedulerMark>(SCHEDULER_KEY)
        .ok()
        .flatten()
        .is_some_and(|m| m.alive_until > now);
    if scheduled {
        return;
    }
    let cycle = load_cycle(&kv);
    let relist = kv.get::<RelistRequest>(keys::RELIST_REQUEST).ok().flatten();
    if cycle.due_without_secrets(now, secrets_generation(&kv), relist.as_ref()) {
        run_due();
    }
}

/// Does whatever is due (single-flight, under the lease) and returns the delay in
/// milliseconds until the next run is due.
pub fn run_due() -> u64 {
    let now = clock::now();
    let kv = match Kv::open() {
        Ok(kv) => kv,
        Err(e) => {
            log::event(
                "error",
                "store_unavailable",
                json!({ "error": e.to_string() }),
            );
            return RECHECK_MS;
        }
    };
    let settings = match config::settings() {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                log::event(
                    "error",
                    "setting_invalid",
                    json!({ "setting": e.setting, "error": e.message }),
                );
            }
            let mut status = load_status(&kv);
            status.service.last_run_at = Some(now);
            save(&kv, &status, None);
            return RECHECK_MS;
        }
    };
    // The host changes the pair and the generation together; reading the generation on both
    // sides of the credentials tells whether this pair belongs to it. Otherwise a pair read
    // mid-change would be acquired with under the old generation, and acquired with again as
    // soon as the new one showed, outside the retry schedule.
    let generation = secrets_generation(&kv);
    let creds = config::credentials();
    if secrets_generation(&kv) != generation {
        return SECRETS_SETTLING_MS;
    }
    let secrets = SecretsView {
        generation,
        fingerprint: creds
            .as_ref()
            .map(|c| credentials_fingerprint(&c.client_id, &c.client_secret)),
    };
    let relist = kv.get::<RelistRequest>(keys::RELIST_REQUEST).ok().flatten();
    let run = Run {
        kv: &kv,
        settings: &settings,
        creds: creds.as_ref(),
        secrets,
        relist,
    };
    let own = crate::solo::load(&kv);
    match who_refreshes(&kv, now, &settings, own.is_some()) {
        (Refresher::Alone, store) => return run.alone(now, own, store),
        (Refresher::Shared, _) => {
            if let Some(record) = own.filter(|_| store_reachable(&kv)) {
                crate::solo::hand_back(&kv, &record, now);
            }
        }
    }
    run.shared(now)
}

/// One run's fixed inputs.
struct Run<'a> {
    kv: &'a Kv,
    settings: &'a Settings,
    creds: Option<&'a Credentials>,
    secrets: SecretsView,
    relist: Option<RelistRequest>,
}

/// Where a run's token writes go, and what guards them.
enum Target<'l, 'b> {
    /// The shared set, under the deployment's lease.
    Shared(&'l Lease<'b>),
    /// This instance's own set, without a lease (`solo`).
    Own,
}

/// Who refreshes now (`refresher::solo`), and the store record it was decided from. The
/// tokens held are only read while the store does not answer.
fn who_refreshes(
    kv: &Kv,
    now: UnixMillis,
    settings: &Settings,
    alone: bool,
) -> (Refresher, Option<HostStoreStatus>) {
    let store = kv.get::<HostStoreStatus>(keys::HOST_STORE).ok().flatten();
    if store.as_ref().is_none_or(|s| s.reachable) {
        return (Refresher::Shared, store);
    }
    let held = solo::merge(load_tokens(kv), crate::solo::own_tokens(kv));
    let decision = solo::decide(&SoloInputs {
        now,
        store: store.as_ref(),
        alone,
        earliest_refresh_at: solo::earliest_refresh_at(&held),
        http_timeout_ms: settings.http_timeout_ms,
    });
    (decision, store)
}

fn store_reachable(kv: &Kv) -> bool {
    kv.get::<HostStoreStatus>(keys::HOST_STORE)
        .ok()
        .flatten()
        .is_none_or(|s| s.reachable)
}

impl Run<'_> {
    fn inputs(&self, now: UnixMillis) -> Inputs {
        Inputs {
            now,
            settings: self.settings.clone(),
            secrets: self.secrets,
            relist: self.relist.clone(),
            random: [entropy::random01(), entropy::random01()],
        }
    }

    /// Under the deployment's lease, on the shared records.
    fn shared(&self, now: UnixMillis) -> u64 {
        let kv = self.kv;
        if !load_cycle(kv).due(now, &self.secrets, self.relist.as_ref()) {
            return load_cycle(kv).next_due_at.saturating_sub(now).max(1);
        }
        let lease_ttl = lease_ttl(self.settings);
        let Some(lease) = Lease::acquire(kv.bucket(), now, lease_ttl) else {
            return LEASE_BUSY_MS;
        };
        // Another instance may have finished a run between our first look and the lease.
        let cycle = load_cycle(kv);
        if !cycle.due(now, &self.secrets, self.relist.as_ref()) {
            return cycle.next_due_at.saturating_sub(now).max(1);
        }
        let mut status = load_status(kv);
        fold_gateway_versions(kv, &mut status, self.settings);
        let machine = Machine::start(self.inputs(now), cycle, status, load_tokens(kv));
        let Some(finished) = self.drive(machine, &Target::Shared(&lease)) else {
            return lease_lost();
        };
        if !lease.renew(clock::now(), lease_ttl) {
            return lease_lost();
        }
        save(kv, &finished.status, Some(&finished.cycle));
        drop(lease);
        finished.next_due_at.saturating_sub(clock::now()).max(1)
    }

    /// Alone during a store outage: from the last shared cycle read (its retry schedule goes
    /// on), on this instance's own records; the shared ones are left as they are.
    fn alone(
        &self,
        now: UnixMillis,
        own: Option<SoloRecord>,
        store: Option<HostStoreStatus>,
    ) -> u64 {
        let kv = self.kv;
        let record = own.unwrap_or_else(|| {
            crate::solo::started(
                now,
                store.and_then(|s| s.unreachable_since),
                solo::solo_grace_ms(self.settings.http_timeout_ms),
            );
            let record = SoloRecord {
                since: now,
                cycle: load_cycle(kv),
                status: load_status(kv),
            };
            crate::solo::save(kv, &record);
            record
        });
        if !record.cycle.due(now, &self.secrets, self.relist.as_ref()) {
            return record.cycle.next_due_at.saturating_sub(now).max(1);
        }
        let tokens = solo::merge(load_tokens(kv), crate::solo::own_tokens(kv));
        let machine = Machine::start(self.inputs(now), record.cycle, record.status, tokens);
        let Some(finished) = self.drive(machine, &Target::Own) else {
            return LEASE_BUSY_MS;
        };
        crate::solo::save(
            kv,
            &SoloRecord {
                since: record.since,
                cycle: finished.cycle,
                status: finished.status,
            },
        );
        finished.next_due_at.saturating_sub(clock::now()).max(1)
    }

    /// Executes the machine's actions; `None` when the lease was lost (nothing more written).
    fn drive(&self, mut machine: Machine, target: &Target<'_, '_>) -> Option<Finished> {
        let lease_ttl = lease_ttl(self.settings);
        // Renewed before every call, each bounded by the HTTP timeout, and before the first
        // write after an answer: the lease cannot lapse mid-run while this run is alive, and
        // a run that lost it (it stalled past the TTL and someone else took over) stops
        // without writing anything.
        let mut renewed = true;
        let held = |renewed: &mut bool| match target {
            Target::Shared(lease) if !*renewed => {
                *renewed = lease.renew(clock::now(), lease_ttl);
                *renewed
            }
            _ => true,
        };
        while let Some(action) = machine.poll_action() {
            match action {
                Action::Http(request) => {
                    renewed = false;
                    if !held(&mut renewed) {
                        return None;
                    }
                    let result = execute(self.settings, self.creds, request);
                    machine.on_http(clock::now(), result);
                    renewed = false;
                }
                Action::PutToken(entry) => {
                    if !held(&mut renewed) {
                        return None;
                    }
                    match target {
                        Target::Shared(_) => put_token(self.kv, &entry),
                        Target::Own => crate::solo::put(self.kv, &entry),
                    }
                }
                Action::DeleteToken(id) => {
                    if !held(&mut renewed) {
                        return None;
                    }
                    match target {
                        Target::Shared(_) => {
                            let _ = self.kv.delete(&keys::token(&id));
                        }
                        Target::Own => crate::solo::delete(self.kv, &id),
                    }
                }
                Action::Log(e) => log::event(e.level, e.event, e.fields),
            }
        }
        let (finished, logs) = machine.finish(clock::now());
        for e in logs {
            if let Action::Log(e) = e {
                log::event(e.level, e.event, e.fields);
            }
        }
        Some(finished)
    }
}

/// API versions seen on gateway traffic feed the same check and alerts as the probes: the
/// newer record wins, and the machine evaluates the alerts on the result.
fn fold_gateway_versions(kv: &Kv, status: &mut StatusSnapshot, settings: &Settings) {
    let observed = kv
        .get::<clever_auth_core::gateway::versions::VersionObservation>(
            clever_auth_core::gateway::keys::VERSIONS,
        )
        .ok()
        .flatten();
    status.service.api_version = clever_auth_core::gateway::versions::merge(
        status.service.api_version.as_ref(),
        observed.as_ref(),
        &settings.api_version,
    );
}

fn lease_ttl(settings: &Settings) -> u64 {
    lease::lease_ttl_ms(settings.http_timeout_ms)
}

fn lease_lost() -> u64 {
    log::event(
        "error",
        "lease_lost",
        json!({ "reason": "another run holds the lease; this run stops without saving" }),
    );
    LEASE_BUSY_MS
}

fn execute(settings: &Settings, creds: Option<&Credentials>, request: Request) -> HttpResult {
    let result = match (request, creds) {
        (Request::ListPage { url }, Some(creds)) => {
            clever_client::list_district_tokens(settings, creds, url.as_deref())
        }
        (Request::ClientCredentials, Some(creds)) => {
            clever_client::client_credentials(settings, creds)
        }
        (Request::Probe { district_id, token }, _) => {
            let district = (district_id != APP_TOKEN_ID).then_some(district_id.as_str());
            clever_client::probe(settings, district, &token)
        }
        (_, None) => Err(Failure::Invalid("no credentials".into())),
    };
    result.map(reply).map_err(transport_error)
}

fn reply(r: Response) -> Reply {
    Reply {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

fn transport_error(f: Failure) -> TransportError {
    match f {
        Failure::Timeout => TransportError::Timeout,
        Failure::Connection(m) => TransportError::Connection(m),
        Failure::Invalid(m) => TransportError::Invalid(m),
        Failure::Denied { host } => TransportError::Denied { host },
    }
}

fn put_token(kv: &Kv, entry: &TokenEntry) {
    if let Err(e) = crate::token_store::put(kv, entry) {
        log::event(
            "error",
            "store_write_failed",
            json!({ "district": entry.district_id, "error": e.to_string() }),
        );
    }
}

/// Every cached token, usable or not: the machine deletes the expired ones.
fn load_tokens(kv: &Kv) -> Vec<TokenEntry> {
    let keys = kv.keys_with_prefix(keys::TOKEN_PREFIX).unwrap_or_default();
    let mut tokens = Vec::with_capacity(keys.len());
    for key in keys {
        match crate::token_store::get(kv, &key) {
            Ok(Stored::Entry(t)) => tokens.push(t),
            // A record that no longer parses can never be handed out: remove it.
            Ok(Stored::Malformed) => {
                let _ = kv.delete(&key);
            }
            // Sealed with a key this instance lacks (a rotation in progress elsewhere), or in
            // the clear on a shared store: not ours to use or to delete. The next listing
            // writes the district's token afresh.
            Ok(Stored::Unusable(e)) => log::event(
                "warn",
                "token_record_unusable",
                json!({ "key": key, "reason": e.to_string() }),
            ),
            Ok(Stored::Absent) | Err(_) => {}
        }
    }
    tokens
}

/// The native host bumps this when a secret changes; 0 when no host reports one (Spin).
fn secrets_generation(kv: &Kv) -> u64 {
    kv.get::<HostSecretsStatus>(keys::HOST_SECRETS)
        .ok()
        .flatten()
        .map_or(0, |s| s.generation)
}

fn load_cycle(kv: &Kv) -> Cycle {
    kv.get::<Cycle>(keys::CYCLE)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn load_status(kv: &Kv) -> StatusSnapshot {
    kv.get::<StatusSnapshot>(keys::STATUS)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The one function through which every write of `keys::STATUS` goes.
fn save(kv: &Kv, status: &StatusSnapshot, cycle: Option<&Cycle>) {
    if let Err(e) = kv.put(keys::STATUS, status) {
        log::event(
            "error",
            "store_write_failed",
            json!({ "key": keys::STATUS, "error": e.to_string() }),
        );
    }
    crate::health_handler::store_summary(kv, status);
    if let Some(c) = cycle {
        if let Err(e) = kv.put(keys::CYCLE, c) {
            log::event(
                "error",
                "store_write_failed",
                json!({ "key": keys::CYCLE, "error": e.to_string() }),
            );
        }
    }
}
