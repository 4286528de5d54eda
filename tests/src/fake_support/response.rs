//! Building the fakes' responses.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName};
use hyper::http::response::Builder;
use hyper::{Response, StatusCode};

use super::server::Resp;

/// The content type of every JSON answer.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// A scripted status; one `http` cannot represent becomes 500.
pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Adds the content type (if any) and `extra` headers to `builder` and sets the body. A header
/// value the fake itself made invalid turns the answer into a 500 with `fallback` as body.
pub(crate) fn finish(
    mut builder: Builder,
    content_type: Option<&str>,
    body: Bytes,
    extra: Vec<(HeaderName, String)>,
    fallback: &'static str,
) -> Resp {
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    for (name, value) in extra {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut resp = Response::new(Full::new(Bytes::from_static(fallback.as_bytes())));
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}
