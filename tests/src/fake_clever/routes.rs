//! Request handling: classify, record, apply a scripted fault or answer like Clever.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::config::MultiBucketStyle;
use super::log::{AuthScheme, AuthSeen, RequestRecord};
use super::script::{Fault, RetryAfter, Route};
use super::server::ConnCtl;
use super::shared::Core;
use super::state::{
    fingerprint, lock, rfc3339_millis, BucketSnapshot, DistrictInfo, TokenLookup, TokenOwner,
};
use crate::fake_support::request::Arrival;
use crate::fake_support::request::Outcome;
use crate::fake_support::response::{status_code, JSON};
use crate::fake_support::script::apply_fault;
use crate::fake_support::server::{play_reply, Reply};
use crate::fake_support::util::OnDrop;

pub(crate) use crate::fake_support::server::Resp;

/// Form bodies for the token endpoint are tiny; anything bigger is a client bug.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Credentials as presented in `Authorization`, kept only for the duration of the request.
enum Presented {
    Missing,
    Basic { id: String, secret: String },
    Bearer(String),
    Unsupported,
}

impl Presented {
    fn from_headers(headers: &hyper::HeaderMap) -> Self {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Self::Missing;
        };
        let Ok(value) = value.to_str() else {
            return Self::Unsupported;
        };
        let Some((scheme, rest)) = value.trim().split_once(' ') else {
            return Self::Unsupported;
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok());
            match decoded.as_deref().and_then(|s| s.split_once(':')) {
                Some((id, secret)) => Self::Basic {
                    id: id.to_string(),
                    secret: secret.to_string(),
                },
                None => Self::Unsupported,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Self::Bearer(rest.to_string())
        } else {
            Self::Unsupported
        }
    }
}

/// Everything a handler needs, gathered once when the request arrives.
struct Ctx {
    core: Arc<Core>,
    method: Method,
    route: Route,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    path_and_query: String,
    api_version: Option<String>,
    presented: Presented,
    basic_valid: bool,
    token: TokenLookup,
    rate: Vec<BucketSnapshot>,
    rate_style: MultiBucketStyle,
    rate_exceeded: bool,
    /// Headers as received, `Authorization` shown by scheme only (for the echo route).
    headers: Vec<(String, String)>,
}

