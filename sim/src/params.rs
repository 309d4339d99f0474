//! Argument decoding with CometBFT's rules: `libs/json` for JSON-RPC params and
//! `http_uri_handler.go` for URI query arguments.

use base64::Engine;
use serde_json::Value;

use crate::wire::{go_kind, go_syntax_error};

/// The Go type of a route argument; pointer types distinguish "absent" from zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgType {
    /// `*int64` (height)
    I64Ptr,
    /// `int64` (blockchain bounds, abci_query height)
    I64,
    /// `*int` (page, per_page, limit)
    IntPtr,
    /// `uint` (genesis chunk)
    Uint,
    Bool,
    Str,
    /// `[]byte` / `types.Tx`: base64 in JSON
    Bytes,
    /// `bytes.HexBytes`: hex in JSON
    HexBytes,
    /// `types.Evidence`: an amino-style `{type, value}` interface
    Evidence,
}

impl ArgType {
    fn go_name(self) -> &'static str {
        match self {
            ArgType::I64Ptr | ArgType::I64 => "int64",
            ArgType::IntPtr => "int",
            ArgType::Uint => "uint",
            ArgType::Bool => "bool",
            ArgType::Str => "string",
            ArgType::Bytes => "[]uint8",
            ArgType::HexBytes => "bytes.HexBytes",
            ArgType::Evidence => "interface",
        }
    }
    fn is_int(self) -> bool {
        matches!(
            self,
            ArgType::I64Ptr | ArgType::I64 | ArgType::IntPtr | ArgType::Uint
        )
    }
    fn is_ptr(self) -> bool {
        matches!(self, ArgType::I64Ptr | ArgType::IntPtr)
    }
    fn is_byte_slice(self) -> bool {
        matches!(self, ArgType::Bytes | ArgType::HexBytes)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ArgVal {
    Int(i64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    Evidence(Value),
}

/// `None` is Go's zero value (nil pointer, 0, "", false, nil slice): what `IsZero` sees.
pub(crate) type Arg = Option<ArgVal>;

/// Drops zero values of non-pointer types so `None` always means "zero".
fn normalise(ty: ArgType, v: ArgVal) -> Arg {
    if ty.is_ptr() {
        return Some(v);
    }
    let zero = match &v {
        ArgVal::Int(i) => *i == 0,
        ArgVal::Bool(b) => !*b,
        ArgVal::Str(s) => s.is_empty(),
        ArgVal::Bytes(b) => b.is_empty(),
        ArgVal::Evidence(_) => false,
    };
    (!zero).then_some(v)
}

/// Decodes one JSON-RPC param value (`cmtjson.Unmarshal` into the Go type).
pub(crate) fn decode_json(ty: ArgType, raw: &Value) -> Result<Arg, String> {
    if raw.is_null() {
        return Ok(None);
    }
    let v = match ty {
        _ if ty.is_int() => {
            let Value::String(s) = raw else {
                return Err(format!(
                    "invalid 64-bit integer encoding {}, expected string",
                    go_quote(&raw.to_string())
                ));
            };
            ArgVal::Int(decode_int_text(ty, s)?)
        }
        ArgType::Bool => match raw {
            Value::Bool(b) => ArgVal::Bool(*b),
            other => return Err(cannot_unmarshal(other, "bool")),
        },
        ArgType::Str => match raw {
            Value::String(s) => ArgVal::Str(s.clone()),
            other => return Err(cannot_unmarshal(other, "string")),
        },
        ArgType::Bytes => match raw {
            Value::String(s) => ArgVal::Bytes(decode_base64(s)?),
            other => return Err(cannot_unmarshal(other, "[]uint8")),
        },
        ArgType::HexBytes => match raw {
            Value::String(s) => ArgVal::Bytes(decode_hex(s)?),
            other => return Err(format!("invalid hex string: {other}")),
        },
        _ => match raw {
            Value::Object(o)
                if o.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.is_empty()) =>
            {
                if o.get("value").is_none() {
                    return Err("interface value cannot be empty".to_string());
                }
                ArgVal::Evidence(raw.clone())
            }
            Value::Object(_) => return Err("interface type cannot be empty".to_string()),
            other => return Err(cannot_unmarshal(other, "server.interfaceWrapper")),
        },
    };
    Ok(normalise(ty, v))
}

/// The inside of a quoted 64-bit integer goes through Go's stdlib decoder.
fn decode_int_text(ty: ArgType, s: &str) -> Result<i64, String> {
    let target = ty.go_name();
    let v: Value = serde_json::from_str(s).map_err(|e| go_syntax_error(s.as_bytes(), &e))?;
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => {
            let parsed = if ty == ArgType::Uint {
                n.as_u64().and_then(|u| i64::try_from(u).ok())
            } else {
                n.as_i64()
            };
            parsed.ok_or_else(|| {
                format!("json: cannot unmarshal number {s} into Go value of type {target}")
            })
        }
        other => Err(cannot_unmarshal(&other, target)),
    }
}

