//! The simulated chain: a head that advances, deterministic per-height content, a mempool
//! for broadcast transactions and the indexes that `tx`, `block_by_hash` and `abci_query` need.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

/// What generates a block's content; all of it is a function of (seed, height).
#[derive(Clone, Debug)]
pub(crate) struct ChainParams {
    pub(crate) seed: u64,
    pub(crate) chain_id: String,
    pub(crate) txs_per_block: usize,
    pub(crate) events_per_tx: usize,
    pub(crate) tx_bytes: usize,
    pub(crate) validators: usize,
    /// The block store's lowest height: 1, or more on a pruned node.
    pub(crate) base: u64,
}

/// Sent to websocket subscribers once a block is committed.
#[derive(Clone, Debug)]
pub(crate) struct NewBlock {
    pub(crate) height: u64,
}

struct State {
    head: u64,
    user_txs: HashMap<u64, Vec<Vec<u8>>>,
    mempool: Vec<Vec<u8>>,
    tx_index: HashMap<[u8; 32], (u64, u32)>,
    block_index: HashMap<[u8; 32], u64>,
    kv: HashMap<Vec<u8>, (u64, Vec<u8>)>,
}

pub(crate) struct Chain {
    pub(crate) params: ChainParams,
    state: RwLock<State>,
    events: broadcast::Sender<NewBlock>,
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Upper-case hex, as CometBFT prints hashes.
pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

impl Chain {
    pub(crate) fn new(params: ChainParams, start_height: u64) -> Arc<Chain> {
        let (events, _) = broadcast::channel(1024);
        let chain = Chain {
            params,
            state: RwLock::new(State {
                head: 0,
                user_txs: HashMap::new(),
                mempool: Vec::new(),
                tx_index: HashMap::new(),
                block_index: HashMap::new(),
                kv: HashMap::new(),
            }),
            events,
        };
        {
            let mut st = chain.write();
            for h in 1..=start_height.max(1) {
                chain.commit_height(&mut st, h, Vec::new());
            }
        }
        Arc::new(chain)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn commit_height(&self, st: &mut State, h: u64, user: Vec<Vec<u8>>) {
        let hash = self.block_hash_bytes(h);
        st.block_index.insert(hash, h);
        let generated = (0..self.params.txs_per_block).map(|i| self.generated_tx(h, i));
        for (i, tx) in generated.chain(user.iter().cloned()).enumerate() {
            st.tx_index.insert(sha256(&tx), (h, i as u32));
        }
        for tx in &user {
            let (k, v) = split_kv(tx);
            st.kv.insert(k.to_vec(), (h, v.to_vec()));
        }
        if !user.is_empty() {
            st.user_txs.insert(h, user);
        }
        st.head = h;
    }

    /// Commits the mempool into a new block and tells subscribers.
    pub(crate) fn advance(&self) -> u64 {
        let h = {
            let mut st = self.write();
            let h = st.head + 1;
            let user = std::mem::take(&mut st.mempool);
            self.commit_height(&mut st, h, user);
            h
        };
        let _ = self.events.send(NewBlock { height: h });
        h
    }

    pub(crate) fn head(&self) -> u64 {
        self.read().head
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<NewBlock> {
        self.events.subscribe()
    }

    /// Deterministic 32 bytes for (tag, height).
    pub(crate) fn digest(&self, tag: &str, h: u64) -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(self.params.seed.to_le_bytes());
        d.update(tag.as_bytes());
        d.update(h.to_le_bytes());
        d.finalize().into()
    }

    fn block_hash_bytes(&self, h: u64) -> [u8; 32] {
        self.digest("block", h)
    }

    pub(crate) fn block_hash(&self, h: u64) -> String {
        hex_upper(&self.block_hash_bytes(h))
    }

    /// A kvstore-style `key=value` transaction padded to `tx_bytes`.
    pub(crate) fn generated_tx(&self, h: u64, i: usize) -> Vec<u8> {
        let mut tx = format!("gen-{h}-{i}=").into_bytes();
        let filler = hex_upper(&self.digest("txval", h * 1_000_003 + i as u64));
        let want = self.params.tx_bytes.max(tx.len() + 1);
        let mut j = 0;
        while tx.len() < want {
            tx.push(filler.as_bytes()[j % filler.len()]);
            j += 1;
        }
        tx
    }

    /// Every transaction of block `h`: generated ones, then broadcast ones.
    pub(crate) fn txs(&self, h: u64) -> Vec<Vec<u8>> {
        let mut txs: Vec<Vec<u8>> = (0..self.params.txs_per_block)
            .map(|i| self.generated_tx(h, i))
            .collect();
        if let Some(user) = self.read().user_txs.get(&h) {
            txs.extend(user.iter().cloned());
        }
        txs
    }

    pub(crate) fn tx_count(&self, h: u64) -> usize {
        self.params.txs_per_block + self.read().user_txs.get(&h).map_or(0, Vec::len)
    }

    pub(crate) fn find_tx(&self, hash: &[u8]) -> Option<(u64, u32)> {
        let key: [u8; 32] = hash.try_into().ok()?;
        self.read().tx_index.get(&key).copied()
    }

    pub(crate) fn find_block(&self, hash: &[u8]) -> Option<u64> {
        let key: [u8; 32] = hash.try_into().ok()?;
        self.read().block_index.get(&key).copied()
    }

    /// `CheckTx` then mempool insertion; a duplicate is refused as CometBFT's cache does.
    pub(crate) fn add_to_mempool(&self, tx: Vec<u8>) -> Result<(), String> {
        let mut st = self.write();
        if st.mempool.contains(&tx) {
            return Err("tx already exists in cache".to_string());
        }
        st.mempool.push(tx);
        Ok(())
    }

    pub(crate) fn mempool(&self) -> Vec<Vec<u8>> {
        self.read().mempool.clone()
    }

    /// The kvstore application's view: the value last written under `key`, and where.
    pub(crate) fn lookup_key(&self, key: &[u8]) -> Option<(u64, Vec<u8>)> {
        if let Some(found) = self.read().kv.get(key) {
            return Some(found.clone());
        }
        let text = std::str::from_utf8(key).ok()?;
        let mut parts = text.strip_prefix("gen-")?.split('-');
        let h: u64 = parts.next()?.parse().ok()?;
        let i: usize = parts.next()?.parse().ok()?;
        if parts.next().is_some() || h == 0 || h > self.head() || i >= self.params.txs_per_block {
            return None;
        }
        let tx = self.generated_tx(h, i);
        Some((h, split_kv(&tx).1.to_vec()))
    }
}

/// kvstore semantics: `k=v` stores v under k, anything else stores the tx under itself.
pub(crate) fn split_kv(tx: &[u8]) -> (&[u8], &[u8]) {
    match tx.iter().position(|b| *b == b'=') {
        Some(p) => (&tx[..p], &tx[p + 1..]),
        None => (tx, tx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChainParams {
        ChainParams {
            seed: 7,
            chain_id: "c".into(),
            txs_per_block: 2,
            events_per_tx: 1,
            tx_bytes: 40,
            validators: 1,
            base: 1,
        }
    }

    #[test]
    fn deterministic_and_indexed() {
        let a = Chain::new(params(), 10);
        let b = Chain::new(params(), 10);
        assert_eq!(a.block_hash(5), b.block_hash(5));
        assert_ne!(a.block_hash(5), a.block_hash(6));
        let tx = a.generated_tx(3, 1);
        assert_eq!(tx.len(), 40);
        assert_eq!(a.find_tx(&sha256(&tx)), Some((3, 1)));
        a.add_to_mempool(b"k=v".to_vec()).unwrap();
        assert!(a.add_to_mempool(b"k=v".to_vec()).is_err());
        assert_eq!(a.advance(), 11);
        assert_eq!(a.find_tx(&sha256(b"k=v")), Some((11, 2)));
        assert_eq!(a.lookup_key(b"k"), Some((11, b"v".to_vec())));
        assert!(a.lookup_key(b"gen-11-1").is_some());
        assert!(a.lookup_key(b"gen-12-1").is_none());
    }
}
