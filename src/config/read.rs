//! Reads each section of the TOML table into the typed config, starting
//! from the defaults so absent keys keep them.

use toml::{Table, Value};

use super::methods::read_methods;
use super::walk::{boolean, duration, size, socket_addr, string, unsigned, Problems, Section};
use super::{
    CacheConfig, Config, HeadConfig, LogConfig, LogFormat, MetricsConfig, ServerConfig,
    UpstreamConfig, WhileRefreshing,
};

pub(crate) fn read_config(root: &Table, p: &mut Problems) -> Config {
    let mut c = Config::default();
    let mut top = Section::new("", Some(root));
    top.section(p, "server", |s, p| server(s, p, &mut c.server));
    top.section(p, "upstream", |s, p| upstream(s, p, &mut c.upstream));
    top.section(p, "lanes", |s, p| {
        s.section(p, "light", |s, p| {
            super::lanes::read(s, p, &mut c.lanes.light)
        });
        s.section(p, "heavy", |s, p| {
            super::lanes::read(s, p, &mut c.lanes.heavy)
        });
    });
    top.section(p, "rate_limit", |s, p| {
        super::rate_limit::read(s, p, &mut c.rate_limit)
    });
    top.section(p, "cache", |s, p| cache(s, p, &mut c.cache));
    top.section(p, "head", |s, p| head(s, p, &mut c.head));
    top.section(p, "websocket", |s, p| {
        super::websocket::read(s, p, &mut c.websocket)
    });
    top.section(p, "metrics", |s, p| metrics(s, p, &mut c.metrics));
    top.section(p, "log", |s, p| log(s, p, &mut c.log));
    top.section(p, "node_guard", |s, p| {
        super::node_guard::read(s, p, &mut c.node_guard)
    });
    top.section(p, "shared", |s, p| super::shared::read(s, p, &mut c.shared));
    read_methods(p, top.value("methods"), &mut c.methods);
    top.finish(p);
    c
}

fn server(s: &mut Section, p: &mut Problems, c: &mut ServerConfig) {
    s.read(p, "listen", &mut c.listen, socket_addr);
    s.read(p, "max_body_bytes", &mut c.max_body_bytes, size);
    s.read(p, "max_batch_size", &mut c.max_batch_size, unsigned);
    s.read(p, "max_header_bytes", &mut c.max_header_bytes, size);
    s.read(p, "max_uri_bytes", &mut c.max_uri_bytes, size);
    s.read(
        p,
        "header_read_timeout",
        &mut c.header_read_timeout,
        duration,
    );
    s.read(p, "body_read_timeout", &mut c.body_read_timeout, duration);
    s.read(p, "write_timeout", &mut c.write_timeout, duration);
    s.read(p, "max_connections", &mut c.max_connections, unsigned);
    s.read(
        p,
        "max_pending_connections",
        &mut c.max_pending_connections,
        unsigned,
    );
    s.read(
        p,
        "max_connections_per_client",
        &mut c.max_connections_per_client,
        unsigned,
    );
    s.read(p, "shutdown_grace", &mut c.shutdown_grace, duration);
}

fn upstream(s: &mut Section, p: &mut Problems, c: &mut UpstreamConfig) {
    s.read(p, "url", &mut c.url, upstream_url);
    s.read(p, "timeout", &mut c.timeout, duration);
    s.read(p, "connect_timeout", &mut c.connect_timeout, duration);
    s.read(p, "max_concurrency", &mut c.max_concurrency, unsigned);
    s.read(p, "max_response_bytes", &mut c.max_response_bytes, size);
    s.read(p, "max_inflight_bytes", &mut c.max_inflight_bytes, size);
    s.read(p, "pool_max_idle", &mut c.pool_max_idle, unsigned);
    s.read(p, "pool_idle_timeout", &mut c.pool_idle_timeout, duration);
    s.read(p, "ca_file", &mut c.ca_file, |v| {
        let path = std::path::PathBuf::from(string(v)?);
        read_ca_file(&path).map(|_| Some(path))
    });
    s.read(p, "max_lag_blocks", &mut c.max_lag_blocks, unsigned);
    s.read(
        p,
        "hedge_after",
        &mut c.hedge_after,
        super::nodes::hedge_after,
    );
    super::nodes::read(s, p, &mut c.nodes);
}

