//! What each scenario asks: the stream of calls one client sends, rendered as JSON-RPC
//! POSTs or URI GETs. Calls depend on the chain head so that "at the head" and "recent
//! blocks" mean what they say while blocks advance.

use base64::Engine;
use serde::Serialize;

use crate::client::{rpc_body, Call};
use crate::rng::{Rng, Zipf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// The LCD storm's three heavy questions at the head.
    Storm,
    /// An explorer: light and heavy calls at Zipf-drawn recent heights, plus the head.
    Explorer,
    /// The flooding client: heavy searches spread so that caches help little.
    Abuser,
    /// An LCD relaying its users' lookups: the storm's heavy questions at past heights
    /// drawn over the whole chain, so the cache seldom answers and the node's speed decides.
    Lookups,
    /// The explorer's light calls alone (no `block_results`, `tx_search`, `abci_query`).
    Light,
    /// One cacheable answer, the same bytes every time.
    CacheHit,
    /// A unique `check_tx` per call: never cached, always reaches the node.
    MissOverhead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    Post,
    Get,
}

/// A typed argument, so one call renders correctly in both wire forms.
enum Arg<'a> {
    Int(u64),
    Str(&'a str),
    Hex(&'a [u8]),
    Bytes(&'a [u8]),
}

/// How many recent heights the explorer's Zipf spans.
const RECENT: usize = 100;

pub struct Picker {
    mix: Mix,
    form: Form,
    zipf: Zipf,
    rng: Rng,
    seq: u64,
    /// The storm asks `status` first and its `tx_search` at the height that answer gave,
    /// as an LCD does: the height comes from the target itself, coherent with its cache.
    awaiting_status: bool,
    status_head: Option<u64>,
}

impl Picker {
    pub fn new(mix: Mix, form: Form, seed: u64) -> Picker {
        Picker {
            mix,
            form,
            zipf: Zipf::new(RECENT, 1.1),
            rng: Rng::new(seed),
            seq: 0,
            awaiting_status: false,
            status_head: None,
        }
    }

    pub fn next(&mut self, head: u64) -> Call {
        self.seq += 1;
        let head = head.max(1);
        match self.mix {
            Mix::Storm => self.storm(head),
            Mix::Explorer => self.explorer(head),
            Mix::Abuser => self.abuser(head),
            Mix::Lookups => self.lookups(head),
            Mix::Light => self.light(head),
            // A fixed id: the best case for a proxy that keys on the whole body.
            Mix::CacheHit => render(self.form, 1, "block", &[("height", Arg::Int(5))]),
            Mix::MissOverhead => {
                let tx = format!("mo-{}-{}=1", self.seq, self.rng.next_u64());
                render(
                    self.form,
                    1,
                    "check_tx",
                    &[("tx", Arg::Bytes(tx.as_bytes()))],
                )
            }
        }
    }

    /// True when the next call depends on the answer to the last one (`observe` it).
    pub fn wants_answer(&self) -> bool {
        self.awaiting_status
    }

    pub fn observe(&mut self, body: &[u8]) {
        if self.awaiting_status {
            self.status_head = head_from_status(body);
        }
    }

    /// Real clients (cosmjs, CometBFT's Go client) number their requests, so ids differ.
    fn storm(&mut self, head: u64) -> Call {
        let id = self.seq;
        if std::mem::take(&mut self.awaiting_status) {
            let h = self.status_head.take().unwrap_or(head);
            let q = format!("tx.height={h}");
            return render(
                self.form,
                id,
                "tx_search",
                &[("query", Arg::Str(&q)), ("per_page", Arg::Int(100))],
            );
        }
        match self.rng.below(3) {
            0 => render(self.form, id, "block_results", &[]),
            1 => {
                self.awaiting_status = true;
                render(self.form, id, "status", &[])
            }
            _ => render(
                self.form,
                id,
                "abci_query",
                &[("path", Arg::Str("/store")), ("data", Arg::Hex(b"gen-1-0"))],
            ),
        }
    }

    fn recent(&mut self, head: u64) -> u64 {
        head.saturating_sub(self.zipf.sample(&mut self.rng) as u64)
            .max(1)
    }

    fn explorer(&mut self, head: u64) -> Call {
        let id = self.seq;
        let h = self.recent(head);
        let f = self.form;
        match self.rng.below(100) {
            0..=24 => render(f, id, "block", &[("height", Arg::Int(h))]),
            25..=34 => render(f, id, "block", &[]),
            35..=44 => render(f, id, "status", &[]),
            45..=54 => render(f, id, "commit", &[("height", Arg::Int(h))]),
            55..=64 => render(f, id, "header", &[("height", Arg::Int(h))]),
            65..=69 => render(f, id, "validators", &[("height", Arg::Int(h))]),
            70..=84 => render(f, id, "block_results", &[("height", Arg::Int(h))]),
            85..=94 => {
                let q = format!("tx.height={h}");
                render(f, id, "tx_search", &[("query", Arg::Str(&q))])
            }
            _ => render(f, id, "abci_info", &[]),
        }
    }

    fn light(&mut self, head: u64) -> Call {
        let id = self.seq;
        let h = self.recent(head);
        let f = self.form;
        match self.rng.below(100) {
            0..=29 => render(f, id, "block", &[("height", Arg::Int(h))]),
            30..=44 => render(f, id, "block", &[]),
            45..=59 => render(f, id, "status", &[]),
            60..=74 => render(f, id, "commit", &[("height", Arg::Int(h))]),
            75..=89 => render(f, id, "header", &[("height", Arg::Int(h))]),
            90..=94 => render(f, id, "validators", &[("height", Arg::Int(h))]),
            _ => render(f, id, "abci_info", &[]),
        }
    }

    fn lookups(&mut self, head: u64) -> Call {
        let (id, h) = (self.seq, 1 + self.rng.below(head));
        if self.rng.below(2) == 0 {
            return render(self.form, id, "block_results", &[("height", Arg::Int(h))]);
        }
        let q = format!("tx.height={h}");
        render(
            self.form,
            id,
            "tx_search",
            &[("query", Arg::Str(&q)), ("per_page", Arg::Int(100))],
        )
    }

    fn abuser(&mut self, head: u64) -> Call {
        let h = 1 + self.rng.below(head);
        let order = if self.rng.below(2) == 0 {
            "asc"
        } else {
            "desc"
        };
        // An exact height: an indexed lookup on a real node. simnode answers other
        // conditions by scanning the whole chain (about 0.5 s for 10 000 txs), which would
        // measure the simulator's scan rather than the gateway.
        let q = format!("tx.height={h}");
        render(
            self.form,
            self.seq,
            "tx_search",
            &[
                ("query", Arg::Str(&q)),
                ("per_page", Arg::Int(100)),
                ("order_by", Arg::Str(order)),
            ],
        )
    }
}

fn render(form: Form, id: u64, method: &str, args: &[(&str, Arg)]) -> Call {
    match form {
        Form::Post => {
            let fields: Vec<String> = args
                .iter()
                .map(|(name, arg)| {
                    let value = match arg {
                        // CometBFT wants integers as strings in JSON-RPC params.
                        Arg::Int(n) => format!("\"{n}\""),
                        Arg::Str(s) => serde_json::Value::from(*s).to_string(),
                        Arg::Hex(b) => format!("\"{}\"", hex::encode(b)),
                        Arg::Bytes(b) => format!(
                            "\"{}\"",
                            base64::engine::general_purpose::STANDARD.encode(b)
                        ),
                    };
                    format!("\"{name}\":{value}")
                })
                .collect();
            Call::Post(rpc_body(id, method, &format!("{{{}}}", fields.join(","))))
        }
        Form::Get => {
            let query: Vec<String> = args
                .iter()
                .map(|(name, arg)| {
                    let value = match arg {
                        Arg::Int(n) => n.to_string(),
                        Arg::Str(s) => percent_encode(&format!("\"{s}\"")),
                        Arg::Hex(b) | Arg::Bytes(b) => format!("0x{}", hex::encode(b)),
                    };
                    format!("{name}={value}")
                })
                .collect();
            if query.is_empty() {
                Call::Get(format!("/{method}"))
            } else {
                Call::Get(format!("/{method}?{}", query.join("&")))
            }
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// cometgate's heavy lane (its method table): the calls whose throughput the adaptive
/// limit governs.
const HEAVY: [&str; 7] = [
    "block_results",
    "tx_search",
    "block_search",
    "abci_query",
    "genesis",
    "unconfirmed_txs",
    "broadcast_tx_commit",
];

/// True when the call goes to cometgate's heavy lane.
pub fn is_heavy(call: &Call) -> bool {
    let method = match call {
        Call::Post(body) => {
            let text = std::str::from_utf8(body).unwrap_or("");
            text.split("\"method\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
        }
        Call::Get(path) => path.trim_start_matches('/').split('?').next().unwrap_or(""),
    };
    HEAVY.contains(&method)
}

/// The head a `status` answer reports: the storm's next height, and the head followed
/// when no control port tells it.
pub fn head_from_status(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["result"]["sync_info"]["latest_block_height"]
        .as_str()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
