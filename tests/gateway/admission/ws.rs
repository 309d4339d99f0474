//! Issue #4's acceptance, part four: the WebSocket is no way around admission. Denied
//! methods stay denied, and connections, subscriptions, message size and message rate
//! are capped.

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use cometgate::config::{ByteSize, Config};
use cometgate_sim::SimNodeConfig;

use crate::support::*;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// A websocket to the gateway from `ip` (any 127.0.0.x).
pub(crate) async fn ws_from(h: &Harness, ip: &str) -> Result<Ws, WsError> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(h.addr).await.unwrap();
    let url = format!("ws://{}/websocket", h.addr);
    tokio_tungstenite::client_async(url, tcp)
        .await
        .map(|(ws, _)| ws)
}

pub(crate) async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next text message, or `None` when the gateway closes the connection.
pub(crate) async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The close frame the gateway sends, past any messages before it; fails the test if the
/// connection ends without one.
pub(crate) async fn close_frame<S>(ws: &mut S) -> Option<CloseFrame>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("the gateway closes the websocket in time")
        {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

pub(crate) fn call(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub(crate) fn subscribe(id: u64, query: &str) -> Value {
    call(id, "subscribe", json!({"query": query}))
}

/// The head follows by polling, so the node's `subscribe` count is the clients' alone.
async fn gateway(tweak: impl FnOnce(&mut Config)) -> Harness {
    spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.head.websocket = false;
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn denied_methods_are_refused_over_the_websocket_and_never_reach_the_node() {
    let h = gateway(|_| {}).await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    let denied = [
        ("dial_seeds", json!({"seeds": ["a@1.2.3.4:26656"]})),
        (
            "dial_peers",
            json!({"peers": ["a@1.2.3.4:26656"], "persistent": true}),
        ),
        ("unsafe_flush_mempool", json!({})),
        ("broadcast_evidence", json!({"evidence": "AA=="})),
        ("dump_consensus_state", json!({})),
    ];
    for (i, (method, params)) in denied.into_iter().enumerate() {
        send(&mut ws, call(i as u64, method, params)).await;
        let v = next(&mut ws).await.expect("an answer");
        assert_eq!(v["id"], i, "{v}");
        assert_eq!(v["error"]["code"], -32601, "{method}: {v}");
        assert_eq!(h.node.requests_for(method), 0, "{method} reached the node");
    }
}

#[tokio::test]
async fn a_client_may_hold_only_max_connections_per_client_websockets() {
    let h = gateway(|c| c.websocket.max_connections_per_client = 2).await;
    let mut first = ws_from(&h, "127.0.0.1").await.expect("first");
    let _second = ws_from(&h, "127.0.0.1").await.expect("second");
    match ws_from(&h, "127.0.0.1").await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], -32000, "{body}");
            let data = body["error"]["data"].as_str().unwrap();
            assert!(
                data.contains("websocket.max_connections_per_client = 2"),
                "{data}"
            );
        }
        other => panic!("a third websocket was not refused: {other:?}"),
    }
    ws_from(&h, "127.0.0.2")
        .await
        .expect("another client is unaffected");
    first.close(None).await.unwrap();
    while next(&mut first).await.is_some() {}
    let gw = h.gateway.clone();
    eventually("the closed connection's slot is given back", || {
        let open = gw.admission().snapshot().ws_connections;
        async move { open == 1 }
    })
    .await;
    ws_from(&h, "127.0.0.1").await.expect("a slot came back");
}

#[tokio::test]
async fn a_connection_may_hold_only_max_subscriptions_per_connection() {
    let h = gateway(|c| c.websocket.max_subscriptions_per_connection = 2).await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    for (id, query) in [(1, "tm.event='NewBlock'"), (2, "tm.event='Tx'")] {
        send(&mut ws, subscribe(id, query)).await;
        assert_eq!(next(&mut ws).await.unwrap()["result"], json!({}));
    }
    send(&mut ws, subscribe(3, "tm.event='NewBlockHeader'")).await;
    let v = next(&mut ws).await.unwrap();
    assert_eq!(v["id"], 3);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let data = v["error"]["data"].as_str().unwrap();
    assert!(
        data.contains("websocket.max_subscriptions_per_connection"),
        "{data}"
    );
    assert_eq!(
        h.node.requests_for("subscribe"),
        2,
        "the third never reached the node"
    );

    // Unsubscribing from a query never held frees nothing: the node refuses it.
    send(
        &mut ws,
        call(10, "unsubscribe", json!({"query": "tm.event='Bogus'"})),
    )
    .await;
    assert!(next(&mut ws).await.unwrap().get("error").is_some());
    send(&mut ws, subscribe(11, "tm.event='NewBlockHeader'")).await;
    let v = next(&mut ws).await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(11), json!(-32602)),
        "{v}"
    );

    send(
        &mut ws,
        call(4, "unsubscribe", json!({"query": "tm.event='Tx'"})),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["id"], 4);
    send(&mut ws, subscribe(5, "tm.event='NewBlockHeader'")).await;
    assert_eq!(
        next(&mut ws).await.unwrap()["result"],
        json!({}),
        "room again"
    );
}

