//! The soak run (issue #8) in a process of its own, so that its RSS and open-fd
//! readings are the gateway's (and its node's), not those of tests running beside it.
//! `COMETGATE_SOAK_SECS` sets the duration (CI: the default; `load/soak.sh`: 600).

#[allow(dead_code)]
#[path = "../gateway/support.rs"]
mod support;

#[path = "../gateway/soak.rs"]
mod soak;
