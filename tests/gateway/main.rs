//! The gateway's integration tests: one binary, each test a gateway on port 0 in front
//! of a simulated node, asserting what the client sees and what the node saw.

mod support;

mod adaptive;
mod admission;
mod cache;
mod cli;
mod clients;
mod config_files;
mod cosmjs;
mod fanout;
mod faults;
mod guard;
mod guard_room;
mod hostile;
mod listeners;
mod live_page;
mod logging;
mod metrics_text;
mod nodes;
mod nodes_ws;
mod ops;
mod pipeline;
mod props;
mod proxy;
mod readiness;
mod refresh;
mod replicas;
mod security;
mod shapes;
mod shared;
mod slow_clients;
mod tls;
