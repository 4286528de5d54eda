//! The last gate for what the component answers on health: every known secret or token value
//! is masked before it goes to the client. Health bodies are small and read whole. (Gateway
//! bodies are masked as they stream, in `crate::gateway`.)

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Response;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A health body is a few KiB even with hundreds of districts; a larger one is a bug, and is
/// answered as an error rather than buffered without bound.
const MAX_BODY: usize = 8 << 20;

pub async fn scrubbed(
    response: Response<HyperOutgoingBody>,
) -> anyhow::Result<Response<HyperOutgoingBody>> {
    let (mut parts, body) = response.into_parts();
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the component's response body: {e}"))?
        .to_bytes();
    let clean = match crate::redact::scrub_bytes(&bytes) {
        std::borrow::Cow::Borrowed(_) => bytes,
        std::borrow::Cow::Owned(masked) => {
            tracing::warn!(
                event = "response_scrubbed",
                "a known secret value was masked in a response body"
            );
            Bytes::from(masked)
        }
    };
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    let body = Full::new(clean)
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}
