//! Scripted faults: what the fake does instead of (or before) answering normally.
//!
//! Faults are queued in order and each queued fault is consumed by exactly one request whose
//! route (and, when given, district) matches. "Persistent" faults apply to every matching
//! request while no queued fault does, until cleared.

use std::time::Duration;

use crate::fake_support::script::{impl_scripted_fault, FaultQueue};

/// The kind of request, as the fake classified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /oauth/tokens?owner_type=district` — Clever's district-token listing.
    TokenList,
    /// `POST /oauth/tokens` — the RFC 6749 grant endpoint (`client_credentials`).
    ClientCredentials,
    /// `GET /oauth/tokeninfo`.
    TokenInfo,
    /// `GET /{version}/...` — the data API (`districts/{id}`, `me`).
    Data,
    /// Anything else; answered 404 (or 405 for a wrong method).
    Other,
}

impl Route {
    /// A target matching this route for one district only (the district named in the query
    /// or path, or, for `/me` and `tokeninfo`, the district owning the presented token).
    pub fn for_district(self, district_id: impl Into<String>) -> RouteMatch {
        RouteMatch::route(self).for_district(district_id)
    }
}

/// Which requests a fault (or a log query) applies to. `From<Route>` makes a bare [`Route`]
/// usable wherever a `RouteMatch` is expected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    route: Option<Route>,
    district: Option<String>,
}

impl RouteMatch {
    /// Every request, whatever its route or district.
    pub fn any() -> Self {
        Self::default()
    }

    /// Every request of one route.
    pub fn route(route: Route) -> Self {
        Self {
            route: Some(route),
            district: None,
        }
    }

    /// Narrows the match to requests concerning one district.
    pub fn for_district(mut self, district_id: impl Into<String>) -> Self {
        self.district = Some(district_id.into());
        self
    }

    /// Whether a request of `route` concerning `district` matches.
    pub fn matches(&self, route: Route, district: Option<&str>) -> bool {
        self.route.is_none_or(|r| r == route)
            && self.district.as_deref().is_none_or(|d| district == Some(d))
    }

    /// More specific matches win among persistent faults.
    fn specificity(&self) -> u8 {
        u8::from(self.route.is_some()) + u8::from(self.district.is_some())
    }
}

impl From<Route> for RouteMatch {
    fn from(route: Route) -> Self {
        Self::route(route)
    }
}

/// The `Retry-After` header sent with a scripted 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <n>` (delta seconds).
    Seconds(u64),
    /// `Retry-After: <HTTP-date>` that lies this far in the future (rounded up to a second).
    HttpDateIn(Duration),
}

/// One scripted misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a small JSON error body (`429`, `204` and `304`: empty body).
    Status(u16),
    /// `429` with an empty body, `X-Ratelimit-Remaining: 0` and `X-Ratelimit-Reset` set to
    /// now + `reset_in` (epoch seconds, rounded up); `Retry-After` only when given.
    RateLimited {
        retry_after: Option<RetryAfter>,
        reset_in: Duration,
    },
    /// Never answer; the connection stays open until the client gives up or the fake stops.
    Hang,
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// Wait, then apply another fault.
    DelayThen(Duration, Box<Fault>),
    /// Drop the connection without any response (TCP RST).
    Reset,
    /// `200` with `Content-Type: application/json` and a truncated JSON document.
    MalformedJson,
    /// This status with an HTML body, as a proxy or load balancer would send.
    Html(u16),
    /// The data API's retired-version error (status from the fake's settings).
    VersionNotSupported,
    /// Anything else, verbatim.
    Custom {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
}

impl Fault {
    /// `429` with `Retry-After: <secs>` and the window reset `secs` from now.
    pub fn rate_limited_retry_after_secs(secs: u64) -> Self {
        Self::RateLimited {
            retry_after: Some(RetryAfter::Seconds(secs)),
            reset_in: Duration::from_secs(secs),
        }
    }

    /// `429` with `Retry-After` as an HTTP-date `after` from now (and the reset at the same time).
    pub fn rate_limited_http_date(after: Duration) -> Self {
        Self::RateLimited {
            retry_after: Some(RetryAfter::HttpDateIn(after)),
            reset_in: after,
        }
    }

    /// `429` whose only hint is `X-Ratelimit-Reset`, `reset_in` from now.
    pub fn rate_limited_reset_only(reset_in: Duration) -> Self {
        Self::RateLimited {
            retry_after: None,
            reset_in,
        }
    }
}

impl_scripted_fault!(Fault);

pub(crate) type FaultScript = FaultQueue<RouteMatch, Fault>;

impl FaultScript {
    /// The fault for one arriving request: the oldest matching queued fault (consumed), else
    /// the most specific matching persistent one (the latest set on a tie).
    pub(crate) fn take(&mut self, route: Route, district: Option<&str>) -> Option<Fault> {
        if let Some(fault) = self.take_queued(|m| m.matches(route, district)) {
            return Some(fault);
        }
        self.persistent
            .iter()
            .enumerate()
            .filter(|(_, (m, _))| m.matches(route, district))
            .max_by_key(|(i, (m, _))| (m.specificity(), *i))
            .map(|(_, (_, f))| f.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_consumed_in_order_per_route() {
        let mut s = FaultScript::default();
        s.push(Route::TokenList.into(), Fault::Status(503));
        s.push(Route::Data.into(), Fault::Status(500));
        s.push(RouteMatch::any(), Fault::Reset);
        assert_eq!(s.take(Route::Data, None), Some(Fault::Status(500)));
        assert_eq!(s.take(Route::Data, None), Some(Fault::Reset));
        assert_eq!(s.take(Route::TokenList, None), Some(Fault::Status(503)));
        assert_eq!(s.take(Route::TokenList, None), None);
    }

    #[test]
    fn district_specific_persistent_beats_route_wide() {
        let mut s = FaultScript::default();
        s.set_persistent(Route::Data.into(), Fault::Status(500));
        s.set_persistent(Route::Data.for_district("a"), Fault::Status(503));
        assert_eq!(s.take(Route::Data, Some("a")), Some(Fault::Status(503)));
        assert_eq!(s.take(Route::Data, Some("b")), Some(Fault::Status(500)));
        assert!(s.clear_persistent(&Route::Data.into()));
        assert_eq!(s.take(Route::Data, Some("b")), None);
        assert_eq!(s.take(Route::TokenList, Some("a")), None);
    }
}
