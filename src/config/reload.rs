//! Which changes a reload cannot apply.

use super::Config;

/// One startup-only key: its path, whether two configs agree on it, and how to carry
/// the running value into a reloaded config.
struct StartupKey {
    path: &'static str,
    same: fn(&Config, &Config) -> bool,
    keep: fn(&Config, &mut Config),
}

macro_rules! startup_keys {
    ($($path:literal => $($field:ident).+;)*) => {
        &[$(StartupKey {
            path: $path,
            same: |a, b| a.$($field).+ == b.$($field).+,
            keep: |running, new| new.$($field).+ = running.$($field).+.clone(),
        },)*]
    };
}

/// Keys whose new value the running process cannot apply: each is baked
/// into something built once at startup (as of this writing: the listeners
/// and connection semaphores in `server::run`, `Upstream::new`,
/// `Head::spawn`, `Cache::new`, `SharedTier::new`, `Hub::new`, the tracing subscriber). Every other key is
/// read from the reloaded `Config`; a component that starts sizing
/// something once must add its key here.
const RESTART_REQUIRED: &[StartupKey] = startup_keys! {
    "server.listen" => server.listen;
    "server.max_connections" => server.max_connections;
    "server.max_pending_connections" => server.max_pending_connections;
    "upstream.timeout" => upstream.timeout;
    "upstream.connect_timeout" => upstream.connect_timeout;
    "upstream.max_response_bytes" => upstream.max_response_bytes;
    "upstream.max_inflight_bytes" => upstream.max_inflight_bytes;
    "upstream.pool_max_idle" => upstream.pool_max_idle;
    "upstream.pool_idle_timeout" => upstream.pool_idle_timeout;
    "cache.max_bytes" => cache.max_bytes;
    "head.websocket" => head.websocket;
    "head.poll_interval" => head.poll_interval;
    "head.stall_after" => head.stall_after;
    "metrics.listen" => metrics.listen;
    "log.format" => log.format;
    "shared.redis_url" => shared.redis_url;
    "shared.key_prefix" => shared.key_prefix;
    "shared.timeout" => shared.timeout;
    "shared.max_entry_bytes" => shared.max_entry_bytes;
    "shared.compress_above" => shared.compress_above;
    "shared.ttl" => shared.ttl;
    "shared.on_error" => shared.on_error;
    "websocket.mode" => websocket.mode;
    "websocket.node_subscriptions_per_connection" => websocket.node_subscriptions_per_connection;
    "websocket.max_node_connections" => websocket.max_node_connections;
    "websocket.unsubscribe_grace" => websocket.unsubscribe_grace;
};

#[cfg(test)]
pub(crate) fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    RESTART_REQUIRED
        .iter()
        .filter(|k| !(k.same)(old, new))
        .map(|k| k.path)
        .collect()
}

/// Puts the running values of startup-only keys back into `new`, so that the config
/// the process holds (and `/admin/config` shows, and the next reload compares with)
/// is the one it runs. Returns the keys whose new value waits for a restart.
pub(crate) fn keep_running(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut pending = Vec::new();
    for k in RESTART_REQUIRED {
        if !(k.same)(running, new) {
            (k.keep)(running, new);
            pending.push(k.path);
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ByteSize, MethodOverride};
    use super::*;

    #[test]
    fn restart_required_changes_lists_startup_keys_only() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(old.restart_required_changes(&new).is_empty());
        new.rate_limit.burst = 1;
        new.lanes.heavy.max_concurrency = 1;
        new.server.write_timeout = Duration::from_secs(1);
        new.methods.insert("tx".into(), MethodOverride::default());
        assert!(old.restart_required_changes(&new).is_empty());
        new.server.listen = "0.0.0.0:1".parse().unwrap();
        new.metrics.listen = None;
        new.cache.max_bytes = ByteSize::gib(1);
        new.upstream.timeout = Duration::from_secs(3);
        new.upstream.url = http::Uri::from_static("http://10.0.0.2:26657/");
        assert_eq!(
            old.restart_required_changes(&new),
            [
                "server.listen",
                "upstream.timeout",
                "cache.max_bytes",
                "metrics.listen"
            ]
        );
    }

    #[test]
    fn a_reload_keeps_running_values_of_startup_keys() {
        let running = Config::default();
        let mut new = running.clone();
        new.upstream.timeout = Duration::from_secs(3);
        new.upstream.url = http::Uri::from_static("http://10.0.0.2:26657/");
        new.rate_limit.burst = 500;
        assert_eq!(keep_running(&running, &mut new), ["upstream.timeout"]);
        assert_eq!(
            new.upstream.timeout, running.upstream.timeout,
            "still the running one"
        );
        assert_eq!(
            new.upstream.url.to_string(),
            "http://10.0.0.2:26657/",
            "the node list reloads"
        );
        assert_eq!(new.rate_limit.burst, 500, "reloadable keys apply");
        assert!(running.restart_required_changes(&new).is_empty());
    }
}
