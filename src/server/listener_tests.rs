use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use futures_util::FutureExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::time::Instant;

use super::*;
use crate::server::pending::HeadWait;

/// Records what the listener reports; each address may hold `per_client` slots.
#[derive(Default)]
struct Tally {
    per_client: usize,
    refused: Mutex<Vec<&'static str>>,
    open: AtomicIsize,
    held: Mutex<HashMap<IpAddr, Arc<()>>>,
}

impl Tally {
    fn capping(per_client: usize) -> Arc<Tally> {
        Arc::new(Tally {
            per_client,
            ..Tally::default()
        })
    }

    fn refused(&self) -> Vec<&'static str> {
        self.refused.lock().unwrap().clone()
    }
}

impl Gate for Tally {
    type Slot = Arc<()>;

    fn client_slot(&self, peer: IpAddr) -> Option<Arc<()>> {
        let mut held = self.held.lock().unwrap();
        let slot = held.entry(peer).or_default();
        // The map holds one reference itself.
        (Arc::strong_count(slot) - 1 < self.per_client).then(|| slot.clone())
    }

    fn refused(&self, reason: &'static str) {
        self.refused.lock().unwrap().push(reason);
    }

    fn opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

const PLAIN: Policy = Policy {
    max_connections: 2,
    per_client: false,
    max_pending: None,
};

async fn listening(policy: Policy, gate: &Arc<Tally>) -> (Listener<Tally>, SocketAddr) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    (Listener::new(tcp, policy, gate.clone()), addr)
}

