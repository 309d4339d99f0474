//! `[[upstream.nodes]]`: the nodes behind the gateway. `upstream.url` (with
//! `upstream.ca_file`) stays the one-node shorthand; a file sets one or the other.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;
use toml::Value;

use super::read::{read_ca_file, upstream_url};
use super::render::ser_uri;
use super::walk::{string, tables, unsigned, Problems, Section};
use super::UpstreamConfig;

/// One node the gateway may send calls to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NodeConfig {
    /// Normalised as `upstream.url` is: `http[s]://host[:port]/`.
    #[serde(serialize_with = "ser_uri")]
    pub url: http::Uri,
    /// Its share of the calls: among equally fast nodes, one of weight 3 is given calls
    /// until it holds three times as many in flight as one of weight 1.
    pub weight: u32,
    /// Node calls in flight on this node at most; unset, only `upstream.max_concurrency`
    /// (all nodes together) bounds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// PEM certificates trusted for this node besides the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl NodeConfig {
    pub fn new(url: http::Uri) -> NodeConfig {
        NodeConfig {
            url,
            weight: 1,
            max_concurrency: None,
            ca_file: None,
        }
    }
}

/// When a heavy read still unanswered is also sent to a second node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// After this long.
    Fixed(std::time::Duration),
    /// After the heavy lane's recent node latency at this quantile (0.95 for "p95"):
    /// only the slowest calls are sent twice, whatever the node's speed.
    Quantile(f64),
}

impl std::fmt::Display for HedgeAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HedgeAfter::Fixed(d) => f.write_str(&super::format_duration(*d)),
            HedgeAfter::Quantile(q) => write!(f, "p{}", q * 100.0),
        }
    }
}

/// `"500ms"`, or a quantile written `"p95"` (from p50 to p99.9).
pub(super) fn hedge_after(v: &Value) -> Result<Option<HedgeAfter>, String> {
    let text = string(v)?;
    if let Some(q) = text.strip_prefix('p') {
        let q: f64 = q
            .parse()
            .map_err(|_| format!("invalid quantile \"{text}\": write e.g. \"p95\""))?;
        if !(50.0..=99.9).contains(&q) {
            return Err(format!("quantile \"{text}\" must be from p50 to p99.9"));
        }
        return Ok(Some(HedgeAfter::Quantile(q / 100.0)));
    }
    super::walk::duration(v).map(|d| Some(HedgeAfter::Fixed(d)))
}

impl UpstreamConfig {
    /// The nodes in effect: the `[[upstream.nodes]]` tables, or the one `upstream.url`.
    pub fn node_list(&self) -> Vec<NodeConfig> {
        if self.nodes.is_empty() {
            vec![NodeConfig {
                ca_file: self.ca_file.clone(),
                ..NodeConfig::new(self.url.clone())
            }]
        } else {
            self.nodes.clone()
        }
    }
}

/// Reads `upstream.nodes`; refuses it next to `upstream.url` or `upstream.ca_file`,
/// which would leave the reader guessing which node was meant.
pub(super) fn read(s: &mut Section, p: &mut Problems, out: &mut Vec<NodeConfig>) {
    let path = s.path_of("nodes");
    let Some(value) = s.value("nodes") else {
        return;
    };
    for shorthand in ["url", "ca_file"] {
        if s.contains(shorthand) {
            p.report(
                &path,
                format!(
                    "set either upstream.nodes or upstream.{shorthand}, not both \
                     (upstream.url is the one-node shorthand)"
                ),
            );
            return;
        }
    }
    if value.as_array().is_some_and(|a| a.is_empty()) {
        p.report(&path, "must list at least one node");
        return;
    }
    let mut seen = BTreeSet::new();
    let read = |p: &mut Problems, at, entry: &Value| node(p, at, entry, &mut seen);
    if let Some(nodes) = tables(p, &path, "upstream.nodes", Some(value), read) {
        *out = nodes;
    }
}

fn node(
    p: &mut Problems,
    entry_path: String,
    entry: &Value,
    seen: &mut BTreeSet<String>,
) -> Option<NodeConfig> {
    let mut s = Section::of(p, entry_path, Some(entry));
    let url = s.require(p, "url", upstream_url);
    let mut weight = 1u32;
    s.read(p, "weight", &mut weight, unsigned);
    if weight == 0 {
        p.report(&s.path_of("weight"), "must be at least 1");
    }
    let mut max_concurrency = None;
    s.read(p, "max_concurrency", &mut max_concurrency, |v| {
        unsigned(v).map(Some)
    });
    if max_concurrency == Some(0) {
        p.report(&s.path_of("max_concurrency"), "must be at least 1");
    }
    let mut ca_file = None;
    s.read(p, "ca_file", &mut ca_file, |v| {
        let path = PathBuf::from(string(v)?);
        read_ca_file(&path).map(|_| Some(path))
    });
    if let Some(url) = &url {
        if !seen.insert(url.to_string()) {
            p.report(
                &s.path_of("url"),
                "duplicate node (each url may appear once)",
            );
        }
    }
    s.finish(p);
    Some(NodeConfig {
        url: url?,
        weight,
        max_concurrency,
        ca_file,
    })
}

