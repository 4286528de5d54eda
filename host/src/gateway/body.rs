//! Clever's body on its way to the client: piece by piece as it arrives (never held whole),
//! every echo of the token the attempt carried masked (`clever_auth_core`'s `EchoMask`, the
//! same as under Spin), the first bytes kept for the component's API-version check.

use crate::bindings::exports::clever::auth::gateway::BodyReport;
use bytes::Bytes;
use clever_auth_core::gateway::echo::EchoMask;
use clever_auth_core::gateway::versions::OBSERVE_LIMIT;
use http_body_util::BodyExt;
use hyper::body::Frame;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error, WasiBody};

/// Pieces waiting between the pump and the client's connection: one is enough to keep both
/// sides busy, and a client that stops reading holds no more than this.
const QUEUED_PIECES: usize = 1;

type Piece = Result<Frame<Bytes>, Error>;

/// The client's side of the pipe.
pub struct ClientBody(mpsc::Receiver<Piece>);

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.0.poll_recv(cx)
    }
}

/// The pipe: the body to answer the client with, and the sender the pump writes into.
pub fn pipe() -> (HyperOutgoingBody, mpsc::Sender<Piece>) {
    let (tx, rx) = mpsc::channel(QUEUED_PIECES);
    (ClientBody(rx).boxed_unsync(), tx)
}

/// Moves `upstream` into `to` through the mask until either side ends; what it showed.
pub async fn pump(
    mut upstream: WasiBody,
    to: mpsc::Sender<Piece>,
    mask: &mut EchoMask,
) -> BodyReport {
    let mut report = BodyReport {
        prefix: Vec::new(),
        complete: false,
        broken: false,
        masked: 0,
    };
    let mut total = 0usize;
    loop {
        match upstream.frame().await {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    // Trailers: not passed on (Clever sends none); the body goes on.
                    continue;
                };
                total += data.len();
                if report.prefix.len() < OBSERVE_LIMIT {
                    let take = (OBSERVE_LIMIT - report.prefix.len()).min(data.len());
                    report.prefix.extend_from_slice(&data[..take]);
                }
                let mut out = Vec::with_capacity(data.len());
                mask.push(&data, &mut out);
                if !out.is_empty() && to.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                    report.broken = true;
                    break;
                }
            }
            None => {
                let mut out = Vec::new();
                mask.finish(&mut out);
                if !out.is_empty() && to.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                    report.broken = true;
                }
                report.complete = total == report.prefix.len();
                break;
            }
            Some(Err(e)) => {
                // The client's connection fails too: an incomplete body must not look whole.
                let _ = to.send(Err(e)).await;
                report.broken = true;
                break;
            }
        }
    }
    report.masked = mask.masked();
    report
}