impl Ctx {
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_version_segment(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    !rest.is_empty()
        && rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn classify(method: &Method, segments: &[String]) -> (Route, Option<String>) {
    match segments {
        [a, b] if a == "oauth" && b == "tokens" => {
            if method == Method::GET {
                (Route::TokenList, None)
            } else {
                (Route::ClientCredentials, None)
            }
        }
        [a, b] if a == "oauth" && b == "tokeninfo" => (Route::TokenInfo, None),
        [version, ..] if is_version_segment(version) => (Route::Data, Some(version.clone())),
        _ => (Route::Other, None),
    }
}

pub(crate) async fn handle(
    core: Arc<Core>,
    conn: Arc<ConnCtl>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let Arrival {
        at,
        unix_ms,
        method,
        uri,
        path_and_query,
        query,
    } = Arrival::of(&req);
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let (route, api_version) = classify(&method, &segments);
    let presented = Presented::from_headers(req.headers());

    let (auth, basic_valid, token, rate, rate_style, rate_exceeded) = {
        let mut state = lock(&core.state);
        let (scheme, credential, basic_valid, token) = match &presented {
            Presented::Missing => (AuthScheme::Missing, None, false, TokenLookup::none()),
            Presented::Unsupported => (AuthScheme::Unsupported, None, false, TokenLookup::none()),
            Presented::Basic { id, secret } => (
                AuthScheme::Basic,
                Some(format!("{id}:{secret}")),
                state.basic_is_valid(id, secret),
                TokenLookup::none(),
            ),
            Presented::Bearer(t) => (
                AuthScheme::Bearer,
                Some(t.clone()),
                false,
                state.lookup_token(t),
            ),
        };
        let fp = credential.as_deref().map(|c| fingerprint(core.salt, c));
        let valid = match scheme {
            AuthScheme::Basic => basic_valid,
            AuthScheme::Bearer => token.valid,
            AuthScheme::Missing | AuthScheme::Unsupported => false,
        };
        // Clever counts per token; unauthenticated callers share one counter.
        let rate_key = fp.clone().unwrap_or_else(|| "anonymous".to_string());
        let (rate, exceeded) = state.observe_rate(&rate_key);
        let auth = AuthSeen {
            scheme,
            valid,
            fingerprint: fp,
        };
        (
            auth,
            basic_valid,
            token,
            rate,
            state.rate_limit.style,
            exceeded,
        )
    };

    let named_district = match route {
        Route::TokenList => query
            .iter()
            .find(|(k, _)| k == "district")
            .map(|(_, v)| v.clone()),
        Route::Data => match segments.as_slice() {
            [_, resource, id, ..] if resource == "districts" => Some(id.clone()),
            _ => None,
        },
        _ => None,
    };
    let token_district = match &token.owner {
        Some(TokenOwner::District(d)) => Some(d.clone()),
        _ => None,
    };
    let district = named_district.or_else(|| token_district.clone());

    let seq = core.log.push(RequestRecord {
        seq: 0,
        at,
        unix_ms,
        method: method.to_string(),
        path_and_query: path_and_query.clone(),
        route,
        api_version: api_version.clone(),
        district: district.clone(),
        token_district,
        auth,
        fault: None,
        outcome: Outcome::Pending,
    });
    // Marks the request abandoned if its future is dropped before an outcome was decided
    // (client hung up mid-delay, or the fake went down).
    let guard_core = core.clone();
    let _guard = OnDrop(move || guard_core.finish(seq, Outcome::Abandoned, true));

    let fault = lock(&core.script).take(route, district.as_deref());
    if let Some(f) = &fault {
        core.log.set_fault(seq, f);
    }

    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = if *n == header::AUTHORIZATION {
                let v = v.to_str().unwrap_or_default();
                v.split_once(' ')
                    .map_or("?", |(scheme, _)| scheme)
                    .to_string()
                    + " <present>"
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (n.as_str().to_string(), value)
        })
        .collect();
    let ctx = Ctx {
        headers,
        core: core.clone(),
        method,
        route,
        segments,
        query,
        path_and_query,
        api_version,
        presented,
        basic_valid,
        token,
        rate,
        rate_style,
        rate_exceeded,
    };

    let reply = reply(&ctx, fault, req.into_body()).await;
    core.finish(seq, reply.outcome(), false);
    play_reply(reply, &conn).await
}

async fn reply(ctx: &Ctx, fault: Option<Fault>, body: Incoming) -> Reply {
    apply_fault(
        fault,
        normal(ctx, body),
        |fault| fault_reply(ctx, fault),
        |status, content_type, body| build(ctx, status, content_type, body, Vec::new()),
    )
    .await
}

fn fault_reply(ctx: &Ctx, fault: Fault) -> Resp {
    match fault {
        Fault::Status(status) => status_reply(ctx, status),
        Fault::RateLimited {
            retry_after,
            reset_in,
        } => rate_limited(ctx, retry_after, reset_in),
        Fault::MalformedJson => build(
            ctx,
            StatusCode::OK,
            Some(JSON),
            // Cut mid-string, as a truncated upstream response would be.
            Bytes::from_static(b"{\"data\":[{\"id\":\"5f0c2b1e8d3a4c0012ab34cd\",\"owner\":{\"ty"),
            Vec::new(),
        ),
        Fault::Html(status) => {
            let status = status_code(status);
            let reason = status.canonical_reason().unwrap_or("Error");
            let code = status.as_u16();
            build(
                ctx,
                status,
                Some("text/html; charset=utf-8"),
                Bytes::from(format!(
                    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
                         <center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
                )),
                Vec::new(),
            )
        }
        Fault::VersionNotSupported => {
            let version = ctx.api_version.as_deref().unwrap_or("this version");
            version_not_supported(ctx, version)
        }
        Fault::Delay(_)
        | Fault::DelayThen(..)
        | Fault::Hang
        | Fault::Reset
        | Fault::Custom { .. } => unreachable!("apply_fault plays these itself"),
    }
}

async fn normal(ctx: &Ctx, body: Incoming) -> Resp {
    if ctx.rate_exceeded {
        // Clever's own 429: empty body, the reset header is the only hint.
        return build(
            ctx,
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Bytes::new(),
            Vec::new(),
        );
    }
    match ctx.route {
        Route::TokenList => token_list(ctx),
        Route::ClientCredentials => client_credentials(ctx, body).await,
        Route::TokenInfo => token_info(ctx),
        Route::Data => data(ctx),
        Route::Other => json_reply(
            ctx,
            StatusCode::NOT_FOUND,
            &json!({"error": "Resource not found"}),
        ),
    }
}

fn token_list(ctx: &Ctx) -> Resp {
    if !ctx.basic_valid {
        return invalid_client(ctx);
    }
    let Some(owner_type) = ctx.query_param("owner_type") else {
        return json_reply(
            ctx,
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": "owner_type is required"}),
        );
    };
    let district_filter = ctx.query_param("district");
    let starting_after = ctx.query_param("starting_after");
    let mut next = None;
    let data: Vec<Value> = if owner_type == "district" {
        let state = lock(&ctx.core.state);
        let listed: Vec<&DistrictInfo> = state
            .districts
            .values()
            .filter(|d| district_filter.is_none_or(|f| f == d.id))
            .filter(|d| starting_after.is_none_or(|after| d.id.as_str() > after))
            .collect();
        let page = match state.listing_page_size {
            Some(size) if listed.len() > size => {
                next = Some(listing_page_link(ctx, &listed[size - 1].id));
                &listed[..size]
            }
            _ => &listed[..],
        };
        page.iter()
            .map(|d| {
                json!({
                    "id": d.token_id,
                    "created": rfc3339_millis(d.token_created_unix_ms),
                    "owner": {"type": "district", "id": d.id},
                    "access_token": d.token,
                    "scopes": state.scopes,
                })
            })
            .collect()
    } else {
        // This application only ever has district-owned tokens.
        Vec::new()
    };
    let mut links = vec![json!({"rel": "self", "uri": ctx.path_and_query})];
    if let Some(uri) = next {
        links.push(json!({"rel": "next", "uri": uri}));
    }
    json_reply(
        ctx,
        StatusCode::OK,
        &json!({
            "data": data,
            "links": links,
        }),
    )
}

/// The relative `next` link of a paged listing, as Clever writes it.
fn listing_page_link(ctx: &Ctx, last_id: &str) -> String {
    let path = ctx
        .path_and_query
        .split('?')
        .next()
        .unwrap_or("/oauth/tokens");
    format!("{path}?owner_type=district&starting_after={last_id}")
}

async fn client_credentials(ctx: &Ctx, body: Incoming) -> Resp {
    if ctx.method != Method::POST {
        return method_not_allowed(ctx);
    }
    if !ctx.basic_valid {
        return invalid_client(ctx);
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_reply(
                ctx,
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_request", "error_description": "unreadable or oversized body"}),
            )
        }
    };
    let grant_type = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.into_owned());
    match grant_type.as_deref() {
        Some("client_credentials") => {
            let (token, lifetime) = lock(&ctx.core.state).issue_app_token();
            let mut resp = json_reply(
                ctx,
                StatusCode::OK,
                &json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime}),
            );
            // RFC 6749 §5.1: token responses must not be cached.
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Some(other) => json_reply(
            ctx,
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_grant_type",
                    "error_description": format!("grant_type {other} is not supported here")}),
        ),
        None => json_reply(
            ctx,
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request",
                    "error_description": "grant_type is required (form-encoded body)"}),
        ),
    }
}

