//! Slow and greedy clients (issue #8): slowloris, slow bodies, slow readers of big
//! answers, and the connection cap, over raw TCP so nothing on the client side helps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cometgate_sim::SimNodeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// One request on a fresh connection (`Connection: close`); the whole answer as text.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    read_to_close(&mut s).await
}

/// Everything until the peer closes (or resets) the connection.
pub async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the gateway neither answered nor closed"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn post_request(body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const STATUS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn a_normal_client_is_served_while_300_connections_dribble_headers() {
    // The shipped defaults (the harness raises the pending cap; put it back):
    // max_pending_connections = 256, header_read_timeout = 10s.
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server = cometgate::config::ServerConfig {
            listen: c.server.listen,
            ..Default::default()
        };
    })
    .await;
    assert_eq!(h.gateway.config().server.max_pending_connections, 256);
    let mut dribblers = Vec::new();
    for i in 0..300 {
        // From four addresses: one would meet server.max_connections_per_client first.
        let socket = TcpSocket::new_v4().expect("socket");
        let ip = format!("127.0.0.{}:0", 10 + i % 4);
        socket.bind(ip.parse().unwrap()).expect("bind");
        let mut s = socket.connect(h.addr).await.expect("connect");
        s.write_all(b"POST / HTTP/1.1\r\nHost: gw\r\n")
            .await
            .expect("write");
        dribblers.push(s);
    }
    let dribbling = tokio::spawn(async move {
        // A header byte now and then: never a whole head.
        for round in 0..40 {
            for s in dribblers.iter_mut() {
                let _ = s.write_all(if round % 2 == 0 { b"X" } else { b"-" }).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        dribblers
    });
    for _ in 0..5 {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().unwrap()).expect("bind");
        let mut normal = socket.connect(h.addr).await.expect("connect");
        normal
            .write_all(&post_request(STATUS))
            .await
            .expect("write");
        let answer = read_to_close(&mut normal).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""latest_block_height""#), "{answer}");
    }
    let evicted = h
        .metric(
            "cometgate_connections_refused_total",
            &[r#"reason="max_pending_connections""#],
        )
        .await;
    eprintln!(
        "slowloris: 300 dribblers, normal client served; {evicted} half-open connections evicted"
    );
    assert!(evicted >= 44.0, "only {evicted} evictions");
    drop(dribbling.await);
}

#[tokio::test]
async fn a_dribbled_head_hits_the_header_read_timeout() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\n").await.expect("write");
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < DEADLINE {
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "a dribbling client kept its connection");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed early: {took:?}");
}

#[tokio::test]
async fn a_slow_body_hits_the_body_read_timeout() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 200\r\n\r\n{\"jsonrpc\":")
        .await
        .expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    crate::faults::assert_rpc_error(&v);
    assert!(v["error"]["data"]
        .as_str()
        .unwrap()
        .contains("server.body_read_timeout"));
}

