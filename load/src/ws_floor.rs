//! The websocket floor: the least any fan-out must do, so that `ws-fanout` can say how
//! much of its delivery latency is the gateway's and how much is this machine's.
//!
//! One subscription at the node. Each client gets a plain socket and a task: the
//! handshake, its `subscribe` read for the id, then every node event written to it in one
//! `writev` of four slices (frame header, the node's bytes up to the id, the client's id,
//! the rest), with no copy of the event. No query parsing, no bounds, no metrics, no
//! pipeline: whatever a real gateway adds is above this line. It serves one query, the
//! one it is given, and is not a server anyone should run.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Message;

/// The floor's own subscription id at the node: found in each event to splice the
/// client's in.
const NODE_ID: &str = "ws-floor-subscription";
/// A handshake or a `subscribe` larger than this is not one of the bench's clients.
const MAX_HEAD: usize = 16 << 10;

/// An event split around the node's id: the client's id goes between.
type Event = Arc<(Bytes, Bytes)>;

pub async fn serve(listen: SocketAddr, node: SocketAddr, query: String) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let (events, _) = broadcast::channel::<Event>(64);
    let mut from_node = tokio::spawn(follow_node(node, query, events.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // Out of descriptors, say: that client is lost, the others are not.
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        eprintln!("ws-floor accept: {e}");
                        continue;
                    }
                };
                let rx = events.subscribe();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, rx).await {
                        eprintln!("ws-floor client: {e}");
                    }
                });
            }
            ended = &mut from_node => {
                return Err(format!("the node subscription ended: {ended:?}"));
            }
        }
    }
}

/// Holds the one node subscription and hands each event, split, to every client.
async fn follow_node(
    node: SocketAddr,
    query: String,
    events: broadcast::Sender<Event>,
) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{node}/websocket"))
        .await
        .map_err(|e| format!("node websocket: {e}"))?;
    let call = json!({"jsonrpc": "2.0", "id": NODE_ID, "method": "subscribe",
                      "params": {"query": query}});
    ws.send(Message::text(call.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let quoted = format!("\"{NODE_ID}\"");
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg.map_err(|e| e.to_string())? else {
            continue;
        };
        let frame = Bytes::copy_from_slice(text.as_bytes());
        // The subscribe's own `{}` answer carries no event.
        if !text.as_str().contains("\"events\"") {
            continue;
        }
        let Some(at) = text.as_str().find(&quoted) else {
            continue;
        };
        let split = Arc::new((frame.slice(..at), frame.slice(at + quoted.len()..)));
        let _ = events.send(split);
    }
    Err("the node closed its websocket".into())
}

async fn client(
    mut stream: TcpStream,
    mut events: broadcast::Receiver<Event>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let key = handshake(&mut stream, &mut buf).await?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    write(&mut stream, &[answer.as_bytes()]).await?;
    let call: Value = serde_json::from_slice(&read_frame(&mut stream, &mut buf).await?)
        .map_err(|e| format!("subscribe: {e}"))?;
    let id = Bytes::from(call["id"].to_string());
    let ok = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{}}}}",
        call["id"]
    );
    write(&mut stream, &[&header(ok.len()), ok.as_bytes()]).await?;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            // A fan-out would cancel this client; the floor must not look better by
            // skipping what it could not send.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                return Err(format!("fell {n} events behind"));
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        let (before, after) = (&event.0, &event.1);
        let head = header(before.len() + id.len() + after.len());
        write(&mut stream, &[&head, before, &id, after]).await?;
    }
}

/// Reads the upgrade request; its `Sec-WebSocket-Key`. What follows the head stays in
/// `buf`.
async fn handshake(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<String, String> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| "no Sec-WebSocket-Key".to_string())
}

/// One masked client frame's payload, unmasked.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    while buf.len() < 2 {
        fill(stream, buf).await?;
    }
    let (len, at) = match buf[1] & 0x7f {
        126 => (2, 4),
        127 => (8, 10),
        _ => (0, 2),
    };
    while buf.len() < at + 4 {
        fill(stream, buf).await?;
    }
    let payload = match len {
        0 => usize::from(buf[1] & 0x7f),
        _ => buf[2..at]
            .iter()
            .fold(0usize, |n, b| n << 8 | usize::from(*b)),
    };
    if payload > MAX_HEAD {
        return Err(format!("a frame of {payload} bytes"));
    }
    let start = at + 4;
    while buf.len() < start + payload {
        fill(stream, buf).await?;
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    let data = buf[start..start + payload]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    buf.drain(..start + payload);
    Ok(data)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    if buf.len() >= MAX_HEAD {
        return Err("too large".into());
    }
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("closed".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A final, unmasked text frame's header for `len` bytes.
fn header(len: usize) -> Vec<u8> {
    match len {
        0..=125 => vec![0x81, len as u8],
        126..=0xffff => vec![0x81, 126, (len >> 8) as u8, len as u8],
        _ => {
            let mut h = vec![0x81, 127];
            h.extend_from_slice(&(len as u64).to_be_bytes());
            h
        }
    }
}

/// Writes every slice, in as few `writev` calls as the socket takes.
async fn write(stream: &mut TcpStream, slices: &[&[u8]]) -> Result<(), String> {
    let mut owned: Vec<IoSlice> = slices.iter().map(|s| IoSlice::new(s)).collect();
    let mut left: &mut [IoSlice] = &mut owned;
    while !left.is_empty() {
        let n = stream
            .write_vectored(left)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        IoSlice::advance_slices(&mut left, n);
    }
    Ok(())
}
