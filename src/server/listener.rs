//! The accept loop every port shares: it backs off when accepting fails, holds each
//! connection to the listener's caps, and drains on shutdown. The proxy and the ops
//! port differ only in their [`Policy`] and their [`Gate`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::pending::{PendingQueue, PendingTicket};

/// How many connections a listener keeps, and which caps it applies on accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Whether one address may hold only [`Gate::client_slot`]'s share of them.
    pub per_client: bool,
    /// Connections that have not sent a whole request head yet: past this many, the one
    /// that has waited longest is closed. `None`: no such cap.
    pub max_pending: Option<usize>,
}

/// What a listener asks of, and reports to, whoever it serves: the per-address cap
/// lives with the other per-client state, and the counts go to that side's metrics.
pub trait Gate: Send + Sync + 'static {
    /// Held for as long as the connection is open.
    type Slot: Send + 'static;
    /// One more connection from `peer`, or `None` past its cap.
    fn client_slot(&self, peer: IpAddr) -> Option<Self::Slot>;
    /// A connection was closed by a cap; `reason` names the cap.
    fn refused(&self, reason: &'static str);
    fn opened(&self);
    fn closed(&self);
}

/// Accepts connections on one socket under one [`Policy`].
pub(crate) struct Listener<G: Gate> {
    tcp: TcpListener,
    policy: Policy,
    gate: Arc<G>,
    slots: Arc<Semaphore>,
    pending: Option<Arc<PendingQueue>>,
    backoff: Backoff,
    /// Connections watch it to finish their request in flight and close; it is closed
    /// once every one of them has.
    drain: watch::Sender<bool>,
}

/// A connection that got past every cap.
pub(crate) struct Admitted<G: Gate> {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub lease: Lease<G>,
}

/// What an admitted connection holds until it closes: its places under the caps, its
/// open count, and the listener's drain signal.
pub struct Lease<G: Gate> {
    _slot: OwnedSemaphorePermit,
    _client: Option<G::Slot>,
    _open: Open<G>,
    pub(super) pending: Option<PendingTicket>,
    drain: watch::Receiver<bool>,
}

impl<G: Gate> Lease<G> {
    /// Completes once the listener stops: finish the request in flight, then close.
    pub(super) fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut drain = self.drain.clone();
        async move {
            // A listener gone without a word is stopping too.
            let _ = drain.wait_for(|stopping| *stopping).await;
        }
    }
}

/// Counts a connection open for as long as it is held, however its task ends.
struct Open<G: Gate>(Arc<G>);

impl<G: Gate> Drop for Open<G> {
    fn drop(&mut self) {
        self.0.closed();
    }
}

/// The connections a stopped listener left open, told to close.
#[must_use = "dropping it does not wait for the connections to close"]
pub(crate) struct Draining(watch::Sender<bool>);

impl Draining {
    /// Completes when the last connection has closed.
    pub(crate) async fn finished(self) {
        self.0.closed().await;
    }
}

impl<G: Gate> Listener<G> {
    pub(crate) fn new(tcp: TcpListener, policy: Policy, gate: Arc<G>) -> Listener<G> {
        Listener {
            tcp,
            policy,
            gate,
            slots: Arc::new(Semaphore::new(policy.max_connections)),
            pending: policy
                .max_pending
                .map(|cap| Arc::new(PendingQueue::new(cap))),
            backoff: Backoff::default(),
            drain: watch::channel(false).0,
        }
    }

    /// Accepts until `shutdown` completes, spawning `serve` on each admitted
    /// connection; then stops accepting and tells the connections to close.
    pub(crate) async fn serve_until<F, Fut>(mut self, shutdown: impl Future, serve: F) -> Draining
    where
        F: Fn(Admitted<G>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                admitted = self.accept() => {
                    tokio::spawn(serve(admitted));
                }
            }
        }
        self.stop()
    }

    /// The next connection within the caps; those past a cap are closed on the way.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn accept(&mut self) -> Admitted<G> {
        loop {
            let tcp = &self.tcp;
            let (stream, peer) = with_backoff(&mut self.backoff, || tcp.accept()).await;
            if let Some(admitted) = self.admit(stream, peer) {
                return admitted;
            }
        }
    }

    /// Closes the socket, so new clients are refused by the kernel rather than left in
    /// its backlog, and signals the open connections.
    pub(crate) fn stop(self) -> Draining {
        drop(self.tcp);
        self.drain.send_replace(true);
        Draining(self.drain)
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<Admitted<G>> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.gate.refused("max_connections");
            return None; // dropping the stream closes it
        };
        // One host may not hold every slot: past its own cap it is refused before any
        // read, while other clients still find room.
        let client = if self.policy.per_client {
            let Some(client) = self.gate.client_slot(peer.ip()) else {
                self.gate.refused("max_connections_per_client");
                return None;
            };
            Some(client)
        } else {
            None
        };
        // A full set of half-open connections makes room by closing the one that has
        // waited longest for its head: a slowloris client cannot lock out a real one,
        // which sends its head within milliseconds of connecting.
        let pending = self.pending.as_ref().map(|queue| {
            let (ticket, evicted) = queue.admit();
            if evicted {
                self.gate.refused("max_pending_connections");
            }
            ticket
        });
        let _ = stream.set_nodelay(true);
        self.gate.opened();
        Some(Admitted {
            stream,
            peer,
            lease: Lease {
                _slot: slot,
                _client: client,
                _open: Open(self.gate.clone()),
                pending,
                drain: self.drain.subscribe(),
            },
        })
    }
}

/// The wait after each failed accept. EMFILE and friends leave the socket readable,
/// so retrying at once would spin; doubling up to a second stops the spin without
/// leaving descriptors freed by closing connections unused for long.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }

    fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: Self::FIRST }
    }
}

/// Calls `accept` until it succeeds, waiting `backoff` between failures. It never
/// gives up: the connections already open are still served meanwhile.
async fn with_backoff<T, Fut>(backoff: &mut Backoff, mut accept: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                return accepted;
            }
            Err(error) => {
                let wait = backoff.failed();
                tracing::warn!(%error, ?wait, "accept failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
