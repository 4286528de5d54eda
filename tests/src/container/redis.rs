//! A Redis in a container of its own on podman's bridge, as Azure Managed Redis is to the
//! site: TLS only (a throw-away CA signs `redis.test`), an access key, no persistence.
//! `redis-server` comes from the rehearsal's tools image.

use super::podman::{self, Container};
use crate::fake_clever::tls::make_test_tls_for;
use anyhow::{Context, Result};
use std::net::IpAddr;

pub const REDIS_HOST: &str = "redis.test";
pub const REDIS_TLS_PORT: u16 = 6380;
const CONF_DIR: &str = "/run/redis";

pub struct RedisContainer {
    pub container: Container,
    pub ip: IpAddr,
    /// The CA that signed the server's certificate, for clients to trust.
    pub ca_pem: String,
    /// The `default` user's password (the access key).
    pub access_key: String,
    _dir: tempfile::TempDir,
}

impl RedisContainer {
    pub fn start(tools_image: &str) -> Result<RedisContainer> {
        let tls = make_test_tls_for("clever-auth redis test CA", REDIS_HOST, &[REDIS_HOST])?;
        let access_key = crate::fake_support::util::random_hex(24);
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("server.pem"), &tls.pem.cert)?;
        std::fs::write(dir.path().join("server.key"), &tls.pem.key)?;
        std::fs::write(dir.path().join("ca.pem"), &tls.pem.ca)?;
        // The key in a file, not on redis-server's command line (ps, podman inspect).
        std::fs::write(
            dir.path().join("redis.conf"),
            format!(
                "port 0\ntls-port {REDIS_TLS_PORT}\nbind 0.0.0.0\nprotected-mode no\n\
                 tls-cert-file {CONF_DIR}/server.pem\ntls-key-file {CONF_DIR}/server.key\n\
                 tls-ca-cert-file {CONF_DIR}/ca.pem\ntls-auth-clients no\n\
                 requirepass {access_key}\nsave \"\"\nappendonly no\n"
            ),
        )?;
        let container = Container::run(
            &[
                "--read-only".into(),
                // Its own redis-cli (keys()) checks the certificate's name too.
                "--add-host".into(),
                format!("{REDIS_HOST}:127.0.0.1"),
                "-v".into(),
                format!("{}:{CONF_DIR}:ro", dir.path().display()),
                tools_image.to_string(),
                "redis-server".into(),
                format!("{CONF_DIR}/redis.conf"),
            ],
            &[],
        )?;
        let ip = container.inspect("{{.NetworkSettings.IPAddress}}")?;
        let ip: IpAddr = container.with_logs(
            ip.parse()
                .with_context(|| format!("the Redis container's address {ip:?}")),
        )?;
        Ok(RedisContainer {
            container,
            ip,
            ca_pem: tls.pem.ca,
            access_key,
            _dir: dir,
        })
    }

    /// `name:address` for the pods' /etc/hosts.
    pub fn host_entry(&self) -> String {
        format!("{REDIS_HOST}:{}", self.ip)
    }

    pub fn url(&self) -> String {
        format!("rediss://{REDIS_HOST}:{REDIS_TLS_PORT}")
    }

    /// Every key in the store, through the container's own redis-cli.
    pub fn keys(&self) -> Result<Vec<String>> {
        let out = podman::run(&[
            "exec",
            &self.container.id,
            "sh",
            "-c",
            &format!(
                "REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' {CONF_DIR}/redis.conf)\" \
                 redis-cli --tls --cacert {CONF_DIR}/ca.pem -h {REDIS_HOST} -p {REDIS_TLS_PORT} \
                 --scan"
            ),
        ])?;
        Ok(out.lines().map(str::to_string).collect())
    }
}

/// A store key as the vault would hold it: base64 of 32 random bytes, new for each run.
pub fn random_store_key() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..4)
        .flat_map(|_| crate::fake_support::util::random_u64().to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
