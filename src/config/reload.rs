//! Which changes a reload cannot apply.

use super::Config;

type Unchanged = fn(&Config, &Config) -> bool;

/// Keys whose new value the running process cannot apply: each is baked
/// into something built once at startup (as of this writing: the listeners
/// and connection semaphores in `server::run`, `Upstream::new`,
/// `Head::spawn`, `Cache::new`, the tracing subscriber). Every other key is
/// read from the reloaded `Config`; a component that starts sizing
/// something once must add its key here.
const RESTART_REQUIRED: &[(&str, Unchanged)] = &[
    ("server.listen", |a, b| a.server.listen == b.server.listen),
    ("server.max_connections", |a, b| {
        a.server.max_connections == b.server.max_connections
    }),
    ("server.max_pending_connections", |a, b| {
        a.server.max_pending_connections == b.server.max_pending_connections
    }),
    ("upstream.url", |a, b| a.upstream.url == b.upstream.url),
    ("upstream.timeout", |a, b| {
        a.upstream.timeout == b.upstream.timeout
    }),
    ("upstream.connect_timeout", |a, b| {
        a.upstream.connect_timeout == b.upstream.connect_timeout
    }),
    ("upstream.max_response_bytes", |a, b| {
        a.upstream.max_response_bytes == b.upstream.max_response_bytes
    }),
    ("upstream.pool_max_idle", |a, b| {
        a.upstream.pool_max_idle == b.upstream.pool_max_idle
    }),
    ("upstream.pool_idle_timeout", |a, b| {
        a.upstream.pool_idle_timeout == b.upstream.pool_idle_timeout
    }),
    ("cache.max_bytes", |a, b| {
        a.cache.max_bytes == b.cache.max_bytes
    }),
    ("head.websocket", |a, b| {
        a.head.websocket == b.head.websocket
    }),
    ("head.poll_interval", |a, b| {
        a.head.poll_interval == b.head.poll_interval
    }),
    ("head.stall_after", |a, b| {
        a.head.stall_after == b.head.stall_after
    }),
    ("metrics.listen", |a, b| {
        a.metrics.listen == b.metrics.listen
    }),
    ("log.format", |a, b| a.log.format == b.log.format),
];

pub(crate) fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    RESTART_REQUIRED
        .iter()
        .filter(|(_, same)| !same(old, new))
        .map(|(path, _)| *path)
        .collect()
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
        new.upstream.url = http::Uri::from_static("http://10.0.0.2:26657/");
        assert_eq!(
            old.restart_required_changes(&new),
            [
                "server.listen",
                "upstream.url",
                "cache.max_bytes",
                "metrics.listen"
            ]
        );
    }
}
