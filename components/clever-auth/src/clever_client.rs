//! The three Clever calls: list district tokens, RFC 6749 client_credentials, and the
//! connection probe against the data API.

use crate::bindings::wasi::http::types::Method;
use crate::config::Credentials;
use crate::http_out::{self, Failure, Response};
use base64::Engine as _;
use clever_auth_core::secret::AccessToken;
use clever_auth_core::settings::Settings;

fn basic_auth(creds: &Credentials) -> Vec<u8> {
    let pair = format!("{}:{}", creds.client_id, creds.client_secret.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
    .into_bytes()
}

fn parse(url: &str, setting: &str) -> Result<url::Url, Failure> {
    url::Url::parse(url).map_err(|e| Failure::Invalid(format!("{setting}: {e}")))
}

/// `GET <token url>?owner_type=district` with HTTP Basic; a later page is the listing's own
/// `links[rel=next]` (the machine has checked it stays on the token URL's origin).
pub fn list_district_tokens(
    settings: &Settings,
    creds: &Credentials,
    page: Option<&str>,
) -> Result<Response, Failure> {
    let url = match page {
        Some(next) => parse(next, "links[rel=next]")?,
        None => {
            let mut url = parse(&settings.token_url, "clever_token_url")?;
            url.query_pairs_mut().append_pair("owner_type", "district");
            url
        }
    };
    http_out::send(http_out::Request {
        method: Method::Get,
        url: &url,
        headers: vec![
            ("authorization".into(), basic_auth(creds)),
            ("accept".into(), b"application/json".to_vec()),
        ],
        body: None,
        timeout_ms: settings.http_timeout_ms,
    })
}

/// RFC 6749 §4.4: form body, HTTP Basic.
pub fn client_credentials(settings: &Settings, creds: &Credentials) -> Result<Response, Failure> {
    let url = parse(&settings.token_url, "clever_token_url")?;
    http_out::send(http_out::Request {
        method: Method::Post,
        url: &url,
        headers: vec![
            ("authorization".into(), basic_auth(creds)),
            ("accept".into(), b"application/json".to_vec()),
            (
                "content-type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ),
        ],
        body: Some(b"grant_type=client_credentials".to_vec()),
        timeout_ms: settings.http_timeout_ms,
    })
}

/// `GET <api>/<version>/districts/<id>` (or `/me` for the application token) with the token.
pub fn probe(
    settings: &Settings,
    district_id: Option<&str>,
    token: &AccessToken,
) -> Result<Response, Failure> {
    let mut url = parse(&settings.api_base_url, "clever_api_base_url")?;
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| Failure::Invalid("clever_api_base_url cannot carry a path".into()))?;
        segments.pop_if_empty().push(&settings.api_version);
        match district_id {
            Some(id) => segments.extend(["districts", id]),
            None => segments.push("me"),
        };
    }
    http_out::send(http_out::Request {
        method: Method::Get,
        url: &url,
        headers: vec![
            (
                "authorization".into(),
                format!("Bearer {}", token.expose()).into_bytes(),
            ),
            ("accept".into(), b"application/json".to_vec()),
        ],
        body: None,
        timeout_ms: settings.http_timeout_ms,
    })
}
