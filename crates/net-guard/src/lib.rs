//! TCP listeners that cannot be starved. A miner's local APIs and the agent's dashboard listen on
//! farm networks where anyone with a cable can connect; without bounds, a thousand half-open
//! requests hold a thousand file descriptors until the process hits its limit, and then the
//! listener — and, in the agent, the embedded MQTT broker sharing the process — takes no one.
//!
//! [`GuardedListener`] accepts with three bounds:
//! - **connections in all and per peer address**: one over either is closed at once (the kernel's
//!   backlog is kept drained, and one host cannot take every slot);
//! - **idle time per connection**: a connection that moves no byte either way for `idle` is
//!   closed — a half-open request, a client gone silent. A live event stream is not idle: its
//!   server sends keep-alives;
//! - **accept errors** (EMFILE: out of file descriptors) back off a second and are logged at most
//!   every ten seconds, with the count of those not logged.
//!
//! It serves `axum::serve` directly ([`axum::serve::Listener`]) and any accept loop of one's own
//! ([`GuardedListener::accept`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tracing::warn;

/// How long an accept error (out of file descriptors, most likely) holds the listener back.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// The least time between two log lines of the same kind from one listener.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_peer: usize,
    pub idle: Duration,
}

/// Logs a kind of event at most every [`LOG_EVERY`], saying how many went unlogged meanwhile:
/// a flood of refusals is counted, not written out one line each.
#[derive(Debug, Default, Clone)]
pub struct Throttle {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// `Some(count not logged since the last line)` when this one may be logged.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Who holds the connections open now.
#[derive(Debug, Default)]
struct Occupancy {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// A TCP listener with [`Limits`].
#[derive(Debug)]
pub struct GuardedListener {
    inner: TcpListener,
    limits: Limits,
    /// What it serves, for its log lines ("HTTP API", "cgminer API", …).
    name: &'static str,
    occupancy: Arc<Mutex<Occupancy>>,
    refused_log: Throttle,
    error_log: Throttle,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, limits: Limits, name: &'static str) -> Self {
        Self {
            inner,
            limits,
            name,
            occupancy: Arc::default(),
            refused_log: Throttle::default(),
            error_log: Throttle::default(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.occupancy.lock().map_or(0, |o| o.total)
    }

    /// The next connection within the limits; those over them are closed as they come.
    pub async fn accept(&mut self) -> (Guarded<TcpStream>, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    if let Some(slot) = self.take_slot(peer.ip()) {
                        return (Guarded::new(stream, self.limits.idle, slot), peer);
                    }
                    // Dropped here: closed before it costs more than its descriptor's moment.
                    drop(stream);
                    if let Some(unlogged) = self.refused_log.admit(Instant::now()) {
                        warn!(
                            listener = self.name,
                            %peer,
                            open = self.open(),
                            max = self.limits.max_connections,
                            per_peer = self.limits.max_per_peer,
                            unlogged,
                            "connection refused: over the listener's limits"
                        );
                    }
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    if let Some(unlogged) = self.error_log.admit(Instant::now()) {
                        warn!(listener = self.name, error = %e, unlogged, "accept failed; backing off");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    fn take_slot(&self, peer: IpAddr) -> Option<Slot> {
        let mut occupancy = self.occupancy.lock().ok()?;
        let of_peer = occupancy.by_peer.get(&peer).copied().unwrap_or(0);
        if occupancy.total >= self.limits.max_connections || of_peer >= self.limits.max_per_peer {
            return None;
        }
        occupancy.total += 1;
        occupancy.by_peer.insert(peer, of_peer + 1);
        Some(Slot {
            occupancy: Arc::clone(&self.occupancy),
            peer,
        })
    }
}

/// A connection off the listener, a peer's aborted connect among them: nothing to do.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded<TcpStream>;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        GuardedListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        GuardedListener::local_addr(self)
    }
}

/// One connection's place within the limits, given back when the connection is dropped.
#[derive(Debug)]
struct Slot {
    occupancy: Arc<Mutex<Occupancy>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut occupancy) = self.occupancy.lock() {
            occupancy.total = occupancy.total.saturating_sub(1);
            if let Some(count) = occupancy.by_peer.get_mut(&self.peer) {
                *count -= 1;
                if *count == 0 {
                    occupancy.by_peer.remove(&self.peer);
                }
            }
        }
    }
}

/// A connection closed after `idle` without a byte moving either way.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl<S> Guarded<S> {
    fn new(inner: S, idle: Duration, slot: Slot) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _slot: slot,
        }
    }

    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// `Pending` from the stream: an error once the idle time is up (and the task woken then).
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check_idle(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
