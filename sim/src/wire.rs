//! JSON-RPC 2.0 envelopes as CometBFT's `rpc/jsonrpc/types` reads and writes them.

use serde_json::Value;

/// A request id: CometBFT accepts strings and whole numbers only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RpcId {
    Int(i64),
    Str(String),
}

impl RpcId {
    fn to_json(&self) -> Value {
        match self {
            RpcId::Int(i) => Value::from(*i),
            RpcId::Str(s) => Value::from(s.as_str()),
        }
    }

    /// A different id of the same kind, for the wrong-id fault.
    pub(crate) fn wrong(&self) -> RpcId {
        match self {
            RpcId::Int(i) => RpcId::Int(i.wrapping_add(1_000_003)),
            RpcId::Str(s) => RpcId::Str(format!("{s}-wrong")),
        }
    }
}

/// The id CometBFT gives to answers of URI-form requests.
pub(crate) const URI_ID: RpcId = RpcId::Int(-1);

#[derive(Clone, Debug)]
pub(crate) struct RpcRequest {
    /// `None` is a notification: CometBFT executes nothing and answers nothing.
    pub(crate) id: Option<RpcId>,
    pub(crate) method: String,
    /// `None` when absent; CometBFT then calls the route with no arguments at all.
    pub(crate) params: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: &'static str,
    pub(crate) data: Option<String>,
}

impl RpcError {
    pub(crate) fn parse(data: String) -> Self {
        RpcError {
            code: -32700,
            message: "Parse error. Invalid JSON",
            data: Some(data),
        }
    }
    pub(crate) fn invalid_request(data: String) -> Self {
        RpcError {
            code: -32600,
            message: "Invalid Request",
            data: Some(data),
        }
    }
    pub(crate) fn method_not_found() -> Self {
        RpcError {
            code: -32601,
            message: "Method not found",
            data: None,
        }
    }
    pub(crate) fn invalid_params(data: String) -> Self {
        RpcError {
            code: -32602,
            message: "Invalid params",
            data: Some(data),
        }
    }
    pub(crate) fn internal(data: String) -> Self {
        RpcError {
            code: -32603,
            message: "Internal error",
            data: Some(data),
        }
    }
}

/// A route's result: a tree, or compact JSON a route encoded itself.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Tree(Value),
    Encoded(Box<serde_json::value::RawValue>),
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Tree(v) => v.serialize(s),
            Answer::Encoded(raw) => raw.serialize(s),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RpcResponse {
    pub(crate) id: Option<RpcId>,
    pub(crate) outcome: Result<Answer, RpcError>,
}

impl RpcResponse {
    pub(crate) fn ok(id: RpcId, result: Value) -> Self {
        RpcResponse {
            id: Some(id),
            outcome: Ok(Answer::Tree(result)),
        }
    }
    pub(crate) fn err(id: Option<RpcId>, e: RpcError) -> Self {
        RpcResponse {
            id,
            outcome: Err(e),
        }
    }

    /// Borrows the result rather than copying it into a new tree: a search page is
    /// hundreds of KB of nested maps, and the copy's real CPU (not the node's modelled
    /// time) would load the machine the bench runs on. Keys in sorted order, as
    /// serde_json's map writes them.
    fn wire(&self) -> Wire<'_> {
        let (result, error) = match &self.outcome {
            Ok(v) => (Some(v), None),
            Err(e) => {
                let mut em = serde_json::Map::new();
                em.insert("code".into(), Value::from(e.code));
                em.insert("message".into(), Value::from(e.message));
                if let Some(d) = e.data.as_ref().filter(|d| !d.is_empty()) {
                    em.insert("data".into(), Value::from(d.as_str()));
                }
                (None, Some(Value::Object(em)))
            }
        };
        Wire {
            error,
            id: self.id.as_ref().map(RpcId::to_json),
            jsonrpc: "2.0",
            result,
        }
    }

    pub(crate) fn encode(&self, pretty: bool) -> Vec<u8> {
        encode_value(&self.wire(), pretty)
    }
}

