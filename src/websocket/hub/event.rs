//! What the node sends on a hub connection, read once per frame, and what each client is
//! sent in its place. The node would send each client the same frame but for two
//! values: the client's own id, and its own spelling of the query. So an event is kept
//! as the node's own bytes cut around those two values, and a client's frame is those
//! pieces with its id and query put back: no byte of the event is copied per client,
//! and whatever layout the node uses (CometBFT indents its websocket frames) is kept.

use bytes::Bytes;
use serde::Deserialize;

pub(crate) use crate::websocket::outbox::Piece;
use serde_json::value::RawValue;

/// One frame from the node, by what it answers.
#[derive(Debug, PartialEq)]
pub(super) enum NodeFrame {
    /// An event of the subscription the node knows by `id`.
    Event { id: String, event: Event },
    /// `subscribe`'s (or `unsubscribe`'s) `{}`.
    Ack { id: String },
    /// An error for `id`: a refused subscribe, or a subscription the node cancelled.
    Error { id: String, data: String },
    /// Anything else (no string id, not JSON): nothing to route.
    Other,
}

/// An event, as the pieces of any client's frame, and its height when it is a NewBlock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub pieces: std::sync::Arc<[Piece]>,
    pub height: Option<u64>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EventResult<'a> {
    #[serde(borrow)]
    query: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<String>,
}

/// Reads one text frame from the node.
pub(super) fn read(frame: &Bytes) -> NodeFrame {
    let Ok(wire) = serde_json::from_slice::<Wire>(frame) else {
        return NodeFrame::Other;
    };
    let Some((raw_id, id)) = wire
        .id
        .and_then(|raw| Some((raw, serde_json::from_str::<String>(raw.get()).ok()?)))
    else {
        return NodeFrame::Other;
    };
    if let Some(error) = wire.error {
        let data = match serde_json::from_str::<WireError>(error.get()) {
            Ok(e) => e.data.unwrap_or(e.message),
            Err(_) => error.get().to_owned(),
        };
        return NodeFrame::Error { id, data };
    }
    let Some(result) = wire.result else {
        return NodeFrame::Other;
    };
    match serde_json::from_str::<EventResult>(result.get()) {
        Ok(EventResult {
            data: Some(data),
            query,
        }) => NodeFrame::Event {
            id,
            event: Event {
                pieces: cut(frame, raw_id, query).into(),
                height: new_block_height(data),
            },
        },
        _ => NodeFrame::Ack { id },
    }
}

/// Where `part` lies in `frame`: serde_json borrows it from the frame itself.
fn span(frame: &[u8], part: &RawValue) -> (usize, usize) {
    let start = part.get().as_ptr() as usize - frame.as_ptr() as usize;
    (start, start + part.get().len())
}

/// The frame cut around its id and query, in the order they come.
fn cut(frame: &Bytes, id: &RawValue, query: Option<&RawValue>) -> Vec<Piece> {
    let mut holes = vec![(span(frame, id), Piece::Id)];
    if let Some(query) = query {
        holes.push((span(frame, query), Piece::Query));
    }
    holes.sort_by_key(|((start, _), _)| *start);
    let mut pieces = Vec::with_capacity(5);
    let mut at = 0;
    for ((start, end), hole) in holes {
        pieces.push(Piece::Node(frame.slice(at..start)));
        pieces.push(hole);
        at = end;
    }
    pieces.push(Piece::Node(frame.slice(at..)));
    pieces
}

/// `data.value.block.header.height` of a NewBlock event; other events have none.
fn new_block_height(data: &RawValue) -> Option<u64> {
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "type")]
        kind: Option<String>,
        value: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Value {
        block: Option<Block>,
    }
    #[derive(Deserialize)]
    struct Block {
        header: Option<Header>,
    }
    #[derive(Deserialize)]
    struct Header {
        height: Option<serde_json::Value>,
    }
    let data: Data = serde_json::from_str(data.get()).ok()?;
    if data.kind.as_deref() != Some("tendermint/event/NewBlock") {
        return None;
    }
    match data.value?.block?.header?.height? {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A client's query as the node encodes it (Go's encoding/json escapes `<`, `>` and
/// `&`, which queries such as `tx.height > 5` contain).
pub(crate) fn query_json(query: &str) -> Bytes {
    let mut out = Vec::with_capacity(query.len() + 2);
    go_string(query, &mut out);
    out.into()
}

/// A JSON string as Go's encoding/json writes it.
pub(crate) fn go_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' | '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c if c < ' ' || matches!(c, '<' | '>' | '&') => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out.push(b'"');
}

/// A JSON-RPC answer on one client's subscription id, as the node writes websocket
/// answers: indented by two spaces (Go's `json.MarshalIndent`), in its field order.
pub(crate) fn answer(id: &[u8], result: &str) -> Bytes {
    let mut out = Vec::with_capacity(48 + id.len() + result.len());
    out.extend_from_slice(b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": ");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\n  \"result\": ");
    out.extend_from_slice(result.as_bytes());
    out.extend_from_slice(b"\n}");
    out.into()
}

/// An error in the node's shape (`code`, its `message`, `data` as a string), laid out
/// as the node lays out websocket answers.
pub(crate) fn error(id: &[u8], code: i32, message: &str, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(96 + id.len() + data.len());
    out.extend_from_slice(b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": ");
    out.extend_from_slice(id);
    out.extend_from_slice(
        format!(",\n  \"error\": {{\n    \"code\": {code},\n    \"message\": ").as_bytes(),
    );
    go_string(message, &mut out);
    out.extend_from_slice(b",\n    \"data\": ");
    go_string(data, &mut out);
    out.extend_from_slice(b"\n  }\n}");
    out.into()
}