#[tokio::test]
async fn slow_readers_of_a_big_answer_hit_the_write_timeout_and_share_its_bytes() {
    const READERS: usize = 20;
    let h = spawn_gateway_with(
        SimNodeConfig {
            genesis_bytes: 8_000_000,
            ..SimNodeConfig::default()
        },
        |c| {
            c.server.write_timeout = Duration::from_secs(1);
        },
    )
    .await;
    let request = post_request(r#"{"jsonrpc":"2.0","id":1,"method":"genesis"}"#);
    // One whole read caches the answer: every slow reader is then served from the cache.
    let whole = raw_exchange(h.addr, &request).await;
    assert!(whole.starts_with("HTTP/1.1 200"), "{}", &whole[..200]);
    let size = whole.len();
    assert!(size > 7_000_000, "genesis is only {size} bytes");
    let hh = &h;
    eventually("the connection closed", || async move {
        hh.metric("cometgate_connections_open", &[]).await == 0.0
    })
    .await;

    let rss_before = resident_bytes();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut s = socket.connect(h.addr).await.expect("connect");
        s.write_all(&request).await.expect("write");
        readers.push(s); // and never read
    }
    eventually("all slow readers are open", || async move {
        hh.metric("cometgate_connections_open", &[]).await >= READERS as f64
    })
    .await;
    let rss_peak = resident_bytes();
    let started = Instant::now();
    eventually(
        "the write timeout closes every slow reader",
        || async move { hh.metric("cometgate_connections_open", &[]).await == 0.0 },
    )
    .await;
    let took = started.elapsed();
    for mut s in readers {
        let got = read_to_close(&mut s).await;
        assert!(got.len() < size, "a slow reader got the whole answer");
    }
    let growth = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "slow readers: {READERS} x {size} B answer; RSS {} MiB -> {} MiB (+{} KiB); closed after {took:?}",
        rss_before >> 20,
        rss_peak >> 20,
        growth >> 10
    );
    // A copy per reader would be READERS x size; the readers share the cached bytes.
    assert!(
        growth < (size as u64) * 3,
        "RSS grew {growth} B for {READERS} slow readers of {size} B"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_refused() {
    const CAP: usize = 8;
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server.max_connections = CAP;
        c.server.max_pending_connections = CAP;
    })
    .await;
    // CAP keep-alive connections, each having had an answer.
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(held_connection(h.addr, "127.0.0.1").await);
    }
    let refused = raw_exchange(h.addr, &post_request(STATUS)).await;
    assert_eq!(refused, "", "a connection over the cap was served");
    assert_eq!(
        h.metric(
            "cometgate_connections_refused_total",
            &[r#"reason="max_connections""#]
        )
        .await,
        1.0
    );
    drop(held.pop());
    let addr = h.addr;
    eventually("a freed slot serves a new connection", || async move {
        raw_exchange(addr, &post_request(STATUS))
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
}

/// A connection from `ip` (any 127.0.0.x) that has had one answer and stays open.
async fn held_connection(addr: SocketAddr, ip: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{ip}:0").parse().unwrap())
        .expect("bind");
    let mut s = socket.connect(addr).await.expect("connect");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{STATUS}",
        STATUS.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    s
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection_slot() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server.max_connections_per_client = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(held_connection(h.addr, "127.0.0.1").await);
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut fourth = socket.connect(h.addr).await.expect("connect");
    fourth.write_all(&post_request(STATUS)).await.ok();
    assert_eq!(
        read_to_close(&mut fourth).await,
        "",
        "a fourth from one address was served"
    );
    assert_eq!(
        h.metric(
            "cometgate_connections_refused_total",
            &[r#"reason="max_connections_per_client""#]
        )
        .await,
        1.0
    );
    // Another address is served meanwhile, and a freed slot serves the first again.
    drop(held_connection(h.addr, "127.0.0.2").await);
    drop(held.pop());
    let addr = h.addr;
    eventually("a freed slot serves the address again", || async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(addr).await.expect("connect");
        s.write_all(&post_request(STATUS)).await.ok();
        read_to_close(&mut s).await.starts_with("HTTP/1.1 200")
    })
    .await;
}

#[tokio::test]
async fn an_answer_not_yet_read_still_counts_against_its_clients_concurrency() {
    let h = spawn_gateway_with(
        SimNodeConfig {
            genesis_bytes: 4_000_000,
            ..SimNodeConfig::default()
        },
        |c| {
            c.rate_limit.max_concurrent_per_client = 2;
            c.server.write_timeout = Duration::from_secs(60);
        },
    )
    .await;
    let request = post_request(r#"{"jsonrpc":"2.0","id":1,"method":"genesis"}"#);
    let mut readers = Vec::new();
    for _ in 0..2 {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut s = socket.connect(h.addr).await.expect("connect");
        s.write_all(&request).await.expect("write");
        readers.push(s); // and never read
    }
    let hh = &h;
    eventually("both big answers are being written", || async move {
        hh.metric("cometgate_connections_open", &[]).await >= 2.0
            && hh
                .post(r#"{"jsonrpc":"2.0","id":2,"method":"health"}"#)
                .await
                .status
                == 429
    })
    .await;
    drop(readers);
    eventually(
        "the client is served again once they are gone",
        || async move {
            hh.post(r#"{"jsonrpc":"2.0","id":3,"method":"health"}"#)
                .await
                .status
                == 200
        },
    )
    .await;
}
