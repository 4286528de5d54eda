//! The component's settings: names, defaults, and validation.
//!
//! The names are the public contract (the native host reads each from the environment variable
//! of the same name in upper case; under Spin they are variables), so they live in one table,
//! [`SETTINGS`], that the host and the docs use too.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One documented setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The `wasi:config` key (lower snake case).
    pub name: &'static str,
    /// The value used when the setting is absent or empty; `None` means "no default".
    pub default: Option<&'static str>,
    /// Secrets are never logged, echoed in errors, or shown in health.
    pub secret: bool,
    pub description: &'static str,
}

impl SettingSpec {
    /// The environment variable the native host reads this setting from.
    pub fn env_name(&self) -> String {
        self.name.to_ascii_uppercase()
    }
}

pub const CLIENT_ID: &str = "clever_client_id";
pub const CLIENT_SECRET: &str = "clever_client_secret";
/// The earliest refresh point `clever_refresh_fraction` accepts.
pub const MIN_REFRESH_FRACTION: f64 = 0.1;

/// Every setting the component reads, in documentation order.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec { name: CLIENT_ID, default: None, secret: true, description: "Clever application client id (from Key Vault in production)." },
    SettingSpec { name: CLIENT_SECRET, default: None, secret: true, description: "Clever application client secret (from Key Vault in production)." },
    SettingSpec { name: "clever_token_url", default: Some("https://clever.com/oauth/tokens"), secret: false, description: "Token endpoint: the district-token listing, or an RFC 6749 token endpoint." },
    SettingSpec { name: "clever_api_base_url", default: Some("https://api.clever.com"), secret: false, description: "Base URL of the Clever data API (the connection probe goes here)." },
    SettingSpec { name: "clever_api_version", default: Some("v3.0"), secret: false, description: "Data API version path segment the service expects." },
    SettingSpec { name: "clever_grant", default: Some("district_tokens"), secret: false, description: "`district_tokens` (Clever's listing, one token per district) or `client_credentials` (RFC 6749 §4.4)." },
    SettingSpec { name: "clever_districts", default: Some(""), secret: false, description: "Comma-separated allow-list of district ids; empty means every district that authorised the app." },
    SettingSpec { name: "clever_token_lifetime_secs", default: Some("3600"), secret: false, description: "Lifetime assumed for tokens whose endpoint gives no `expires_in`." },
    SettingSpec { name: "clever_refresh_fraction", default: Some("0.75"), secret: false, description: "Fraction of a token's lifetime after which it is refreshed (0.1 <= f < 1)." },
    SettingSpec { name: "clever_expiry_skew_secs", default: Some("30"), secret: false, description: "A token this close to expiry counts as expired and is never handed out." },
    SettingSpec { name: "clever_retry_max", default: Some("5"), secret: false, description: "Retries after a transient failure (timeouts, connection errors, 5xx, 429)." },
    SettingSpec { name: "clever_retry_base_ms", default: Some("2000"), secret: false, description: "First retry delay; each further retry doubles it." },
    SettingSpec { name: "clever_retry_max_delay_ms", default: Some("32000"), secret: false, description: "Cap on one retry delay." },
    SettingSpec { name: "clever_retry_jitter", default: Some("0"), secret: false, description: "Fraction (0..=1) of each delay that is randomised; 0 gives the exact schedule." },
    SettingSpec { name: "clever_http_timeout_ms", default: Some("10000"), secret: false, description: "Timeout of one HTTP attempt to Clever." },
    SettingSpec { name: "clever_rate_limit_max_wait_secs", default: Some("120"), secret: false, description: "Longest wait honoured for a server rate-limit hint." },
    SettingSpec { name: "clever_version_header", default: Some(""), secret: false, description: "Response header carrying the API version, if Clever sends one; empty means none." },
    SettingSpec { name: "clever_refresh_jitter", default: Some("0"), secret: false, description: "Fraction (0..=1) of the refresh point drawn at random earlier, so instances started together do not refresh together; 0 (the default) refreshes at exactly the refresh fraction, as the spec says." },
    SettingSpec { name: "clever_probe_batch", default: Some("20"), secret: false, description: "Connection probes per refresher run; more districts are probed in further runs, spread out instead of all at once." },
    SettingSpec { name: "clever_probe_pace_ms", default: Some("250"), secret: false, description: "Pause between two batches of connection probes." },
    SettingSpec { name: "clever_alert_auth_failing_secs", default: Some("900"), secret: false, description: "Authentication failing this long raises the `auth_failing` alert (rejected credentials raise it at once)." },
    SettingSpec { name: "clever_alert_rate_limited_secs", default: Some("600"), secret: false, description: "Rate limiting lasting this long raises the `rate_limited_prolonged` alert." },
    SettingSpec { name: "clever_gateway_deadline_ms", default: Some("30000"), secret: false, description: "How long one gateway request may take in all, waits for a token, a rate limit or a retry included." },
];

