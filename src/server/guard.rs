//! Connection guard against slow and abusive clients.
//!
//! - At most [`MAX_CONNECTIONS`] open connections; beyond that new ones are closed at once.
//! - Once a request's first bytes arrive, the server must have answered within the request
//!   timeout, or the connection is closed: a client trickling headers or a body (slowloris)
//!   cannot hold a connection for ever. Idle keep-alive connections are closed by the HTTP
//!   server's idle timeout instead.

use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

pub const MAX_CONNECTIONS: usize = 1024;

pub struct GuardedAcceptor<A> {
    inner: A,
    connections: Arc<Semaphore>,
    request_timeout: Duration,
}

impl<A> GuardedAcceptor<A> {
    pub fn new(inner: A, request_timeout: Duration) -> Self {
        GuardedAcceptor {
            inner,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            request_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        loop {
            let (io, local, remote, scheme) = self.inner.accept().await?;
            match self.connections.clone().try_acquire_owned() {
                Ok(permit) => {
                    let io = Guarded {
                        inner: io,
                        deadline: Box::pin(tokio::time::sleep(self.request_timeout)),
                        armed: false,
                        timeout: self.request_timeout,
                        _permit: permit,
                    };
                    return Ok((io, local, remote, scheme));
                }
                Err(_) => {
                    metrics::counter!("printbell_connections_refused_total").increment(1);
                    tracing::warn!(
                        limit = MAX_CONNECTIONS,
                        "too many open connections; closing a new one"
                    );
                    drop(io);
                }
            }
        }
    }
}

/// A connection that must answer a request within `timeout` of its first byte.
pub struct Guarded<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
    /// A request is being received/handled: the deadline applies.
    armed: bool,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.armed && this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not completed within the request timeout",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.armed && matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.armed = true;
            let at = Instant::now() + this.timeout;
            this.deadline.as_mut().reset(at);
            // Register the timer so the task wakes when it fires even if no byte comes.
            let _ = this.deadline.as_mut().poll(cx);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            // The server is answering: the request made it in time.
            self.armed = false;
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.armed = false;
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
