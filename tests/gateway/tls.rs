//! Issue #16, part: a node reached over `https://` (a remote archive node, a provider),
//! trusted through the system's roots or `upstream.ca_file`. The node here is the
//! simulated one behind a TLS terminator with a certificate made by the test.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use cometgate::config::{Config, NodeConfig, WsMode};
use cometgate::gateway::Gateway;
use cometgate_sim::SimNodeConfig;

use crate::admission::ws::{next, subscribe, ws_from};
use crate::support::*;

/// A TLS terminator for whatever node `target` names once it is set; its certificate,
/// made here for `localhost`, is returned as PEM.
async fn tls_front(target: Arc<OnceLock<SocketAddr>>) -> (SocketAddr, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, target) = (acceptor.clone(), target.clone());
            tokio::spawn(async move {
                let (Ok(mut tls), Some(node)) = (acceptor.accept(tcp).await, target.get()) else {
                    return;
                };
                if let Ok(mut node) = TcpStream::connect(node).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut node).await;
                }
            });
        }
    });
    (addr, made.cert.pem())
}

/// Points the gateway at the node through the terminator, trusting `ca_file`.
fn through_tls(
    c: &mut Config,
    target: &OnceLock<SocketAddr>,
    front: SocketAddr,
    ca_file: Option<std::path::PathBuf>,
) {
    let node = c
        .upstream
        .url
        .authority()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    target.set(node).unwrap();
    c.upstream.url = format!("https://localhost:{}/", front.port())
        .parse()
        .unwrap();
    c.upstream.ca_file = ca_file;
}

fn ca_file(pem: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(pem)
}

/// A file removed when dropped, in the system's temporary directory.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn with(text: &str) -> TempPath {
            let n = std::process::id() as u64 * 1_000_003
                + std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos() as u64;
            let path = std::env::temp_dir().join(format!("cometgate-ca-{n}.pem"));
            std::fs::write(&path, text).unwrap();
            TempPath(path)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[tokio::test]
async fn a_node_over_https_is_served_polled_and_fanned_out_with_its_ca_file() {
    over_https(WsMode::Fanout).await;
}

#[tokio::test]
async fn a_node_over_https_is_followed_and_relayed_over_wss() {
    over_https(WsMode::Relay).await;
}

async fn over_https(mode: WsMode) {
    let target = Arc::new(OnceLock::new());
    let (front, pem) = tls_front(target.clone()).await;
    let ca = ca_file(&pem);
    let path = ca.0.clone();
    // The harness waits for the head: it is polled, and followed, over TLS.
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        through_tls(c, &target, front, Some(path));
        c.websocket.mode = mode;
    })
    .await;
    let v = h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"2"}}"#)
        .await
        .json();
    assert_eq!(v["result"]["block"]["header"]["height"], "2", "{v}");
    assert_eq!(
        h.node.requests_for("block"),
        1,
        "asked through the terminator"
    );

    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    crate::admission::ws::send(&mut a, subscribe(1, "tm.event='NewBlock'")).await;
    assert_eq!(next(&mut a).await.unwrap()["result"], json!({}));
    let produced = h.advance_block().await;
    let event = next(&mut a).await.unwrap();
    assert_eq!(
        event["result"]["data"]["value"]["block"]["header"]["height"],
        produced.to_string()
    );
    // Fanout: the hub's one connection; relay: the head's and the client's relay.
    let expected = if mode == WsMode::Fanout { 1 } else { 2 };
    assert_eq!(h.node.stats().ws_connections, expected, "over wss");
}

#[tokio::test]
async fn a_node_whose_certificate_nobody_vouches_for_is_not_talked_to() {
    let target = Arc::new(OnceLock::new());
    let (front, _pem) = tls_front(target.clone()).await;
    let node = frozen_node(SimNodeConfig::default()).await;
    let mut config = Config::default();
    config.upstream.url = node.url().parse().unwrap();
    config.metrics.listen = None;
    through_tls(&mut config, &target, front, None);
    let addr = serve(Gateway::new(config)).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"2"}}"#;
    let reply = send(
        &http,
        http::Method::POST,
        &format!("http://{addr}/"),
        bytes::Bytes::from_static(body.as_bytes()),
        &[],
    )
    .await
    .json();
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    assert_eq!(node.requests_for("block"), 0, "never reached the node");
}

/// `[[upstream.nodes]]`: a local node over plain http and a remote one over https with
/// its own `ca_file`; with the local one down, the remote one answers everything.
#[tokio::test]
async fn a_remote_node_in_the_pool_is_reached_over_https_with_its_own_ca_file() {
    let target = Arc::new(OnceLock::new());
    let (front, pem) = tls_front(target.clone()).await;
    let ca = ca_file(&pem);
    let path = ca.0.clone();
    let remote = frozen_node(SimNodeConfig::default()).await;
    target.set(remote.addr()).unwrap();
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        let local = NodeConfig::new(c.upstream.url.clone());
        let remote = NodeConfig {
            ca_file: Some(path),
            ..NodeConfig::new(
                format!("https://localhost:{}/", front.port())
                    .parse()
                    .unwrap(),
            )
        };
        c.upstream.nodes = vec![local, remote];
        c.cache.enabled = false;
    })
    .await;
    h.node.set_fault(cometgate_sim::Fault::Down);
    for height in 1..=5 {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"block","params":{{"height":"{height}"}}}}"#
        );
        let v = h.post(&body).await.json();
        assert_eq!(
            v["result"]["block"]["header"]["height"],
            height.to_string(),
            "{v}"
        );
    }
    assert_eq!(remote.requests_for("block"), 5, "asked over https");
}