/// How tokens are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// `GET <token url>?owner_type=district` with HTTP Basic: one token per district.
    DistrictTokens,
    /// RFC 6749 §4.4 POST: one token for the application.
    ClientCredentials,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::DistrictTokens => "district_tokens",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

/// The validated, non-secret settings. Secrets are read separately, at each acquisition, so a
/// rotated secret takes effect without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub token_url: String,
    pub api_base_url: String,
    pub api_version: String,
    pub grant: Grant,
    pub districts: Vec<String>,
    pub token_lifetime_secs: u64,
    pub refresh_fraction: f64,
    pub expiry_skew_secs: u64,
    pub retry_max: u32,
    pub retry_base_ms: u64,
    pub retry_max_delay_ms: u64,
    pub retry_jitter: f64,
    pub http_timeout_ms: u64,
    pub rate_limit_max_wait_secs: u64,
    pub version_header: Option<String>,
    pub refresh_jitter: f64,
    pub probe_batch: u32,
    pub probe_pace_ms: u64,
    pub alert_auth_failing_secs: u64,
    pub alert_rate_limited_secs: u64,
    pub gateway_deadline_ms: u64,
}

/// A setting whose value cannot be used. The message never contains the value of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub setting: &'static str,
    pub message: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting `{}`: {}", self.setting, self.message)
    }
}

impl std::error::Error for SettingError {}

