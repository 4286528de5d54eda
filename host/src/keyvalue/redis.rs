//! The Redis store provider: every instance of a deployment on one Redis sees one set of
//! records (tokens, the refresher's lease and cycle, the rate budget).
//!
//! Keys live under `clever-auth:{label}:` so one Redis can hold other data beside ours.
//! `list-keys` scans that prefix and pages in key order, as the memory store does, so the
//! component sees the same cursor semantics on both (the deployment has tens to hundreds of
//! keys, so a full scan per page is cheap). Compare-and-swap is one Lua script: Redis runs it
//! atomically, so no other writer can slip in between the comparison and the write.

use super::memory::{NOT_AN_INTEGER, OVERFLOW};
use super::provider::{StoreError, StoreProvider};
use super::redis_connection::Connection;
use super::redis_credentials::{CredentialsProvider, RedisCredentials};
use async_trait::async_trait;
use redis::aio::ConnectionManagerConfig;
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;

/// A caller waits at most this long for one answer, so an unreachable Redis fails a request
/// quickly instead of holding the component until its deadline.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys per SCAN round trip.
const SCAN_COUNT: usize = 500;

/// `KEYS[1]`; `ARGV[1]` is "1" when a value is expected (then `ARGV[2]` is it), else "0";
/// `ARGV[3]` is the new value. Returns 1 when written.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

#[derive(Clone)]
pub struct RedisStore {
    conn: Arc<Connection>,
    cas: redis::Script,
    /// The access key or token connections authenticate with; `None`: no AUTH.
    credentials: Option<Arc<RedisCredentials>>,
}

impl RedisStore {
    /// Connects lazily: a Redis that is down at start-up delays the first operation's answer
    /// (an error), not the host's start.
    pub fn new(
        client: redis::Client,
        credentials: Option<Arc<RedisCredentials>>,
    ) -> Result<Self, StoreError> {
        let mut config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        if let Some(c) = &credentials {
            config = config.set_credentials_provider(CredentialsProvider(c.clone()));
        }
        let conn = Connection::new(client, config).map_err(|e| failed(e, None))?;
        Ok(Self {
            conn: Arc::new(conn),
            cas: redis::Script::new(CAS_SCRIPT),
            credentials,
        })
    }

    fn failed(&self, e: redis::RedisError) -> StoreError {
        if is_auth_failure(&e) {
            self.conn.renew();
        }
        failed(e, self.credentials.as_deref())
    }

    /// Whether Redis answers a PING now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| self.failed(e))
    }
}

fn prefix(label: &str) -> String {
    format!("clever-auth:{label}:")
}

fn redis_key(label: &str, key: &str) -> String {
    format!("{}{key}", prefix(label))
}

/// Escapes SCAN's glob characters, so a label matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether Redis turned the credential down (or wanted one): the store is as unusable as an
/// unreachable one, and the reader of the credential may find a newer one.
fn is_auth_failure(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// The error's kind and Redis's own words, which never hold the address or a password.
/// Refused credentials count as an outage: health shows `store:reachable` and reads fall back
/// to the process's copy until the credential is fixed.
fn failed(e: redis::RedisError, credentials: Option<&RedisCredentials>) -> StoreError {
    if is_auth_failure(&e) {
        return StoreError(match credentials {
            None => "store unreachable: authentication failed: Redis wants credentials; \
                     set --store-auth (access-key or entra)"
                .into(),
            Some(c) if !c.is_held() => {
                format!(
                    "store unreachable: authentication failed: no Redis {} read yet",
                    c.mode().credential()
                )
            }
            Some(c) => {
                c.refused();
                format!(
                    "store unreachable: authentication failed: Redis refused the {}",
                    c.mode().credential()
                )
            }
        });
    }
    if e.is_timeout() {
        StoreError("store unreachable: no answer from Redis in time".into())
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        StoreError("store unreachable: cannot connect to Redis".into())
    } else {
        match e.code() {
            Some(code) => StoreError(format!("store error: Redis answered {code}")),
            None => StoreError(format!("store error: {:?}", e.kind())),
        }
    }
}

#[async_trait]
impl StoreProvider for RedisStore {
    async fn get(&self, label: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        c.get(redis_key(label, key))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn get_many(
        &self,
        label: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        // `MGET` by name: the crate's `mget` sends a lone key as `GET`, whose answer is not a list.
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(redis_key(label, key));
        }
        let values: Vec<Option<Vec<u8>>> =
            cmd.query_async(&mut c).await.map_err(|e| self.failed(e))?;
        if values.len() != keys.len() {
            return Err(StoreError(format!(
                "store error: Redis answered {} values to MGET of {} keys",
                values.len(),
                keys.len()
            )));
        }
        Ok(values)
    }

    async fn set(&self, label: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        c.set(redis_key(label, key), value)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn delete(&self, label: &str, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        c.del::<_, ()>(redis_key(label, key))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn keys_after(
        &self,
        label: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = prefix(label);
        let pattern = format!("{}*", glob_escape(&prefix));
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        let mut keys: Vec<String> = Vec::new();
        let mut scan_cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(scan_cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut c)
                .await
                .map_err(|e| self.failed(e))?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
                    .filter(|k| cursor.is_none_or(|c| k.as_str() > c)),
            );
            if next == 0 {
                break;
            }
            scan_cursor = next;
        }
        // SCAN may return a key twice and in any order.
        keys.sort_unstable();
        keys.dedup();
        keys.truncate(limit);
        Ok(keys)
    }

    async fn increment(&self, label: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        c.incr(redis_key(label, key), delta)
            .await
            .map_err(|e: redis::RedisError| match e.code() {
                // Redis's words for the two refusals the memory store also makes.
                Some("ERR") if e.to_string().contains("overflow") => StoreError(OVERFLOW.into()),
                Some("ERR") => StoreError(NOT_AN_INTEGER.into()),
                _ => self.failed(e),
            })
    }

    async fn compare_and_swap(
        &self,
        label: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.get().map_err(|e| self.failed(e))?;
        let mut call = self.cas.key(redis_key(label, key));
        match expected {
            Some(v) => call.arg("1").arg(v),
            None => call.arg("0").arg(""),
        };
        let written: i64 = call
            .arg(new)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(written == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_for_scan() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(redis_key("default", "k/1"), "clever-auth:default:k/1");
    }
}
