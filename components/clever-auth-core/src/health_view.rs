//! Which health answer a request gets: the public one, or the per-district detail.
//!
//! Two signals, one per host:
//! - **`clever-auth-host`** sets the request header [`DETAIL_HEADER`] itself on requests that
//!   arrive on a listener configured for detail (`--health-detail`, and the loopback gateway
//!   listener), and strips that header from every client request first, so no client can ask
//!   for the detail. The host never answers the [`DETAIL_SETTING`] key.
//! - **Spin** (local development) cannot strip headers, so there the `wasi:config` variable
//!   [`DETAIL_SETTING`] decides: `spin.toml` sets it to `always`.
//!
//! Without the variable the header is trusted: exactly the native host's case.

use crate::health::View;

/// Request header set by the native host on listeners that serve the detail.
pub const DETAIL_HEADER: &str = "clever-auth-health-view";
/// The header's value that asks for the detail.
pub const DETAIL_HEADER_VALUE: &str = "detail";
/// `wasi:config` key: `always` (detail for every request: Spin's default), `never` (public
/// for every request), or absent/empty (follow [`DETAIL_HEADER`]).
pub const DETAIL_SETTING: &str = "clever_health_detail";

/// Decides the view from the setting, the host's header and the request's query (`page=N`
/// picks a page of the detail).
pub fn decide(setting: Option<&str>, header: Option<&[u8]>, query: Option<&str>) -> View {
    let detail = match setting.map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("always") => true,
        Some(s) if s.eq_ignore_ascii_case("never") => false,
        _ => header.is_some_and(|h| h.eq_ignore_ascii_case(DETAIL_HEADER_VALUE.as_bytes())),
    };
    if detail {
        View::Detail {
            page: page(query).unwrap_or(1),
        }
    } else {
        View::Public
    }
}

/// `page=N` from a query string; anything unusable means the first page.
fn page(query: Option<&str>) -> Option<u32> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETAIL: Option<&[u8]> = Some(b"detail");

    #[test]
    fn without_the_setting_the_host_header_decides() {
        assert_eq!(decide(None, None, None), View::Public);
        assert_eq!(decide(None, DETAIL, None), View::Detail { page: 1 });
        assert_eq!(
            decide(Some(""), Some(b"DETAIL"), None),
            View::Detail { page: 1 }
        );
        assert_eq!(decide(None, Some(b"public"), None), View::Public);
        assert_eq!(decide(None, Some(b"detail "), None), View::Public);
    }

    #[test]
    fn the_setting_overrides_the_header() {
        assert_eq!(decide(Some("always"), None, None), View::Detail { page: 1 });
        assert_eq!(decide(Some("never"), DETAIL, None), View::Public);
        assert_eq!(decide(Some(" Never "), DETAIL, None), View::Public);
    }

    #[test]
    fn the_page_comes_from_the_query_and_only_matters_for_the_detail() {
        assert_eq!(
            decide(None, DETAIL, Some("x=1&page=3")),
            View::Detail { page: 3 }
        );
        assert_eq!(
            decide(None, DETAIL, Some("page=-1")),
            View::Detail { page: 1 }
        );
        assert_eq!(
            decide(None, DETAIL, Some("page=99999999999")),
            View::Detail { page: 1 }
        );
        assert_eq!(decide(None, None, Some("page=2")), View::Public);
    }
}
