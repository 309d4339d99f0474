//! What the listeners serve: an RPC connection (HTTP/1 with upgrades, cut by the node's
//! mid-body faults), and the control listener that never dies.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::control;
use crate::faults::{CutCtl, CutIo};
use crate::http;
use crate::listener::until_dead;
use crate::node::Node;

/// The node's `serve`: boxed, because the node holds it as a plain function pointer.
pub(crate) fn serve_rpc(
    node: Arc<Node>,
    stream: TcpStream,
    dead: watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_rpc_connection(node, stream, dead))
}

async fn serve_rpc_connection(node: Arc<Node>, stream: TcpStream, dead: watch::Receiver<bool>) {
    let cut = CutCtl::new();
    let io = TokioIo::new(CutIo::new(stream, cut.clone()));
    let svc_dead = dead.clone();
    let svc = service_fn(move |req| {
        let (node, cut, dead) = (node.clone(), cut.clone(), svc_dead.clone());
        async move { Ok::<_, Infallible>(http::handle(node, cut, dead, req).await) }
    });
    let conn = http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades();
    until_dead(dead, conn).await;
}

/// The control listener serves only `/_simnode/*` and stays up for the node's whole life.
pub(crate) async fn control_listener(
    node: Arc<Node>,
    addr: SocketAddr,
    stop: watch::Receiver<bool>,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut stop_accept = stop.clone();
        loop {
            tokio::select! {
                _ = stop_accept.changed() => return,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let node = node.clone();
                    let svc = service_fn(move |req| {
                        let node = node.clone();
                        async move { Ok::<_, Infallible>(control::handle(node, req, true).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::spawn(until_dead(stop.clone(), conn));
                }
            }
        }
    });
    Ok((bound, task))
}