#[derive(serde::Serialize)]
struct Wire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Value>,
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Answer>,
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029; mimic it byte for byte.
pub(crate) fn encode_value(v: &impl serde::Serialize, pretty: bool) -> Vec<u8> {
    let raw = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    };
    let raw = raw.unwrap_or_default();
    let needs = raw.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2));
    if !needs {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if raw.get(i + 1) == Some(&0x80)
                && matches!(raw.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                out.extend_from_slice(if raw[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// The JSON kind names Go uses in "cannot unmarshal X into ..." errors.
pub(crate) fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Approximates Go's `encoding/json` syntax error text for a serde_json failure.
pub(crate) fn go_syntax_error(input: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected end of JSON input".to_string();
    }
    let offset = line_col_offset(input, e.line(), e.column());
    let c = input.get(offset.saturating_sub(1)).copied().unwrap_or(b'?');
    format!(
        "invalid character {} looking for beginning of value",
        go_char(c)
    )
}

fn line_col_offset(input: &[u8], line: usize, col: usize) -> usize {
    let mut cur = 1;
    let mut start = 0;
    for (i, b) in input.iter().enumerate() {
        if cur == line {
            break;
        }
        if *b == b'\n' {
            cur += 1;
            start = i + 1;
        }
    }
    start + col
}

fn go_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ => format!("'\\x{c:02x}'"),
    }
}

/// Parses an HTTP body as CometBFT does: an array of requests, else a single one.
/// `Err` is the data of the -32700 parse error.
pub(crate) fn parse_body(body: &[u8]) -> Result<Vec<RpcRequest>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("error unmarshaling request: {}", go_syntax_error(body, &e)))?;
    match v {
        // Go decodes `null` into an empty slice of requests: nothing to answer.
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match parse_request(item) {
                    Ok(r) => out.push(r),
                    Err(_) => {
                        return Err("error unmarshaling request: json: cannot unmarshal array into Go value of type types.RPCRequest".to_string())
                    }
                }
            }
            Ok(out)
        }
        other => parse_request(other)
            .map(|r| vec![r])
            .map_err(|e| format!("error unmarshaling request: {e}")),
    }
}

/// One request object; `Err` carries Go's decoding error text.
pub(crate) fn parse_request(v: Value) -> Result<RpcRequest, String> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Null => {
            return Ok(RpcRequest {
                id: None,
                method: String::new(),
                params: None,
            })
        }
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type types.RPCRequest",
                go_kind(&other)
            ))
        }
    };
    let mut id = None;
    let mut method = String::new();
    let mut params = None;
    // Go matches struct fields case-insensitively; the last duplicate wins.
    for (k, val) in obj {
        match k.to_ascii_lowercase().as_str() {
            "jsonrpc" => expect_string(&val, "jsonrpc").map(|_| ())?,
            "method" => method = expect_string(&val, "method")?,
            "id" => id = Some(val),
            "params" => params = Some(val),
            _ => {}
        }
    }
    let id = match id {
        None | Some(Value::Null) => {
            return Ok(RpcRequest {
                id: None,
                method,
                params,
            })
        }
        Some(v) => id_from_json(&v)?,
    };
    Ok(RpcRequest {
        id: Some(id),
        method,
        params,
    })
}

fn expect_string(v: &Value, field: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(format!(
            "json: cannot unmarshal {} into Go struct field .{field} of type string",
            go_kind(other)
        )),
    }
}

fn id_from_json(v: &Value) -> Result<RpcId, String> {
    match v {
        Value::String(s) => Ok(RpcId::Str(s.clone())),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(RpcId::Int(i));
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                Err(format!("json-rpc ID must be a whole number, got {f}"))
            } else {
                Err(format!("json-rpc ID out of int64 range, got {f}"))
            }
        }
        Value::Bool(b) => Err(format!("json-rpc ID ({b}) is of unknown type (bool)")),
        Value::Array(_) => Err("json-rpc ID is of unknown type ([]interface {})".to_string()),
        _ => Err("json-rpc ID is of unknown type (map[string]interface {})".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escaping() {
        let v = serde_json::json!({"q": "a<b>&c"});
        assert_eq!(
            encode_value(&v, false),
            br#"{"q":"a\u003cb\u003e\u0026c"}"#.to_vec()
        );
    }

    #[test]
    fn notifications_and_ids() {
        let r = parse_body(br#"{"jsonrpc":"2.0","method":"status"}"#).unwrap();
        assert!(r[0].id.is_none());
        let r = parse_body(br#"[{"id":1,"method":"a"},{"id":"x","method":"b"}]"#).unwrap();
        assert_eq!(r[0].id, Some(RpcId::Int(1)));
        assert_eq!(r[1].id, Some(RpcId::Str("x".into())));
        assert!(parse_body(br#"{"id":1.5,"method":"a"}"#).is_err());
        assert!(parse_body(b"{")
            .unwrap_err()
            .contains("unexpected end of JSON input"));
    }
}
