//! Scripted faults for both Azure fakes: what the fake does instead of (or before) answering.
//!
//! Queued faults are consumed in order, each by exactly one matching request; a "persistent"
//! fault applies to every matching request while no queued fault does, until cleared. Faults
//! apply only to requests that passed the fake's credential check (the Key Vault challenge,
//! the identity header), as the real services check credentials first.

use std::time::Duration;

use crate::fake_support::script::{impl_scripted_fault, FaultQueue};

/// One scripted misbehaviour. Error bodies take the shape of the fake that sends them: Key
/// Vault's `{"error":{"code","message"}}` plus `x-ms-error-code`, or the identity endpoint's
/// `{"statusCode","message","correlationId"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status with the fake's usual error body for it (`204`/`304`: empty body).
    Status(u16),
    /// `403 Forbidden`, as when the identity lacks `secrets/get` permission.
    Forbidden,
    /// `404`, as if the secret did not exist (`SecretNotFound`).
    NotFound,
    /// `429` with `Retry-After: <retry_after_secs>` (code `Throttled`).
    Throttled { retry_after_secs: u64 },
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// Wait, then apply another fault.
    DelayThen(Duration, Box<Fault>),
    /// Never answer; the connection stays open until the client gives up or the fake stops.
    Hang,
    /// Drop the connection without any response (TCP RST).
    Reset,
    /// `200` with `Content-Type: application/json` and a truncated JSON document.
    MalformedJson,
    /// Anything else, verbatim.
    Custom {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
}

impl Fault {
    /// `429` with `Retry-After: <secs>`.
    pub fn throttled(secs: u64) -> Self {
        Self::Throttled {
            retry_after_secs: secs,
        }
    }
}

/// Which requests a fault applies to: every request, or those naming one secret (Key Vault).
/// `From<&str>`/`From<String>` make a bare secret name usable as a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SecretMatch {
    /// Every request.
    #[default]
    Any,
    /// Requests for this secret (any version).
    Secret(String),
}

impl SecretMatch {
    pub fn any() -> Self {
        Self::Any
    }

    pub fn secret(name: impl Into<String>) -> Self {
        Self::Secret(name.into())
    }

    /// Whether a request naming `secret` (if any) matches.
    pub fn matches(&self, secret: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::Secret(name) => secret == Some(name.as_str()),
        }
    }
}

impl From<&str> for SecretMatch {
    fn from(name: &str) -> Self {
        Self::Secret(name.to_string())
    }
}

impl From<String> for SecretMatch {
    fn from(name: String) -> Self {
        Self::Secret(name)
    }
}

impl From<&String> for SecretMatch {
    fn from(name: &String) -> Self {
        Self::Secret(name.clone())
    }
}

impl_scripted_fault!(Fault);

pub(crate) type FaultScript = FaultQueue<SecretMatch, Fault>;

impl FaultScript {
    /// The fault for one arriving request: the oldest matching queued fault (consumed), else
    /// the persistent fault for exactly this secret, else the one for every request.
    pub(crate) fn take(&mut self, secret: Option<&str>) -> Option<Fault> {
        if let Some(fault) = self.take_queued(|m| m.matches(secret)) {
            return Some(fault);
        }
        let specific = self
            .persistent
            .iter()
            .find(|(m, _)| matches!(m, SecretMatch::Secret(_)) && m.matches(secret));
        specific
            .or_else(|| self.persistent.iter().find(|(m, _)| *m == SecretMatch::Any))
            .map(|(_, f)| f.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_then_specific_then_any() {
        let mut s = FaultScript::default();
        s.set_persistent(SecretMatch::Any, Fault::Status(503));
        s.set_persistent("a".into(), Fault::Forbidden);
        s.push("b".into(), Fault::Reset);
        assert_eq!(s.take(Some("b")), Some(Fault::Reset));
        assert_eq!(s.take(Some("b")), Some(Fault::Status(503)));
        assert_eq!(s.take(Some("a")), Some(Fault::Forbidden));
        assert_eq!(s.take(None), Some(Fault::Status(503)));
        assert!(s.clear_persistent(&SecretMatch::Any));
        assert_eq!(s.take(Some("b")), None);
        assert_eq!(s.queued(), 0);
    }
}