/// The certificates of a PEM file: read and checked when the config is loaded, so a
/// bad file is a config error naming its key, not a failure at the first call.
pub(crate) fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The node's RPC address, normalised to `http[s]://authority/` so the rest of
/// the code can append paths without re-checking the shape.
pub(crate) fn upstream_url(v: &Value) -> Result<http::Uri, String> {
    let text = string(v)?;
    let bad = |why: &str| format!("invalid URL \"{text}\": {why}");
    let uri: http::Uri = text
        .trim()
        .parse()
        .map_err(|_| bad("expected e.g. \"http://127.0.0.1:26657\""))?;
    let scheme = match uri.scheme_str() {
        Some("http") | Some("tcp") => "http",
        Some("https") => "https",
        Some("unix") => return Err(bad("unix sockets are not supported")),
        Some(other) => {
            return Err(bad(&format!(
                "unsupported scheme \"{other}\", use http:// or https://"
            )))
        }
        None => return Err(bad("missing scheme, write e.g. \"http://127.0.0.1:26657\"")),
    };
    let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
    if authority.host().is_empty() {
        return Err(bad("missing host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    if !matches!(uri.path(), "" | "/") {
        return Err(bad(
            "a path is not allowed; CometBFT serves its routes at the root",
        ));
    }
    http::Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| bad(&e.to_string()))
}

fn cache(s: &mut Section, p: &mut Problems, c: &mut CacheConfig) {
    s.read(p, "enabled", &mut c.enabled, boolean);
    s.read(p, "max_bytes", &mut c.max_bytes, size);
    s.read(p, "max_entry_bytes", &mut c.max_entry_bytes, size);
    s.read(p, "stale_if_error", &mut c.stale_if_error, duration);
    s.read(p, "latest_max_ttl", &mut c.latest_max_ttl, duration);
    s.read(p, "code_error_ttl", &mut c.code_error_ttl, duration);
    s.read(p, "refresh_ahead", &mut c.refresh_ahead, unsigned);
    s.read(
        p,
        "while_refreshing",
        &mut c.while_refreshing,
        |v| match string(v)?.as_str() {
            "wait" => Ok(WhileRefreshing::Wait),
            "previous" => Ok(WhileRefreshing::Previous),
            other => Err(format!(
                "unknown value {other:?}: expected \"wait\" or \"previous\""
            )),
        },
    );
    s.read(p, "previous_max_age", &mut c.previous_max_age, duration);
}

fn head(s: &mut Section, p: &mut Problems, c: &mut HeadConfig) {
    s.read(p, "websocket", &mut c.websocket, boolean);
    s.read(p, "poll_interval", &mut c.poll_interval, duration);
    s.read(p, "stall_after", &mut c.stall_after, duration);
}

fn metrics(s: &mut Section, p: &mut Problems, c: &mut MetricsConfig) {
    s.read(p, "admin_token", &mut c.admin_token, |v| {
        match string(v)?.trim() {
            "" => Ok(None),
            t if t.len() < 16 => Err("must be at least 16 characters (or \"\" for none)".into()),
            t => Ok(Some(t.to_owned())),
        }
    });
    s.read(p, "listen", &mut c.listen, |v| {
        match v.as_str().map(str::trim) {
            Some("off") | Some("") => Ok(None),
            _ => socket_addr(v)
                .map(Some)
                .map_err(|e| format!("{e}, or \"off\" to disable")),
        }
    });
}

fn log(s: &mut Section, p: &mut Problems, c: &mut LogConfig) {
    s.read(p, "format", &mut c.format, |v| match string(v)?.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "invalid log format \"{other}\": expected \"text\" or \"json\""
        )),
    });
    s.read(p, "access_log", &mut c.access_log, boolean);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<String, String> {
        upstream_url(&Value::String(s.into())).map(|u| u.to_string())
    }

    #[test]
    fn upstream_urls_are_normalised() {
        assert_eq!(
            url("http://127.0.0.1:26657").unwrap(),
            "http://127.0.0.1:26657/"
        );
        assert_eq!(
            url("http://127.0.0.1:26657/").unwrap(),
            "http://127.0.0.1:26657/"
        );
        assert_eq!(
            url("tcp://10.0.0.2:26657").unwrap(),
            "http://10.0.0.2:26657/"
        );
        assert_eq!(url("http://node").unwrap(), "http://node/");
        assert_eq!(
            url("https://archive.example:443").unwrap(),
            "https://archive.example:443/"
        );
        assert_eq!(url("http://[::1]:26657").unwrap(), "http://[::1]:26657/");
    }

    #[test]
    fn upstream_urls_are_checked() {
        for bad in [
            "not a url",
            "127.0.0.1:26657",
            "unix:///var/run/node.sock",
            "ws://node:26657",
            "http://node:26657/rpc",
            "http://node:26657/?a=b",
            "http://user:pw@node:26657",
            "http:///",
        ] {
            assert!(url(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
