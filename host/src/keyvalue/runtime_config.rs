//! `--store` / `CLEVER_AUTH_STORE`: which store holds the component's records.

use std::net::IpAddr;

/// The store a deployment runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// This process's memory: one instance, the default and the demo.
    Memory,
    /// A Redis shared by every instance. `shown` is the URL as logs may print it (no user).
    Redis {
        url: url::Url,
        tls: bool,
        shown: String,
    },
}

impl StoreSetting {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSetting::Memory => "memory",
            StoreSetting::Redis { .. } => "redis",
        }
    }
}

const EXPECTED: &str =
    "expected `memory`, `redis://host:port[/db]` (loopback only) or `rediss://host:port[/db]`";

/// Parses the setting. The errors never repeat the value (it might hold a password).
pub fn parse(value: &str) -> Result<StoreSetting, String> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("memory") {
        return Ok(StoreSetting::Memory);
    }
    let url =
        url::Url::parse(value).map_err(|e| format!("--store is not a URL ({e}); {EXPECTED}"))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => return Err(format!("--store: unknown scheme `{other}`; {EXPECTED}")),
    };
    if url.password().is_some() {
        return Err(
            "--store holds a password: a URL in a setting must not carry one. Give \
                    Redis's access key through the secrets provider (Key Vault secret \
                    `redis-access-key`, or CLEVER_AUTH_REDIS_ACCESS_KEY with --secrets env)"
                .into(),
        );
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!("--store names no host; {EXPECTED}"));
    };
    if !tls && !is_loopback(host) {
        return Err(format!(
            "--store: plain redis:// is only for a Redis on loopback; `{host}` needs rediss:// \
             (TLS), since tokens and the lease cross the network"
        ));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(format!(
            "--store: the path must be a database number, not `{db}`"
        ));
    }
    let port = url.port().unwrap_or(if tls { 6380 } else { 6379 });
    let shown = format!(
        "{}://{}:{port}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        if db.is_empty() {
            String::new()
        } else {
            format!("/{db}")
        }
    );
    Ok(StoreSetting::Redis { url, tls, shown })
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_the_default_and_spelled_out() {
        assert_eq!(parse(""), Ok(StoreSetting::Memory));
        assert_eq!(parse("memory"), Ok(StoreSetting::Memory));
    }

    #[test]
    fn loopback_redis_may_be_plain() {
        let s = parse("redis://127.0.0.1:6400/2").expect("loopback");
        match s {
            StoreSetting::Redis { tls, shown, .. } => {
                assert!(!tls);
                assert_eq!(shown, "redis://127.0.0.1:6400/2");
            }
            StoreSetting::Memory => panic!("not memory"),
        }
        assert!(parse("redis://localhost").is_ok());
        assert!(parse("redis://[::1]:6379").is_ok());
    }

    #[test]
    fn a_remote_redis_needs_tls() {
        let e = parse("redis://cache.example.net:6379").expect_err("plain remote");
        assert!(e.contains("rediss://"), "{e}");
        assert!(parse("rediss://cache.example.net:10000").is_ok());
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        let e = parse("rediss://user:hunter2@cache.example.net").expect_err("password");
        assert!(e.contains("password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("rediss://:hunter2@cache.example.net").expect_err("password only");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn other_schemes_and_paths_are_refused() {
        assert!(parse("http://127.0.0.1").is_err());
        assert!(parse("redis://127.0.0.1/tokens").is_err());
        assert!(parse("not a url").is_err());
    }
}
