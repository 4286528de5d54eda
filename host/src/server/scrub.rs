//! The last gate for what the component answers: every known secret or token value is masked
//! before it goes to the client. Health bodies are small and read whole; gateway bodies are
//! streamed through [`crate::redact::StreamScrubber`], never held whole.

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

/// The gateway's answer, scrubbed piece by piece as it streams (length kept).
pub fn streamed(response: Response<HyperOutgoingBody>) -> Response<HyperOutgoingBody> {
    let (parts, body) = response.into_parts();
    let body = ScrubbedBody {
        inner: body,
        scrubber: crate::redact::StreamScrubber::default(),
        pending_trailers: None,
        ended: false,
    };
    Response::from_parts(parts, body.boxed_unsync())
}

type Error = <HyperOutgoingBody as hyper::body::Body>::Error;

struct ScrubbedBody {
    inner: HyperOutgoingBody,
    scrubber: crate::redact::StreamScrubber,
    pending_trailers: Option<hyper::HeaderMap>,
    ended: bool,
}

impl hyper::body::Body for ScrubbedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Error>>> {
        use hyper::body::Frame;
        use std::task::Poll;
        loop {
            if let Some(trailers) = self.pending_trailers.take() {
                self.ended = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            let frame = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(f) => f,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.scrubber.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => {
                        self.pending_trailers = frame.into_trailers().ok();
                        self.ended = self.pending_trailers.is_none();
                        let rest = self.scrubber.finish();
                        if !rest.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.ended = true;
                    let rest = self.scrubber.finish();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                    }
                }
            }
        }
    }
}
