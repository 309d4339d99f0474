//! The gateway's integration tests: one binary, each test a gateway on port 0 in front
//! of a simulated node, asserting what the client sees and what the node saw.

mod support;

mod adaptive;
mod admission;
mod cache;
mod cli;
mod clients;
mod faults;
mod guard;
mod hostile;
mod listeners;
mod metrics_text;
mod ops;
mod pipeline;
mod props;
mod proxy;
mod security;
mod slow_clients;
