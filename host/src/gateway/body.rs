//! Clever's body on its way to the client, polled by the client's connection itself (no task
//! or channel between): piece by piece as it arrives, never held whole; every echo of the
//! token the attempt carried masked (`clever_auth_core`'s `EchoMask`, the same as under Spin),
//! then every other known secret (the host's scrubber, the last gate); the first bytes kept
//! for the component's API-version check. A piece with nothing to mask passes on without a
//! copy: only the few bytes held back at its end (a value may begin there) are copied.
//!
//! When the body ends, or the client goes away first, what it showed is sent to the gateway's
//! task, which reports it to the component.

use crate::bindings::exports::clever::auth::gateway::BodyReport;
use crate::redact::{Pass, StreamScrubber};
use bytes::Bytes;
use clever_auth_core::gateway::echo::EchoMask;
use clever_auth_core::gateway::versions::OBSERVE_LIMIT;
use hyper::body::{Body, Frame};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;
use wasmtime_wasi_http::{Error, WasiBody};

pub struct MaskedBody {
    upstream: WasiBody,
    mask: EchoMask,
    scrubber: StreamScrubber,
    /// Pieces ready for the client, in order.
    ready: VecDeque<Bytes>,
    prefix: Vec<u8>,
    total: usize,
    ended: bool,
    report: Option<oneshot::Sender<BodyReport>>,
}

impl MaskedBody {
    pub fn new(upstream: WasiBody, mask: EchoMask) -> (MaskedBody, oneshot::Receiver<BodyReport>) {
        let (tx, rx) = oneshot::channel();
        let body = MaskedBody {
            upstream,
            mask,
            scrubber: StreamScrubber::default(),
            ready: VecDeque::new(),
            prefix: Vec::new(),
            total: 0,
            ended: false,
            report: Some(tx),
        };
        (body, rx)
    }

    fn take(&mut self, data: Bytes) {
        self.total += data.len();
        if self.prefix.len() < OBSERVE_LIMIT {
            let n = (OBSERVE_LIMIT - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..n]);
        }
        match self.mask.pass(&data) {
            Pass::Clean { held, upto } => {
                self.scrub(Bytes::from(held));
                self.scrub(data.slice(..upto));
            }
            Pass::Masked(out) => self.scrub(Bytes::from(out)),
        }
    }

    fn scrub(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        match self.scrubber.pass(&piece) {
            Pass::Clean { held, upto } => {
                self.queue(Bytes::from(held));
                self.queue(piece.slice(..upto));
            }
            Pass::Masked(out) => self.queue(Bytes::from(out)),
        }
    }

    fn queue(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.ready.push_back(piece);
        }
    }

    /// The end of Clever's body: what both maskers held back goes on.
    fn end(&mut self) {
        let mut rest = Vec::new();
        self.mask.finish(&mut rest);
        let rest = self.scrubber.push(&rest);
        self.queue(Bytes::from(rest));
        let last = self.scrubber.finish();
        self.queue(Bytes::from(last));
        self.ended = true;
    }

    fn send_report(&mut self, broken: bool) {
        if let Some(tx) = self.report.take() {
            let _ = tx.send(BodyReport {
                prefix: std::mem::take(&mut self.prefix),
                complete: !broken && self.total <= OBSERVE_LIMIT,
                broken,
                masked: self.mask.masked(),
            });
        }
    }
}

impl Body for MaskedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if self.ended {
                self.send_report(false);
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on (Clever sends none).
                    if let Ok(data) = frame.into_data() {
                        self.take(data);
                    }
                }
                Poll::Ready(None) => self.end(),
                Poll::Ready(Some(Err(e))) => {
                    // The client's connection fails too: a cut body must not look whole.
                    self.ended = true;
                    self.send_report(true);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl Drop for MaskedBody {
    /// Dropped with everything passed on (hyper stops polling once `Content-Length` bytes are
    /// out), or with the client gone (or stalled until the write deadline) before the end.
    fn drop(&mut self) {
        let whole = self.ended && self.ready.is_empty();
        self.send_report(!whole);
    }
}
