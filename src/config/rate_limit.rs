//! `[rate_limit]`: how a client is told apart (its address, or a trusted proxy's
//! header) and how much each one may ask of the node.

use std::time::Duration;

use serde::Serialize;

use super::render::{ser_duration, ser_header_name, ser_ipnets};
use super::secs;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Cost units per second per client.
    pub requests_per_second: u32,
    /// Cost units. Not checked against method costs here (see the method
    /// table's owner).
    pub burst: u32,
    /// Bare IPs are read as /32 or /128.
    #[serde(serialize_with = "ser_ipnets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub client_ip_header: ClientIpHeader,
    /// Whether loopback and private peers are held to the per-client limits.
    pub local_clients: LocalClients,
    pub max_concurrent_per_client: usize,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_header_name"
    )]
    pub api_key_header: Option<http::HeaderName>,
    /// Non-empty, unique keys; requires `api_key_header`.
    pub api_keys: Vec<ApiKeyQuota>,
    /// How often idle per-client state is pruned.
    #[serde(serialize_with = "ser_duration")]
    pub gc_interval: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_second: 50,
            burst: 200,
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::default(),
            local_clients: LocalClients::default(),
            max_concurrent_per_client: 16,
            api_key_header: None,
            api_keys: Vec::new(),
            gc_interval: secs(60),
        }
    }
}

/// `Debug` redacts the key so a logged config does not leak credentials;
/// `to_toml_string` does print it, since that output must re-parse.
#[derive(Clone, PartialEq, Serialize)]
pub struct ApiKeyQuota {
    pub key: String,
    pub requests_per_second: u32,
    pub burst: u32,
    /// This key's own `rate_limit.max_concurrent_per_client` (a REST server behind one
    /// key sends many calls at once); unset, the shared one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_per_client: Option<usize>,
    /// This key's own `websocket.max_connections_per_client`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_websocket_connections: Option<usize>,
}

impl std::fmt::Debug for ApiKeyQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyQuota")
            .field("key", &"<redacted>")
            .field("requests_per_second", &self.requests_per_second)
            .field("burst", &self.burst)
            .field("max_concurrent_per_client", &self.max_concurrent_per_client)
            .field("max_websocket_connections", &self.max_websocket_connections)
            .finish()
    }
}

/// The one header a trusted proxy's client address is read from. Only one: a proxy that
/// sets one of them passes the other through as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// Walked right to left, skipping trusted hops (`proxy_add_x_forwarded_for`).
    #[default]
    XForwardedFor,
    /// One address, set by the proxy (`proxy_set_header X-Real-IP $remote_addr`).
    XRealIp,
}

/// `rate_limit.local_clients`: how the per-client rate and concurrency limits treat a
/// peer on a loopback or private address (127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12,
/// 192.168.0.0/16, fc00::/7) that connects directly, without forwarding headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalClients {
    /// Exempt from the per-client limits: the REST server or indexer the gateway was put
    /// in front of the node for. Lanes, fairness, the cache and the node guard still
    /// apply. A request carrying a forwarding header is never exempt.
    #[default]
    Unlimited,
    /// Limited like every other client.
    Limited,
}
