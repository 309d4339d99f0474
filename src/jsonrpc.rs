//! The wire form of a request, parsed once: JSON-RPC 2.0 bodies (single or batch) and
//! CometBFT's URI form. The caller's id is kept as the exact bytes it sent, so a reply can
//! give it back byte for byte whatever its JSON type.
//!
//! The parser is deliberately as lenient as the node (CometBFT accepts a missing
//! `jsonrpc` field, params by name or position, and `params: null`), and no stricter:
//! tendermint-rpc's request wrapper rejects requests real nodes answer.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON-RPC id exactly as the caller wrote it (a JSON string or number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Id(Bytes);

impl Id {
    /// URI-form requests carry no id; CometBFT answers them with -1.
    pub fn uri() -> Id {
        Id(Bytes::from_static(b"-1"))
    }

    /// An id the gateway makes up for its own upstream calls.
    pub fn number(n: u64) -> Id {
        Id(Bytes::from(n.to_string()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Takes the raw text of an `id` member. CometBFT accepts only strings and numbers;
    /// anything else makes the whole body unparsable, as on the node.
    fn from_raw(raw: &RawValue) -> Result<Option<Id>, String> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => Ok(Some(Id(Bytes::copy_from_slice(text.as_bytes())))),
            // A number the node (and most clients' JSON parsers) can read as a float:
            // `1e99999` is valid JSON text, but echoed back it would make the reply
            // unreadable to the caller, and the node refuses it as unparsable.
            Some(b'-') | Some(b'0'..=b'9') if text.parse::<f64>().is_ok_and(f64::is_finite) => {
                Ok(Some(Id(Bytes::copy_from_slice(text.as_bytes()))))
            }
            Some(b'-') | Some(b'0'..=b'9') => {
                Err(format!("JSON-RPC ID ({text}) is out of range for a number"))
            }
            Some(b'n') => Ok(None),
            _ => Err(format!("JSON-RPC ID ({text}) is of unknown type")),
        }
    }
}

/// Where a call came from: it decides the reply's HTTP status on error (200 on POST, 500
/// on URI routes, as CometBFT) and how its params were spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    JsonRpc,
    Uri,
}

/// Params as the caller sent them, before the method table interprets them.
#[derive(Clone, Debug, PartialEq)]
pub enum Params {
    Absent,
    Named(Map<String, Value>),
    Positional(Vec<Value>),
    /// URI query arguments, still in CometBFT's URI spelling (`5`, `"abc"`, `0xAB`).
    Query(Vec<(String, String)>),
    /// Neither an object nor an array: the node answers -32602 for a known method.
    Malformed(String),
}

/// One call. `id: None` is a notification: CometBFT neither runs nor answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub id: Option<Id>,
    pub method: String,
    pub params: Params,
    pub form: Form,
}

/// A parsed POST body. A one-element batch stays a batch here; the reply decides its
/// shape (CometBFT answers it with a bare object).
#[derive(Debug, PartialEq)]
pub enum Envelope {
    Single(Call),
    Batch(Vec<Call>),
}

/// Why a body could not be parsed; the text becomes the `data` of a -32700 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

#[derive(Deserialize)]
struct RawCall<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Parses a non-empty POST body. serde_json's recursion limit bounds nesting, and the
/// body itself was bounded by `server.max_body_bytes` before it got here.
pub fn parse_body(body: &[u8]) -> Result<Envelope, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let raws: Vec<RawCall> = serde_json::from_slice(body).map_err(unmarshal_error)?;
        let calls = raws
            .into_iter()
            .map(call_from_raw)
            .collect::<Result<_, _>>()?;
        Ok(Envelope::Batch(calls))
    } else {
        let raw: RawCall = serde_json::from_slice(body).map_err(unmarshal_error)?;
        Ok(Envelope::Single(call_from_raw(raw)?))
    }
}

/// The number of calls in a batch body, each checked as `parse_body` checks it but none
/// kept; `None` for anything `parse_body` would not read as a batch. Building the calls
/// first would cost ~250 bytes per call: a 1 MB body of `{},` is 333 000 calls.
pub fn batch_len(body: &[u8]) -> Option<usize> {
    struct CountCalls;
    impl<'de> serde::de::Visitor<'de> for CountCalls {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of calls")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0usize;
            while let Some(raw) = seq.next_element::<RawCall<'de>>()? {
                if let Some(id) = raw.id {
                    Id::from_raw(id).map_err(serde::de::Error::custom)?;
                }
                n += 1;
            }
            Ok(n)
        }
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let n = serde::Deserializer::deserialize_seq(&mut de, CountCalls).ok()?;
    de.end().ok()?;
    Some(n)
}

