//! cometgate: a gateway in front of a CometBFT node's RPC port that keeps the node alive
//! whatever its clients send.
//!
//! # A request's path through the modules
//!
//! ```text
//! server      accept: connection caps, header/body/write timeouts, graceful drain
//!   -> gateway::Gateway::handle(request, peer)      the only module that knows the order:
//!        client address     the peer, or the one trusted proxy header
//!        URI cap            server.max_uri_bytes                                  -> 414
//!        route              `/` JSON-RPC, `/<method>` URI form, `/websocket`, `/v1/...`
//!        client_slot        the client's concurrent requests, held until written  -> 429
//!        body               bounded in bytes and time, a batch counted before it is built
//!        jsonrpc            parse once: Single | Batch | URI call; the id kept as raw bytes
//!        pipeline           every call, alone, batched or over a websocket:
//!          admit            methods (spec, canonical form) -> admission (policy, param
//!                           caps, cost-weighted GCRA rate)
//!          lookup           cache: plan (pin "latest" to the head) -> Hit | Wait | Lead | Bypass
//!          fetch            the misses, detached: a lead whose answer never changes asks
//!                           the shared tier (Redis) first; the rest as one node call:
//!                           every breaker open? -> admission lane slot (light | heavy)
//!                           -> pool: a node that holds the heights (or is near the
//!                           best head), the less loaded of two -> its breaker -> upstream
//!                           (single, or one batch); a hedge or one retry elsewhere for
//!                           reads; what never changes is then shared
//!          finish           followers wait; stale fallback; each refusal counted once
//!        respond            reply: the caller's id around the stored bytes, no re-encoding
//!   error       every Rejection -> status, JSON-RPC error, Retry-After, close: one match
//!   head        follows a node's head (NewBlock over /websocket, `status` polling)
//!   pool        the nodes, each with its head; the gateway's head is the lowest one
//!               among the nodes eligible for "latest" (what the cache pins to)
//!   websocket   client websockets; the gateway decides each message. Subscriptions fan
//!               out: one node subscription per distinct query (query: CometBFT's
//!               grammar and rendering), each event read once and written to every
//!               subscriber with its own id and query (hub, outbox, session), or in
//!               relay mode a node websocket per client (pump)
//!   shared      answers that never change, shared by replicas through Redis; optional
//!   config      TOML -> validated Config, once, at the edge
//! ```
//!
//! Each stage module does one thing and calls no other stage; `gateway` strings them
//! together.

#![warn(unreachable_pub)]

pub mod admission;
pub mod breaker;
mod cache;
pub mod config;
pub mod error;
pub mod gateway;
mod guard;
pub mod head;
pub mod jsonrpc;
pub mod logging;
pub mod methods;
mod metrics;
pub mod ops;
mod pool;
mod recent;
pub mod reply;
pub mod server;
mod shared;
pub mod upstream;
mod websocket;
