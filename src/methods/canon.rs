//! One canonical form per question. Every spelling the node treats alike (URI or
//! JSON-RPC, by name or by position, integers as strings or numbers, hashes in hex or
//! base64, defaults written out or left off) becomes the same named JSON-RPC params,
//! which are both the cache key and what is sent upstream.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{ArgKind, MethodSpec};
use crate::jsonrpc::{Form, Params};

/// The key every spelling of one question shares; the JSON-RPC id is never part of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Bytes);

impl CacheKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A call in canonical form: only the route's own arguments, each in JSON-RPC spelling,
/// sorted by name, with node-equivalent defaults dropped.
#[derive(Clone, Debug)]
pub struct Canonical {
    pub spec: &'static MethodSpec,
    pub params: Map<String, Value>,
}

impl Canonical {
    pub fn key(&self) -> CacheKey {
        let mut out = Vec::with_capacity(self.spec.name.len() + 32);
        out.extend_from_slice(self.spec.name.as_bytes());
        out.push(b' ');
        // A Map<String, Value> always serialises.
        out.extend_from_slice(&serde_json::to_vec(&self.params).unwrap_or_default());
        CacheKey(Bytes::from(out))
    }

    /// The body the gateway sends upstream for this call, under its own id.
    pub fn upstream_body(&self, id: u64) -> Bytes {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": self.spec.name,
            "params": self.params,
        });
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The value of an integer argument, if given.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.params.get(name)?.as_str()?.parse().ok()
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.params.get(name)?.as_str()
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.params
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Sets an integer argument in its canonical spelling (used to pin "latest" to a
    /// height, and to clamp where the node clamps).
    pub(crate) fn set_int(&mut self, name: &str, value: i64) {
        self.params
            .insert(name.to_owned(), Value::String(value.to_string()));
        self.drop_defaults();
    }

    fn drop_defaults(&mut self) {
        for arg in self.spec.args {
            if let (Some(default), Some(v)) = (arg.same_as_absent, self.params.get(arg.name)) {
                let same = match v {
                    Value::String(s) => s == default,
                    Value::Bool(b) => default == if *b { "true" } else { "false" },
                    _ => false,
                };
                if same {
                    self.params.remove(arg.name);
                }
            }
        }
    }
}

/// Reads a call's params against its route. The error text is the `data` of a -32602
/// answer, worded as the node words it.
pub fn canonicalize(
    spec: &'static MethodSpec,
    params: &Params,
    form: Form,
) -> Result<Canonical, String> {
    let prefix = match form {
        Form::JsonRpc => "error converting json params to arguments",
        Form::Uri => "error converting http params to arguments",
    };
    let mut out = Map::new();
    match params {
        Params::Absent => {}
        Params::Malformed(why) => return Err(format!("{prefix}: {why}")),
        Params::Named(map) => {
            for arg in spec.args {
                // The node reads only its own argument names and gives null the default.
                if let Some(v) = map.get(arg.name).filter(|v| !v.is_null()) {
                    out.insert(
                        arg.name.to_owned(),
                        json_value(arg.kind, v).map_err(|e| format!("{prefix}: {e}"))?,
                    );
                }
            }
        }
        Params::Positional(items) => {
            if items.len() != spec.args.len() {
                let names: Vec<&str> = spec.args.iter().map(|a| a.name).collect();
                return Err(format!(
                    "{prefix}: expected {} parameters ([{}]), got {}",
                    spec.args.len(),
                    names.join(" "),
                    items.len()
                ));
            }
            for (arg, v) in spec.args.iter().zip(items) {
                if !v.is_null() {
                    out.insert(
                        arg.name.to_owned(),
                        json_value(arg.kind, v).map_err(|e| format!("{prefix}: {e}"))?,
                    );
                }
            }
        }
        Params::Query(pairs) => {
            for arg in spec.args {
                // Go's getParam: an empty value is the same as an absent one.
                if let Some((_, raw)) = pairs.iter().find(|(k, v)| k == arg.name && !v.is_empty()) {
                    out.insert(
                        arg.name.to_owned(),
                        uri_value(arg.kind, raw).map_err(|e| format!("{prefix}: {e}"))?,
                    );
                }
            }
        }
    }
    let mut canonical = Canonical { spec, params: out };
    normalise_paging(&mut canonical);
    canonical.drop_defaults();
    Ok(canonical)
}