fn cannot_unmarshal(v: &Value, target: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go value of type {target}",
        go_kind(v)
    )
}

fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!("illegal base64 data at input byte {at}")
            }
            _ => format!("illegal base64 data at input byte {}", s.len()),
        })
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, .. } => {
            format!(
                "encoding/hex: invalid byte: U+{:04X} {}",
                c as u32,
                go_rune(c)
            )
        }
        _ => "encoding/hex: odd length hex string".to_string(),
    })
}

fn go_rune(c: char) -> String {
    if c == '\'' {
        "'\\''".to_string()
    } else {
        format!("'{c}'")
    }
}

/// Go's `%q` for the ASCII texts that reach it here.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_int_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Decodes one URI query argument (non-empty), following `_nonJSONStringToArg` then
/// falling back to JSON.
pub(crate) fn decode_uri(ty: ArgType, arg: &str) -> Result<Arg, String> {
    let quoted = arg.starts_with('"') && arg.ends_with('"');
    let hexed = arg.len() >= 2 && arg[..2].eq_ignore_ascii_case("0x");
    if is_int_text(arg) && ty.is_int() {
        return decode_json(ty, &Value::String(arg.to_string()));
    }
    if hexed {
        if ty != ArgType::Str && !ty.is_byte_slice() {
            let kind = match ty {
                ArgType::I64Ptr | ArgType::I64 => "int64",
                ArgType::IntPtr => "int",
                ArgType::Uint => "uint",
                ArgType::Bool => "bool",
                _ => "interface",
            };
            return Err(format!("got a hex string arg, but expected '{kind}'"));
        }
        let bytes = decode_hex(&arg[2..])?;
        let v = if ty == ArgType::Str {
            ArgVal::Str(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            ArgVal::Bytes(bytes)
        };
        return Ok(normalise(ty, v));
    }
    if quoted && ty.is_byte_slice() {
        let s: String =
            serde_json::from_str(arg).map_err(|e| go_syntax_error(arg.as_bytes(), &e))?;
        return Ok(normalise(ty, ArgVal::Bytes(s.into_bytes())));
    }
    let v: Value = serde_json::from_str(arg).map_err(|e| go_syntax_error(arg.as_bytes(), &e))?;
    decode_json(ty, &v)
}

/// How an argument shows in the canonical request key used by the counters.
pub(crate) fn canonical(v: &ArgVal) -> String {
    match v {
        ArgVal::Int(i) => i.to_string(),
        ArgVal::Bool(b) => b.to_string(),
        ArgVal::Str(s) => format!("{s:?}"),
        ArgVal::Bytes(b) => format!("0x{}", hex::encode_upper(b)),
        ArgVal::Evidence(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_ints_must_be_strings() {
        assert_eq!(
            decode_json(ArgType::I64Ptr, &json!("5")).unwrap(),
            Some(ArgVal::Int(5))
        );
        assert_eq!(
            decode_json(ArgType::I64Ptr, &json!("0")).unwrap(),
            Some(ArgVal::Int(0))
        );
        assert_eq!(decode_json(ArgType::I64, &json!("0")).unwrap(), None);
        assert_eq!(
            decode_json(ArgType::I64Ptr, &json!(5)).unwrap_err(),
            "invalid 64-bit integer encoding \"5\", expected string"
        );
        assert!(decode_json(ArgType::I64Ptr, &json!("abc"))
            .unwrap_err()
            .starts_with("invalid character 'a'"));
    }

    #[test]
    fn uri_rules() {
        assert_eq!(
            decode_uri(ArgType::I64Ptr, "5").unwrap(),
            Some(ArgVal::Int(5))
        );
        assert_eq!(
            decode_uri(ArgType::I64Ptr, "\"5\"").unwrap(),
            Some(ArgVal::Int(5))
        );
        assert_eq!(
            decode_uri(ArgType::I64Ptr, "0x10").unwrap_err(),
            "got a hex string arg, but expected 'int64'"
        );
        assert_eq!(
            decode_uri(ArgType::Bytes, "0x0aff").unwrap(),
            Some(ArgVal::Bytes(vec![10, 255]))
        );
        assert_eq!(
            decode_uri(ArgType::Bytes, "\"k=v\"").unwrap(),
            Some(ArgVal::Bytes(b"k=v".to_vec()))
        );
        assert_eq!(
            decode_uri(ArgType::Str, "\"tx.height>1\"").unwrap(),
            Some(ArgVal::Str("tx.height>1".into()))
        );
        assert_eq!(
            decode_uri(ArgType::Bool, "true").unwrap(),
            Some(ArgVal::Bool(true))
        );
    }
}
