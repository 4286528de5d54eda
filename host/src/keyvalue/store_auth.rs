//! `--store-auth` / `CLEVER_AUTH_STORE_AUTH`: how the host proves itself to a shared Redis.

/// How the host authenticates to a Redis store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreAuth {
    /// No AUTH: a Redis on loopback without a password.
    None,
    /// Redis's access key (its password), read through the secrets provider.
    AccessKey,
    /// A Microsoft Entra ID token of the managed identity, as the password of its object id.
    Entra,
}

impl StoreAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreAuth::None => "none",
            StoreAuth::AccessKey => "access-key",
            StoreAuth::Entra => "entra",
        }
    }

    /// What the credential is called in messages ("refused the access key").
    pub fn credential(self) -> &'static str {
        match self {
            StoreAuth::None => "connection without credentials",
            StoreAuth::AccessKey => "access key",
            StoreAuth::Entra => "Entra ID token",
        }
    }
}

/// The mode when `--store-auth` is not given. A remote Redis (rediss://) always wants a
/// credential, and Azure's default is the access key; on loopback the development provider's
/// key, when set, says the local Redis has a password. Entra ID is always asked for by name:
/// it needs the identity to be a Redis user, which no default can know.
pub fn resolve(explicit: Option<StoreAuth>, tls: bool, env_key_given: bool) -> StoreAuth {
    match explicit {
        Some(mode) => mode,
        None if tls || env_key_given => StoreAuth::AccessKey,
        None => StoreAuth::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_mode_wins() {
        for mode in [StoreAuth::None, StoreAuth::AccessKey, StoreAuth::Entra] {
            assert_eq!(resolve(Some(mode), true, true), mode);
            assert_eq!(resolve(Some(mode), false, false), mode);
        }
    }

    #[test]
    fn remote_redis_or_a_given_key_means_the_access_key_else_none() {
        assert_eq!(resolve(None, true, false), StoreAuth::AccessKey);
        assert_eq!(resolve(None, false, true), StoreAuth::AccessKey);
        assert_eq!(resolve(None, false, false), StoreAuth::None);
    }
}
