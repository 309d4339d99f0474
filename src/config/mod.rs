//! cometgate's configuration: raw TOML becomes a validated [`Config`] once,
//! here, and nothing else in the crate sees TOML.
//!
//! Reading is a walk over the parsed table (see `walk`) rather than a serde
//! derive, so that every problem — unknown keys, bad values, cross-field
//! conflicts — is reported at once, each with the key path to edit.
//! The documented example with every default is `config/cometgate.toml`.

mod defaults;
mod error;
mod lanes;
mod methods;
mod node_guard;
mod nodes;
mod rate_limit;
mod read;
mod reload;
mod render;
mod shared;
mod units;
mod validate;
mod walk;
mod warnings;
mod websocket;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use error::{ConfigError, ConfigErrors};
pub use lanes::{LaneConfig, LanesConfig};
pub use methods::MethodOverride;
pub use node_guard::NodeGuardConfig;
pub use nodes::{HedgeAfter, NodeConfig};
pub use rate_limit::{ApiKeyQuota, ClientIpHeader, LocalClients, RateLimitConfig};
pub(crate) use read::read_ca_file;
pub use shared::{OnError, SharedConfig};
pub(crate) use units::format_duration;
pub use units::ByteSize;
pub use websocket::{WebSocketConfig, WsMode};

/// Lanes are the method table's; re-exported for the modules that name them with
/// the config that tunes them.
pub use crate::methods::Lane;

use render::{ser_duration, ser_metrics_listen};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub lanes: LanesConfig,
    pub rate_limit: RateLimitConfig,
    pub cache: CacheConfig,
    pub head: HeadConfig,
    pub websocket: WebSocketConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub node_guard: NodeGuardConfig,
    pub shared: SharedConfig,
    /// Per-method overrides from `[methods.<name>]`; names are routes of
    /// [`crate::methods::ROUTES`] and cap fields apply to their method.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, MethodOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: ByteSize,
    pub max_batch_size: usize,
    /// At least 8 KiB: hyper's HTTP/1 read buffer refuses anything smaller.
    pub max_header_bytes: ByteSize,
    pub max_uri_bytes: ByteSize,
    #[serde(serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub body_read_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Connections that have not yet sent a full request head.
    pub max_pending_connections: usize,
    /// Open connections from one address (a trusted proxy's are not capped).
    pub max_connections_per_client: usize,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 26658)),
            max_body_bytes: ByteSize::bytes(1_000_000),
            max_batch_size: 10,
            max_header_bytes: ByteSize::kib(16),
            max_uri_bytes: ByteSize::kib(8),
            header_read_timeout: secs(10),
            body_read_timeout: secs(10),
            write_timeout: secs(30),
            max_connections: 4096,
            max_pending_connections: 256,
            max_connections_per_client: 256,
            shutdown_grace: secs(30),
        }
    }
}

/// Rendered by `nodes`: the `url` shorthand and `nodes` never appear together.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The one-node shorthand. Always `http[s]://host[:port]/`: "tcp://" (CometBFT's
    /// laddr spelling) is normalised to http, and the path is always "/".
    pub url: http::Uri,
    /// Several nodes; empty means the one at `url`. Read through `node_list`.
    pub nodes: Vec<NodeConfig>,
    /// A node further than this behind the best head is not asked "latest" questions.
    pub max_lag_blocks: u64,
    /// A heavy read still unanswered after this long (or the heavy lane's latency at a
    /// quantile) is also sent to a second node, and the first answer wins; `None` never
    /// hedges.
    pub hedge_after: Option<HedgeAfter>,
    /// Whole request, connect included; a retry on another node fits in the same time.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Total node requests in flight, both lanes and every node together.
    pub max_concurrency: usize,
    pub max_response_bytes: ByteSize,
    /// Bytes of node answers being read at once, all calls together. A read that would
    /// pass it waits; an answer larger than the whole budget takes all of it alone.
    pub max_inflight_bytes: ByteSize,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    /// PEM certificates trusted for an `https://` node at `url` besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: http::Uri::from_static("http://127.0.0.1:26657/"),
            nodes: Vec::new(),
            max_lag_blocks: 2,
            hedge_after: None,
            timeout: secs(10),
            connect_timeout: secs(2),
            max_concurrency: 64,
            max_response_bytes: ByteSize::mib(32),
            // Two answers at the response cap at once; the headroom above the cache the
            // memory target allows (cache.max_bytes + 64 MiB).
            max_inflight_bytes: ByteSize::mib(64),
            pool_max_idle: 64,
            pool_idle_timeout: secs(90),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_bytes: ByteSize,
    /// At most `max_bytes`.
    pub max_entry_bytes: ByteSize,
    #[serde(serialize_with = "ser_duration")]
    pub stale_if_error: Duration,
    /// Life of a "latest" entry while the head tracker is blind.
    #[serde(serialize_with = "ser_duration")]
    pub latest_max_ttl: Duration,
    /// ABCI code != 0 answers; zero = never stored.
    #[serde(serialize_with = "ser_duration")]
    pub code_error_ttl: Duration,
    /// "Latest" questions asked at least twice in a block that are fetched again as the
    /// next block lands, the most asked first; 0 = off.
    pub refresh_ahead: usize,
    pub while_refreshing: WhileRefreshing,
    /// How long after a block `while_refreshing = "previous"` may still serve the
    /// previous block's answer.
    #[serde(serialize_with = "ser_duration")]
    pub previous_max_age: Duration,
}