fn token_info(ctx: &Ctx) -> Resp {
    if ctx.method != Method::GET {
        return method_not_allowed(ctx);
    }
    if !matches!(ctx.presented, Presented::Bearer(_)) || !ctx.token.valid {
        return invalid_token(ctx);
    }
    let (client_id, scopes) = {
        let state = lock(&ctx.core.state);
        (state.client_id.clone(), state.scopes.clone())
    };
    json_reply(
        ctx,
        StatusCode::OK,
        &json!({"client_id": client_id, "scopes": scopes}),
    )
}

fn data(ctx: &Ctx) -> Resp {
    // HEAD as GET (hyper leaves the body out), as a read-only API answers it.
    if ctx.method != Method::GET && ctx.method != Method::HEAD {
        return method_not_allowed(ctx);
    }
    let version = ctx.api_version.as_deref().unwrap_or_default();
    let (supported, served, version_header, client_id) = {
        let state = lock(&ctx.core.state);
        (
            state.version_supported(version),
            state
                .served_version
                .clone()
                .unwrap_or_else(|| version.to_string()),
            state.version_header.clone(),
            state.client_id.clone(),
        )
    };
    if !supported {
        return version_not_supported(ctx, version);
    }
    if !matches!(ctx.presented, Presented::Bearer(_)) || !ctx.token.valid {
        return json_reply(
            ctx,
            StatusCode::UNAUTHORIZED,
            &json!({"error": "Unauthorized"}),
        );
    }
    let resource: Vec<&str> = ctx.segments.iter().skip(1).map(String::as_str).collect();
    if let Some(resp) = gateway_data(ctx, &resource, &served) {
        return resp;
    }
    let body = match (resource.as_slice(), &ctx.token.owner) {
        (["districts", id], owner) => {
            let state = lock(&ctx.core.state);
            let allowed = match owner {
                Some(TokenOwner::District(d)) => d == id,
                // The application's own token sees every district that authorised it.
                Some(TokenOwner::App) => true,
                None => false,
            };
            match state.districts.get(*id) {
                Some(d) if allowed => Some(json!({
                    "data": {"id": d.id, "name": d.name},
                    "links": [{"rel": "self", "uri": format!("/{served}/districts/{}", d.id)}],
                })),
                _ => None,
            }
        }
        (["me"], Some(TokenOwner::District(d))) => Some(json!({
            "data": {"id": d, "district": d, "type": "district"},
            "links": [
                {"rel": "self", "uri": format!("/{served}/me")},
                {"rel": "canonical", "uri": format!("/{served}/districts/{d}")},
            ],
        })),
        (["me"], Some(TokenOwner::App)) => Some(json!({
            "data": {"id": client_id, "type": "application"},
            "links": [{"rel": "self", "uri": format!("/{served}/me")}],
        })),
        _ => None,
    };
    let mut extra = Vec::new();
    if let Some(name) = version_header {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&served),
        ) {
            extra.push((name, value));
        }
    }
    match body {
        Some(body) => build(
            ctx,
            StatusCode::OK,
            Some(JSON),
            Bytes::from(body.to_string()),
            extra,
        ),
        // Clever answers 404 for unshared, deleted or other districts' resources alike.
        None => json_reply(
            ctx,
            StatusCode::NOT_FOUND,
            &json!({"error": "Resource not found"}),
        ),
    }
}

