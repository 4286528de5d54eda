//! A response body that fails when the server stops sending: wasi:http's
//! `between-bytes-timeout`, which the host's own `send` must apply itself (wasmtime-wasi-http
//! only does it in its default sender). Without it a server that sends its headers and then
//! stalls holds the component's read, and with it the refresher and the scheduler, forever.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::{Error, WasiBody};

pub struct BetweenBytes {
    inner: WasiBody,
    gap: Duration,
    timer: Pin<Box<Sleep>>,
}

impl BetweenBytes {
    /// The clock starts now: the first body byte must arrive within `gap` of the head.
    pub fn new(inner: WasiBody, gap: Duration) -> Self {
        Self {
            inner,
            gap,
            timer: Box::pin(tokio::time::sleep(gap)),
        }
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + this.gap;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
