//! `[shared]`: what replicas share through Redis: the answers that never change (pinned
//! heights, hashes that were found), so that N replicas make one node call per such
//! question instead of N, and what each admitted per client, so that a client spread
//! over N replicas gets its rate once. Unset `redis_url`, nothing is shared.

use std::time::Duration;

use serde::Serialize;

use super::render::ser_duration;
use super::walk::{duration, size, string, Problems, Section};
use super::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharedConfig {
    /// `redis://[user:password@]host:port[/db]`; unset, nothing is shared.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redacted")]
    pub redis_url: Option<String>,
    /// Put before every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// No request waits longer than this on Redis (a batch's lookups go together); past
    /// it the lookup is a miss, and lookups are skipped until Redis answers again.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Answers larger than this stay local.
    pub max_entry_bytes: ByteSize,
    /// Answers larger than this are stored zstd-compressed.
    pub compress_above: ByteSize,
    /// How long Redis keeps a shared answer. Set Redis's `maxmemory` with
    /// `allkeys-lru` as well: this bound is in time, that one in bytes.
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
    /// What a rate-limited client gets while Redis does not answer.
    pub on_error: OnError,
}

/// While Redis does not answer: limit each replica alone, or refuse limited clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Each replica applies the limits alone (a client spread over N replicas may get N
    /// times its rate meanwhile) and uses its own cache.
    #[default]
    Local,
    /// Rate-limited clients get 503 with Retry-After until Redis answers, and the
    /// replica reports itself not ready. Local and exempt clients are still served.
    Deny,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            redis_url: None,
            key_prefix: "cometgate".into(),
            timeout: Duration::from_millis(20),
            max_entry_bytes: ByteSize::mib(1),
            compress_above: ByteSize::kib(4),
            ttl: Duration::from_secs(24 * 3600),
            on_error: OnError::Local,
        }
    }
}

/// A Redis URL can carry a password: `/admin/config` shows only where it points.
fn redacted<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url.as_deref().map(without_password) {
        Some(url) => s.serialize_str(&url),
        None => s.serialize_none(),
    }
}

fn without_password(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

pub(super) fn read(s: &mut Section, p: &mut Problems, c: &mut SharedConfig) {
    s.read(p, "redis_url", &mut c.redis_url, |v| redis_url(v).map(Some));
    s.read(p, "key_prefix", &mut c.key_prefix, string);
    s.read(p, "timeout", &mut c.timeout, duration);
    s.read(p, "max_entry_bytes", &mut c.max_entry_bytes, size);
    s.read(p, "compress_above", &mut c.compress_above, size);
    s.read(p, "ttl", &mut c.ttl, duration);
    s.read(p, "on_error", &mut c.on_error, |v| match v.as_str() {
        Some("local") => Ok(OnError::Local),
        Some("deny") => Ok(OnError::Deny),
        _ => Err("expected \"local\" or \"deny\"".into()),
    });
}

fn redis_url(v: &toml::Value) -> Result<String, String> {
    let text = super::walk::string(v)?;
    match text.split_once("://") {
        Some(("redis", rest)) if !rest.is_empty() => Ok(text),
        Some(("rediss", _)) => Err(
            "TLS to Redis (rediss://) is not built in: reach Redis over a private network, \
             or through a local TLS tunnel, with redis://"
                .into(),
        ),
        _ => Err(format!("expected redis://host:port, got {text:?}")),
    }
}

/// Checks that need more than one key, or a range; each names the keys it involves.
pub(super) fn check(c: &SharedConfig, p: &mut Problems) {
    if !(Duration::from_millis(1)..=Duration::from_secs(1)).contains(&c.timeout)
        && !p.failed("shared.timeout")
    {
        p.report(
            "shared.timeout",
            "must be from 1ms to 1s: every request that looks in Redis may wait this long",
        );
    }
    if c.ttl < Duration::from_secs(1) && !p.failed("shared.ttl") {
        p.report("shared.ttl", "must be at least 1s");
    }
    if c.key_prefix.is_empty() || c.key_prefix.len() > 64 {
        p.report("shared.key_prefix", "must be 1 to 64 characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            without_password("redis://user:secret@10.0.0.5:6379/2"),
            "redis://***@10.0.0.5:6379/2"
        );
        assert_eq!(without_password("redis://r:6379"), "redis://r:6379");
    }

    #[test]
    fn only_plain_redis_urls_are_taken() {
        let url = |s: &str| redis_url(&toml::Value::String(s.into()));
        assert!(url("redis://127.0.0.1:6379").is_ok());
        assert!(url("rediss://r:6380").unwrap_err().contains("TLS"));
        assert!(url("http://r:6379").is_err());
        assert!(url("redis://").is_err());
    }

    #[test]
    fn the_section_reads_and_each_bad_key_is_named() {
        use crate::config::Config;
        let c =
            Config::from_toml_str("[shared]\nredis_url = \"redis://r:6379\"\ntimeout = \"50ms\"\n")
                .unwrap();
        assert_eq!(c.shared.redis_url.as_deref(), Some("redis://r:6379"));
        assert_eq!(c.shared.timeout, Duration::from_millis(50));
        assert_eq!(c.shared.max_entry_bytes, ByteSize::mib(1), "defaults kept");
        let errors = Config::from_toml_str(
            "[shared]\ntimeout = \"5s\"\nkey_prefix = \"\"\nredis_url = \"rediss://r\"\n\
             on_error = \"open\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "shared.timeout",
            "shared.key_prefix",
            "shared.redis_url",
            "shared.on_error",
        ] {
            assert!(errors.contains(key), "{key} in {errors}");
        }
    }
}
