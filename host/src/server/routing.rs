//! Which requests reach the component. Pure, so every rule is unit-tested.

use hyper::Method;

pub const HEALTH_PATH: &str = "/health/clever-auth";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Hand the request to the component.
    Component,
    /// 404: the host serves nothing else.
    NotFound,
    /// 405 with `Allow: GET, HEAD`.
    MethodNotAllowed,
}

pub fn route(method: &Method, path: &str) -> Route {
    if path != HEALTH_PATH {
        Route::NotFound
    } else if method == Method::GET || method == Method::HEAD {
        Route::Component
    } else {
        Route::MethodNotAllowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_on_the_health_path_reach_the_component() {
        assert_eq!(route(&Method::GET, HEALTH_PATH), Route::Component);
        assert_eq!(route(&Method::HEAD, HEALTH_PATH), Route::Component);
        assert_eq!(route(&Method::POST, HEALTH_PATH), Route::MethodNotAllowed);
        assert_eq!(route(&Method::DELETE, HEALTH_PATH), Route::MethodNotAllowed);
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
            assert_eq!(route(&Method::GET, path), Route::NotFound, "{path}");
        }
        assert_eq!(route(&Method::POST, "/other"), Route::NotFound);
    }
}