/// Reads settings through `lookup` (a `wasi:config` get, or a map in tests).
///
/// `lookup` returns `Ok(None)` for an absent key and `Err(reason)` when the config source
/// itself failed. Empty values count as absent, so an app setting left blank means "default".
/// All problems are collected, so one health body names every wrong setting at once.
pub fn load<F>(mut lookup: F) -> Result<Settings, Vec<SettingError>>
where
    F: FnMut(&str) -> Result<Option<String>, String>,
{
    let mut reader = Reader { errors: Vec::new() };
    let mut raw = |name: &'static str| -> String {
        let default = SETTINGS
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.default)
            .unwrap_or("");
        match lookup(name) {
            Ok(Some(v)) if !v.trim().is_empty() => v.trim().to_string(),
            Ok(_) => default.to_string(),
            Err(reason) => {
                reader.errors.push(SettingError {
                    setting: name,
                    message: format!("could not be read from the configuration source: {reason}"),
                });
                default.to_string()
            }
        }
    };

    let token_url = raw("clever_token_url");
    let api_base_url = raw("clever_api_base_url");
    let api_version = raw("clever_api_version");
    let grant = raw("clever_grant");
    let districts = raw("clever_districts");
    let lifetime = raw("clever_token_lifetime_secs");
    let fraction = raw("clever_refresh_fraction");
    let skew = raw("clever_expiry_skew_secs");
    let retry_max = raw("clever_retry_max");
    let retry_base = raw("clever_retry_base_ms");
    let retry_cap = raw("clever_retry_max_delay_ms");
    let jitter = raw("clever_retry_jitter");
    let timeout = raw("clever_http_timeout_ms");
    let max_wait = raw("clever_rate_limit_max_wait_secs");
    let version_header = raw("clever_version_header");
    let refresh_jitter = raw("clever_refresh_jitter");
    let probe_batch = raw("clever_probe_batch");
    let probe_pace = raw("clever_probe_pace_ms");
    let alert_auth = raw("clever_alert_auth_failing_secs");
    let alert_rate = raw("clever_alert_rate_limited_secs");
    let gateway_deadline = raw("clever_gateway_deadline_ms");

    let settings = Settings {
        token_url: reader.url("clever_token_url", &token_url),
        api_base_url: reader
            .url("clever_api_base_url", &api_base_url)
            .trim_end_matches('/')
            .to_string(),
        api_version: reader.version("clever_api_version", &api_version),
        grant: reader.grant(&grant),
        districts: districts
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect(),
        token_lifetime_secs: reader.int("clever_token_lifetime_secs", &lifetime, 1, 31_536_000),
        refresh_fraction: reader.refresh_fraction("clever_refresh_fraction", &fraction),
        expiry_skew_secs: reader.int("clever_expiry_skew_secs", &skew, 0, 86_400),
        retry_max: reader.int("clever_retry_max", &retry_max, 0, 100) as u32,
        retry_base_ms: reader.int("clever_retry_base_ms", &retry_base, 1, 3_600_000),
        retry_max_delay_ms: reader.int("clever_retry_max_delay_ms", &retry_cap, 1, 86_400_000),
        retry_jitter: reader.fraction("clever_retry_jitter", &jitter),
        http_timeout_ms: reader.int("clever_http_timeout_ms", &timeout, 1, 600_000),
        rate_limit_max_wait_secs: reader.int(
            "clever_rate_limit_max_wait_secs",
            &max_wait,
            0,
            86_400,
        ),
        version_header: Some(version_header).filter(|h| !h.is_empty()),
        refresh_jitter: reader.fraction("clever_refresh_jitter", &refresh_jitter),
        probe_batch: reader.int("clever_probe_batch", &probe_batch, 1, 10_000) as u32,
        probe_pace_ms: reader.int("clever_probe_pace_ms", &probe_pace, 0, 600_000),
        alert_auth_failing_secs: reader.int(
            "clever_alert_auth_failing_secs",
            &alert_auth,
            0,
            31_536_000,
        ),
        alert_rate_limited_secs: reader.int(
            "clever_alert_rate_limited_secs",
            &alert_rate,
            0,
            31_536_000,
        ),
        gateway_deadline_ms: reader.int(
            "clever_gateway_deadline_ms",
            &gateway_deadline,
            1,
            600_000,
        ),
    };
    if settings.token_lifetime_secs <= settings.expiry_skew_secs {
        reader.errors.push(SettingError {
            setting: "clever_expiry_skew_secs",
            message: format!(
                "must be shorter than clever_token_lifetime_secs ({} s), or every token would count as expired",
                settings.token_lifetime_secs
            ),
        });
    }
    if reader.errors.is_empty() {
        Ok(settings)
    } else {
        Err(reader.errors)
    }
}

struct Reader {
    errors: Vec<SettingError>,
}

/// How many URLs that passed the check are remembered.
const GOOD_URLS_KEPT: usize = 4;

