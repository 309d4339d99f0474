//! `[websocket]`: `/websocket` for clients. In `fanout` mode (the default) the gateway
//! holds its own node subscriptions, one per distinct query, and delivers each event to
//! every client subscribed to it; in `relay` mode each client gets a node websocket of
//! its own, as before fan-out existed.

use std::time::Duration;

use serde::Serialize;

use super::render::ser_duration;
use super::walk::{boolean, duration, size, unsigned, Problems, Section};
use super::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebSocketConfig {
    pub enabled: bool,
    pub mode: WsMode,
    pub max_connections_per_client: usize,
    /// 10,000 in fanout mode, 500 in relay mode (each relay holds one of the node's
    /// `max_open_connections`, 900 by default), unless set.
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_message_bytes: ByteSize,
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Pings each client this often; one silent for two intervals is closed.
    #[serde(serialize_with = "ser_duration")]
    pub ping_interval: Duration,
    /// Fanout: events waiting for one client, in messages and bytes; past either, its
    /// subscription is cancelled as the node cancels a client that falls behind.
    pub client_buffer_messages: usize,
    pub client_buffer_bytes: ByteSize,
    /// Fanout: the node counts subscriptions per connection (its
    /// `max_subscriptions_per_client`, 5 by default); the gateway opens another node
    /// connection past this many queries, up to `max_node_connections`.
    pub node_subscriptions_per_connection: usize,
    pub max_node_connections: usize,
    /// Fanout: a node subscription ends this long after its last client left, so a
    /// client that reconnects finds it still there.
    #[serde(serialize_with = "ser_duration")]
    pub unsubscribe_grace: Duration,
    /// The node's own cap on a query's length is 512 bytes.
    pub max_query_bytes: usize,
}

/// How client subscriptions reach the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WsMode {
    /// One node subscription per distinct query, shared by every client.
    #[default]
    Fanout,
    /// One node websocket per client.
    Relay,
}

const FANOUT_MAX_CONNECTIONS: usize = 10_000;
const RELAY_MAX_CONNECTIONS: usize = 500;

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: WsMode::Fanout,
            max_connections_per_client: 10,
            max_connections: FANOUT_MAX_CONNECTIONS,
            max_subscriptions_per_connection: 5,
            max_message_bytes: ByteSize::kib(64),
            messages_per_second: 10,
            message_burst: 20,
            ping_interval: Duration::from_secs(27),
            client_buffer_messages: 200,
            client_buffer_bytes: ByteSize::mib(4),
            node_subscriptions_per_connection: 5,
            max_node_connections: 20,
            unsubscribe_grace: Duration::from_secs(5),
            max_query_bytes: 512,
        }
    }
}

pub(super) fn read(s: &mut Section, p: &mut Problems, c: &mut WebSocketConfig) {
    s.read(p, "enabled", &mut c.enabled, boolean);
    s.read(p, "mode", &mut c.mode, |v| match v.as_str() {
        Some("fanout") => Ok(WsMode::Fanout),
        Some("relay") => Ok(WsMode::Relay),
        _ => Err("expected \"fanout\" or \"relay\"".into()),
    });
    // The default follows the mode, so that choosing relay alone never admits more
    // relays than a node takes connections.
    if c.mode == WsMode::Relay {
        c.max_connections = RELAY_MAX_CONNECTIONS;
    }
    let counts: [(&'static str, &mut usize); 7] = [
        (
            "max_connections_per_client",
            &mut c.max_connections_per_client,
        ),
        ("max_connections", &mut c.max_connections),
        (
            "max_subscriptions_per_connection",
            &mut c.max_subscriptions_per_connection,
        ),
        ("client_buffer_messages", &mut c.client_buffer_messages),
        (
            "node_subscriptions_per_connection",
            &mut c.node_subscriptions_per_connection,
        ),
        ("max_node_connections", &mut c.max_node_connections),
        ("max_query_bytes", &mut c.max_query_bytes),
    ];
    for (key, out) in counts {
        s.read(p, key, out, unsigned);
    }
    s.read(p, "max_message_bytes", &mut c.max_message_bytes, size);
    s.read(p, "client_buffer_bytes", &mut c.client_buffer_bytes, size);
    s.read(p, "ping_interval", &mut c.ping_interval, duration);
    s.read(p, "unsubscribe_grace", &mut c.unsubscribe_grace, duration);
    s.read(
        p,
        "messages_per_second",
        &mut c.messages_per_second,
        unsigned,
    );
    s.read(p, "message_burst", &mut c.message_burst, unsigned);
}

/// Checks that need a range or another key; each names the keys it involves.
pub(super) fn check(c: &WebSocketConfig, p: &mut Problems) {
    let at_least_one = [
        ("websocket.client_buffer_messages", c.client_buffer_messages),
        (
            "websocket.node_subscriptions_per_connection",
            c.node_subscriptions_per_connection,
        ),
        ("websocket.max_node_connections", c.max_node_connections),
        ("websocket.max_query_bytes", c.max_query_bytes),
    ];
    for (path, n) in at_least_one {
        if n == 0 && !p.failed(path) {
            p.report(path, "must be at least 1");
        }
    }
    if c.client_buffer_bytes < c.max_message_bytes && !p.failed("websocket.client_buffer_bytes") {
        p.report(
            "websocket.client_buffer_bytes",
            format!(
                "must be at least websocket.max_message_bytes ({}), got {}: a client could \
                 not hold even one answer",
                c.max_message_bytes, c.client_buffer_bytes
            ),
        );
    }
    if c.max_query_bytes > 64 * 1024 && !p.failed("websocket.max_query_bytes") {
        p.report("websocket.max_query_bytes", "must be at most 65536");
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn websocket(text: &str) -> WebSocketConfig {
        Config::from_toml_str(text).expect("valid").websocket
    }

    #[test]
    fn relay_alone_admits_no_more_relays_than_a_node_takes() {
        assert_eq!(websocket("").max_connections, FANOUT_MAX_CONNECTIONS);
        let relay = websocket("[websocket]\nmode = \"relay\"");
        assert_eq!(relay.max_connections, RELAY_MAX_CONNECTIONS);
        // A value the user sets is theirs, whichever mode.
        let set = websocket("[websocket]\nmode = \"relay\"\nmax_connections = 800");
        assert_eq!(set.max_connections, 800);
    }

    #[test]
    fn fanout_bounds_are_checked_with_the_keys_they_involve() {
        let errs = Config::from_toml_str(
            "[websocket]\nclient_buffer_bytes = \"1 KiB\"\nmax_node_connections = 0\nmode = \"hub\"",
        )
        .expect_err("refused")
        .to_string();
        for needle in [
            "websocket.client_buffer_bytes",
            "websocket.max_message_bytes",
            "websocket.max_node_connections",
            "websocket.mode",
        ] {
            assert!(errs.contains(needle), "{needle} in {errs}");
        }
    }
}
