//! The user and password a Redis connection authenticates with: the current access key or
//! Entra ID token, set by whoever reads it (the secrets provider, the identity refresher).
//!
//! The redis crate asks a credentials provider for a stream per use: connection set-up takes
//! its first item (so a new connection, after a reconnect too, always uses the current
//! credential), and each live connection keeps one open and re-sends AUTH on every later item
//! (so a refreshed token reaches connections before the old one expires).

use super::store_auth::StoreAuth;
use clever_auth_core::secret::Secret;
use futures_util::stream::{self, Stream, StreamExt};
use redis::{BasicAuth, ErrorKind, RedisError, RedisResult, StreamingCredentialsProvider};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// One Redis login. Prints without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisLogin {
    pub user: String,
    pub password: Secret,
}

impl std::fmt::Debug for RedisLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLogin")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

pub struct RedisCredentials {
    mode: StoreAuth,
    current: watch::Sender<Option<RedisLogin>>,
    refused: Notify,
}

impl RedisCredentials {
    pub fn new(mode: StoreAuth) -> Arc<Self> {
        Arc::new(Self {
            mode,
            current: watch::Sender::new(None),
            refused: Notify::new(),
        })
    }

    pub fn mode(&self) -> StoreAuth {
        self.mode
    }

    /// Makes `login` the current one; true when it differs from what was held (only then are
    /// live connections re-authenticated).
    pub fn set(&self, login: RedisLogin) -> bool {
        self.current.send_if_modified(|held| {
            if held.as_ref() == Some(&login) {
                return false;
            }
            *held = Some(login);
            true
        })
    }

    /// Whether a credential has been read yet.
    pub fn is_held(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Redis refused the credential: whoever reads it may look for a newer one now.
    pub fn refused(&self) {
        self.refused.notify_one();
    }

    /// Waits for [`Self::refused`].
    pub async fn wait_refused(&self) {
        self.refused.notified().await;
    }
}

fn basic(login: &RedisLogin) -> BasicAuth {
    BasicAuth::new(login.user.clone(), login.password.expose().to_string())
}

/// What the redis crate holds: the shared credentials, as a provider of streams.
pub struct CredentialsProvider(pub Arc<RedisCredentials>);

impl StreamingCredentialsProvider for CredentialsProvider {
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = RedisResult<BasicAuth>> + Send + 'static>> {
        let mut rx = self.0.current.subscribe();
        // Nothing read yet: the connection fails at once (and says why) rather than waiting
        // out its connect timeout.
        let first = match rx.borrow_and_update().as_ref() {
            Some(login) => Ok(basic(login)),
            None => Err(RedisError::from((
                ErrorKind::AuthenticationFailed,
                "no credential for Redis read yet",
            ))),
        };
        let changes = stream::unfold(rx, |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                let next = rx.borrow_and_update().as_ref().map(basic);
                if let Some(auth) = next {
                    return Some((Ok(auth), rx));
                }
            }
        });
        stream::once(async move { first }).chain(changes).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str, password: &str) -> RedisLogin {
        RedisLogin {
            user: user.into(),
            password: Secret::new(password),
        }
    }

    #[tokio::test]
    async fn a_stream_starts_with_the_current_login_and_follows_changes() {
        let creds = RedisCredentials::new(StoreAuth::Entra);
        let provider = CredentialsProvider(creds.clone());
        let mut before = provider.subscribe();
        let first = before.next().await.expect("an item");
        assert_eq!(
            first.expect_err("nothing held").kind(),
            ErrorKind::AuthenticationFailed
        );

        assert!(creds.set(login("oid-1", "token-number-1")));
        assert!(!creds.set(login("oid-1", "token-number-1")), "no change");
        let mut after = provider.subscribe();
        let now = after.next().await.expect("an item").expect("held");
        assert_eq!(
            (now.username(), now.password()),
            ("oid-1", "token-number-1")
        );
        // The earlier stream sees the change too.
        let changed = before.next().await.expect("an item").expect("held");
        assert_eq!(changed.password(), "token-number-1");

        assert!(creds.set(login("oid-1", "token-number-2")));
        let next = after.next().await.expect("an item").expect("held");
        assert_eq!(next.password(), "token-number-2");
    }

    #[test]
    fn a_login_prints_without_its_password() {
        let shown = format!("{:?}", login("default", "hunter2-access-key"));
        assert!(shown.contains("default"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
