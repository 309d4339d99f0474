//! `[node_guard]`: the node's own memory, read from its Prometheus endpoint, decides
//! whether heavy calls may start. A node's memory is what kills it; CometBFT exports it
//! (`instrumentation.prometheus = true`, `:26660`, `process_resident_memory_bytes`).

use std::time::Duration;

use serde::Serialize;

use super::render::ser_duration;
use super::walk::{duration, size, Problems, Section};
use super::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeGuardConfig {
    /// The node's metrics endpoint; unset, the guard is off.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_uri")]
    pub metrics_url: Option<http::Uri>,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// The node's container or host memory limit: what the fractions are of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<ByteSize>,
    /// Above this fraction of `memory_limit`, heavy calls stop starting.
    pub shed_above: f64,
    /// Below this fraction they start again.
    pub resume_below: f64,
}

impl Default for NodeGuardConfig {
    fn default() -> Self {
        NodeGuardConfig {
            metrics_url: None,
            interval: Duration::from_secs(1),
            memory_limit: None,
            shed_above: 0.85,
            resume_below: 0.75,
        }
    }
}

fn ser_uri<S: serde::Serializer>(uri: &Option<http::Uri>, s: S) -> Result<S::Ok, S::Error> {
    match uri {
        Some(uri) => s.serialize_str(&uri.to_string()),
        None => s.serialize_none(),
    }
}

pub(super) fn read(s: &mut Section, p: &mut Problems, c: &mut NodeGuardConfig) {
    s.read(p, "metrics_url", &mut c.metrics_url, |v| {
        metrics_url(v).map(Some)
    });
    s.read(p, "interval", &mut c.interval, duration);
    s.read(p, "memory_limit", &mut c.memory_limit, |v| {
        size(v).map(Some)
    });
    s.read(p, "shed_above", &mut c.shed_above, fraction);
    s.read(p, "resume_below", &mut c.resume_below, fraction);
}

/// An `http://host:port/path` URL; the path is kept (`/metrics` on a real node).
fn metrics_url(v: &toml::Value) -> Result<http::Uri, String> {
    let text = v.as_str().ok_or("expected a URL string")?;
    let uri: http::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!("expected http://host:port/metrics, got {text:?}"));
    }
    Ok(uri)
}

fn fraction(v: &toml::Value) -> Result<f64, String> {
    let f = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        _ => return Err("expected a fraction such as 0.85".into()),
    };
    if f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(format!("{f} is not a fraction above 0 and at most 1"))
    }
}

/// Checks that need more than one key; each names every key it involves.
pub(super) fn check(c: &NodeGuardConfig, p: &mut Problems) {
    if c.resume_below >= c.shed_above
        && !p.failed("node_guard.resume_below")
        && !p.failed("node_guard.shed_above")
    {
        p.report(
            "node_guard.resume_below",
            format!(
                "{} must be below node_guard.shed_above ({}): the guard resumes under what it sheds over",
                c.resume_below, c.shed_above
            ),
        );
    }
    if c.metrics_url.is_some() && c.memory_limit.is_none() && !p.failed("node_guard.metrics_url") {
        p.report(
            "node_guard.memory_limit",
            "must be set with node_guard.metrics_url: the guard sheds at a fraction of it",
        );
    }
    if c.interval < Duration::from_millis(100) && !p.failed("node_guard.interval") {
        p.report(
            "node_guard.interval",
            "must be at least 100ms: the node's metrics endpoint is not free to serve",
        );
    }
}
