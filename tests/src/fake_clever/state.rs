//! The fake's mutable world: credentials, districts and their tokens, issued
//! client_credentials tokens, API versions and rate-limit counters.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::time::{Duration, Instant};

pub(crate) use crate::fake_support::util::{
    lock, random_hex, random_u64, unix_ms_now, unix_secs_now,
};

use super::config::{FakeCleverConfig, RateLimitConfig};

/// A district as the fake knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistrictInfo {
    pub id: String,
    pub name: String,
    /// The district-app token currently listed for this district.
    pub token: String,
    /// The listing entry's `id`.
    pub token_id: String,
    /// When the current token was made (Unix epoch milliseconds).
    pub token_created_unix_ms: u64,
    /// A revoked token stays listed but every use of it gets 401.
    pub revoked: bool,
}

/// Who a presented bearer token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenOwner {
    District(String),
    App,
}

#[derive(Clone, Debug)]
pub(crate) struct TokenLookup {
    pub(crate) owner: Option<TokenOwner>,
    pub(crate) valid: bool,
}

impl TokenLookup {
    pub(crate) fn none() -> Self {
        Self {
            owner: None,
            valid: false,
        }
    }
}

/// One bucket's values for one response.
#[derive(Clone, Debug)]
pub(crate) struct BucketSnapshot {
    pub(crate) name: String,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset_epoch_secs: u64,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) districts: BTreeMap<String, DistrictInfo>,
    // Tokens that were rotated away or belong to removed districts, so the log can still say
    // whose token an outdated request carried.
    pub(crate) retired_tokens: HashMap<String, String>,
    pub(crate) app_tokens: HashMap<String, Instant>,
    pub(crate) client_credentials_lifetime_secs: u64,
    pub(crate) supported_versions: Vec<String>,
    pub(crate) version_not_supported_status: u16,
    pub(crate) version_header: Option<String>,
    pub(crate) served_version: Option<String>,
    pub(crate) rate_limit: RateLimitConfig,
    // (bucket name, credential key) -> (window start epoch secs, requests in window)
    rate_counters: HashMap<(String, String), (u64, u64)>,
    next_district_number: u64,
    token_prefix: String,
    /// Districts per page of the token listing (`None`: one page with all of them).
    pub(crate) listing_page_size: Option<usize>,
}

impl State {
    pub(crate) fn new(config: &FakeCleverConfig) -> Self {
        Self {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scopes: config.scopes.clone(),
            districts: BTreeMap::new(),
            retired_tokens: HashMap::new(),
            app_tokens: HashMap::new(),
            client_credentials_lifetime_secs: config.client_credentials_lifetime_secs,
            supported_versions: config.supported_versions.clone(),
            version_not_supported_status: config.version_not_supported_status,
            version_header: config.version_header.clone(),
            served_version: None,
            rate_limit: config.rate_limit.clone(),
            rate_counters: HashMap::new(),
            next_district_number: 1,
            token_prefix: config.token_prefix.clone(),
            listing_page_size: None,
        }
    }

    fn new_token(&self) -> String {
        format!("{}{}", self.token_prefix, random_hex(40))
    }

    pub(crate) fn basic_is_valid(&self, id: &str, secret: &str) -> bool {
        // Not constant-time: this is a test fake, nobody times it.
        id == self.client_id && secret == self.client_secret
    }

    pub(crate) fn add_district(&mut self, id: String) -> DistrictInfo {
        if let Some(existing) = self.districts.get(&id) {
            return existing.clone();
        }
        let number = self.next_district_number;
        self.next_district_number += 1;
        let info = DistrictInfo {
            name: format!("Fake District {number}"),
            token: self.new_token(),
            token_id: random_hex(24),
            token_created_unix_ms: unix_ms_now(),
            revoked: false,
            id: id.clone(),
        };
        self.districts.insert(id, info.clone());
        info
    }

    pub(crate) fn remove_district(&mut self, id: &str) -> bool {
        match self.districts.remove(id) {
            Some(d) => {
                self.retired_tokens.insert(d.token, d.id);
                true
            }
            None => false,
        }
    }

    pub(crate) fn rotate_token(&mut self, id: &str) -> Option<String> {
        let district = self.districts.get_mut(id)?;
        let old = std::mem::replace(
            &mut district.token,
            format!("{}{}", self.token_prefix, random_hex(40)),
        );
        district.token_id = random_hex(24);
        district.token_created_unix_ms = unix_ms_now();
        district.revoked = false;
        let new = district.token.clone();
        self.retired_tokens.insert(old, id.to_string());
        Some(new)
    }

