//! The gateway's own errors: a stable code, an HTTP status and a JSON body
//! `{"error":{"code","message"}}`, told apart from Clever's answers by [`super::SOURCE_HEADER`].

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    MethodNotAllowed,
    UnknownDistrict,
    NoValidToken,
    RateLimited,
    UpstreamTimeout,
    /// Clever could not be reached at all (connection refused, reset, TLS failure).
    UpstreamUnreachable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnknownDistrict => "unknown_district",
            ErrorCode::NoValidToken => "no_valid_token",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::UnknownDistrict => 404,
            ErrorCode::NoValidToken => 503,
            ErrorCode::RateLimited => 429,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::UpstreamUnreachable => 502,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub code: ErrorCode,
    /// Safe to show: never holds a token or a request header value.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        GatewayError {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// With `Retry-After` of `wait_ms` rounded up to whole seconds (at least 1).
    pub fn retry_after(mut self, wait_ms: u64) -> Self {
        self.retry_after_secs = Some(wait_ms.div_ceil(1000).max(1));
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn body(&self) -> String {
        json!({"error": {"code": self.code.as_str(), "message": self.message}}).to_string()
    }

    /// Headers besides content type and source: `Retry-After`, and `Allow` on 405.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(s) = self.retry_after_secs {
            h.push(("retry-after", s.to_string()));
        }
        if self.code == ErrorCode::MethodNotAllowed {
            h.push(("allow", "GET, HEAD".to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_documented_json_shape() {
        let e = GatewayError::new(ErrorCode::NoValidToken, "no token for d-1").retry_after(1500);
        assert_eq!(e.status(), 503);
        let v: serde_json::Value = serde_json::from_str(&e.body()).expect("json");
        assert_eq!(v["error"]["code"], "no_valid_token");
        assert_eq!(v["error"]["message"], "no token for d-1");
        assert_eq!(e.extra_headers(), vec![("retry-after", "2".to_string())]);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let e = GatewayError::new(ErrorCode::RateLimited, "x").retry_after(0);
        assert_eq!(e.retry_after_secs, Some(1));
    }

    #[test]
    fn every_code_has_its_status() {
        let all = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::UnknownDistrict, 404),
            (ErrorCode::NoValidToken, 503),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::UpstreamTimeout, 504),
            (ErrorCode::UpstreamUnreachable, 502),
        ];
        for (code, status) in all {
            assert_eq!(code.status(), status, "{}", code.as_str());
        }
        let allow = GatewayError::new(ErrorCode::MethodNotAllowed, "x").extra_headers();
        assert_eq!(allow, vec![("allow", "GET, HEAD".to_string())]);
    }
}
