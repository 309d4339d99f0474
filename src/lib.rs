//! cometgate: a gateway in front of a CometBFT node's RPC port that keeps the node alive
//! whatever its clients send.
//!
//! # A request's path through the modules
//!
//! ```text
//! server      accept: connection caps, header/body/write timeouts, graceful drain
//!   -> gateway::Gateway::handle(request, peer)      the only module that knows the order:
//!        route        `/` JSON-RPC, `/<method>` URI form, `/websocket`, `/v1/...` alike
//!        jsonrpc      parse once: Single | Batch | URI call; the id kept as raw bytes
//!        methods      the route's spec and the canonical form every spelling shares
//!        admission    method policy and param caps, per-client rate (cost-weighted GCRA)
//!                     and concurrency, then a lane slot (light | heavy) for node calls
//!        cache        Hit | Miss | Coalesced | Stale | Bypass, pinned to the head's height
//!        upstream     pooled keep-alive client, timeouts, the response cap while reading
//!        reply        the caller's id around the stored result bytes, no re-serialising
//!   error       every Rejection -> HTTP status + JSON-RPC error, in one exhaustive match
//!   head        follows the chain head (NewBlock over /websocket, `status` polling)
//!   websocket   `/websocket` relayed to the node's, with caps on what clients send
//!   config      TOML -> validated Config, once, at the edge
//! ```
//!
//! Each stage module does one thing and calls no other stage; `gateway` strings them
//! together.

pub mod admission;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod error;
pub mod gateway;
pub mod head;
pub mod jsonrpc;
pub mod methods;
pub mod metrics;
pub mod ops;
pub mod reply;
pub mod server;
pub mod upstream;
pub mod websocket;