#[tokio::test]
async fn a_message_over_max_message_bytes_closes_with_1009_naming_the_cap() {
    let h = gateway(|c| c.websocket.max_message_bytes = ByteSize::kib(1)).await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    let padded = |n: usize| call(1, "health", json!({"pad": "x".repeat(n)}));
    send(&mut ws, padded(900)).await;
    assert_eq!(
        next(&mut ws).await.unwrap()["result"],
        json!({}),
        "under the cap"
    );
    send(&mut ws, padded(2048)).await;
    let next = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("in time");
    let Some(Ok(Message::Close(Some(close)))) = next else {
        panic!("not a close frame: {next:?}");
    };
    assert_eq!(close.code, CloseCode::Size);
    assert!(
        close
            .reason
            .contains("websocket.max_message_bytes (1024 bytes)"),
        "{}",
        close.reason
    );
    assert_eq!(
        h.node.requests_for("health"),
        1,
        "the oversized one never got there"
    );
}

#[tokio::test]
async fn messages_past_the_per_connection_rate_get_a_rate_limit_error() {
    let h = gateway(|c| {
        c.websocket.messages_per_second = 1;
        c.websocket.message_burst = 3;
    })
    .await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    for id in 1..=6 {
        send(&mut ws, call(id, "health", json!({}))).await;
    }
    let mut answers = Vec::new();
    for _ in 1..=6 {
        answers.push(next(&mut ws).await.expect("an answer"));
    }
    let results = answers.iter().filter(|v| v["result"] == json!({})).count();
    assert!(results >= 3, "the burst passes: {answers:?}");
    let limited: Vec<_> = answers
        .iter()
        .filter(|v| v["error"]["code"] == -32000)
        .collect();
    assert_eq!(limited.len() + results, 6, "{answers:?}");
    assert!(
        !limited.is_empty(),
        "six at once exceed a burst of 3: {answers:?}"
    );
    assert!(
        limited
            .iter()
            .all(|v| v["error"]["data"].as_str().unwrap().contains("rate limit")),
        "{limited:?}"
    );
    assert_eq!(h.node.requests_for("health"), results as u64);
}

#[tokio::test]
async fn a_slow_call_on_a_websocket_does_not_hold_up_its_events() {
    let h = gateway(|c| c.upstream.timeout = std::time::Duration::from_secs(60)).await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    send(&mut ws, subscribe(1, "tm.event='NewBlock'")).await;
    assert_eq!(next(&mut ws).await.unwrap()["result"], json!({}));

    // A call the node sits on, then a block while it is still in flight.
    h.node
        .set_fault_for("block_results", cometgate_sim::Fault::Hang);
    send(&mut ws, call(2, "block_results", json!({"height": "3"}))).await;
    let node = &h.node;
    eventually("the slow call reaches the node", || async move {
        node.stats().inflight >= 1
    })
    .await;
    h.node.advance_block();
    let event = next(&mut ws)
        .await
        .expect("the event, while the call still waits");
    assert_eq!(
        event["result"]["data"]["type"], "tendermint/event/NewBlock",
        "{event}"
    );

    // Other calls are served meanwhile too.
    send(&mut ws, call(3, "health", json!({}))).await;
    let v = next(&mut ws).await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["result"].clone()),
        (json!(3), json!({})),
        "{v}"
    );
}

#[tokio::test]
async fn shutdown_closes_open_websockets_with_going_away_and_waits_for_them() {
    let h = gateway(|_| {}).await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    send(&mut ws, subscribe(1, "tm.event='NewBlock'")).await;
    assert_eq!(next(&mut ws).await.unwrap()["result"], json!({}));
    let relays = h.gateway.relays().clone();
    assert_eq!(relays.open(), 1);

    let stopping = tokio::spawn(h.shutdown());
    let close = close_frame(&mut ws).await;
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!(relays.open(), 0);
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_and_one_that_answers_is_kept() {
    let h = gateway(|c| c.websocket.ping_interval = std::time::Duration::from_millis(500)).await;
    let mut silent = ws_from(&h, "127.0.0.1").await.expect("upgrade");
    let mut alive = ws_from(&h, "127.0.0.2").await.expect("upgrade");
    // Reading is what answers pings (tungstenite queues the pong as it reads).
    let (seen_close_tx, mut seen_close) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = alive.next().await {
            if matches!(msg, Message::Close(_)) {
                let _ = seen_close_tx.send(());
                return;
            }
        }
    });
    let relays = h.gateway.relays().clone();
    assert_eq!(relays.open(), 2);
    eventually("the silent client's relay is closed", || {
        let relays = relays.clone();
        async move { relays.open() == 1 }
    })
    .await;
    assert!(
        seen_close.try_recv().is_err(),
        "the answering client is kept"
    );
    // The silent client finds its connection closed (a 1001 frame, unless answering the
    // queued pings fails first on the closed socket).
    loop {
        match tokio::time::timeout(DEADLINE, silent.next())
            .await
            .expect("frames")
        {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    reader.abort();
}
