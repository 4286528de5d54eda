//! How a fake Clever starts: its credentials, districts, versions and rate limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Start-up settings. Everything except `addr` and `tls` can also be changed at run time
/// through [`FakeClever`].
#[derive(Clone, Debug)]
pub struct FakeCleverConfig {
    /// Where to listen; the default `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// Serve HTTPS with a certificate from a CA made at start-up ([`FakeClever::ca_pem`]).
    pub tls: bool,
    /// With `tls`: more names the certificate is valid for besides `localhost`, `127.0.0.1`
    /// and `::1` (a host name a container resolves to this machine).
    pub tls_names: Vec<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Districts to create with these exact ids.
    pub district_ids: Vec<String>,
    /// How many more districts to create with random 24-hex ids.
    pub generated_districts: usize,
    /// Scopes listed on every token and returned by `tokeninfo`.
    pub scopes: Vec<String>,
    /// `expires_in` of `client_credentials` tokens (they really expire after it).
    pub client_credentials_lifetime_secs: u64,
    /// Data API versions answered normally; any other `v<digits>` path segment gets the
    /// "version not supported" error.
    pub supported_versions: Vec<String>,
    /// Status of the "version not supported" error (Clever's is undocumented).
    pub version_not_supported_status: u16,
    /// Name of a response header carrying the served API version on data responses; none by
    /// default, as no such header was seen in real Clever responses.
    pub version_header: Option<String>,
    pub rate_limit: RateLimitConfig,
    /// Print one line per finished request to stderr.
    pub echo_requests: bool,
    /// Put in front of every token issued, so a test can search output for any token, even
    /// one it never saw (the leak canary).
    pub token_prefix: String,
}

impl Default for FakeCleverConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: false,
            tls_names: Vec::new(),
            client_id: "demo-client-id".to_string(),
            client_secret: "demo-client-secret".to_string(),
            district_ids: Vec::new(),
            generated_districts: 2,
            scopes: [
                "read:districts",
                "read:schools",
                "read:students",
                "read:teachers",
            ]
            .map(String::from)
            .to_vec(),
            client_credentials_lifetime_secs: 3600,
            supported_versions: vec!["v3.0".to_string(), "v3.1".to_string()],
            version_not_supported_status: 404,
            version_header: None,
            rate_limit: RateLimitConfig::default(),
            echo_requests: false,
            token_prefix: String::new(),
        }
    }
}

/// How rate-limit headers are computed and whether the limit is enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// One entry per bucket; all apply to every request (counted per presented credential).
    pub buckets: Vec<RateLimitBucket>,
    /// How several buckets are written.
    pub style: MultiBucketStyle,
    /// Answer an empty-body 429 (with only `X-Ratelimit-Reset` as hint) once a bucket is spent.
    pub enforce: bool,
}

impl Default for RateLimitConfig {
    /// Clever's documented limit: 1200 requests per minute per token, enforced.
    fn default() -> Self {
        Self {
            buckets: vec![RateLimitBucket::new(
                "per-token",
                1200,
                Duration::from_secs(60),
            )],
            style: MultiBucketStyle::CommaJoined,
            enforce: true,
        }
    }
}

/// One fixed-window bucket; windows are aligned to multiples of `window` since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitBucket {
    pub name: String,
    pub limit: u64,
    pub window: Duration,
}

impl RateLimitBucket {
    pub fn new(name: impl Into<String>, limit: u64, window: Duration) -> Self {
        Self {
            name: name.into(),
            limit,
            window,
        }
    }
}

/// How values of several buckets are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiBucketStyle {
    /// `X-Ratelimit-Limit: 200, 1200`.
    CommaJoined,
    /// One header line per bucket.
    Repeated,
}
