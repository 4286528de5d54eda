//! A simulated Clever: the district-token listing (paged), the data API probe, and the faults
//! a real one shows, each answer tagged with how the spec classifies it so the invariants do
//! not have to trust the machine's own classification.

use super::rng::Rng;
use clever_auth_core::refresher::{HttpResult, Reply, TransportError};
use clever_auth_core::UnixMillis;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;

pub const TOKEN_URL: &str = "https://clever.sim/oauth/tokens";
pub const API_URL: &str = "https://api.clever.sim";

/// How the spec classifies an answer of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Ok,
    Transient,
    Permanent,
    BadCredentials,
}

/// What can go wrong with the token endpoint for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storm {
    Calm,
    ServerErrors,
    RateLimited { retry_after: bool, reset: bool },
    Timeouts,
    Malformed,
    Html,
    Permanent(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFault {
    RateLimited { until: UnixMillis },
    ServerError { until: UnixMillis },
}

pub struct Answer {
    pub latency_ms: u64,
    pub result: HttpResult,
    pub class: Class,
    /// The instant the server asked us not to come back before.
    pub hint_at: Option<UnixMillis>,
    /// A listing page that completed the listing (no next link).
    pub last_page: bool,
    /// For the trace; fixed text wherever it can be, so an untraced run allocates nothing
    /// for it.
    pub description: Cow<'static, str>,
}

pub struct SimClever {
    pub districts: BTreeMap<String, String>,
    next_token: u64,
    pub client_id: String,
    pub secret: String,
    pub page_size: Option<usize>,
    pub storm: Storm,
    pub storm_p: f64,
    pub probe_faults: BTreeMap<String, ProbeFault>,
    /// Tokens Clever refused (rotated away): a probe with one gets 401.
    pub revoked: BTreeMap<String, String>,
    pub empty_next: bool,
    /// The last listing was answered empty by the fault: the next one is not (one empty
    /// answer is a fault; two in a row would be Clever's word).
    pub empty_served_last: bool,
    pub skip_entry: Option<String>,
    pub version_retired: bool,
    pub timeout_ms: u64,
}

impl SimClever {
    pub fn new(districts: usize, timeout_ms: u64) -> SimClever {
        let mut c = SimClever {
            districts: BTreeMap::new(),
            next_token: 0,
            client_id: "sim-client".into(),
            secret: "secret-0".into(),
            page_size: None,
            storm: Storm::Calm,
            storm_p: 0.0,
            probe_faults: BTreeMap::new(),
            revoked: BTreeMap::new(),
            empty_next: false,
            empty_served_last: false,
            skip_entry: None,
            version_retired: false,
            timeout_ms,
        };
        for i in 0..districts {
            c.join(&format!("d{i:03}"));
        }
        c
    }

    fn new_token(&mut self) -> String {
        self.next_token += 1;
        format!("tok{:08}", self.next_token)
    }

    pub fn join(&mut self, id: &str) {
        let t = self.new_token();
        self.districts.insert(id.to_string(), t);
    }

    pub fn leave(&mut self, id: &str) {
        if let Some(t) = self.districts.remove(id) {
            self.revoked.insert(t, id.to_string());
        }
    }

    /// Clever revokes a district's token and issues a new one in its listing.
    pub fn revoke(&mut self, id: &str) {
        let new = self.new_token();
        if let Some(old) = self.districts.insert(id.to_string(), new) {
            self.revoked.insert(old, id.to_string());
        }
    }

    fn latency(&self, rng: &mut Rng) -> u64 {
        rng.range(1, 400.min(self.timeout_ms))
    }

    /// `GET` a listing page with these credentials.
    pub fn list(
        &mut self,
        rng: &mut Rng,
        now: UnixMillis,
        url: Option<&str>,
        creds: (&str, &str),
    ) -> Answer {
        let latency = self.latency(rng);
        let at = now + latency;
        if creds != (self.client_id.as_str(), self.secret.as_str()) {
            return answer(
                latency,
                reply(401, vec![], br#"{"error":"invalid_client"}"#),
                Class::BadCredentials,
                None,
                "401 invalid_client",
            );
        }
        if self.storm != Storm::Calm && rng.chance(self.storm_p) {
            return self.storm_answer(rng, latency, at);
        }
        let after = url
            .and_then(|u| u.split("starting_after=").nth(1))
            .map(str::to_string);
        let first = after.is_none();
        if first && self.empty_next {
            self.empty_next = false;
            self.empty_served_last = true;
            return answer(
                latency,
                reply(200, vec![], br#"{"data":[],"links":[]}"#),
                Class::Ok,
                None,
                "200 empty listing (fault)",
            )
            .last(true);
        }
        if first {
            // A real answer ends the fault's run: the next empty one is a new fault.
            self.empty_served_last = false;
        }
        // The districts after the cursor, in id order (as the listing pages them).
        let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let ids: Vec<&String> = self
            .districts
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(id, _)| id)
            .collect();
        let (page, next) = match self.page_size {
            Some(n) if ids.len() > n => (&ids[..n], Some(ids[n - 1].clone())),
            _ => (&ids[..], None),
        };
        // Written directly rather than through `serde_json::Value`: the listing is the
        // simulation's hottest path. Ids and tokens are plain ASCII, no escaping needed.
        let mut body = String::with_capacity(64 + page.len() * 120);
        body.push_str(r#"{"data":["#);
        for (i, id) in page.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let token = &self.districts[*id];
            if self.skip_entry.as_deref() == Some(id.as_str()) {
                let _ = write!(body, r#"{{"owner":{{"type":"district","id":"{id}"}}}}"#);
            } else {
                let _ = write!(
                    body,
                    r#"{{"owner":{{"type":"district","id":"{id}"}},"access_token":"{token}","scopes":["read:district"]}}"#
                );
            }
        }
        body.push_str(r#"],"links":[{"rel":"self","uri":"/oauth/tokens?owner_type=district"}"#);
        if let Some(last) = &next {
            let _ = write!(
                body,
                r#",{{"rel":"next","uri":"/oauth/tokens?owner_type=district&starting_after={last}"}}"#
            );
        }
        body.push_str("]}");
        let desc = format!(
            "200 listing page ({} districts{})",
            page.len(),
            if next.is_some() { ", more" } else { "" }
        );
        answer(latency, reply(200, vec![], body), Class::Ok, None, desc).last(next.is_none())
    }

    fn storm_answer(&mut self, rng: &mut Rng, latency: u64, at: UnixMillis) -> Answer {
        match self.storm {
            Storm::Calm => unreachable!("calm has no storm answer"),
            Storm::ServerErrors => {
                let status = *rng.pick(&[500u16, 502, 503, 504, 520]).unwrap_or(&503);
                answer(
                    latency,
                    reply(status, vec![], b"upstream trouble"),
                    Class::Transient,
                    None,
                    format!("{status}"),
                )
            }
            Storm::RateLimited { retry_after, reset } => {
                let wait_s = rng.range(1, 200);
                let mut headers = vec![];
                // The hint instant as the machine must read it: Retry-After counts from
                // arrival; the reset is whole epoch seconds.
                let mut hint = None;
                if reset {
                    let reset_s = (at + wait_s * 1000).div_ceil(1000);
                    headers.push(("X-Ratelimit-Bucket".to_string(), b"client,app".to_vec()));
                    headers.push(("X-Ratelimit-Limit".to_string(), b"1200,5000".to_vec()));
                    headers.push(("X-Ratelimit-Remaining".to_string(), b"0,4000".to_vec()));
                    let other = at.div_ceil(1000) + 1;
                    headers.push((
                        "X-Ratelimit-Reset".to_string(),
                        format!("{reset_s},{other}").into_bytes(),
                    ));
                    hint = Some(reset_s * 1000);
                }
                if retry_after {
                    let hint_at = hint.unwrap_or(at + wait_s * 1000);
                    let secs = hint_at.saturating_sub(at).div_ceil(1000);
                    headers.push(("Retry-After".to_string(), secs.to_string().into_bytes()));
                    hint = Some(at + secs * 1000);
                }
                answer(
                    latency,
                    reply(429, headers, br#"{"error":"rate limited"}"#),
                    Class::Transient,
                    hint,
                    "429",
                )
            }
            Storm::Timeouts => Answer {
                latency_ms: self.timeout_ms,
                result: Err(TransportError::Timeout),
                class: Class::Transient,
                hint_at: None,
                last_page: false,
                description: Cow::Borrowed("timeout"),
            },
            Storm::Malformed => answer(
                latency,
                reply(200, vec![], br#"{"data": {"oops": 1}"#),
                Class::Transient,
                None,
                "200 malformed",
            ),
            Storm::Html => answer(
                latency,
                reply(200, vec![], b"<html><body>maintenance</body></html>"),
                Class::Transient,
                None,
                "200 html",
            ),
            Storm::Permanent(status) => answer(
                latency,
                reply(status, vec![], br#"{"error":"no"}"#),
                Class::Permanent,
                None,
                format!("{status}"),
            ),
        }
    }

    /// The connection probe of `district` with `token`.
    pub fn probe(&mut self, rng: &mut Rng, now: UnixMillis, district: &str, token: &str) -> Answer {
        let latency = self.latency(rng);
        let at = now + latency;
        if self.revoked.contains_key(token)
            || self.districts.get(district).is_none_or(|t| t != token)
        {
            return answer(
                latency,
                reply(401, vec![], br#"{"error":"invalid_token"}"#),
                Class::Permanent,
                None,
                "probe 401",
            );
        }
        match self.probe_faults.get(district).copied() {
            Some(ProbeFault::RateLimited { until }) if until > at => {
                let secs = (until - at).div_ceil(1000);
                let headers = vec![("Retry-After".to_string(), secs.to_string().into_bytes())];
                return answer(
                    latency,
                    reply(429, headers, b"{}"),
                    Class::Transient,
                    Some(at + secs * 1000),
                    "probe 429",
                );
            }
            Some(ProbeFault::ServerError { until }) if until > at => {
                return answer(
                    latency,
                    reply(503, vec![], b"{}"),
                    Class::Transient,
                    None,
                    "probe 503",
                );
            }
            _ => {}
        }
        if self.version_retired {
            return answer(
                latency,
                reply(
                    404,
                    vec![],
                    br#"{"message":"API version v3.0 is not supported"}"#,
                ),
                Class::Permanent,
                None,
                "probe version retired",
            );
        }
        // Written directly rather than through `serde_json::Value` (the same bytes, keys in the
        // order `json!` sorts them): probes are the second hottest answer. Ids are plain ASCII.
        let body = format!(
            r#"{{"data":{{"id":"{district}"}},"links":[{{"rel":"self","uri":"/v3.0/districts/{district}"}}]}}"#
        );
        answer(
            latency,
            reply(200, vec![], body),
            Class::Ok,
            None,
            "probe 200",
        )
    }
}

fn reply(status: u16, headers: Vec<(String, Vec<u8>)>, body: impl Into<Vec<u8>>) -> HttpResult {
    Ok(Reply {
        status,
        headers,
        body: body.into(),
    })
}

fn answer(
    latency: u64,
    result: HttpResult,
    class: Class,
    hint_at: Option<UnixMillis>,
    desc: impl Into<Cow<'static, str>>,
) -> Answer {
    Answer {
        latency_ms: latency,
        result,
        class,
        hint_at,
        last_page: false,
        description: desc.into(),
    }
}

impl Answer {
    fn last(mut self, last: bool) -> Answer {
        self.last_page = last;
        self
    }
}
