//! The RPC listener's life: bound with the backlog and address reuse a real node has, it
//! dies with the node (down, OOM) and comes back on the same port. What each accepted
//! connection gets is the node's `serve`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Node;

/// A real node listens with the system's backlog (Go asks for somaxconn, 4096 on current
/// kernels); std's 128 would make bursts of connects wait for a SYN retransmit, which
/// no CometBFT node does.
const BACKLOG: i32 = 4096;

/// Binds with `SO_REUSEADDR`, retrying while a just-closed listener on the same port is
/// still being torn down.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match listen(addr) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()))
}

fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Opens the RPC listener (no-op when already up) and records the bound address.
pub(crate) fn bring_up(node: &Arc<Node>) -> io::Result<SocketAddr> {
    let mut life = node.life.lock().unwrap_or_else(|p| p.into_inner());
    if life.kill.is_some() {
        return Ok(life.addr);
    }
    let std_listener = bind(life.addr)?;
    let addr = std_listener.local_addr()?;
    let listener = {
        let _enter = node.rt.enter();
        TcpListener::from_std(std_listener)?
    };
    let (kill, dead) = watch::channel(false);
    life.addr = addr;
    life.kill = Some(kill);
    life.accepting = Some(node.rt.spawn(accept_loop(node.clone(), listener, dead)));
    Ok(addr)
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener, mut dead: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = dead.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn((node.serve)(node.clone(), stream, dead.clone()));
            }
        }
    }
}

/// Runs `fut` until the node dies; dropping it closes the connection.
pub(crate) async fn until_dead<F: Future>(mut dead: watch::Receiver<bool>, fut: F) {
    if *dead.borrow() {
        return;
    }
    tokio::select! {
        _ = dead.changed() => {}
        _ = fut => {}
    }
}
