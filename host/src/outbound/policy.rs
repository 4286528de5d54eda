//! Which outbound requests may leave the host: https only (plain http to loopback only when
//! explicitly allowed), and only to the hosts the configured endpoints name.

use std::collections::BTreeSet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    allowed_hosts: BTreeSet<String>,
    allow_loopback_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    PlainHttp { host: String },
    HostNotAllowed { host: String },
    NoHost,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::PlainHttp { host } => write!(
                f,
                "plain http to {host} refused: only https is allowed (http only to loopback with --allow-loopback-http)"
            ),
            Denied::HostNotAllowed { host } => write!(
                f,
                "{host} is not an allowed outbound host (derived from clever_token_url, clever_api_base_url and CLEVER_AUTH_ALLOWED_HOSTS)"
            ),
            Denied::NoHost => write!(f, "request without a host"),
        }
    }
}

/// `host` of an authority, without port or IPv6 brackets, lower case.
pub fn host_of(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        })
    };
    host.to_ascii_lowercase()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Policy {
    /// `endpoints` are URLs (their hosts are allowed); `extra_hosts` are bare host names.
    pub fn new<'a>(
        endpoints: impl IntoIterator<Item = &'a str>,
        extra_hosts: impl IntoIterator<Item = &'a str>,
        allow_loopback_http: bool,
    ) -> Policy {
        let mut allowed_hosts: BTreeSet<String> = endpoints
            .into_iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .filter_map(|u| {
                u.host_str()
                    .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
            })
            .collect();
        allowed_hosts.extend(
            extra_hosts
                .into_iter()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase),
        );
        Policy {
            allowed_hosts,
            allow_loopback_http,
        }
    }

    pub fn allowed_hosts(&self) -> impl Iterator<Item = &str> {
        self.allowed_hosts.iter().map(String::as_str)
    }

    pub fn check(&self, https: bool, authority: Option<&str>) -> Result<(), Denied> {
        let host = host_of(authority.ok_or(Denied::NoHost)?);
        if host.is_empty() {
            return Err(Denied::NoHost);
        }
        let loopback_allowed = self.allow_loopback_http && is_loopback(&host);
        if !https && !loopback_allowed {
            return Err(Denied::PlainHttp { host });
        }
        if !self.allowed_hosts.contains(&host) {
            return Err(Denied::HostNotAllowed { host });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(loopback: bool) -> Policy {
        Policy::new(
            [
                "https://clever.com/oauth/tokens",
                "https://api.clever.com",
                "http://127.0.0.1:9000",
            ],
            ["extra.example.org"],
            loopback,
        )
    }

    #[test]
    fn https_to_configured_hosts_is_allowed() {
        let p = policy(false);
        assert_eq!(p.check(true, Some("clever.com")), Ok(()));
        assert_eq!(p.check(true, Some("API.clever.com:443")), Ok(()));
        assert_eq!(p.check(true, Some("extra.example.org")), Ok(()));
    }

    #[test]
    fn other_hosts_are_refused() {
        let p = policy(false);
        assert_eq!(
            p.check(true, Some("evil.example.com")),
            Err(Denied::HostNotAllowed {
                host: "evil.example.com".into()
            })
        );
        assert_eq!(p.check(true, None), Err(Denied::NoHost));
    }

    #[test]
    fn plain_http_needs_the_loopback_allowance() {
        assert_eq!(
            policy(false).check(false, Some("127.0.0.1:9000")),
            Err(Denied::PlainHttp {
                host: "127.0.0.1".into()
            })
        );
        assert_eq!(policy(true).check(false, Some("127.0.0.1:9000")), Ok(()));
        // The allowance never extends to non-loopback hosts.
        assert_eq!(
            policy(true).check(false, Some("clever.com")),
            Err(Denied::PlainHttp {
                host: "clever.com".into()
            })
        );
    }

    #[test]
    fn host_parsing_handles_ports_and_ipv6() {
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("Example.COM:443"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
