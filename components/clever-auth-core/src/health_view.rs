//! Which health answer a request gets: the public one, or the per-district detail.
//!
//! Closed by default: the public answer unless a signal that only the deployment can give says
//! otherwise. The `wasi:config` key [`DETAIL_SETTING`] carries it:
//! - **`clever-auth-host`** answers the key itself with [`FOLLOW_HOST_HEADER`] (never from an
//!   app setting), and then the request header [`DETAIL_HEADER`] decides. The host sets that
//!   header on requests arriving on a listener configured for detail (`--health-detail`, and
//!   the loopback gateway listener) and strips it from every client request first, so no
//!   client can ask for the detail.
//! - **Spin** cannot strip request headers, so a header never counts there: its variable is
//!   empty by default (public), and an operator whose listener only trusted clients reach opts
//!   in with `always` (`cargo xtask run --spin` does, for the local demo).
//!
//! Absent, empty or any other value means the public answer: a manifest or host that forgets
//! the key exposes nothing.

use crate::health::View;

/// Request header set by the native host on listeners that serve the detail.
pub const DETAIL_HEADER: &str = "clever-auth-health-view";
/// The header's value that asks for the detail.
pub const DETAIL_HEADER_VALUE: &str = "detail";
/// `wasi:config` key: `always` (detail for every request), [`FOLLOW_HOST_HEADER`] (the
/// native host's own answer: [`DETAIL_HEADER`] decides), anything else the public answer.
pub const DETAIL_SETTING: &str = "clever_health_detail";
/// The value with which the native host says that it strips and sets [`DETAIL_HEADER`].
pub const FOLLOW_HOST_HEADER: &str = "host-header";

/// Decides the view from the setting, the host's header and the request's query (`page=N`
/// picks a page of the detail).
pub fn decide(setting: Option<&str>, header: Option<&[u8]>, query: Option<&str>) -> View {
    let detail = match setting.map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("always") => true,
        Some(s) if s == FOLLOW_HOST_HEADER => {
            header.is_some_and(|h| h.eq_ignore_ascii_case(DETAIL_HEADER_VALUE.as_bytes()))
        }
        _ => false,
    };
    if detail {
        View::Detail {
            page: page(query).unwrap_or(1),
        }
    } else {
        View::Public
    }
}

/// What is wrong with a value of [`DETAIL_SETTING`] that is none of the known ones: it gives
/// the public answer, as every unknown value does, but a typo (`alwyas`) should not pass in
/// silence. Known: absent or empty, `never` and `public` (the public answer), `always`, and
/// the native host's own [`FOLLOW_HOST_HEADER`].
pub fn setting_problem(setting: Option<&str>) -> Option<String> {
    let value = setting.map(str::trim).filter(|v| !v.is_empty())?;
    let known = ["always", "never", "public"]
        .iter()
        .any(|k| value.eq_ignore_ascii_case(k))
        || value == FOLLOW_HOST_HEADER;
    (!known).then(|| {
        let shown: String = value.chars().take(40).collect();
        format!(
            "{DETAIL_SETTING} = `{shown}` is not `always`, `never` or empty: health gives the \
             public answer"
        )
    })
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
    const HOST: Option<&str> = Some(FOLLOW_HOST_HEADER);

    #[test]
    fn unknown_values_are_named_and_known_ones_are_not() {
        for fine in [
            None,
            Some(""),
            Some(" "),
            Some("always"),
            Some("ALWAYS"),
            Some("never"),
            Some("public"),
            HOST,
        ] {
            assert_eq!(setting_problem(fine), None, "{fine:?}");
        }
        let problem = setting_problem(Some("alwyas")).expect("a typo is named");
        assert!(problem.contains("`alwyas`"), "{problem}");
        assert_eq!(decide(Some("alwyas"), DETAIL, None), View::Public);
        let long = "x".repeat(500);
        assert!(setting_problem(Some(&long)).is_some_and(|p| p.len() < 200));
    }

    #[test]
    fn the_header_decides_only_when_the_host_says_it_owns_it() {
        assert_eq!(decide(HOST, None, None), View::Public);
        assert_eq!(decide(HOST, DETAIL, None), View::Detail { page: 1 });
        assert_eq!(
            decide(HOST, Some(b"DETAIL"), None),
            View::Detail { page: 1 }
        );
        assert_eq!(decide(HOST, Some(b"public"), None), View::Public);
        assert_eq!(decide(HOST, Some(b"detail "), None), View::Public);
    }

    #[test]
    fn without_the_hosts_signal_no_header_turns_the_detail_on() {
        for setting in [
            None,
            Some(""),
            Some("never"),
            Some(" Never "),
            Some("HOST-HEADER"),
        ] {
            assert_eq!(decide(setting, DETAIL, None), View::Public, "{setting:?}");
            assert_eq!(decide(setting, Some(b"DETAIL"), None), View::Public);
        }
    }

    #[test]
    fn always_gives_the_detail_to_every_request() {
        assert_eq!(decide(Some("always"), None, None), View::Detail { page: 1 });
        assert_eq!(
            decide(Some(" Always "), None, None),
            View::Detail { page: 1 }
        );
    }

    #[test]
    fn the_page_comes_from_the_query_and_only_matters_for_the_detail() {
        assert_eq!(
            decide(HOST, DETAIL, Some("x=1&page=3")),
            View::Detail { page: 3 }
        );
        assert_eq!(
            decide(HOST, DETAIL, Some("page=-1")),
            View::Detail { page: 1 }
        );
        assert_eq!(
            decide(HOST, DETAIL, Some("page=99999999999")),
            View::Detail { page: 1 }
        );
        assert_eq!(decide(HOST, None, Some("page=2")), View::Public);
    }
}
