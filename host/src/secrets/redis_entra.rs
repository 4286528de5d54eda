//! Redis under Microsoft Entra ID: the managed identity's token for Redis is the password, the
//! identity's object id (or a configured user) the user. The token is fetched again before it
//! expires and handed to the store's connections, which re-authenticate with it (Azure closes
//! a connection whose token has expired).

use crate::keyvalue::{RedisCredentials, RedisLogin};
use azure_core::credentials::TokenCredential;
use azure_core::time::OffsetDateTime;
use clever_auth_core::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

/// The scope Azure Cache for Redis and Azure Managed Redis accept tokens for.
pub const SCOPE: &str = "https://redis.azure.com/.default";

/// The SDK hands out its cached token until this close to its expiry, so asking earlier
/// would only get the same token back.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// No faster than this, even for a token about to expire.
const MIN_WAIT: Duration = Duration::from_millis(200);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// When to fetch again a token valid for `remaining`: at the SDK's refresh margin before its
/// expiry, but never later than half its remaining life (short tokens, tests).
pub fn refresh_wait(remaining: Duration) -> Duration {
    remaining
        .saturating_sub(REFRESH_MARGIN)
        .max(remaining / 2)
        .max(MIN_WAIT)
}

/// The `oid` claim of a JWT: the identity's object id, which Azure names as its Redis user.
/// The token's signature is Redis's to check, not ours.
pub fn object_id(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let mut parts = jwt.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("oid")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn run(
    credential: Arc<dyn TokenCredential>,
    credentials: Arc<RedisCredentials>,
    user: Option<String>,
    attempt_timeout: Duration,
) {
    let mut failures: u32 = 0;
    loop {
        let wait = match tokio::time::timeout(attempt_timeout, credential.get_token(&[SCOPE], None))
            .await
        {
            Ok(Ok(token)) => {
                let value = token.token.secret();
                crate::redact::pin(crate::redact::Pin::RedisEntraToken, value);
                let remaining =
                    std::time::Duration::try_from(token.expires_on - OffsetDateTime::now_utc())
                        .unwrap_or_default();
                match user.clone().or_else(|| object_id(value)) {
                    Some(user) => {
                        let first = !credentials.is_held();
                        let changed = credentials.set(RedisLogin {
                            user: user.clone(),
                            password: Secret::new(value),
                        });
                        if first {
                            tracing::info!(
                                user = %user,
                                expires_in_secs = remaining.as_secs(),
                                "Entra ID token for Redis read; connections authenticate with it"
                            );
                        } else if changed {
                            tracing::debug!(
                                expires_in_secs = remaining.as_secs(),
                                "Entra ID token for Redis refreshed; connections re-authenticate"
                            );
                        }
                        failures = 0;
                        refresh_wait(remaining)
                    }
                    None => {
                        tracing::error!(
                            code = "redis_user_unknown",
                            "the managed identity's token for Redis names no object id (oid \
                             claim); set CLEVER_AUTH_STORE_USER to the identity's Redis user"
                        );
                        failures = failures.saturating_add(1);
                        BACKOFF_CAP
                    }
                }
            }
            Ok(Err(e)) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    error = %e,
                    attempt = failures,
                    "getting an Entra ID token for Redis failed; keeping the token held, if any"
                );
                backoff(failures)
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    timeout_ms = attempt_timeout.as_millis() as u64,
                    attempt = failures,
                    "the managed identity gave no Entra ID token for Redis in time"
                );
                backoff(failures)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    #[test]
    fn the_object_id_is_the_oid_claim() {
        let oid = "8f2a61c4-5b7e-4d1a-9c3b-0e6f7a8b9c0d";
        assert_eq!(
            object_id(&jwt(&format!(
                r#"{{"aud":"https://redis.azure.com","oid":"{oid}"}}"#
            ))),
            Some(oid.to_string())
        );
        assert_eq!(object_id(&jwt(r#"{"aud":"x"}"#)), None, "no oid");
        assert_eq!(object_id(&jwt(r#"{"oid":7}"#)), None, "not a string");
        assert_eq!(object_id("fake-mi-token-1"), None, "not a JWT");
        assert_eq!(object_id("a.b.c.d"), None);
        assert_eq!(object_id("a.%%%.c"), None);
    }

    #[test]
    fn a_token_is_fetched_again_before_it_expires() {
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_wait(hour), hour - REFRESH_MARGIN);
        // Short lives: halfway.
        assert_eq!(refresh_wait(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(
            refresh_wait(Duration::from_secs(500)),
            Duration::from_secs(250)
        );
        assert_eq!(refresh_wait(Duration::ZERO), MIN_WAIT);
    }

    #[test]
    fn failures_back_off_to_a_cap() {
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(40), BACKOFF_CAP);
    }
}
