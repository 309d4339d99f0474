//! Refresh-ahead: the "latest" questions asked at least twice in a block are fetched
//! again the moment the next block lands, so that their callers find the new answer on
//! its way (or stored) instead of each block's first caller waiting on the node.
//!
//! A refresh is the question's one node call in the new block: it takes the flight in
//! the cache's coalescing like any leader (callers join it), and it goes through the
//! pipeline's stages (admission's checks, the cache's plan, the lanes and their fair
//! queue, charged to the gateway's own client key). Where a caller got there first the
//! refresh joins or finds the answer stored, and asks nothing.
//!
//! A question whose asks fell to under a quarter of the block before's is fading and is
//! not refreshed: `tx_search` for `tx.height=N` is asked all through block N, then in
//! N+1 only by the clients that read N just before N+1 landed, and nobody asks it in
//! N+2. Refreshing it there would be a node call nobody waits for.
//!
//! Counting costs a hit one lock, for "latest" questions only. What is counted is
//! bounded in bytes (`MAX_BYTES` of keys, which are shared with the plan, not copied)
//! and in questions; one block's counts are dropped two blocks on, and the last block
//! refreshed from keeps its counts (at most `MAX_QUESTIONS`) to tell fading questions.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::{Map, Value};

use super::Gateway;
use crate::admission::ClientKey;
use crate::cache::Latest;
use crate::jsonrpc::{Call, Form, Id, Params};
use crate::methods::{CacheKey, Canonical};

/// Bytes of question keys counted per block; past it, new questions are not counted.
const MAX_BYTES: usize = 1 << 20;
/// Distinct questions counted per block.
const MAX_QUESTIONS: usize = 4096;
/// A question asked this many times less than in the block before is fading.
const FADING: u32 = 4;

/// Whom refreshes are charged to in the lanes' fair queue: an address no client has.
pub(super) fn refresher() -> ClientKey {
    ClientKey::Local(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

#[derive(Default)]
struct Block {
    height: u64,
    /// By the key the plan gave (the pinned one for pinned questions).
    asked: HashMap<CacheKey, Asked>,
    bytes: usize,
    swept: bool,
}

struct Asked {
    /// The question as asked, without a pinned height.
    question: CacheKey,
    count: u32,
}

impl Block {
    fn at(height: u64) -> Block {
        Block {
            height,
            ..Block::default()
        }
    }

    /// Room for `bytes` more; once per block, questions asked once make way.
    fn room_for(&mut self, bytes: usize) -> bool {
        let fits = |b: &Block| b.bytes + bytes <= MAX_BYTES && b.asked.len() < MAX_QUESTIONS;
        if fits(self) || self.swept {
            return fits(self);
        }
        self.swept = true;
        let mut freed = 0;
        self.asked.retain(|key, a| {
            let keep = a.count > 1;
            if !keep {
                freed += weight(key, &a.question);
            }
            keep
        });
        self.bytes -= freed;
        fits(self)
    }
}

fn weight(key: &CacheKey, question: &CacheKey) -> usize {
    // A question that is its own key shares its bytes.
    key.len() + if key == question { 0 } else { question.len() }
}

/// What clients asked in the current block and the one before.
#[derive(Default)]
pub(super) struct Demand {
    blocks: Mutex<[Block; 2]>,
    /// `cache.refresh_ahead`; 0 = off (nothing is counted).
    limit: AtomicUsize,
    /// How often each question was asked in the last block refreshed from.
    last_taken: Mutex<HashMap<CacheKey, u32>>,
}

impl Demand {
    pub(super) fn new(limit: usize) -> Demand {
        let demand = Demand::default();
        demand.set_limit(limit);
        demand
    }

    pub(super) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn blocks(&self) -> std::sync::MutexGuard<'_, [Block; 2]> {
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One client call of a "latest" question, planned as `key` at `latest.height`.
    pub(super) fn note(&self, latest: &Latest, key: &CacheKey, planned: &Canonical) {
        if self.limit.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut blocks = self.blocks();
        let [current, before] = &mut *blocks;
        if latest.height > current.height {
            *before = std::mem::replace(current, Block::at(latest.height));
        }
        let block = if latest.height == current.height {
            current
        } else if latest.height == before.height {
            before
        } else {
            return;
        };
        if let Some(asked) = block.asked.get_mut(key) {
            asked.count = asked.count.saturating_add(1);
            return;
        }
        let question = latest.question(planned);
        let bytes = weight(key, &question);
        if block.room_for(bytes) {
            block.bytes += bytes;
            block
                .asked
                .insert(key.clone(), Asked { question, count: 1 });
        }
    }

    /// The questions asked at least twice at `height`, and not fading, most asked first,
    /// at most `cache.refresh_ahead`; each block's are taken once.
    pub(super) fn take(&self, height: u64) -> Vec<CacheKey> {
        let limit = self.limit.load(Ordering::Relaxed);
        let asked = {
            let mut blocks = self.blocks();
            let Some(block) = blocks.iter_mut().find(|b| b.height == height) else {
                return Vec::new();
            };
            block.bytes = 0;
            std::mem::take(&mut block.asked)
        };
        let mut counts: HashMap<CacheKey, u32> = HashMap::with_capacity(asked.len());
        for a in asked.into_values() {
            let n = counts.entry(a.question).or_default();
            *n = n.saturating_add(a.count);
        }
        let mut before = self
            .last_taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fading =
            |q: &CacheKey, n: u32| n.saturating_mul(FADING) < before.get(q).map_or(0, |b| *b);
        let mut twice: Vec<(&CacheKey, u32)> = counts
            .iter()
            .map(|(q, n)| (q, *n))
            .filter(|(q, n)| *n >= 2 && !fading(q, *n))
            .collect();
        twice.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        twice.truncate(limit);
        let chosen = twice.into_iter().map(|(q, _)| q.clone()).collect();
        *before = counts;
        chosen
    }
}

/// The call a question key stands for: the key is the method's name and its canonical
/// JSON-RPC params.
fn call_of(question: &CacheKey) -> Option<Call> {
    let bytes = question.as_bytes();
    let space = bytes.iter().position(|b| *b == b' ')?;
    let method = std::str::from_utf8(&bytes[..space]).ok()?.to_owned();
    let params: Map<String, Value> = serde_json::from_slice(&bytes[space + 1..]).ok()?;
    Some(Call {
        id: Some(Id::number(0)),
        method,
        params: Params::Named(params),
        form: Form::JsonRpc,
    })
}

/// Follows the head for as long as the gateway lives: at each new block, refreshes what
/// the block before asked most.
pub(super) fn spawn(gateway: &Arc<Gateway>) {
    let weak: Weak<Gateway> = Arc::downgrade(gateway);
    let mut heads = gateway.head.watch();
    let mut seen = *heads.borrow_and_update();
    let mut chain = gateway.head.chain_generation();
    tokio::spawn(async move {
        while heads.changed().await.is_ok() {
            let now = *heads.borrow_and_update();
            let Some(gw) = weak.upgrade() else { return };
            let generation = gw.head.chain_generation();
            // Another chain's questions (or a head that went back) are nothing to refresh.
            if let (Some(before), Some(now), true) = (seen, now, generation == chain) {
                if now > before {
                    for question in gw.demand.take(before) {
                        if let Some(call) = call_of(&question) {
                            let gw = Arc::clone(&gw);
                            tokio::spawn(async move {
                                let result = super::pipeline::refresh(&gw, &call).await;
                                gw.metrics.refreshed(result);
                            });
                        }
                    }
                }
            }
            (seen, chain) = (now, generation);
        }
    });
}
