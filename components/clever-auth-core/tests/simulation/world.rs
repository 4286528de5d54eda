//! One seed's world: simulated time, the simulated Clever, a shell that runs the machine the
//! way `components/clever-auth/src/refresh.rs` does (in memory instead of wasi), random events
//! between runs, and the invariants checked after every step.

use super::clever::{Class, ProbeFault, SimClever, Storm, API_URL, TOKEN_URL};
use super::rng::Rng;
use clever_auth_core::health::{self, CredentialPresence, Districts, HealthInputs, Status, View};
use clever_auth_core::health_summary::HealthSummary;
use clever_auth_core::lifecycle::TokenEntry;
use clever_auth_core::refresher::{
    credentials_fingerprint, Action, Cycle, Inputs, Machine, Request, SecretsView,
    BAD_CREDENTIALS_PAUSE_MS,
};
use clever_auth_core::secret::Secret;
use clever_auth_core::settings::{self, Settings};
use clever_auth_core::status::{DistrictRecord, RelistRequest, StatusSnapshot};
use clever_auth_core::UnixMillis;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const DAY_MS: u64 = 86_400_000;
const TRACE_LINES: usize = 400;

/// A trace line, formatted only when the world records its trace (`World::tracing`): the
/// lines cost more than the simulation itself, so a seed runs untraced and, if it breaks an
/// invariant, is replayed (the world is deterministic) with tracing on for the report.
macro_rules! trace {
    ($w:expr, $($arg:tt)*) => {
        if $w.tracing {
            let line = format!($($arg)*);
            $w.log(line);
        }
    };
}

/// How the last acquisition ended, as the spec classifies Clever's answer.
#[derive(Debug, Clone, Copy)]
struct AcquisitionEnd {
    end: UnixMillis,
    class: Class,
    hint_at: Option<UnixMillis>,
    /// Consecutive transient failures including this one (0 when not transient).
    k: u32,
}

pub struct World {
    pub seed: u64,
    rng: Rng,
    pub now: UnixMillis,
    start: UnixMillis,
    end: UnixMillis,
    settings: Settings,
    lifetime_ms: u64,
    skew_ms: u64,
    /// No host reports a secrets generation (Spin): rotations are seen by fingerprint only.
    spin: bool,
    clever: SimClever,
    svc_creds: Option<(String, String)>,
    generation: u64,
    cycle: Cycle,
    status: StatusSnapshot,
    tokens: BTreeMap<String, TokenEntry>,
    relist: Option<RelistRequest>,
    storm_until: UnixMillis,
    trace: VecDeque<String>,
    /// Record the trace (the last `TRACE_LINES` lines); off for the bulk run.
    pub tracing: bool,
    checks: Cell<u64>,
    pub runs: u64,
    last_acquisition: Option<AcquisitionEnd>,
    transients: u32,
    credentials_changed_since: bool,
    refresh_deadline: Option<UnixMillis>,
    last_run: (UnixMillis, UnixMillis),
    /// The service's secret catches up with Clever's (or comes back) at this instant.
    secret_fix_at: Option<UnixMillis>,
    pub run_kinds: BTreeMap<(&'static str, &'static str), u64>,
    /// The store writes of the current run, by district (`None`: deleted): `put_token` and
    /// `delete_token` collect them and the run's end applies them to `tokens`, so nothing is
    /// copied to remember what they replace (nothing reads `tokens` during a run).
    token_writes: BTreeMap<String, Option<TokenEntry>>,
    /// Once the last run's writes are applied: the token each district it wrote had before
    /// the run (`None`: none stored). A district absent here has the token it had before.
    touched_tokens: BTreeMap<String, Option<TokenEntry>>,
    /// The district records as the last run left them (`status.districts` is only changed by
    /// runs): the "before" side of the per-run invariants. Brought up to date after each run
    /// by copying only the records that changed, rather than cloned whole before every run.
    records_before_run: BTreeMap<String, DistrictRecord>,
    /// The same records as a slice, which the health report takes; rebuilt only after a run
    /// that changed a record, not at every health check.
    records_list: Vec<DistrictRecord>,
}

