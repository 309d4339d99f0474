//! A simulated CometBFT v0.38 node for testing and benchmarking cometgate: the real wire
//! behaviour (JSON-RPC, URI form, websocket events, error shapes), a chain that advances,
//! a memory cost model that can OOM, switchable faults, and exact request counters.

// The gateway's tests, the harness and simnode use the handle and its config; the rest
// stays inside, so that the node's internals can change without touching them.
#![warn(unreachable_pub)]

mod blockgen;
mod call;
mod chain;
mod clock;
mod config;
mod control;
mod cost;
mod cpu;
mod faults;
mod fixtures;
mod genesis;
mod http;
mod lenient;
mod lifecycle;
mod listener;
mod metrics;
mod metrics_port;
mod node;
mod params;
mod query;
mod response;
mod routes;
mod server;
mod sim;
mod stats;
mod tx_json;
mod uri;
mod wire;
mod ws;

pub use config::{parse_duration, SimNodeConfig};
pub use faults::{Fault, MetricsFault};
pub use sim::SimNode;
pub use stats::Stats;
