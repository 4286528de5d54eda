//! A minimal HTTP/1.1 client for tests: one request per connection, whole body collected.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn get(url: &str) -> Result<Reply> {
    request("GET", url).await
}

pub async fn request(method: &str, url: &str) -> Result<Reply> {
    request_with_headers(method, url, &[]).await
}

/// One request with extra headers (e.g. one a client should not be able to use, or to see
/// what the gateway forwards or refuses).
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let uri: hyper::Uri = url.parse().context("bad URL")?;
    let authority = uri.authority().context("URL without host")?.clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(hyper::header::HOST, authority.as_str());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(&mut sender, req.body(Full::new(Bytes::new()))?).await
}

/// Sends raw bytes as a request (for targets no HTTP library would send) and returns the
/// status and the whole answer as text. The request should say `Connection: close`.
pub async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .context("no complete answer within 30 s")??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

/// Sends one request (30 s bound) and reads the whole answer.
async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<Reply> {
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .context("no response within 30 s")??;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// One kept-alive HTTP/1.1 connection sending GETs to one URL back to back, for load loops
/// (a new connection per request would exhaust the ephemeral ports within seconds).
pub struct KeepAlive {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
}

impl KeepAlive {
    pub async fn connect(url: &str) -> Result<KeepAlive> {
        let uri: hyper::Uri = url.parse().context("bad URL")?;
        let authority = uri.authority().context("URL without host")?.to_string();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(KeepAlive {
            sender,
            authority,
            path,
        })
    }

    pub async fn get(&mut self) -> Result<Reply> {
        self.sender.ready().await?;
        let req = hyper::Request::builder()
            .method("GET")
            .uri(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .body(Full::new(Bytes::new()))?;
        send(&mut self.sender, req).await
    }
}
