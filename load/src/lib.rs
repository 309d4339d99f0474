//! The load harness behind `cometgate-load`: drives scenarios against any URL (closed or
//! open loop, JSON-RPC POST or URI GET, HDR latency histograms), and the `bench` that starts
//! the simulated node, cometgate, nginx and a ceiling server itself and writes the report.

pub mod bench;
pub mod ceiling;
mod charts;
pub mod client;
pub mod configs;
pub mod demo;
pub mod drive;
pub mod lane_limit;
pub mod lean;
mod lean_client;
mod live;
mod markdown;
mod measure;
pub mod mix;
pub mod plan;
mod plots;
mod procs;
pub mod record;
pub mod report;
pub mod rng;
pub mod sampler;
pub mod schedule;
mod setup;
mod stack;
mod verdict;
pub mod wrk;
pub mod ws_floor;

pub use stack::Target;
