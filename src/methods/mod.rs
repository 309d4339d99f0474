//! The method table: what the gateway knows of each CometBFT v0.38 route (its argument
//! names and types, its default lane, cost and parameter caps, and how long its answers
//! stay true), and the canonical form that every spelling of one question shares.
//!
//! Argument names and order are CometBFT's `rpc/core/routes.go`; positional params are
//! matched against them exactly as the node does.

mod canon;
mod table;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use canon::{canonicalize, CacheKey, Canonical};
pub use table::{lookup, ROUTES};

/// Which concurrency lane a method is scheduled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Light,
    Heavy,
}

impl Lane {
    pub const fn as_str(self) -> &'static str {
        match self {
            Lane::Light => "light",
            Lane::Heavy => "heavy",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lane {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "light" => Ok(Lane::Light),
            "heavy" => Ok(Lane::Heavy),
            _ => Err(format!(
                "invalid lane \"{s}\": expected \"light\" or \"heavy\""
            )),
        }
    }
}

/// How a value travels in a JSON-RPC body and how its URI spelling is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// int64 / *int64 / *int: a JSON string of digits (or a number); bare digits in a URI.
    Int,
    /// uint: as `Int`, never negative.
    Uint,
    Bool,
    /// A JSON string; in a URI `"quoted"` or `0x`-hex.
    Str,
    /// []byte: base64 in JSON; `0x`-hex or a `"quoted"` string in a URI.
    Bytes,
    /// bytes.HexBytes (abci_query `data`): hex in JSON, `0x`-hex or `"quoted"` in a URI.
    HexBytes,
    /// Passed through as the caller wrote it (evidence, dial lists): never part of a cached key.
    Raw,
}

#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgKind,
    /// The canonical value the node treats exactly like an absent argument; dropped from
    /// the canonical form so both spellings share one key.
    pub same_as_absent: Option<&'static str>,
}

/// How long an answer stays true, from CometBFT's semantics rather than the node's own
/// Cache-Control (which marks errors and head-following answers cacheable for a day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheRule {
    /// Never stored: writes, mempool views, liveness probes.
    Never,
    /// `height` pins the answer: immutable at or below the head; absent means the head.
    Height,
    /// Like `Height`, but `commit` is only final once the next block carries it.
    Commit,
    /// A lookup by hash: immutable once it has found something.
    Hash,
    /// `validators`, `consensus_params`: like `Height`, but no height means the node's
    /// next height (`latestUncommittedHeight`, head + 1), so "latest" is never pinned.
    NextHeight,
    /// `abci_query`: a height > 0 pins it; otherwise it follows the head.
    AbciQuery,
    /// Follows the head: valid until the next block.
    UntilNextBlock,
    /// Never changes for a running chain (genesis).
    Forever,
}

/// One route's built-in policy; config overrides are applied on top by admission.
#[derive(Clone, Copy, Debug)]
pub struct MethodSpec {
    pub name: &'static str,
    pub args: &'static [Arg],
    pub lane: Lane,
    pub cost: u32,
    pub allowed: bool,
    /// Subscriptions exist only on /websocket; over HTTP the node answers Method not found.
    pub websocket_only: bool,
    pub cache: CacheRule,
    pub caps: DefaultCaps,
}

/// Built-in parameter caps; each matches the node's own limit where it has one.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultCaps {
    pub max_per_page: Option<u32>,
    pub max_page: Option<u32>,
    pub max_query_bytes: Option<usize>,
    pub allow_prove: Option<bool>,
    pub max_range: Option<u64>,
    pub max_limit: Option<u32>,
    pub max_data_bytes: Option<u64>,
}

impl MethodSpec {
    pub fn arg(&self, name: &str) -> Option<&'static Arg> {
        self.args.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Lane;

    #[test]
    fn lanes_parse_lowercase_only() {
        assert_eq!("light".parse(), Ok(Lane::Light));
        assert_eq!("heavy".parse(), Ok(Lane::Heavy));
        assert!("Heavy".parse::<Lane>().is_err());
        assert_eq!(Lane::Heavy.to_string(), "heavy");
    }
}