/// A client connection from `ip` (any 127.0.0.x).
async fn connect_from(addr: SocketAddr, ip: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the listener closed the client's connection without a byte.
async fn closed_by_server(client: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Accepts whatever is waiting, for as long as it keeps coming; None once it stops.
async fn accept_soon(listener: &mut Listener<Tally>) -> Option<Admitted<Tally>> {
    tokio::time::timeout(Duration::from_millis(200), listener.accept())
        .await
        .ok()
}

#[test]
fn the_wait_doubles_up_to_a_second_and_starts_over_after_a_success() {
    let mut backoff = Backoff::default();
    let waits: Vec<u64> = (0..9)
        .map(|_| backoff.failed().as_millis() as u64)
        .collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    backoff.succeeded();
    assert_eq!(backoff.failed(), Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn failed_accepts_are_retried_after_the_backoff_and_never_given_up() {
    let mut backoff = Backoff::default();
    let mut failures = 3;
    let started = Instant::now();
    let accepted = with_backoff(&mut backoff, || {
        let result = if failures > 0 {
            failures -= 1;
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        } else {
            Ok("socket")
        };
        async move { result }
    })
    .await;
    assert_eq!(accepted, "socket");
    assert_eq!(started.elapsed(), Duration::from_millis(10 + 20 + 40));

    let mut failed_once = false;
    let started = Instant::now();
    with_backoff(&mut backoff, || {
        let result = if failed_once {
            Ok(())
        } else {
            failed_once = true;
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        };
        async move { result }
    })
    .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(10),
        "a success starts the wait over"
    );
}

#[tokio::test]
async fn past_max_connections_a_new_connection_is_closed_at_accept() {
    let gate = Tally::capping(usize::MAX);
    let (mut listener, addr) = listening(PLAIN, &gate).await;
    let _a = connect_from(addr, "127.0.0.1").await;
    let _b = connect_from(addr, "127.0.0.1").await;
    let mut over = connect_from(addr, "127.0.0.1").await;
    let first = listener.accept().await;
    let _second = listener.accept().await;
    assert!(accept_soon(&mut listener).await.is_none());
    assert!(closed_by_server(&mut over).await);
    assert_eq!(gate.refused(), ["max_connections"]);
    assert_eq!(gate.open.load(Ordering::SeqCst), 2);

    drop(first);
    assert_eq!(gate.open.load(Ordering::SeqCst), 1);
    let _c = connect_from(addr, "127.0.0.1").await;
    assert!(accept_soon(&mut listener).await.is_some(), "a freed slot");
}

#[tokio::test]
async fn one_address_is_capped_only_where_the_policy_says_so() {
    let gate = Tally::capping(1);
    let per_client = Policy {
        per_client: true,
        ..PLAIN
    };
    let (mut capped, addr) = listening(per_client, &gate).await;
    let _a = connect_from(addr, "127.0.0.1").await;
    let mut again = connect_from(addr, "127.0.0.1").await;
    let _other = connect_from(addr, "127.0.0.2").await;
    let first = capped.accept().await;
    let other = capped.accept().await;
    assert_eq!(other.peer.ip().to_string(), "127.0.0.2");
    assert!(closed_by_server(&mut again).await);
    assert_eq!(gate.refused(), ["max_connections_per_client"]);
    drop(first);

    let (mut uncapped, addr) = listening(PLAIN, &gate).await;
    let _a = connect_from(addr, "127.0.0.1").await;
    let _b = connect_from(addr, "127.0.0.1").await;
    assert!(accept_soon(&mut uncapped).await.is_some());
    assert!(accept_soon(&mut uncapped).await.is_some());
    assert_eq!(gate.refused().len(), 1, "no per-address cap asked");
}

#[tokio::test]
async fn a_full_pending_set_evicts_the_connection_waiting_longest() {
    let gate = Tally::capping(usize::MAX);
    let evicting = Policy {
        max_pending: Some(1),
        ..PLAIN
    };
    let (mut listener, addr) = listening(evicting, &gate).await;
    let _a = connect_from(addr, "127.0.0.1").await;
    let _b = connect_from(addr, "127.0.0.1").await;
    let mut oldest = listener.accept().await;
    let mut newest = listener.accept().await;
    assert_eq!(gate.refused(), ["max_pending_connections"]);
    let oldest = HeadWait::new(oldest.lease.pending.take());
    assert!(oldest.evicted().now_or_never().is_some());
    let newest = HeadWait::new(newest.lease.pending.take());
    assert!(newest.evicted().now_or_never().is_none());

    let (mut plain, addr) = listening(PLAIN, &gate).await;
    let _c = connect_from(addr, "127.0.0.1").await;
    let _d = connect_from(addr, "127.0.0.1").await;
    let mut first = accept_soon(&mut plain).await.unwrap();
    assert!(accept_soon(&mut plain).await.is_some());
    assert!(first.lease.pending.take().is_none(), "nothing is pending");
    assert_eq!(gate.refused().len(), 1);
}

#[tokio::test]
async fn the_ops_policy_refuses_the_65th_connection_and_caps_no_address() {
    let gate = Tally::capping(1);
    let (mut listener, addr) = listening(crate::ops::POLICY, &gate).await;
    let mut clients = Vec::new();
    let mut admitted = Vec::new();
    for _ in 0..64 {
        clients.push(connect_from(addr, "127.0.0.1").await);
        admitted.push(listener.accept().await);
    }
    let mut over = connect_from(addr, "127.0.0.1").await;
    assert!(accept_soon(&mut listener).await.is_none());
    assert!(closed_by_server(&mut over).await);
    assert_eq!(gate.refused(), ["max_connections"]);
    assert!(admitted.iter_mut().all(|a| a.lease.pending.is_none()));
}

#[tokio::test]
async fn stopping_closes_the_socket_and_waits_for_every_connection() {
    let gate = Tally::capping(usize::MAX);
    let (mut listener, addr) = listening(PLAIN, &gate).await;
    let _client = connect_from(addr, "127.0.0.1").await;
    let open = listener.accept().await;
    let draining = open.lease.draining();
    assert!(draining.now_or_never().is_none(), "not before the stop");

    let stopped = listener.stop();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    assert!(open.lease.draining().now_or_never().is_some());
    let mut finished = std::pin::pin!(stopped.finished());
    assert!(
        (&mut finished).now_or_never().is_none(),
        "one is still open"
    );
    drop(open);
    tokio::time::timeout(Duration::from_secs(5), finished)
        .await
        .expect("finished once the last connection closed");
    assert_eq!(gate.open.load(Ordering::SeqCst), 0);
}
