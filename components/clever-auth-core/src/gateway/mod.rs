//! The Clever gateway's rules: which requests may pass, where they go, which headers travel,
//! what each upstream outcome means (replay, wait, retry, pass through, own error), proactive
//! pacing on exhausted rate-limit buckets, one rate budget per token across instances, masking an echo of the token in Clever's answer,
//! the per-district figures shown in health, and the API versions seen on real traffic. Pure: fed with `now`, settings and what Clever answered.

pub mod budget;
pub mod echo;
pub mod error;
pub mod figures;
pub mod headers;
pub mod outcome;
pub mod pacing;
pub mod reserve;
pub mod target;
pub mod versions;

pub use error::{ErrorCode, GatewayError};

/// The response header that says who answered: `gateway` (an error of the gateway's own) or
/// `clever` (Clever's status, headers and body, passed through).
pub const SOURCE_HEADER: &str = "x-clever-auth-source";

/// Store keys of the gateway's shared state (per district, shared by every instance).
pub mod keys {
    /// Prefix of [`super::pacing::PaceRecord`]s.
    pub const PACE_PREFIX: &str = "clever-auth/v1/gateway/pace/";
    /// Prefix of [`super::figures::GatewayFigures`]: what this instance's gateway served, per
    /// district (read and written on every request, so kept per instance, see
    /// [`crate::status::keys::INSTANCE_PREFIX`]).
    pub const FIGURES_PREFIX: &str = "clever-auth/v1/host/gateway-figures/";
    /// Prefix of [`super::budget::BudgetRecord`]s.
    pub const BUDGET_PREFIX: &str = "clever-auth/v1/gateway/budget/";
    /// Prefix of the budget's permit counters (one per district, bucket and window).
    pub const BUDGET_COUNT_PREFIX: &str = "clever-auth/v1/gateway/budget-count/";
    /// Prefix of the budget's probe permits (one per district and second while no window is
    /// known).
    pub const BUDGET_PROBE_PREFIX: &str = "clever-auth/v1/gateway/budget-probe/";
    /// Prefix of an instance's balance of permits reserved from a window's counter (see
    /// [`super::reserve`]; kept per instance).
    pub const BUDGET_HELD_PREFIX: &str = "clever-auth/v1/host/budget-held/";
    /// Prefix of an instance's last reservation per district and bucket
    /// ([`super::reserve::Seen`]; kept per instance).
    pub const BUDGET_SEEN_PREFIX: &str = "clever-auth/v1/host/budget-seen/";
    /// The latest [`super::versions::VersionObservation`] from gateway traffic.
    pub const VERSIONS: &str = "clever-auth/v1/gateway/versions";
    /// The observation this instance last wrote to [`VERSIONS`] (kept per instance, so
    /// deciding whether to write again costs no shared read: [`super::versions::worth_sharing`]).
    pub const VERSIONS_SHARED_HERE: &str = "clever-auth/v1/host/gateway-versions";

    pub fn pace(district: &str) -> String {
        format!("{PACE_PREFIX}{district}")
    }

    pub fn budget(district: &str) -> String {
        format!("{BUDGET_PREFIX}{district}")
    }

    pub fn figures(district: &str) -> String {
        format!("{FIGURES_PREFIX}{district}")
    }
}
