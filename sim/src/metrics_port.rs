//! The `metrics_listen` port, like a real node's `:26660`: `GET /metrics` and nothing
//! else. It lives and dies with the node (down, OOM) and comes back on the same port with
//! it, unless its own `Down` fault keeps it closed.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::faults::{Fault, MetricsFault};
use crate::listener::{bind, until_dead};
use crate::metrics;
use crate::node::Node;
use crate::response::respond;

/// Opens the metrics listener when one is configured, the node is alive and the
/// endpoint is not faulted down (no-op when already open). Returns its address.
pub(crate) fn bring_up(node: &Arc<Node>) -> io::Result<Option<SocketAddr>> {
    let alive = !node.mem.is_oom() && node.fault().0 != Fault::Down;
    let mut life = node.metrics.lock().unwrap_or_else(|p| p.into_inner());
    let Some(addr) = life.addr else {
        return Ok(None);
    };
    if life.kill.is_some() || !alive || node.metrics_fault() == MetricsFault::Down {
        return Ok(Some(addr));
    }
    let std_listener = bind(addr)?;
    let bound = std_listener.local_addr()?;
    let listener = {
        let _enter = node.rt.enter();
        TcpListener::from_std(std_listener)?
    };
    let (kill, dead) = watch::channel(false);
    life.addr = Some(bound);
    life.kill = Some(kill);
    node.rt.spawn(accept_loop(node.clone(), listener, dead));
    Ok(Some(bound))
}

/// Switches the endpoint's fault: `Down` closes the port, anything else reopens it.
pub(crate) fn apply(node: &Arc<Node>, fault: MetricsFault) -> io::Result<()> {
    node.set_metrics_fault(fault);
    if fault == MetricsFault::Down {
        node.close_metrics();
        return Ok(());
    }
    bring_up(node).map(|_| ())
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener, mut dead: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = dead.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let node = node.clone();
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let node = node.clone();
                    async move {
                        let found = req.method() == Method::GET && req.uri().path() == "/metrics";
                        Ok::<_, Infallible>(if found {
                            metrics::answer(&node)
                        } else {
                            respond(
                                StatusCode::NOT_FOUND,
                                Some("text/plain; charset=utf-8"),
                                b"404 page not found\n".to_vec(),
                            )
                        })
                    }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                tokio::spawn(until_dead(dead.clone(), conn));
            }
        }
    }
}