thread_local! {
    /// URLs that passed the check. The gateway reads and checks the settings on every
    /// request, and parsing the same two URLs each time was about 1 % of its CPU.
    static GOOD_URLS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Reader {
    fn fail(&mut self, setting: &'static str, message: String) {
        self.errors.push(SettingError { setting, message });
    }

    fn url(&mut self, setting: &'static str, value: &str) -> String {
        if GOOD_URLS.with(|good| good.borrow().iter().any(|u| u == value)) {
            return value.to_string();
        }
        match url::Url::parse(value) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
                GOOD_URLS.with(|good| {
                    let mut good = good.borrow_mut();
                    if good.len() == GOOD_URLS_KEPT {
                        good.remove(0);
                    }
                    good.push(value.to_string());
                });
                value.to_string()
            }
            Ok(u) => {
                self.fail(
                    setting,
                    format!(
                        "`{value}` must be an http(s) URL with a host (scheme `{}`)",
                        u.scheme()
                    ),
                );
                String::new()
            }
            Err(e) => {
                self.fail(setting, format!("`{value}` is not a URL: {e}"));
                String::new()
            }
        }
    }

    fn version(&mut self, setting: &'static str, value: &str) -> String {
        let v = value.strip_prefix('v').unwrap_or(value);
        let ok = !v.is_empty()
            && v.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            format!("v{v}")
        } else {
            self.fail(
                setting,
                format!("`{value}` is not an API version like `v3.0`"),
            );
            String::new()
        }
    }

    fn grant(&mut self, value: &str) -> Grant {
        match value {
            "district_tokens" => Grant::DistrictTokens,
            "client_credentials" => Grant::ClientCredentials,
            other => {
                self.fail(
                    "clever_grant",
                    format!("`{other}` is not one of `district_tokens`, `client_credentials`"),
                );
                Grant::DistrictTokens
            }
        }
    }

    fn int(&mut self, setting: &'static str, value: &str, min: u64, max: u64) -> u64 {
        match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(n) => {
                self.fail(setting, format!("{n} is outside {min}..={max}"));
                min
            }
            Err(_) => {
                self.fail(setting, format!("`{value}` is not a whole number"));
                min
            }
        }
    }

    /// A share from 0 to 1 inclusive (jitter).
    fn fraction(&mut self, setting: &'static str, value: &str) -> f64 {
        match value.parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => f,
            Ok(_) | Err(_) => {
                self.fail(setting, format!("`{value}` is not a number from 0 to 1"));
                0.0
            }
        }
    }

    /// The point of a token's lifetime at which it is refreshed. Below
    /// [`MIN_REFRESH_FRACTION`] a typo (`0.0075` for `0.75`) would re-acquire every token
    /// almost continuously; at 1 the refresh would coincide with expiry.
    fn refresh_fraction(&mut self, setting: &'static str, value: &str) -> f64 {
        match value.parse::<f64>() {
            Ok(f) if (MIN_REFRESH_FRACTION..1.0).contains(&f) => f,
            Ok(_) | Err(_) => {
                self.fail(
                    setting,
                    format!(
                        "`{value}` is not a number from {MIN_REFRESH_FRACTION} up to (not including) 1"
                    ),
                );
                0.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_from(pairs: &[(&str, &str)]) -> Result<Settings, Vec<SettingError>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(|k| Ok(map.get(k).cloned()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = load_from(&[]).expect("defaults are valid");
        assert_eq!(s.token_url, "https://clever.com/oauth/tokens");
        assert_eq!(s.api_base_url, "https://api.clever.com");
        assert_eq!(s.api_version, "v3.0");
        assert_eq!(s.grant, Grant::DistrictTokens);
        assert!(s.districts.is_empty());
        assert_eq!(s.token_lifetime_secs, 3600);
        assert_eq!(s.refresh_fraction, 0.75);
        assert_eq!(s.expiry_skew_secs, 30);
        assert_eq!(
            (s.retry_max, s.retry_base_ms, s.retry_max_delay_ms),
            (5, 2000, 32000)
        );
        assert_eq!(s.retry_jitter, 0.0);
        assert_eq!(s.http_timeout_ms, 10_000);
        assert_eq!(s.rate_limit_max_wait_secs, 120);
        assert_eq!(s.version_header, None);
    }

    #[test]
    fn values_are_trimmed_and_parsed() {
        let s = load_from(&[
            ("clever_districts", " a, b ,,c "),
            ("clever_api_version", "3.1"),
            ("clever_grant", "client_credentials"),
            ("clever_api_base_url", "http://127.0.0.1:9/"),
            ("clever_version_header", "X-Clever-Version"),
        ])
        .expect("valid");
        assert_eq!(s.districts, ["a", "b", "c"]);
        assert_eq!(s.api_version, "v3.1");
        assert_eq!(s.grant, Grant::ClientCredentials);
        assert_eq!(s.api_base_url, "http://127.0.0.1:9");
        assert_eq!(s.version_header.as_deref(), Some("X-Clever-Version"));
    }

    #[test]
    fn every_bad_value_is_named() {
        let errors = load_from(&[
            ("clever_token_url", "ftp://x"),
            ("clever_api_base_url", "not a url"),
            ("clever_grant", "password"),
            ("clever_refresh_fraction", "1.5"),
            ("clever_retry_max", "-1"),
            ("clever_retry_jitter", "abc"),
            ("clever_api_version", "latest"),
        ])
        .expect_err("invalid");
        let named: Vec<&str> = errors.iter().map(|e| e.setting).collect();
        assert_eq!(
            named,
            [
                "clever_token_url",
                "clever_api_base_url",
                "clever_api_version",
                "clever_grant",
                "clever_refresh_fraction",
                "clever_retry_max",
                "clever_retry_jitter",
            ]
        );
        assert!(errors[3].to_string().contains("`password` is not one of"));
    }

    #[test]
    fn remembered_urls_give_the_same_answers() {
        // More good URLs than are kept, three times round: each is remembered, forgotten and
        // checked again; a bad one is refused every time, whatever was remembered before.
        for round in 0..3 {
            for i in 0..GOOD_URLS_KEPT + 2 {
                let good = format!("https://h{i}.example/");
                let s = load_from(&[("clever_api_base_url", good.as_str())]).expect("good");
                assert_eq!(s.api_base_url, good.trim_end_matches('/'), "round {round}");
            }
            for bad in ["ftp://x", "not a url", "https://", "mailto:a@b.example"] {
                let errors = load_from(&[("clever_api_base_url", bad)]).expect_err(bad);
                assert_eq!(
                    errors[0].setting, "clever_api_base_url",
                    "{bad} round {round}"
                );
            }
        }
    }

    #[test]
    fn the_refresh_point_is_bounded_below_as_well() {
        for bad in ["0", "0.0075", "1e-300", "0.09", "1", "NaN"] {
            let errors = load_from(&[("clever_refresh_fraction", bad)]).expect_err(bad);
            assert_eq!(errors.len(), 1, "{bad}");
            assert!(
                errors[0]
                    .to_string()
                    .contains("from 0.1 up to (not including) 1"),
                "{bad}: {}",
                errors[0]
            );
        }
        for good in ["0.1", "0.5", "0.75", "0.99"] {
            let s = load_from(&[("clever_refresh_fraction", good)]).expect(good);
            assert_eq!(s.refresh_fraction.to_string(), good);
        }
    }

    #[test]
    fn skew_must_be_shorter_than_lifetime() {
        let errors = load_from(&[("clever_token_lifetime_secs", "30")]).expect_err("invalid");
        assert_eq!(errors[0].setting, "clever_expiry_skew_secs");
    }

    #[test]
    fn a_failing_source_is_reported_per_setting() {
        let errors = load(|k| {
            if k == "clever_grant" {
                Err("vault down".into())
            } else {
                Ok(None)
            }
        })
        .expect_err("source failed");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("vault down"));
    }

    #[test]
    fn table_has_unique_lower_snake_names() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        assert_eq!(SETTINGS[0].env_name(), "CLEVER_CLIENT_ID");
    }
}