fn unmarshal_error(e: serde_json::Error) -> ParseError {
    ParseError(format!("error unmarshaling request: {e}"))
}

fn call_from_raw(raw: RawCall<'_>) -> Result<Call, ParseError> {
    let id = match raw.id {
        Some(id) => {
            Id::from_raw(id).map_err(|e| ParseError(format!("error unmarshaling request: {e}")))?
        }
        None => None,
    };
    let params = match raw.params {
        None => Params::Absent,
        Some(p) => params_from_raw(p),
    };
    Ok(Call {
        id,
        method: raw.method.unwrap_or_default(),
        params,
        form: Form::JsonRpc,
    })
}

fn params_from_raw(raw: &RawValue) -> Params {
    // CometBFT tries an object, then an array; `null` decodes as an empty object.
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Null) => Params::Absent,
        Ok(Value::Object(map)) => Params::Named(map),
        Ok(Value::Array(items)) => Params::Positional(items),
        Ok(other) => Params::Malformed(format!(
            "unknown type for JSON params: {other}. Expected map or array"
        )),
        Err(e) => Params::Malformed(format!(
            "unknown type for JSON params: {e}. Expected map or array"
        )),
    }
}

/// Parses a URI-form request: the path names the method, the query holds the arguments.
/// `path` has had any `/v1` prefix removed already.
pub fn parse_uri(path: &str, query: Option<&str>) -> Call {
    let method = path.trim_start_matches('/').to_owned();
    let mut args = Vec::new();
    let mut unreadable = None;
    for pair in query.map(form_urlencoded_pairs).into_iter().flatten() {
        match pair {
            // Go's Query().Get returns the first value of a repeated key.
            Ok((k, v)) => {
                if !args.iter().any(|(seen, _): &(String, String)| *seen == k) {
                    args.push((k, v));
                }
            }
            Err(key) => unreadable = unreadable.or(Some(key)),
        }
    }
    // Go keeps such bytes as they are; dropping or mending them here would answer
    // another question than the one asked, so the call is refused instead.
    let params = match unreadable {
        Some(key) => Params::Malformed(format!(
            "argument {key} is not UTF-8 once percent-decoded; send bytes as 0x-prefixed hex"
        )),
        None => Params::Query(args),
    };
    Call {
        id: Some(Id::uri()),
        method,
        params,
        form: Form::Uri,
    }
}

/// `application/x-www-form-urlencoded` decoding as Go's `url.ParseQuery` does it: pairs
/// split at `&` only (a pair holding `;` is dropped, as Go 1.17+ does), `+` is a space,
/// `%XX` is a byte, and a pair that fails to decode is skipped. A pair whose bytes are
/// not UTF-8 comes out as `Err(key)`.
fn form_urlencoded_pairs(
    query: &str,
) -> impl Iterator<Item = Result<(String, String), String>> + '_ {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !p.contains(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            Some(match (String::from_utf8(k), String::from_utf8(v)) {
                (Ok(k), Ok(v)) => Ok((k, v)),
                (Ok(k), Err(_)) => Err(k),
                (Err(k), _) => Err(String::from_utf8_lossy(k.as_bytes()).into_owned()),
            })
        })
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// A JSON-RPC error object in CometBFT's shape: no `id` member when it is unknown,
/// `data` a string and left out when empty.
pub fn error_body(id: Option<&Id>, code: i32, message: &str, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(96 + data.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(&id.0);
        out.push(b',');
    }
    out.extend_from_slice(br#""error":{"code":"#);
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(br#","message":"#);
    // Serialising a &str cannot fail.
    out.extend_from_slice(&serde_json::to_vec(message).unwrap_or_default());
    if !data.is_empty() {
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(&serde_json::to_vec(data).unwrap_or_default());
    }
    out.extend_from_slice(b"}}");
    Bytes::from(out)
}

#[cfg(test)]
#[path = "jsonrpc_tests.rs"]
mod tests;