/// The node's own clamps (`validatePerPage`, `order_by` ""), applied so that requests
/// the node answers identically share one key.
fn normalise_paging(c: &mut Canonical) {
    if c.spec.arg("per_page").is_some() {
        if let Some(pp) = c.int("per_page") {
            c.set_int("per_page", if pp < 1 { 30 } else { pp.min(100) });
        }
    }
    if c.str("order_by") == Some("") {
        c.params.remove("order_by");
    }
}

fn json_value(kind: ArgKind, v: &Value) -> Result<Value, String> {
    match kind {
        ArgKind::Int | ArgKind::Uint => {
            let n = match v {
                Value::String(s) => parse_int(s)?,
                Value::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| format!("json: cannot unmarshal number {n} into int64"))?,
                other => {
                    return Err(format!(
                        "json: cannot unmarshal {} into int64",
                        type_name(other)
                    ))
                }
            };
            int_value(kind, n)
        }
        ArgKind::Bool => match v {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            other => Err(format!(
                "json: cannot unmarshal {} into bool",
                type_name(other)
            )),
        },
        ArgKind::Str => match v {
            Value::String(s) => Ok(Value::String(s.clone())),
            other => Err(format!(
                "json: cannot unmarshal {} into string",
                type_name(other)
            )),
        },
        ArgKind::Bytes => match v {
            Value::String(s) => {
                let bytes = BASE64
                    .decode(s)
                    .map_err(|e| format!("illegal base64 data: {e}"))?;
                Ok(Value::String(BASE64.encode(bytes)))
            }
            other => Err(format!(
                "json: cannot unmarshal {} into []byte",
                type_name(other)
            )),
        },
        ArgKind::HexBytes => match v {
            Value::String(s) => {
                let bytes = hex::decode(s).map_err(|e| format!("encoding/hex: {e}"))?;
                Ok(Value::String(hex::encode_upper(bytes)))
            }
            other => Err(format!(
                "json: cannot unmarshal {} into HexBytes",
                type_name(other)
            )),
        },
        ArgKind::Raw => Ok(v.clone()),
    }
}