/// Largest body [`gateway_data`] serves from `/{version}/bytes/{n}`.
pub(crate) const MAX_BYTES_BODY: usize = 64 << 20;

/// One shared pattern every `/bytes/{n}` body is a slice of: a 50 MB page costs the fake no
/// copy per request.
fn pattern_body() -> Bytes {
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BODY.get_or_init(|| {
        let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n";
        Bytes::from(
            line.iter()
                .copied()
                .cycle()
                .take(MAX_BYTES_BODY)
                .collect::<Vec<u8>>(),
        )
    })
    .clone()
}

/// Data-API resources for gateway tests (a valid token is already checked):
/// - `districts/{id}/schools`: a page of schools, for the district's own token only, with
///   versioned `uri`s and `tokenDistrict` (whose token the request carried);
/// - `echo/...`: the path, query and headers that arrived (never `Authorization`'s value)
///   and whose token it was;
/// - `bytes/{n}`: `n` bytes of a fixed pattern (at most [`MAX_BYTES_BODY`]).
fn gateway_data(ctx: &Ctx, resource: &[&str], served: &str) -> Option<Resp> {
    let owner = match &ctx.token.owner {
        Some(TokenOwner::District(d)) => Some(d.clone()),
        Some(TokenOwner::App) => Some("app".to_string()),
        None => None,
    };
    match resource {
        ["districts", id, "schools"] => {
            if owner.as_deref() != Some(*id) && owner.as_deref() != Some("app") {
                return None;
            }
            let schools: Vec<Value> = (1..=3)
                .map(|i| {
                    let sid = format!("{id}-school-{i}");
                    json!({"data": {"id": sid, "district": id, "name": format!("School {i}")},
                           "uri": format!("/{served}/schools/{sid}")})
                })
                .collect();
            Some(json_reply(
                ctx,
                StatusCode::OK,
                &json!({
                    "data": schools,
                    "links": [{"rel": "self", "uri": format!("/{served}/districts/{id}/schools")}],
                    "tokenDistrict": owner,
                }),
            ))
        }
        ["echo", ..] => {
            let headers: serde_json::Map<String, Value> = ctx
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect();
            let body = json!({
                "pathAndQuery": ctx.path_and_query,
                "headers": headers,
                "tokenDistrict": owner,
                "links": [{"rel": "self", "uri": format!("/{served}/echo")}],
            });
            // `?hop=1`: the answer names a header of its own as hop-by-hop (RFC 9110 §7.6.1),
            // as a proxy in front of Clever may.
            let hop = ctx.path_and_query.contains("hop=1");
            let extra = if hop {
                vec![
                    (
                        header::CONNECTION,
                        HeaderValue::from_static("x-hop-private"),
                    ),
                    (
                        HeaderName::from_static("x-hop-private"),
                        HeaderValue::from_static("1"),
                    ),
                    (
                        HeaderName::from_static("x-end-to-end"),
                        HeaderValue::from_static("1"),
                    ),
                ]
            } else {
                Vec::new()
            };
            Some(build(
                ctx,
                StatusCode::OK,
                Some(JSON),
                Bytes::from(body.to_string()),
                extra,
            ))
        }
        ["bytes", n] => {
            let n: usize = n.parse().ok().filter(|n| *n <= MAX_BYTES_BODY)?;
            Some(build(
                ctx,
                StatusCode::OK,
                Some("application/octet-stream"),
                pattern_body().slice(..n),
                Vec::new(),
            ))
        }
        _ => None,
    }
}

