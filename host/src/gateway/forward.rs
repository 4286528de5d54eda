//! One attempt the component asked for, sent natively over the outbound pool (the same policy,
//! TLS and per-attempt deadlines as the component's wasi:http requests), and what came back
//! as the component's `reply`.

use crate::bindings::exports::clever::auth::gateway::{Attempt, Header, Reply};
use crate::outbound::{Outbound, Upstream, POLICY_REFUSAL};
use clever_auth_core::secret::AccessToken;
use http_body_util::{BodyExt, Empty};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Sends `attempt`; on an answer, returns the reply for the component and the response whose
/// body is still to be read.
pub async fn send(
    outbound: &Outbound,
    upstream: &Upstream,
    attempt: Attempt,
) -> (Reply, Option<http::Response<WasiBody>>) {
    let Attempt {
        method,
        url,
        headers,
        bearer,
        timeout_ms,
    } = attempt;
    // Held as a token from here on: it cannot be printed.
    let bearer = AccessToken::new(bearer);
    let request = match build(&method, &url, &headers, &bearer) {
        Ok(r) => r,
        Err(why) => return (Reply::NotSent(why), None),
    };
    let timeout = Some(Duration::from_millis(timeout_ms));
    let options = RequestOptions {
        connect_timeout: timeout,
        first_byte_timeout: timeout,
        between_bytes_timeout: timeout,
    };
    match outbound.send_over(upstream, request, Some(options)).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect();
            (Reply::Answered((status, headers)), Some(response))
        }
        Err(e) => (failure(e), None),
    }
}

fn build(
    method: &str,
    url: &str,
    headers: &[Header],
    bearer: &AccessToken,
) -> Result<http::Request<WasiBody>, String> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("method {method} cannot be sent"))?;
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_slice());
    }
    let mut authorization = http::HeaderValue::try_from(format!("Bearer {}", bearer.expose()))
        .map_err(|_| "the token cannot be sent in a header".to_string())?;
    authorization.set_sensitive(true);
    let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
    let mut request = request
        .body(body)
        // The error names the part, never a header's value.
        .map_err(|e| format!("the request to Clever cannot be built: {e}"))?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization);
    Ok(request)
}

/// As the component's wasi:http path sees the same failures (`http_out::from_error_code`).
fn failure(e: Error) -> Reply {
    match e {
        Error::ConnectionTimeout
        | Error::ConnectionReadTimeout
        | Error::ConnectionWriteTimeout
        | Error::HttpResponseTimeout
        | Error::DnsTimeout => Reply::TimedOut,
        Error::InternalError(Some(m)) if m.starts_with(POLICY_REFUSAL) => Reply::NotSent(m),
        Error::InternalError(Some(m)) => Reply::ConnectionFailed(m),
        other => Reply::ConnectionFailed(format!("{other:?}")),
    }
}
