//! Which requests reach the component, per listener. Pure, so every rule is unit-tested.

use hyper::Method;

pub const HEALTH_PATH: &str = "/health/clever-auth";
/// Everything under this prefix is the gateway's (on the gateway listener only).
pub const GATEWAY_PREFIX: &str = "/clever/";
/// How gateway requests are named in telemetry: the template, never the district or path.
pub const GATEWAY_ROUTE: &str = "/clever/{district}/{version}/{path}";

/// A listener's route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// The main listener: `GET /health/clever-auth` and nothing else.
    Health,
    /// The loopback gateway listener: `/clever/…`, and health with the per-district detail.
    Gateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Hand the request to the component (health).
    Component,
    /// Hand the request to the component's gateway, which answers every method itself
    /// (405 in its own JSON for anything but GET and HEAD).
    Gateway,
    /// 404: the host serves nothing else.
    NotFound,
    /// 405 with `Allow: GET, HEAD`.
    MethodNotAllowed,
}

pub fn route(routes: Routes, method: &Method, path: &str) -> Route {
    match routes {
        Routes::Health if path != HEALTH_PATH => Route::NotFound,
        Routes::Health if method == Method::GET || method == Method::HEAD => Route::Component,
        Routes::Health => Route::MethodNotAllowed,
        Routes::Gateway if path.starts_with(GATEWAY_PREFIX) => Route::Gateway,
        // The loopback listener also answers health, with the per-district detail.
        Routes::Gateway if path == HEALTH_PATH => route(Routes::Health, method, path),
        Routes::Gateway => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(method: &Method, path: &str) -> Route {
        route(Routes::Health, method, path)
    }

    #[test]
    fn only_get_and_head_on_the_health_path_reach_the_component() {
        assert_eq!(health(&Method::GET, HEALTH_PATH), Route::Component);
        assert_eq!(health(&Method::HEAD, HEALTH_PATH), Route::Component);
        assert_eq!(health(&Method::POST, HEALTH_PATH), Route::MethodNotAllowed);
        assert_eq!(
            health(&Method::DELETE, HEALTH_PATH),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn everything_else_is_not_found() {
        for path in [
            "/",
            "/other",
            "/health",
            "/health/clever-auth/",
            "/HEALTH/clever-auth",
        ] {
            assert_eq!(health(&Method::GET, path), Route::NotFound, "{path}");
        }
        assert_eq!(health(&Method::POST, "/other"), Route::NotFound);
    }

    #[test]
    fn the_main_listener_never_serves_the_gateway() {
        assert_eq!(
            health(&Method::GET, "/clever/d/v3.0/districts"),
            Route::NotFound
        );
    }

    #[test]
    fn the_gateway_listener_serves_the_gateway_and_health() {
        let gw = |m: &Method, p: &str| route(Routes::Gateway, m, p);
        assert_eq!(gw(&Method::GET, "/clever/d/v3.0/x"), Route::Gateway);
        // The component answers other methods in the gateway's own error format.
        assert_eq!(gw(&Method::POST, "/clever/d/v3.0/x"), Route::Gateway);
        assert_eq!(gw(&Method::GET, HEALTH_PATH), Route::Component);
        assert_eq!(gw(&Method::POST, HEALTH_PATH), Route::MethodNotAllowed);
        assert_eq!(gw(&Method::GET, "/clever"), Route::NotFound);
        assert_eq!(gw(&Method::GET, "/"), Route::NotFound);
    }
}