    pub(crate) fn revoke_token(&mut self, id: &str) -> bool {
        match self.districts.get_mut(id) {
            Some(d) => {
                d.revoked = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn issue_app_token(&mut self) -> (String, u64) {
        let token = self.new_token();
        let lifetime = self.client_credentials_lifetime_secs;
        let expires = Instant::now() + Duration::from_secs(lifetime);
        // Forget long-expired tokens so a long demo run does not grow without bound.
        let now = Instant::now();
        self.app_tokens.retain(|_, exp| *exp > now);
        self.app_tokens.insert(token.clone(), expires);
        (token, lifetime)
    }

    pub(crate) fn lookup_token(&self, token: &str) -> TokenLookup {
        if let Some(d) = self.districts.values().find(|d| d.token == token) {
            return TokenLookup {
                owner: Some(TokenOwner::District(d.id.clone())),
                valid: !d.revoked,
            };
        }
        if let Some(expires) = self.app_tokens.get(token) {
            return TokenLookup {
                owner: Some(TokenOwner::App),
                valid: *expires > Instant::now(),
            };
        }
        if let Some(district) = self.retired_tokens.get(token) {
            return TokenLookup {
                owner: Some(TokenOwner::District(district.clone())),
                valid: false,
            };
        }
        TokenLookup::none()
    }

    pub(crate) fn version_supported(&self, version: &str) -> bool {
        self.supported_versions.iter().any(|v| v == version)
    }

    /// Counts one request against every bucket for `key` and returns the header values, plus
    /// whether an enforced bucket is over its limit.
    pub(crate) fn observe_rate(&mut self, key: &str) -> (Vec<BucketSnapshot>, bool) {
        let now = unix_secs_now();
        let mut exceeded = false;
        let mut out = Vec::with_capacity(self.rate_limit.buckets.len());
        for bucket in &self.rate_limit.buckets {
            let window = bucket.window.as_secs().max(1);
            let start = now / window * window;
            let entry = self
                .rate_counters
                .entry((bucket.name.clone(), key.to_string()))
                .or_insert((start, 0));
            if entry.0 != start {
                *entry = (start, 0);
            }
            entry.1 += 1;
            if entry.1 > bucket.limit {
                exceeded = true;
            }
            out.push(BucketSnapshot {
                name: bucket.name.clone(),
                limit: bucket.limit,
                remaining: bucket.limit.saturating_sub(entry.1),
                reset_epoch_secs: start + window,
            });
        }
        (out, exceeded && self.rate_limit.enforce)
    }

    pub(crate) fn set_rate_limit(&mut self, config: RateLimitConfig) {
        self.rate_limit = config;
        self.rate_counters.clear();
    }
}

/// RFC 3339 UTC with milliseconds, as Clever's `created` field (`2021-02-24T22:24:55.985Z`).
pub(crate) fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m as u32, d as u32)
}

/// A short salted fingerprint: enough to tell credentials apart in a log, useless to replay.
pub(crate) fn fingerprint(salt: u64, credential: &str) -> String {
    let mut h = std::hash::DefaultHasher::new();
    h.write_u64(salt);
    h.write(credential.as_bytes());
    format!("{:012x}", h.finish() >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_clever::config::{MultiBucketStyle, RateLimitBucket};

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_614_205_495_985),
            "2021-02-24T22:24:55.985Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn random_hex_has_requested_length_and_alphabet() {
        let t = random_hex(40);
        assert_eq!(t.len(), 40);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(random_hex(40), t);
    }

    #[test]
    fn enforced_bucket_trips_after_limit() {
        let mut s = State::new(&FakeCleverConfig {
            rate_limit: RateLimitConfig {
                buckets: vec![RateLimitBucket::new("b", 2, Duration::from_secs(3600))],
                style: MultiBucketStyle::CommaJoined,
                enforce: true,
            },
            ..FakeCleverConfig::default()
        });
        assert!(!s.observe_rate("k").1);
        let (snap, exceeded) = s.observe_rate("k");
        assert!(!exceeded);
        assert_eq!(snap[0].remaining, 0);
        assert!(s.observe_rate("k").1);
        // Another credential has its own counter.
        assert!(!s.observe_rate("other").1);
    }
}