impl Serialize for UpstreamConfig {
    /// As it reads back: `nodes` replaces `url` and `ca_file` when set.
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use super::render::ser_duration;
        use super::ByteSize;
        use std::time::Duration;

        fn ser_opt_uri<S: serde::Serializer>(
            uri: &Option<&http::Uri>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            match uri {
                Some(uri) => ser.collect_str(uri),
                None => ser.serialize_none(),
            }
        }

        #[derive(Serialize)]
        struct View<'a> {
            #[serde(
                skip_serializing_if = "Option::is_none",
                serialize_with = "ser_opt_uri"
            )]
            url: Option<&'a http::Uri>,
            #[serde(serialize_with = "ser_duration")]
            timeout: Duration,
            #[serde(serialize_with = "ser_duration")]
            connect_timeout: Duration,
            max_concurrency: usize,
            max_response_bytes: ByteSize,
            max_inflight_bytes: ByteSize,
            pool_max_idle: usize,
            #[serde(serialize_with = "ser_duration")]
            pool_idle_timeout: Duration,
            #[serde(skip_serializing_if = "Option::is_none")]
            ca_file: Option<&'a PathBuf>,
            max_lag_blocks: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            hedge_after: Option<String>,
            #[serde(skip_serializing_if = "<[NodeConfig]>::is_empty")]
            nodes: &'a [NodeConfig],
        }
        let shorthand = self.nodes.is_empty();
        View {
            url: shorthand.then_some(&self.url),
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            max_concurrency: self.max_concurrency,
            max_response_bytes: self.max_response_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
            pool_max_idle: self.pool_max_idle,
            pool_idle_timeout: self.pool_idle_timeout,
            ca_file: self.ca_file.as_ref().filter(|_| shorthand),
            max_lag_blocks: self.max_lag_blocks,
            hedge_after: self.hedge_after.map(|h| h.to_string()),
            nodes: &self.nodes,
        }
        .serialize(ser)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const NODES: &str = r#"
[upstream]
max_lag_blocks = 4
hedge_after = "300ms"

[[upstream.nodes]]
url = "tcp://10.0.0.1:26657"

[[upstream.nodes]]
url = "http://10.0.0.2:26657"
weight = 3
max_concurrency = 16
"#;

    fn errors(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn nodes_read_normalised_and_render_back_to_themselves() {
        let c = Config::from_toml_str(NODES).unwrap();
        let nodes = c.upstream.node_list();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].url.to_string(), "http://10.0.0.1:26657/");
        assert_eq!((nodes[0].weight, nodes[0].max_concurrency), (1, None));
        assert_eq!((nodes[1].weight, nodes[1].max_concurrency), (3, Some(16)));
        assert_eq!(c.upstream.max_lag_blocks, 4);
        let rendered = c.to_toml_string();
        assert!(
            !rendered.contains("\nurl = \"http://127.0.0.1"),
            "{rendered}"
        );
        assert_eq!(Config::from_toml_str(&rendered).unwrap(), c);
    }

    #[test]
    fn the_shorthand_is_one_node() {
        let c = Config::from_toml_str("[upstream]\nurl = \"http://10.0.0.9:1\"\n").unwrap();
        let nodes = c.upstream.node_list();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].url.to_string(), "http://10.0.0.9:1/");
        assert_eq!(Config::from_toml_str(&c.to_toml_string()).unwrap(), c);
    }

    #[test]
    fn bad_nodes_are_named_by_their_place() {
        let dup =
            "[[upstream.nodes]]\nurl = \"http://a:1\"\n[[upstream.nodes]]\nurl = \"http://a:1/\"\n";
        assert!(
            errors(dup).contains("upstream.nodes[1].url"),
            "{}",
            errors(dup)
        );
        let zero = "[[upstream.nodes]]\nurl = \"http://a:1\"\nweight = 0\n";
        assert!(errors(zero).contains("upstream.nodes[0].weight: must be at least 1"));
        let typo = "[[upstream.nodes]]\nurl = \"http://a:1\"\nwieght = 2\n";
        assert!(
            errors(typo).contains("did you mean \"weight\""),
            "{}",
            errors(typo)
        );
        let missing = "[[upstream.nodes]]\nweight = 2\n";
        assert!(errors(missing).contains("upstream.nodes[0].url: missing required key"));
        let empty = "[upstream]\nnodes = []\n";
        assert!(errors(empty).contains("at least one node"));
        let both = "[upstream]\nca_file = \"/x\"\n[[upstream.nodes]]\nurl = \"http://a:1\"\n";
        assert!(errors(both).contains("not both"), "{}", errors(both));
        let hedge = "[upstream]\nhedge_after = \"20s\"\n";
        assert!(
            errors(hedge).contains("upstream.hedge_after"),
            "{}",
            errors(hedge)
        );
    }
}