fn version_not_supported(ctx: &Ctx, version: &str) -> Resp {
    let (status, supported) = {
        let state = lock(&ctx.core.state);
        (
            status_code(state.version_not_supported_status),
            state.supported_versions.join(", "),
        )
    };
    json_reply(
        ctx,
        status,
        &json!({
            "error": "version not supported",
            "message": format!("API {version}: version not supported (supported: {supported})"),
        }),
    )
}

fn invalid_client(ctx: &Ctx) -> Resp {
    let mut resp = json_reply(
        ctx,
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_client", "error_description": "client authentication failed"}),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"clever\""),
    );
    resp
}

fn invalid_token(ctx: &Ctx) -> Resp {
    json_reply(
        ctx,
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_token", "error_description": "the access token is invalid or revoked"}),
    )
}

fn method_not_allowed(ctx: &Ctx) -> Resp {
    json_reply(
        ctx,
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method not allowed"}),
    )
}

fn status_reply(ctx: &Ctx, status: u16) -> Resp {
    let status = status_code(status);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return build(ctx, status, None, Bytes::new(), Vec::new());
    }
    let reason = status.canonical_reason().unwrap_or("error");
    json_reply(ctx, status, &json!({"error": reason}))
}

fn rate_limited(ctx: &Ctx, retry_after: Option<RetryAfter>, reset_in: Duration) -> Resp {
    // Round up so a client waiting until the reset never wakes before the scripted instant.
    let reset_at = SystemTime::now() + reset_in;
    let reset_epoch = reset_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or_default();
    let mut extra = Vec::new();
    match retry_after {
        Some(RetryAfter::Seconds(secs)) => {
            extra.push((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        Some(RetryAfter::HttpDateIn(after)) => {
            let at = SystemTime::now() + after + Duration::from_millis(999);
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                extra.push((header::RETRY_AFTER, v));
            }
        }
        None => {}
    }
    let snapshot: Vec<BucketSnapshot> = ctx
        .rate
        .iter()
        .map(|b| BucketSnapshot {
            remaining: 0,
            reset_epoch_secs: reset_epoch,
            ..b.clone()
        })
        .collect();
    let mut resp = build(
        ctx,
        StatusCode::TOO_MANY_REQUESTS,
        None,
        Bytes::new(),
        extra,
    );
    set_rate_headers(resp.headers_mut(), &snapshot, ctx.rate_style);
    resp
}

fn json_reply(ctx: &Ctx, status: StatusCode, body: &Value) -> Resp {
    build(
        ctx,
        status,
        Some(JSON),
        Bytes::from(body.to_string()),
        Vec::new(),
    )
}

/// Every response carries the rate-limit headers, as Clever's do.
fn build(
    ctx: &Ctx,
    status: StatusCode,
    content_type: Option<&str>,
    body: Bytes,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    set_rate_headers(headers, &ctx.rate, ctx.rate_style);
    for (name, value) in extra {
        headers.append(name, value);
    }
    resp
}

fn set_rate_headers(
    headers: &mut hyper::HeaderMap,
    buckets: &[BucketSnapshot],
    style: MultiBucketStyle,
) {
    let columns: [(&str, Vec<String>); 4] = [
        (
            "x-ratelimit-bucket",
            buckets.iter().map(|b| b.name.clone()).collect(),
        ),
        (
            "x-ratelimit-limit",
            buckets.iter().map(|b| b.limit.to_string()).collect(),
        ),
        (
            "x-ratelimit-remaining",
            buckets.iter().map(|b| b.remaining.to_string()).collect(),
        ),
        (
            "x-ratelimit-reset",
            buckets
                .iter()
                .map(|b| b.reset_epoch_secs.to_string())
                .collect(),
        ),
    ];
    for (name, values) in columns {
        let name = HeaderName::from_static(name);
        headers.remove(&name);
        if values.is_empty() {
            continue;
        }
        match style {
            MultiBucketStyle::CommaJoined => {
                if let Ok(v) = HeaderValue::from_str(&values.join(", ")) {
                    headers.insert(name, v);
                }
            }
            MultiBucketStyle::Repeated => {
                for value in values {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        headers.append(name.clone(), v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_segments_are_recognised() {
        for ok in ["v3.0", "v3.1", "v1.1", "v2", "v10.0"] {
            assert!(is_version_segment(ok), "{ok}");
        }
        for bad in ["v", "oauth", "v.1", "vx", "3.0", "va1"] {
            assert!(!is_version_segment(bad), "{bad}");
        }
    }

    #[test]
    fn authorization_parsing_is_tolerant() {
        let mut h = hyper::HeaderMap::new();
        assert!(matches!(Presented::from_headers(&h), Presented::Missing));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic !!notbase64"),
        );
        assert!(matches!(
            Presented::from_headers(&h),
            Presented::Unsupported
        ));
        // "a:b:c" — the secret may itself contain colons.
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic YTpiOmM="),
        );
        assert!(matches!(
            Presented::from_headers(&h),
            Presented::Basic { ref id, ref secret } if id == "a" && secret == "b:c"
        ));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(matches!(
            Presented::from_headers(&h),
            Presented::Unsupported
        ));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  abc "),
        );
        assert!(matches!(Presented::from_headers(&h), Presented::Bearer(ref t) if t == "abc"));
    }
}
