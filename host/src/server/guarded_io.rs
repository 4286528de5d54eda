//! A client connection's socket with the two clocks hyper does not keep: the idle timeout (no
//! request in progress and no byte either way) and the write deadline (the client must take
//! the bytes of a response within the deadline of their being ready). Either one ends the
//! connection with `TimedOut`, which closes it and frees its place under the connection cap.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests of one connection being served right now (the service counts them), so the idle
/// clock does not run while the component works.
#[derive(Debug, Default, Clone)]
pub struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    pub fn start(&self) -> InProgressGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InProgressGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// Ends one request's "in progress" when dropped (also when hyper drops the service future).
pub struct InProgressGuard(Arc<AtomicUsize>);

impl Drop for InProgressGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct GuardedIo<T> {
    inner: T,
    in_progress: InProgress,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    write_timeout: Duration,
    write: Pin<Box<Sleep>>,
    /// Bytes handed to us are not yet all taken by the kernel (hyper has not flushed).
    writing: bool,
}

impl<T> GuardedIo<T> {
    pub fn new(
        inner: T,
        in_progress: InProgress,
        idle_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            in_progress,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            write_timeout,
            write: Box::pin(tokio::time::sleep(write_timeout)),
            writing: false,
        }
    }

    fn touched(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(next);
    }

    fn start_write_clock(&mut self) {
        if !self.writing {
            self.writing = true;
            let deadline = Instant::now() + self.write_timeout;
            self.write.as_mut().reset(deadline);
        }
    }

    /// Called when the socket cannot take more: has the client kept us waiting too long?
    fn write_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        self.write.as_mut().poll(cx).is_ready()
    }

    fn idle_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        !self.writing && !self.in_progress.any() && self.idle.as_mut().poll(cx).is_ready()
    }
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() != before {
                    this.touched();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.idle_overdue(cx) => {
                Poll::Ready(Err(timed_out("idle connection timed out")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touched();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.write_overdue(cx) => Poll::Ready(Err(timed_out(
                "the client did not read its response in time",
            ))),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.start_write_clock();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.start_write_clock();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                // hyper flushes once everything it had is written: the response is out.
                this.writing = false;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.write_overdue(cx) => Poll::Ready(Err(timed_out(
                "the client did not read its response in time",
            ))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
