//! The stable codes a host's secrets provider records in
//! [`HostSecretsStatus::last_error`](crate::status::HostSecretsStatus), shared by the host that
//! writes them and the health report that reads them.
//!
//! They are public: the health answer names them when the credentials are missing, so an
//! operator can tell "the secret is not there" from "the vault refused us" without the detail
//! view. They reveal no vault name, secret name or identity; the recorded message (detail view
//! only) does.

/// The vault answered 401 or 403: this service's identity lacks access (a missing role
/// assignment, a firewall rule, a disabled secret).
pub const VAULT_FORBIDDEN: &str = "vault_forbidden";
/// The secret does not exist in the vault (404), or exists with no value; for the env
/// provider, the variable is not set.
pub const SECRET_NOT_FOUND: &str = "secret_not_found";
/// The vault answered 429.
pub const VAULT_THROTTLED: &str = "vault_throttled";
/// The vault could not be reached, or did not answer in time.
pub const VAULT_UNREACHABLE: &str = "vault_unreachable";
/// The vault answered with a server error or anything else unusable.
pub const VAULT_ERROR: &str = "vault_error";
/// The managed identity endpoint issued no token for the vault.
pub const IDENTITY_UNAVAILABLE: &str = "identity_unavailable";

/// Every code, with the public answer's fixed one-line description.
pub const ALL: [(&str, &str); 6] = [
    (
        VAULT_FORBIDDEN,
        "the secrets store refused this service's identity",
    ),
    (
        SECRET_NOT_FOUND,
        "a Clever client credential is absent from the secrets store",
    ),
    (
        VAULT_THROTTLED,
        "the secrets store is throttling this service",
    ),
    (VAULT_UNREACHABLE, "the secrets store could not be reached"),
    (VAULT_ERROR, "the secrets store answered with an error"),
    (
        IDENTITY_UNAVAILABLE,
        "the managed identity endpoint issued no token",
    ),
];

/// The fixed description of `code`, when it is one of these.
pub fn public_message(code: &str) -> Option<&'static str> {
    ALL.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}
