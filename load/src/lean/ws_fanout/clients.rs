//! The subscribers: clients through the gateway, each on a websocket of its own, and one
//! reference subscriber straight on the node whose receipt of each block stands for the
//! instant the node sent it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frames::{height, Expect};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One subscriber: where it connects, the id and query it subscribes with.
#[derive(Clone, Debug)]
pub struct Spec {
    pub url: String,
    pub id: Value,
    pub query: String,
    /// Keep every frame's bytes (a few sampled clients), to compare with the node's.
    pub keep_frames: bool,
}

impl Spec {
    pub fn expect(&self) -> Expect {
        Expect::new(&self.id, &self.query)
    }
}

/// When the clients stop reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// Once this height has come (or at `Now`).
    Until(u64),
    Now,
}

/// What one client saw after its subscription was answered.
#[derive(Debug, Default)]
pub struct Seen {
    /// Each event's height and the instant its frame was read, in arrival order.
    pub blocks: Vec<(u64, Instant)>,
    pub bad_id: u64,
    pub bad_query: u64,
    /// Frames with no height: not events (an error, an answer nobody asked for).
    pub no_height: u64,
    /// Why the connection ended before the client stopped, if it did.
    pub closed: Option<String>,
    /// The first frame that failed a check, cut short.
    pub first_bad: Option<String>,
    /// Every frame, for `keep_frames` clients only.
    pub frames: Vec<(u64, Bytes)>,
}

/// Each client's read buffer is allocated up front: tungstenite's 128 KiB default would
/// be 1.3 GB over 10,000 clients, for frames of 10 KB.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .write_buffer_size(0)
}

/// Connects and subscribes; resolves once the subscription's `{}` answer came.
pub async fn subscribe(spec: &Spec) -> Result<Ws, String> {
    let dial = tokio_tungstenite::connect_async_with_config(&spec.url, Some(config()), true);
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let call = json!({"jsonrpc": "2.0", "id": spec.id, "method": "subscribe",
                      "params": {"query": spec.query}});
    ws.send(Message::text(call.to_string()))
        .await
        .map_err(|e| format!("sending subscribe: {e}"))?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, next_text(&mut ws))
        .await
        .map_err(|_| "no answer to subscribe".to_string())??;
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| format!("subscribe answer is not JSON ({e}): {}", cut(&answer)))?;
    if v["id"] != spec.id || v["result"] != json!({}) {
        return Err(format!("subscribe answered {}", cut(&answer)));
    }
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
            None => return Err("closed".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(_)) => {}
        }
    }
}

fn cut(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Reads events until `stop` says so, checking each frame's id and query and noting its
/// height; nothing is parsed.
pub async fn follow(mut ws: Ws, spec: &Spec, mut stop: watch::Receiver<Stop>) -> Seen {
    let expect = spec.expect();
    let mut seen = Seen {
        blocks: Vec::with_capacity(64),
        ..Seen::default()
    };
    loop {
        tokio::select! {
            msg = ws.next() => {
                let at = Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        seen.closed = Some(format!("closed by the gateway: {c:?}"));
                        break;
                    }
                    None => {
                        seen.closed = Some("connection ended".into());
                        break;
                    }
                    Some(Err(e)) => {
                        seen.closed = Some(e.to_string());
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                let frame = text.as_bytes();
                if let Some(h) = note(&mut seen, &expect, frame, at) {
                    if spec.keep_frames {
                        seen.frames.push((h, Bytes::copy_from_slice(frame)));
                    }
                    if matches!(*stop.borrow(), Stop::Until(end) if h >= end) {
                        break;
                    }
                }
            }
            changed = stop.changed() => {
                let last = seen.blocks.last().map_or(0, |b| b.0);
                match (changed, *stop.borrow()) {
                    (Err(_), _) | (_, Stop::Now) => break,
                    (_, Stop::Until(end)) if last >= end => break,
                    _ => {}
                }
            }
        }
    }
    seen
}

/// Checks one frame and records its height; `None` when it has none.
fn note(seen: &mut Seen, expect: &Expect, frame: &[u8], at: Instant) -> Option<u64> {
    let (id_ok, query_ok) = expect.matches(frame);
    seen.bad_id += u64::from(!id_ok);
    seen.bad_query += u64::from(!query_ok);
    let h = height(frame);
    seen.no_height += u64::from(h.is_none());
    if (!id_ok || !query_ok || h.is_none()) && seen.first_bad.is_none() {
        seen.first_bad = Some(cut(&String::from_utf8_lossy(frame)));
    }
    let h = h?;
    seen.blocks.push((h, at));
    Some(h)
}

/// The subscriber straight on the node, on a thread and runtime of its own so that its
/// receipt instants are not held up behind thousands of client tasks.
pub struct Reference {
    pub spec: Spec,
    latest: Arc<AtomicU64>,
    stop: watch::Sender<Stop>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Reference {
    /// Starts it and waits for its subscription to be answered.
    pub async fn start(spec: Spec) -> Result<Reference, String> {
        let latest = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(Stop::Run);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (s, l) = (spec.clone(), latest.clone());
        let thread = std::thread::Builder::new()
            .name("ws-reference".into())
            .spawn(move || reference_thread(s, l, stopped, ready_tx))
            .map_err(|e| e.to_string())?;
        ready
            .await
            .map_err(|_| "the reference thread ended".to_string())?
            .map_err(|e| format!("reference subscriber on the node: {e}"))?;
        Ok(Reference {
            spec,
            latest,
            stop,
            thread,
        })
    }

    /// The last height it received.
    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// Resolves once block `h` has reached it; fails after `within`.
    pub async fn wait_for(&self, h: u64, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.latest() < h {
            if Instant::now() > deadline {
                return Err(format!(
                    "the node's block {h} did not come within {within:?} (last {})",
                    self.latest()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops it; what it saw, every frame kept.
    pub fn finish(self) -> Result<Seen, String> {
        let _ = self.stop.send(Stop::Now);
        self.thread
            .join()
            .map_err(|_| "the reference thread panicked".to_string())
    }
}

fn reference_thread(
    spec: Spec,
    latest: Arc<AtomicU64>,
    mut stop: watch::Receiver<Stop>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) -> Seen {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Seen::default();
        }
    };
    rt.block_on(async move {
        let mut ws = match subscribe(&spec).await {
            Ok(ws) => ws,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Seen::default();
            }
        };
        let _ = ready.send(Ok(()));
        let expect = spec.expect();
        let mut seen = Seen::default();
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let at = Instant::now();
                    let Some(Ok(msg)) = msg else {
                        seen.closed = Some("the node closed the reference".into());
                        return seen;
                    };
                    let Message::Text(text) = msg else { continue };
                    if let Some(h) = note(&mut seen, &expect, text.as_bytes(), at) {
                        seen.frames.push((h, Bytes::copy_from_slice(text.as_bytes())));
                        latest.fetch_max(h, Ordering::AcqRel);
                    }
                }
                _ = stop.changed() => return seen,
            }
        }
    })
}