/// CometBFT's URI rules (`http_uri_handler.go`): bare digits are integers, `0x` is hex
/// for strings and bytes, a `"quoted"` value is a JSON string, anything else must be JSON.
fn uri_value(kind: ArgKind, raw: &str) -> Result<Value, String> {
    let is_int = {
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    // Bytes, not `raw[..2]`: a multi-byte first character must not panic the slice.
    let is_hex = raw.len() >= 2 && raw.as_bytes()[..2].eq_ignore_ascii_case(b"0x");
    let is_quoted = raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"');
    match kind {
        ArgKind::Int | ArgKind::Uint if is_int => int_value(kind, parse_int(raw)?),
        ArgKind::Int | ArgKind::Uint | ArgKind::Bool if is_hex => Err(format!(
            "got a hex string arg, but expected '{}'",
            go_kind(kind)
        )),
        ArgKind::Str | ArgKind::Bytes | ArgKind::HexBytes if is_hex => {
            let bytes = hex::decode(&raw[2..]).map_err(|e| format!("encoding/hex: {e}"))?;
            Ok(bytes_value(kind, bytes))
        }
        ArgKind::Bytes | ArgKind::HexBytes if is_quoted => {
            let s: String = serde_json::from_str(raw).map_err(|e| e.to_string())?;
            Ok(bytes_value(kind, s.into_bytes()))
        }
        _ => {
            let v: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
            json_value(kind, &v)
        }
    }
}

fn bytes_value(kind: ArgKind, bytes: Vec<u8>) -> Value {
    match kind {
        ArgKind::HexBytes => Value::String(hex::encode_upper(bytes)),
        ArgKind::Str => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        _ => Value::String(BASE64.encode(bytes)),
    }
}

fn parse_int(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .map_err(|e| format!("strconv.ParseInt: parsing {s:?}: {e}"))
}

fn int_value(kind: ArgKind, n: i64) -> Result<Value, String> {
    if kind == ArgKind::Uint && n < 0 {
        return Err(format!("json: cannot unmarshal number {n} into uint"));
    }
    Ok(Value::String(n.to_string()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_kind(kind: ArgKind) -> &'static str {
    match kind {
        ArgKind::Bool => "bool",
        ArgKind::Uint => "uint",
        _ => "int64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{parse_body, parse_uri, Envelope};
    use crate::methods::lookup;

    fn post(body: &str) -> Result<Canonical, String> {
        let Envelope::Single(call) = parse_body(body.as_bytes()).unwrap() else {
            panic!()
        };
        canonicalize(lookup(&call.method).unwrap(), &call.params, call.form)
    }

    fn get(path: &str, query: &str) -> Result<Canonical, String> {
        let call = parse_uri(path, Some(query));
        canonicalize(lookup(&call.method).unwrap(), &call.params, call.form)
    }

    #[test]
    fn every_spelling_of_a_block_height_shares_one_key() {
        let keys = [
            post(r#"{"id":1,"method":"block","params":{"height":"5"}}"#),
            post(r#"{"id":"x","method":"block","params":{"height":5}}"#),
            post(r#"{"id":2,"method":"block","params":["5"]}"#),
            post(r#"{"id":2,"method":"block","params":{"height":"005","extra":1}}"#),
            get("/block", "height=5"),
            get("/block", "height=%225%22"),
        ]
        .map(|c| c.unwrap().key());
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(keys[0].to_string(), r#"block {"height":"5"}"#);
    }

    #[test]
    fn hashes_in_hex_and_base64_share_one_key() {
        let hex_form = get("/tx", "hash=0xDEADBEEF").unwrap().key();
        let b64 = post(r#"{"id":1,"method":"tx","params":{"hash":"3q2+7w=="}}"#)
            .unwrap()
            .key();
        let lower = get("/tx", "hash=0xdeadbeef&prove=false").unwrap().key();
        assert_eq!(hex_form, b64);
        assert_eq!(hex_form, lower);
    }

    #[test]
    fn search_defaults_and_node_clamps_are_folded_in() {
        let bare =
            post(r#"{"id":1,"method":"tx_search","params":{"query":"tx.height>1"}}"#).unwrap();
        let spelled =
            post(r#"{"id":1,"method":"tx_search","params":["tx.height>1",false,"1","30","asc"]}"#)
                .unwrap();
        let uri = get(
            "/tx_search",
            "query=%22tx.height%3E1%22&per_page=0&order_by=%22%22",
        )
        .unwrap();
        assert_eq!(bare.key(), spelled.key());
        assert_eq!(bare.key(), uri.key());
        let big = post(r#"{"id":1,"method":"tx_search","params":{"query":"q","per_page":"500"}}"#)
            .unwrap();
        assert_eq!(big.int("per_page"), Some(100));
    }

    #[test]
    fn abci_data_is_upper_hex_from_either_form() {
        let a = get("/abci_query", "path=%22/store%22&data=0x6162").unwrap();
        let b = get("/abci_query", "path=%22/store%22&data=%22ab%22").unwrap();
        let c = post(r#"{"id":1,"method":"abci_query","params":{"path":"/store","data":"6162","height":"0"}}"#).unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), c.key());
        assert_eq!(a.str("data"), Some("6162"));
    }

    #[test]
    fn explicit_height_zero_is_kept_because_the_node_rejects_it() {
        assert_eq!(
            post(r#"{"id":1,"method":"block","params":{"height":"0"}}"#)
                .unwrap()
                .int("height"),
            Some(0)
        );
    }

    #[test]
    fn bad_params_are_worded_like_the_node() {
        let e = post(r#"{"id":1,"method":"block","params":["1","2"]}"#).unwrap_err();
        assert!(
            e.starts_with("error converting json params to arguments: expected 1 parameters"),
            "{e}"
        );
        let e = get("/block", "height=abc").unwrap_err();
        assert!(
            e.starts_with("error converting http params to arguments"),
            "{e}"
        );
        let e = get("/block", "height=0x10").unwrap_err();
        assert!(e.contains("got a hex string arg"), "{e}");
        assert!(post(r#"{"id":1,"method":"block","params":{"height":true}}"#).is_err());
        assert!(post(r#"{"id":1,"method":"tx","params":{"hash":"%%%"}}"#).is_err());
    }

    #[test]
    fn the_upstream_body_is_named_json_rpc_under_our_id() {
        let c = get("/block", "height=7").unwrap();
        assert_eq!(
            &c.upstream_body(42)[..],
            br#"{"id":42,"jsonrpc":"2.0","method":"block","params":{"height":"7"}}"#
        );
    }

    #[test]
    fn a_float_param_reads_back_to_the_same_key() {
        // serde_json's default float parser is off by one ulp on some inputs, which made
        // the key of what we send upstream differ from the key it was stored under.
        let c = post(r#"{"id":1,"method":"broadcast_evidence","params":{"evidence":[1.3892672156957662e+59]}}"#)
            .unwrap();
        let Envelope::Single(again) = parse_body(&c.upstream_body(1)).unwrap() else {
            panic!()
        };
        let again = canonicalize(
            lookup("broadcast_evidence").unwrap(),
            &again.params,
            again.form,
        )
        .unwrap();
        assert_eq!(again.key(), c.key());
    }
}