/// What `subscribe` answers when the node (or the gateway in its place) refuses it: the
/// node returns its error as an internal one.
pub(crate) fn refused(id: &[u8], data: &str) -> Bytes {
    error(id, -32603, "Internal error", data)
}

/// What a client is sent when its subscription ends without its asking, as the node
/// words it (`RPCServerError` with the reason).
pub(crate) fn cancelled(id: &[u8], reason: &str) -> Bytes {
    let data = format!("subscription was canceled (reason: {reason})");
    error(id, -32000, "Server error", &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CometBFT indents its websocket frames, fields in its structs' order.
    const NEW_BLOCK: &str = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": \"cometgate#1\",\n  \"result\": {\n    \"query\": \"tm.event='NewBlock'\",\n    \"data\": {\n      \"type\": \"tendermint/event/NewBlock\",\n      \"value\": {\"block\": {\"header\": {\"height\": \"42\"}}}\n    },\n    \"events\": {\"tm.event\": [\"NewBlock\"]}\n  }\n}";

    fn for_client(event: &Event, id: &[u8], query: &str) -> String {
        let query = query_json(query);
        let bytes: Vec<u8> = event
            .pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Node(b) => b.to_vec(),
                Piece::Id => id.to_vec(),
                Piece::Query => query.to_vec(),
            })
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    fn event_of(frame: &str) -> Event {
        match read(&Bytes::copy_from_slice(frame.as_bytes())) {
            NodeFrame::Event { event, .. } => event,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn a_client_frame_is_byte_for_byte_what_the_node_sends_that_client() {
        let event = event_of(NEW_BLOCK);
        assert_eq!(event.height, Some(42));
        let as_node_sends = NEW_BLOCK
            .replace("\"cometgate#1\"", "7")
            .replace("'NewBlock'\"", "'NewBlock' \"");
        assert_eq!(
            for_client(&event, b"7", "tm.event='NewBlock' "),
            as_node_sends
        );
    }

    #[test]
    fn any_field_order_is_kept() {
        let sorted = r#"{"id":"c","jsonrpc":"2.0","result":{"data":{"type":"x"},"events":null,"query":"q"}}"#;
        let event = event_of(sorted);
        assert_eq!(
            for_client(&event, br#""mine""#, "a > 1"),
            r#"{"id":"mine","jsonrpc":"2.0","result":{"data":{"type":"x"},"events":null,"query":"a \u003e 1"}}"#
        );
        let no_query = r#"{"jsonrpc":"2.0","id":"c","result":{"data":{}}}"#;
        assert_eq!(
            for_client(&event_of(no_query), b"1", "ignored"),
            r#"{"jsonrpc":"2.0","id":1,"result":{"data":{}}}"#
        );
    }

    #[test]
    fn the_query_is_escaped_as_go_escapes_it() {
        let q = query_json("tx.height > 5 AND x.y='<&>'\n");
        assert_eq!(
            std::str::from_utf8(&q).unwrap(),
            r#""tx.height \u003e 5 AND x.y='\u003c\u0026\u003e'\n""#
        );
    }

    #[test]
    fn acks_errors_and_strangers_are_told_apart() {
        let read = |s: &str| read(&Bytes::copy_from_slice(s.as_bytes()));
        let ack = r#"{"jsonrpc":"2.0","id":"cometgate#2","result":{}}"#;
        assert_eq!(
            read(ack),
            NodeFrame::Ack {
                id: "cometgate#2".into()
            }
        );
        let err = r#"{"jsonrpc":"2.0","id":"cometgate#3","error":{"code":-32603,"message":"Internal error","data":"max_subscriptions_per_client 5 reached"}}"#;
        assert_eq!(
            read(err),
            NodeFrame::Error {
                id: "cometgate#3".into(),
                data: "max_subscriptions_per_client 5 reached".into()
            }
        );
        for other in [r#"{"jsonrpc":"2.0","id":5,"result":{}}"#, "not json", "{}"] {
            assert_eq!(read(other), NodeFrame::Other, "{other}");
        }
    }

    #[test]
    fn a_tx_event_has_no_height() {
        let tx = r#"{"jsonrpc":"2.0","id":"c","result":{"query":"q","data":{"type":"tendermint/event/Tx","value":{}}}}"#;
        assert_eq!(event_of(tx).height, None);
    }

    #[test]
    fn answers_are_laid_out_as_the_node_lays_out_websocket_answers() {
        let ack = answer(br#""s1""#, "{}");
        assert_eq!(
            std::str::from_utf8(&ack).unwrap(),
            "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": \"s1\",\n  \"result\": {}\n}"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&refused(b"2", "already subscribed")).unwrap();
        assert_eq!(v["error"]["code"], -32603);
        assert_eq!(v["error"]["message"], "Internal error");
        assert_eq!(v["error"]["data"], "already subscribed");
    }

    #[test]
    fn cancellation_is_worded_as_the_node_words_it() {
        let frame = cancelled(b"1", "client is not pulling messages fast enough");
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"error\": {\n    \"code\": -32000,\n    \"message\": \"Server error\",\n    \"data\": \"subscription was canceled (reason: client is not pulling messages fast enough)\"\n  }\n}"
        );
    }
}