/// What a caller of a "latest" question gets while its answer for the new block is
/// being fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhileRefreshing {
    /// Join the fetch (coalesced): always the new block's answer.
    #[default]
    Wait,
    /// The previous block's answer at once, marked stale, for `previous_max_age`.
    Previous,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: ByteSize::mib(256),
            max_entry_bytes: ByteSize::mib(16),
            stale_if_error: secs(30),
            latest_max_ttl: secs(10),
            code_error_ttl: Duration::ZERO,
            refresh_ahead: 16,
            while_refreshing: WhileRefreshing::Wait,
            previous_max_age: secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadConfig {
    /// Follow NewBlock over the node's /websocket.
    pub websocket: bool,
    /// How often `status` is polled, websocket or not: the head while the websocket is
    /// down, and always the HTTP path readiness checks. A poll unanswered within it fails.
    #[serde(serialize_with = "ser_duration")]
    pub poll_interval: Duration,
    /// Head not advancing this long => not ready. Longer than `poll_interval`.
    #[serde(serialize_with = "ser_duration")]
    pub stall_after: Duration,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            websocket: true,
            poll_interval: secs(1),
            stall_after: secs(30),
        }
    }
}

#[derive(Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// `None` when the TOML says "off" or "".
    #[serde(serialize_with = "ser_metrics_listen")]
    pub listen: Option<SocketAddr>,
    /// Bearer token for `/admin/*`. Without one, admin routes answer only on a loopback
    /// listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("listen", &self.listen)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9464))),
            admin_token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Config {
    /// Parses and validates; every problem is returned, each with its path.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let table: toml::Table = text.parse().map_err(|e| ConfigError::syntax(text, &e))?;
        let mut problems = walk::Problems::default();
        let mut config = read::read_config(&table, &mut problems);
        defaults::give_way(&mut config, &problems);
        validate::cross_check(&config, &mut problems);
        problems.finish(config)
    }

    /// What this valid config can never do, each with the key to change: said at start,
    /// on reload and by `--check-config`, none of them a reason to refuse to start.
    pub fn warnings(&self) -> Vec<ConfigError> {
        warnings::warnings(self)
    }

    /// Reads `path`; an unreadable file is one error with an empty key path.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text)
    }

    /// The effective configuration, defaults filled in, as TOML that
    /// re-parses to `self`.
    pub fn to_toml_string(&self) -> String {
        render::to_toml_string(self)
    }

    /// Key paths that differ between `self` and `new` but only take effect
    /// after a restart, in file order: server.listen,
    /// server.max_connections, server.max_pending_connections,
    /// upstream.timeout, upstream.connect_timeout,
    /// upstream.max_response_bytes, upstream.max_inflight_bytes, upstream.pool_max_idle,
    /// upstream.pool_idle_timeout, cache.max_bytes, head.websocket,
    /// head.poll_interval, head.stall_after, metrics.listen, log.format.
    #[cfg(test)]
    pub(crate) fn restart_required_changes(&self, new: &Config) -> Vec<&'static str> {
        reload::restart_required(self, new)
    }

    /// `new` as this running config can apply it: startup-only keys keep their running
    /// values. Returns the keys whose new value waits for a restart.
    pub(crate) fn reloadable(&self, mut new: Config) -> (Config, Vec<&'static str>) {
        let pending = reload::keep_running(self, &mut new);
        (new, pending)
    }
}