/// Which health answer a check renders besides the cheap agreement of store and records.
#[derive(Clone, Copy)]
enum HealthAnswer {
    /// A health request: the detail view (every district's check), as an operator's request
    /// renders it.
    Detail,
    /// After a run: only when no token is usable, and then the public view from the records
    /// (production's answer when its precomputed record cannot answer for `now`). Status and
    /// error code do not depend on the view, so this checks the same verdict as the detail
    /// view did here before, without rendering a check per district after every run of a
    /// world whose tokens are all gone (a rejected secret is re-read every 2 s).
    IfNoneUsable,
}

/// What one run did, for the per-run invariants.
#[derive(Default)]
struct RunLog {
    token_calls: u32,
    listing_complete: bool,
    probed_ok: BTreeSet<String>,
    probed_failed: BTreeSet<String>,
    refused: BTreeSet<String>,
    expired_at_start: BTreeSet<String>,
}

impl World {
    pub fn new(seed: u64, days: u64) -> World {
        let mut rng = Rng::new(seed);
        let defaults = seed.is_multiple_of(2);
        let mut vars: BTreeMap<&str, String> = BTreeMap::new();
        vars.insert("clever_token_url", TOKEN_URL.into());
        vars.insert("clever_api_base_url", API_URL.into());
        if !defaults {
            let base = rng.range(100, 5_000);
            vars.insert(
                "clever_token_lifetime_secs",
                rng.range(300, 7_200).to_string(),
            );
            vars.insert(
                "clever_refresh_fraction",
                format!("{:.2}", 0.5 + rng.f64() * 0.45),
            );
            vars.insert("clever_expiry_skew_secs", rng.range(0, 60).to_string());
            vars.insert("clever_retry_max", rng.range(0, 8).to_string());
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
                rng.range(1_000, 15_000).to_string(),
            );
            vars.insert(
                "clever_rate_limit_max_wait_secs",
                rng.range(10, 300).to_string(),
            );
            vars.insert("clever_probe_batch", rng.range(1, 30).to_string());
            vars.insert("clever_probe_pace_ms", rng.range(10, 2_000).to_string());
        }
        let settings = settings::load(|k| Ok(vars.get(k).cloned())).expect("legal settings");
        let start = 1_750_000_000_000 + seed * 7_919;
        let districts = rng.range(1, 12) as usize;
        let mut clever = SimClever::new(districts, settings.http_timeout_ms);
        if rng.chance(0.5) {
            clever.page_size = Some(rng.range(1, 5) as usize);
        }
        let svc_creds = Some((clever.client_id.clone(), clever.secret.clone()));
        World {
            seed,
            now: start,
            start,
            end: start + days * DAY_MS,
            lifetime_ms: settings.token_lifetime_secs * 1000,
            skew_ms: settings.expiry_skew_secs * 1000,
            spin: rng.chance(0.3),
            settings,
            clever,
            svc_creds,
            generation: 1,
            cycle: Cycle::default(),
            status: StatusSnapshot::default(),
            tokens: BTreeMap::new(),
            relist: None,
            storm_until: 0,
            trace: VecDeque::new(),
            tracing: false,
            checks: Cell::new(0),
            runs: 0,
            last_acquisition: None,
            transients: 0,
            credentials_changed_since: false,
            refresh_deadline: None,
            last_run: (0, 0),
            secret_fix_at: None,
            run_kinds: BTreeMap::new(),
            token_writes: BTreeMap::new(),
            touched_tokens: BTreeMap::new(),
            records_before_run: BTreeMap::new(),
            records_list: Vec::new(),
            rng,
        }
    }

    pub fn trace(&self) -> Vec<String> {
        self.trace.iter().cloned().collect()
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        let t = self.now;
        self.trace.push_back(format!("{t:>15} {line}"));
    }

    fn fail(&self, what: String) -> String {
        let mut out = format!(
            "seed {} violated an invariant at {}: {what}\nsettings: {:?}\nspin: {}\nlast {} trace lines:\n",
            self.seed,
            self.now,
            self.settings,
            self.spin,
            self.trace.len()
        );
        for l in &self.trace {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(&format!(
            "replay: SIM_SEED={} SIM_DAYS={} cargo test -p clever-auth-core --release --test simulation\n",
            self.seed,
            (self.end - self.start) / DAY_MS
        ));
        out
    }

    pub fn checks(&self) -> u64 {
        self.checks.get()
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
        self.checks.set(self.checks.get() + 1);
        if ok {
            Ok(())
        } else {
            Err(self.fail(what()))
        }
    }

    fn secrets(&self) -> SecretsView {
        SecretsView {
            generation: if self.spin { 0 } else { self.generation },
            fingerprint: self
                .svc_creds
                .as_ref()
                .map(|(id, s)| credentials_fingerprint(id, &Secret::new(s.clone()))),
        }
    }

    /// Runs the world to its end.
    pub fn run(&mut self) -> Result<(), String> {
        let mut next_due = self.now;
        let mut next_event = self.now + self.event_gap();
        while self.now < self.end {
            if let Some(at) = self
                .secret_fix_at
                .filter(|at| *at <= next_due.min(next_event))
            {
                self.now = at.max(self.now);
                self.secret_fix_at = None;
                let secret = Some(self.clever.secret.clone());
                if let Some(due) = self.service_secret(secret)? {
                    next_due = due;
                }
            } else if next_due <= next_event {
                self.now = next_due;
                next_due = self.shell_run("scheduler")?;
            } else {
                self.now = next_event;
                if let Some(due) = self.external_event()? {
                    next_due = due;
                }
                next_event = self.now + self.event_gap();
            }
            next_due = next_due.max(self.now + 1);
        }
        self.check_refresh_not_missed(self.now)?;
        Ok(())
    }

    fn event_gap(&mut self) -> u64 {
        self.rng.range(1_000, 1_800_000)
    }

    /// One random thing happening outside the service; returns a new scheduler time when it
    /// caused a run.
    fn external_event(&mut self) -> Result<Option<UnixMillis>, String> {
        if self.clever.storm != Storm::Calm && self.now >= self.storm_until {
            self.clever.storm = Storm::Calm;
            trace!(self, "clever: storm over");
        }
        let roll = self.rng.range(0, 99);
        match roll {
            0..=2 => {
                let storm = match self.rng.range(0, 7) {
                    0 | 1 => Storm::ServerErrors,
                    2 => Storm::RateLimited {
                        retry_after: self.rng.chance(0.5),
                        reset: self.rng.chance(0.5),
                    },
                    3 => Storm::Timeouts,
                    4 => Storm::Malformed,
                    5 => Storm::Html,
                    6 => Storm::RateLimited {
                        retry_after: true,
                        reset: true,
                    },
                    _ => Storm::Permanent(
                        *self
                            .rng
                            .pick(&[400u16, 403, 404, 302, 501, 505])
                            .unwrap_or(&400),
                    ),
                };
                self.clever.storm = storm;
                self.clever.storm_p = 0.3 + self.rng.f64() * 0.7;
                // Mostly bursts; now and then a long outage.
                let long = self.rng.chance(0.1);
                self.storm_until = self.now
                    + self
                        .rng
                        .range(2_000, if long { 7_200_000 } else { 600_000 });
                let (p, until) = (self.clever.storm_p, self.storm_until);
                trace!(self, "clever: storm {storm:?} p={p:.2} until {until}");
            }
            3..=14 => {
                let id = format!("n{}", self.rng.range(0, 999));
                self.clever.join(&id);
                trace!(self, "clever: district {id} joins");
            }
            15..=18 => {
                let ids: Vec<String> = self.clever.districts.keys().cloned().collect();
                if let Some(id) = self.rng.pick(&ids).cloned() {
                    self.clever.leave(&id);
                    trace!(self, "clever: district {id} leaves");
                }
            }
            19..=23 => {
                let ids: Vec<String> = self.clever.districts.keys().cloned().collect();
                if let Some(id) = self.rng.pick(&ids).cloned() {
                    self.clever.revoke(&id);
                    trace!(self, "clever: token of {id} revoked");
                }
            }
            24..=29 => {
                let ids: Vec<String> = self.clever.districts.keys().cloned().collect();
                if let Some(id) = self.rng.pick(&ids).cloned() {
                    let fault = if self.rng.chance(0.5) {
                        ProbeFault::RateLimited {
                            until: self.now + self.rng.range(1_000, 400_000),
                        }
                    } else {
                        ProbeFault::ServerError {
                            until: self.now + self.rng.range(1_000, 3_600_000),
                        }
                    };
                    self.clever.probe_faults.insert(id.clone(), fault);
                    trace!(self, "clever: probes of {id} fail: {fault:?}");
                }
            }
            30..=33 => {
                self.clever.probe_faults.clear();
                self.clever.skip_entry = None;
                self.clever.version_retired = false;
                trace!(self, "clever: district faults cleared");
            }
            34..=36 if !self.clever.empty_served_last => {
                self.clever.empty_next = true;
                trace!(self, "clever: next listing answers empty");
            }
            37..=39 => {
                let ids: Vec<String> = self.clever.districts.keys().cloned().collect();
                if let Some(id) = self.rng.pick(&ids).cloned() {
                    trace!(self, "clever: listing entry of {id} malformed");
                    self.clever.skip_entry = Some(id);
                }
            }
            40 => {
                self.clever.version_retired = true;
                trace!(self, "clever: API version retired");
            }
            41..=44 => {
                // Rotation: Clever takes the new secret; the service sees it now or later.
                let secret = format!("secret-{}", self.rng.next_u64());
                self.clever.secret = secret.clone();
                trace!(self, "clever: secret rotated");
                if self.rng.chance(0.6) {
                    return self.service_secret(Some(secret));
                }
                self.secret_fix_at = Some(self.now + self.rng.range(1_000, 300_000));
            }
            45..=47 => {
                let pair = Some(self.clever.secret.clone());
                return self.service_secret(pair);
            }
            48..=49 => {
                trace!(self, "service: credentials missing");
                self.secret_fix_at = Some(self.now + self.rng.range(1_000, 300_000));
                return self.service_secret(None);
            }
            50..=64 => {
                let ids: Vec<String> = self.tokens.keys().cloned().collect();
                let district = self.rng.pick(&ids).cloned();
                trace!(self, "gateway: relist request for {district:?}");
                self.relist = Some(RelistRequest {
                    at: self.now,
                    district,
                    reason: "token_rejected".into(),
                });
                return self.shell_run("gateway").map(Some);
            }
            _ => {
                // A health request: the Spin path runs the refresher when the stored cycle
                // says so, without reading secrets otherwise.
                self.check_health(HealthAnswer::Detail)?;
                let due = self.cycle.due_without_secrets(
                    self.now,
                    self.secrets().generation,
                    self.relist.as_ref(),
                );
                if due {
                    return self.shell_run("health").map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The service's configured secret changes (or goes missing); the host wakes its scheduler.
    fn service_secret(&mut self, secret: Option<String>) -> Result<Option<UnixMillis>, String> {
        let new = secret.map(|s| (self.clever.client_id.clone(), s));
        if new == self.svc_creds {
            return Ok(None);
        }
        self.svc_creds = new;
        self.generation += 1;
        if self.svc_creds.is_none() {
            self.refresh_deadline = None;
        }
        trace!(
            self,
            "service: secret changed (generation {})",
            self.generation
        );
        self.shell_run("secrets changed").map(Some)
    }

    /// A refresh point passed with no run in progress at it and no acquisition since.
    fn check_refresh_not_missed(&mut self, now: UnixMillis) -> Result<(), String> {
        let Some(d) = self.refresh_deadline else {
            return Ok(());
        };
        let (_, last_end) = self.last_run;
        let missed = now > d + 1 && last_end < d;
        self.check(!missed, || {
            format!("the refresh point {d} passed with no acquisition (now {now}, last run ended {last_end})")
        })
    }

    /// What `refresh::run_due` does, against the in-memory store; returns the next due time.
    fn shell_run(&mut self, why: &'static str) -> Result<UnixMillis, String> {
        let now = self.now;
        let secrets = self.secrets();
        if !self.cycle.due(now, &secrets, self.relist.as_ref()) {
            return Ok(self.cycle.next_due_at.max(now + 1));
        }
        // A rotation counts from the run that can see it: a new fingerprint, a new generation
        // (not under Spin), or credentials back after a run found them missing. Credentials that
        // went missing and came back unchanged between two runs are, to the machine, no change.
        if self.cycle.credentials_changed(&secrets) {
            self.credentials_changed_since = true;
            self.transients = 0;
        }
        self.runs += 1;
        self.check_refresh_not_missed(now)?;
        trace!(self, "run ({why})");
        self.touched_tokens.clear();
        let mut run = RunLog::default();
        for (id, t) in &self.tokens {
            if !t.usable(now, self.skew_ms) {
                run.expired_at_start.insert(id.clone());
            }
        }
        let inputs = Inputs {
            now,
            settings: self.settings.clone(),
            secrets,
            relist: self.relist.clone(),
            random: [self.rng.f64(), self.rng.f64()],
        };
        let tokens: Vec<TokenEntry> = self.tokens.values().cloned().collect();
        let status = std::mem::take(&mut self.status);
        let mut machine = Machine::start(inputs, std::mem::take(&mut self.cycle), status, tokens);
        let creds = self.svc_creds.clone();
        let mut t = now;
        while let Some(action) = machine.poll_action() {
            match action {
                Action::Http(Request::ListPage { url }) => {
                    let first = url.is_none();
                    if first {
                        self.acquisition_starts(t, &mut run)?;
                    }
                    let (id, secret) = creds.clone().unwrap_or_default();
                    let answer = self
                        .clever
                        .list(&mut self.rng, t, url.as_deref(), (&id, &secret));
                    t += answer.latency_ms;
                    self.now = t;
                    trace!(
                        self,
                        "  list {} -> {}",
                        url.as_deref().unwrap_or("(first)"),
                        answer.description
                    );
                    let class = answer.class;
                    let hint_at = answer.hint_at;
                    let last = answer.last_page;
                    machine.on_http(t, answer.result);
                    if class != Class::Ok {
                        self.acquisition_ends(t, class, hint_at);
                    } else if last {
                        run.listing_complete = true;
                        self.acquisition_ends(t, Class::Ok, None);
                    }
                }
                Action::Http(Request::ClientCredentials) => {
                    return Err(
                        self.fail("client_credentials asked for under district_tokens".into())
                    );
                }
                Action::Http(Request::Probe { district_id, token }) => {
                    let answer = self
                        .clever
                        .probe(&mut self.rng, t, &district_id, token.expose());
                    t += answer.latency_ms;
                    self.now = t;
                    trace!(self, "  probe {district_id} -> {}", answer.description);
                    if answer.class == Class::Ok {
                        run.probed_ok.insert(district_id.clone());
                    } else {
                        run.probed_failed.insert(district_id.clone());
                        if matches!(&answer.result, Ok(r) if r.status == 401) {
                            run.refused.insert(district_id.clone());
                        }
                    }
                    machine.on_http(t, answer.result);
                }
                Action::PutToken(entry) => self.put_token(t, entry)?,
                Action::DeleteToken(id) => self.delete_token(id, &run)?,
                Action::Log(_) => {}
            }
        }
        let (finished, _) = machine.finish(t);
        self.apply_token_writes();
        self.now = t;
        self.cycle = finished.cycle;
        self.status = finished.status;
        self.last_run = (now, t);
        let mut before_records = std::mem::take(&mut self.records_before_run);
        self.after_run(now, &run, &before_records)?;
        if sync_records(&mut before_records, &self.status.districts) {
            self.records_list.clear();
            self.records_list
                .extend(self.status.districts.values().cloned());
        }
        self.records_before_run = before_records;
        self.check_health(HealthAnswer::IfNoneUsable)?;
        let kind = match (
            run.token_calls > 0,
            run.probed_ok.len() + run.probed_failed.len() > 0,
        ) {
            (true, _) => "acquire",
            (false, true) => "probe",
            (false, false) => "idle",
        };
        *self.run_kinds.entry((why, kind)).or_default() += 1;
        trace!(self, "  next due {}", finished.next_due_at);
        Ok(finished.next_due_at)
    }

    /// Invariant: two token-endpoint calls are never closer than the retry schedule allows
    /// (except right after a credential change); with jitter 0 the retry gaps are exact.
    fn acquisition_starts(&mut self, t: UnixMillis, run: &mut RunLog) -> Result<(), String> {
        run.token_calls += 1;
        if let Some(prev) = self.last_acquisition {
            if !self.credentials_changed_since {
                let (earliest, exact) = self.earliest_after(&prev);
                self.check(t >= earliest, || {
                    format!(
                        "token-endpoint call {} ms after a {:?} answer (attempt {}); the schedule allows no earlier than {} ms",
                        t - prev.end, prev.class, prev.k, earliest - prev.end
                    )
                })?;
                let (_, busy_until) = self.last_run;
                if exact && busy_until >= earliest {
                    // A run was still busy at that instant: it must stop within one call, and
                    // the acquisition follow at once.
                    let timeout = self.settings.http_timeout_ms;
                    self.check(busy_until - earliest <= timeout && t <= busy_until + 1, || {
                        format!(
                            "retry {} due at {earliest} came at {t}; the run before ended at {busy_until}",
                            prev.k
                        )
                    })?;
                } else if exact {
                    self.check(t == earliest, || {
                        format!(
                            "retry {} came {} ms after the failure; the schedule says exactly {} ms",
                            prev.k, t - prev.end, earliest - prev.end
                        )
                    })?;
                }
            }
        }
        if let Some(d) = self.refresh_deadline {
            let (start, end) = self.last_run;
            let on_time = t <= d + 1 || (start <= d && t <= end + 1);
            self.check(on_time, || {
                format!("refresh due at {d} (the refresh fraction) began only at {t}")
            })?;
        }
        self.refresh_deadline = None;
        self.credentials_changed_since = false;
        Ok(())
    }

    fn earliest_after(&self, prev: &AcquisitionEnd) -> (UnixMillis, bool) {
        let s = &self.settings;
        let hint = prev.hint_at.unwrap_or(0);
        let cooldown = s.retry_max_delay_ms;
        match prev.class {
            Class::Ok => (prev.end + s.retry_base_ms, false),
            Class::Transient if prev.k <= s.retry_max => {
                let exp = (prev.k - 1).min(40);
                let step = s
                    .retry_base_ms
                    .saturating_mul(1u64 << exp)
                    .min(s.retry_max_delay_ms);
                let max_wait = s.rate_limit_max_wait_secs * 1000;
                let exact = s.retry_jitter == 0.0;
                let backoff = if exact {
                    step
                } else {
                    // Jitter draws up to this fraction earlier; a millisecond of float slack.
                    (((step as f64) * (1.0 - s.retry_jitter)).floor() as u64).saturating_sub(1)
                };
                ((prev.end + backoff.min(max_wait)).max(hint), exact)
            }
            Class::Transient | Class::Permanent => ((prev.end + cooldown).max(hint), true),
            Class::BadCredentials => (
                (prev.end + BAD_CREDENTIALS_PAUSE_MS.max(cooldown)).max(hint),
                false,
            ),
        }
    }

    fn acquisition_ends(&mut self, t: UnixMillis, class: Class, hint_at: Option<UnixMillis>) {
        let k = if class == Class::Transient {
            self.transients + 1
        } else {
            0
        };
        self.transients = if class == Class::Transient && k <= self.settings.retry_max {
            k
        } else {
            0
        };
        self.last_acquisition = Some(AcquisitionEnd {
            end: t,
            class,
            hint_at,
            k,
        });
    }

    /// Invariant: a token's lifetime counts from when Clever delivered it; the refresh point
    /// is exactly the configured fraction of it (refresh jitter is off by default).
    fn put_token(&mut self, t: UnixMillis, entry: TokenEntry) -> Result<(), String> {
        let refresh_after = ((self.lifetime_ms as f64 * self.settings.refresh_fraction) as u64)
            .min(self.lifetime_ms);
        let ok = entry.expires_at == t + self.lifetime_ms && entry.refresh_at == t + refresh_after;
        let (exp, refresh) = (entry.expires_at, entry.refresh_at);
        self.check(ok, || {
            format!("token stored with expires_at {exp}, refresh_at {refresh}; delivered at {t}, lifetime {}", self.lifetime_ms)
        })?;
        self.token_writes
            .insert(entry.district_id.clone(), Some(entry));
        Ok(())
    }

    /// Invariant: a district's token is deleted only when it expired, Clever refused it, or
    /// Clever's complete listing lacks the district.
    fn delete_token(&mut self, id: String, run: &RunLog) -> Result<(), String> {
        let allowed = run.expired_at_start.contains(&id)
            || run.refused.contains(&id)
            || (run.listing_complete && !self.clever.districts.contains_key(&id));
        let listed = self.clever.districts.contains_key(&id);
        self.check(allowed, || {
            format!("token of {id} deleted, but it had not expired, Clever did not refuse it, and Clever lists it: {listed}")
        })?;
        trace!(self, "  delete token {id}");
        self.token_writes.insert(id, None);
        Ok(())
    }

    /// Applies the run's store writes (the last write of a district wins, as in the store),
    /// moving each replaced token into `touched_tokens`.
    fn apply_token_writes(&mut self) {
        for (id, write) in std::mem::take(&mut self.token_writes) {
            let before = match write {
                Some(entry) => match self.tokens.get_mut(&id) {
                    Some(slot) => Some(std::mem::replace(slot, entry)),
                    None => self.tokens.insert(id.clone(), entry),
                },
                None => self.tokens.remove(&id),
            };
            self.touched_tokens.insert(id, before);
        }
    }

    /// The district's token is the one it had before the run (the snapshot-free equivalent of
    /// comparing with a copy of `tokens` taken at the start: see `touched_tokens`).
    fn token_unchanged(&self, id: &str) -> bool {
        match self.touched_tokens.get(id) {
            None => true,
            Some(before) => before.as_ref() == self.tokens.get(id),
        }
    }

    fn after_run(
        &mut self,
        started: UnixMillis,
        run: &RunLog,
        before_records: &BTreeMap<String, DistrictRecord>,
    ) -> Result<(), String> {
        // A run that began at or after a refresh point, with Clever's credentials in hand,
        // must have called the token endpoint.
        if let Some(d) = self.refresh_deadline {
            let missed = started >= d && run.token_calls == 0 && self.svc_creds.is_some();
            self.check(!missed, || {
                format!("the run at {started} is past the refresh point {d} but did not acquire")
            })?;
        }
        if let Some(AcquisitionEnd {
            class: Class::Ok,
            end,
            ..
        }) = self.last_acquisition
        {
            if run.token_calls > 0 && run.listing_complete {
                self.refresh_deadline = self
                    .tokens
                    .values()
                    .filter(|t| t.obtained_at == end)
                    .map(|t| t.refresh_at)
                    .min();
            }
        }
        // Invariant: one district's faults never change another district's token or status.
        if run.token_calls == 0 {
            // Every district with a record before or after the run, each once.
            let after_only = self
                .status
                .districts
                .keys()
                .filter(|id| !before_records.contains_key(*id));
            for id in before_records.keys().chain(after_only) {
                if run.probed_ok.contains(id)
                    || run.probed_failed.contains(id)
                    || run.expired_at_start.contains(id)
                {
                    continue;
                }
                let same = before_records.get(id) == self.status.districts.get(id)
                    && self.token_unchanged(id);
                self.check(same, || {
                    format!("district {id} changed in a run that neither listed nor probed it")
                })?;
            }
            for id in &run.probed_ok {
                let same = self.token_unchanged(id);
                self.check(same, || {
                    format!("a passing probe changed the token of {id}")
                })?;
            }
        }
        Ok(())
    }

    /// Invariant: health agrees with the tokens: a district shows a usable token exactly when
    /// the store holds one, and the service fails exactly when none is usable. The cheap
    /// agreement check runs after every step; `answer` says when a health answer is rendered
    /// too (see [`HealthAnswer`]).
    fn check_health(&mut self, answer: HealthAnswer) -> Result<(), String> {
        let now = self.now;
        let skew = self.skew_ms;
        let store = self
            .tokens
            .iter()
            .filter(move |(_, t)| t.usable(now, skew))
            .map(|(id, _)| id);
        let records = self
            .status
            .districts
            .iter()
            .filter(move |(_, r)| r.has_usable_token(now, skew))
            .map(|(id, _)| id);
        // Both maps iterate in key order, so the two filtered id sequences are equal exactly
        // when the two sets of ids are: the same check without building the sets.
        let agree = store.clone().eq(records.clone());
        let none_usable = store.clone().next().is_none();
        self.check(agree, || {
            let store: BTreeSet<&String> = store.collect();
            let records: BTreeSet<&String> = records.collect();
            format!("usable tokens in the store {store:?} but in health {records:?}")
        })?;
        let view = match answer {
            HealthAnswer::Detail => View::Detail { page: 1 },
            HealthAnswer::IfNoneUsable if none_usable => View::Public,
            HealthAnswer::IfNoneUsable => return Ok(()),
        };
        // `records_list` is `status.districts` as a slice (kept in step after every run).
        debug_assert!(self.records_list.iter().eq(self.status.districts.values()));
        let present = self.svc_creds.is_some();
        // Two answers, as production renders them: one from the records (`view`), the public
        // one from the record the shell precomputes at save time.
        let summary = HealthSummary::compute(&self.status, now, self.skew_ms);
        let inputs = |districts, view| HealthInputs {
            now,
            settings_errors: &[],
            credentials: CredentialPresence {
                client_id: present,
                client_secret: present,
            },
            service: Some(&self.status.service),
            districts,
            expiry_skew_ms: self.skew_ms,
            secrets: None,
            instance_id: None,
            view,
        };
        let report = health::report(&inputs(Districts::Records(&self.records_list), view));
        // When the record cannot answer for `now`, production renders from the records.
        if let Some(counts) = summary.counts_at(now, self.skew_ms) {
            let public = health::report(&inputs(
                Districts::Counted {
                    counts,
                    latest_error: summary.latest_error.as_ref(),
                },
                View::Public,
            ));
            self.check(public.status == report.status, || {
                format!(
                    "public health from the summary says {:?}, from the records ({view:?}) {:?}",
                    public.status, report.status
                )
            })?;
        }
        let code = report.body["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let status = report.status;
        self.check(!none_usable || status == Status::Fail, || {
            format!("no usable token, yet health says {status:?}")
        })?;
        self.check(none_usable || code != "no_valid_token", || {
            "health says no valid token while one is usable".to_string()
        })?;
        Ok(())
    }
}

/// Makes `mirror` equal to `records`, copying only the records that differ (most runs change
/// a few districts, if any); says whether anything differed.
fn sync_records(
    mirror: &mut BTreeMap<String, DistrictRecord>,
    records: &BTreeMap<String, DistrictRecord>,
) -> bool {
    let before = mirror.len();
    mirror.retain(|id, _| records.contains_key(id));
    let mut changed = mirror.len() != before;
    for (id, record) in records {
        match mirror.get_mut(id) {
            Some(old) if old == record => {}
            Some(old) => {
                old.clone_from(record);
                changed = true;
            }
            None => {
                mirror.insert(id.clone(), record.clone());
                changed = true;
            }
        }
    }
    changed
}
