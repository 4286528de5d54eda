//! Which headers cross the gateway. Towards Clever only an allow-list of the caller's headers
//! travels (a deny-list let `X-Forwarded-*` and whatever a caller invented through); hop-by-hop
//! headers (RFC 9110 §7.6.1) stop here in both directions; the caller's `Authorization` is
//! refused, because the gateway sets it.

use super::GatewayError;

/// Hop-by-hop headers, plus the ones the gateway or the HTTP stack sets itself.
const NOT_FORWARDED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "http2-settings",
];

type Header = (String, Vec<u8>);

fn named_by_connection(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn hop_by_hop(name: &str, listed: &[String]) -> bool {
    NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h))
        || listed.iter().any(|l| name.eq_ignore_ascii_case(l))
}

/// The caller's headers that reach Clever: content negotiation, conditional reads, and the
/// request's identity for tracing. Lower case, as they are compared.
pub const FORWARDED: [&str; 8] = [
    "accept",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "user-agent",
    "traceparent",
    "tracestate",
    "x-request-id",
];

/// Caller headers that would carry credentials of the caller's own.
const CREDENTIAL_HEADERS: [&str; 2] = ["Authorization", "Proxy-Authorization"];

/// The caller's headers as sent to Clever. A request carrying `Authorization` (or
/// `Proxy-Authorization`) is refused: a token must never come from, or go back to, the caller,
/// and silently replacing one would hide a client that holds tokens it should not.
/// `Cookie` and the gateway's own `X-Clever-Auth-*` headers stay behind too.
pub fn request_headers(incoming: &[Header]) -> Result<Vec<Header>, GatewayError> {
    // The message names the header that was sent, in its canonical spelling (never the
    // caller's bytes or value), so a client sending Proxy-Authorization is not sent hunting
    // for an Authorization it does not have.
    for refused in CREDENTIAL_HEADERS {
        if incoming
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(refused))
        {
            return Err(GatewayError::bad_request(format!(
                "the request carries {refused}: the gateway authenticates to Clever itself, remove it"
            )));
        }
    }
    let listed = named_by_connection(incoming);
    Ok(incoming
        .iter()
        .filter(|(n, _)| {
            FORWARDED.iter().any(|f| n.eq_ignore_ascii_case(f)) && !hop_by_hop(n, &listed)
        })
        .cloned()
        .collect())
}

/// Clever's headers as passed back, `X-Ratelimit-*` included. For HEAD the length is left
/// out: no body follows, and the HTTP stack checks a length against what is written.
pub fn response_headers(upstream: &[Header], head: bool) -> Vec<Header> {
    let listed = named_by_connection(upstream);
    upstream
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            // A GET's length is kept: the body that follows is Clever's, byte for byte.
            let kept_length = lower == "content-length" && !head;
            (kept_length || !hop_by_hop(n, &listed)) && lower != super::SOURCE_HEADER
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn names(headers: &[Header]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_caller_authorization_is_refused_in_any_case() {
        for name in [
            "Authorization",
            "authorization",
            "AUTHORIZATION",
            "Proxy-Authorization",
        ] {
            let e = request_headers(&h(&[(name, "Bearer x")])).expect_err(name);
            assert_eq!(e.code, super::super::ErrorCode::BadRequest);
            assert!(!e.message.contains("Bearer x"));
        }
    }

    #[test]
    fn the_refusal_names_the_header_that_was_sent() {
        let proxy = request_headers(&h(&[("proxy-authorization", "Basic eA==")]))
            .expect_err("proxy-authorization");
        assert!(
            proxy.message.contains("carries Proxy-Authorization:"),
            "{}",
            proxy.message
        );
        let plain =
            request_headers(&h(&[("AUTHORIZATION", "Bearer x")])).expect_err("authorization");
        assert!(
            plain.message.contains("carries Authorization:"),
            "{}",
            plain.message
        );
    }

    #[test]
    fn hop_by_hop_and_listed_headers_stay_behind_on_requests() {
        let out = request_headers(&h(&[
            ("Accept", "application/json"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Host", "127.0.0.1:8081"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Cookie", "a=b"),
            ("X-Clever-Auth-Detail", "1"),
            ("X-Request-Id", "abc"),
            ("Accept-Encoding", "gzip"),
        ]))
        .expect("ok");
        assert_eq!(names(&out), ["Accept", "X-Request-Id", "Accept-Encoding"]);
    }

    #[test]
    fn only_the_allow_list_reaches_clever() {
        let out = request_headers(&h(&[
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1"),
            ("X-Original-URL", "/admin"),
            ("Origin", "https://evil.example"),
            ("If-None-Match", "\"v1\""),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("User-Agent", "sync/1.0"),
            ("X-Invented", "1"),
        ]))
        .expect("ok");
        assert_eq!(names(&out), ["If-None-Match", "traceparent", "User-Agent"]);
        // Connection still takes an allowed header out.
        let out =
            request_headers(&h(&[("Connection", "User-Agent"), ("User-Agent", "x")])).expect("ok");
        assert!(out.is_empty(), "{:?}", names(&out));
    }

    #[test]
    fn clever_headers_pass_back_without_hop_by_hop_ones() {
        let upstream = h(&[
            ("Content-Type", "application/json"),
            ("Content-Length", "12"),
            ("X-Ratelimit-Limit", "1200"),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", "1700000000"),
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("X-Clever-Auth-Source", "forged"),
        ]);
        let out = response_headers(&upstream, false);
        assert_eq!(
            names(&out),
            [
                "Content-Type",
                "Content-Length",
                "X-Ratelimit-Limit",
                "X-Ratelimit-Remaining",
                "X-Ratelimit-Reset"
            ]
        );
        let head = response_headers(&upstream, true);
        assert!(!names(&head).contains(&"Content-Length"));
    }
}
