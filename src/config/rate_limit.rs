//! `[rate_limit]`: how a client is told apart (its address, or a trusted proxy's
//! header) and how much each one may ask of the node.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use toml::Value;

use super::render::{ser_duration, ser_header_name, ser_ipnets};
use super::secs;
use super::walk::{boolean, duration, string, string_list, tables, unsigned, Problems, Section};

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

pub(super) fn read(s: &mut Section, p: &mut Problems, c: &mut RateLimitConfig) {
    s.read(p, "enabled", &mut c.enabled, boolean);
    s.read(
        p,
        "requests_per_second",
        &mut c.requests_per_second,
        unsigned,
    );
    s.read(p, "burst", &mut c.burst, unsigned);
    s.read(
        p,
        "trusted_proxies",
        &mut c.trusted_proxies,
        trusted_proxies,
    );
    s.read(
        p,
        "client_ip_header",
        &mut c.client_ip_header,
        |v| match string(v)?.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ClientIpHeader::XForwardedFor),
            "x-real-ip" => Ok(ClientIpHeader::XRealIp),
            other => Err(format!(
                "unknown header {other:?}: expected \"x-forwarded-for\" or \"x-real-ip\""
            )),
        },
    );
    s.read(
        p,
        "local_clients",
        &mut c.local_clients,
        |v| match string(v)?.as_str() {
            "unlimited" => Ok(LocalClients::Unlimited),
            "limited" => Ok(LocalClients::Limited),
            other => Err(format!(
                "unknown value {other:?}: expected \"unlimited\" or \"limited\""
            )),
        },
    );
    s.read(
        p,
        "max_concurrent_per_client",
        &mut c.max_concurrent_per_client,
        unsigned,
    );
    s.read(p, "api_key_header", &mut c.api_key_header, header_name);
    let keys = s.value("api_keys");
    api_keys(p, &s.path_of("api_keys"), keys, &mut c.api_keys);
    s.read(p, "gc_interval", &mut c.gc_interval, duration);
}

fn trusted_proxies(v: &Value) -> Result<Vec<ipnet::IpNet>, String> {
    string_list(v)?
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!(
                        "item {i}: \"{entry}\" is neither an IP nor a CIDR such as \"10.0.0.0/8\""
                    )
                })
        })
        .collect()
}

/// "" means none, since TOML has no null.
fn header_name(v: &Value) -> Result<Option<http::HeaderName>, String> {
    let text = string(v)?;
    if text.is_empty() {
        return Ok(None);
    }
    http::HeaderName::from_bytes(text.as_bytes())
        .map(Some)
        .map_err(|_| format!("invalid header name \"{text}\""))
}

fn api_keys(p: &mut Problems, path: &str, value: Option<&Value>, out: &mut Vec<ApiKeyQuota>) {
    let mut seen = BTreeSet::new();
    let read = |p: &mut Problems, at, entry: &Value| api_key(p, at, entry, &mut seen);
    if let Some(quotas) = tables(p, path, "rate_limit.api_keys", value, read) {
        *out = quotas;
    }
}

/// One `[[rate_limit.api_keys]]` table; `None` if a required key is missing.
fn api_key(
    p: &mut Problems,
    entry_path: String,
    entry: &Value,
    seen: &mut BTreeSet<String>,
) -> Option<ApiKeyQuota> {
    let mut s = Section::of(p, entry_path, Some(entry));
    let key = s.require(p, "key", string);
    let requests_per_second = s.require(p, "requests_per_second", unsigned);
    let burst = s.require(p, "burst", unsigned);
    let mut max_concurrent_per_client = None;
    s.read(
        p,
        "max_concurrent_per_client",
        &mut max_concurrent_per_client,
        |v| unsigned(v).map(Some),
    );
    let mut max_websocket_connections = None;
    s.read(
        p,
        "max_websocket_connections",
        &mut max_websocket_connections,
        |v| unsigned(v).map(Some),
    );
    for (field, value) in [
        ("max_concurrent_per_client", max_concurrent_per_client),
        ("max_websocket_connections", max_websocket_connections),
    ] {
        if value == Some(0) {
            p.report(&s.path_of(field), "must be at least 1");
        }
    }
    if let Some(k) = &key {
        if k.is_empty() {
            p.report(&s.path_of("key"), "must not be empty");
        } else if !seen.insert(k.clone()) {
            p.report(
                &s.path_of("key"),
                "duplicate key (each API key may appear once)",
            );
        }
    }
    for (field, value) in [
        ("requests_per_second", requests_per_second),
        ("burst", burst),
    ] {
        if value == Some(0) {
            p.report(&s.path_of(field), "must be at least 1");
        }
    }
    s.finish(p);
    let (Some(key), Some(requests_per_second), Some(burst)) = (key, requests_per_second, burst)
    else {
        return None;
    };
    Some(ApiKeyQuota {
        key,
        requests_per_second,
        burst,
        max_concurrent_per_client,
        max_websocket_connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_accept_bare_ips_and_cidrs() {
        let v: Value = toml::Value::Array(vec![
            "10.0.0.1".into(),
            "192.168.0.0/16".into(),
            "::1".into(),
            "10.1.2.3/8".into(),
        ]);
        let nets: Vec<String> = trusted_proxies(&v)
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            nets,
            ["10.0.0.1/32", "192.168.0.0/16", "::1/128", "10.0.0.0/8"]
        );
        let bad = toml::Value::Array(vec!["10.0.0.1".into(), "proxy.local".into()]);
        assert!(trusted_proxies(&bad).unwrap_err().starts_with("item 1:"));
    }
}
