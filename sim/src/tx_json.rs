//! Each transaction's `ResultTx`, encoded once. A search page is then its transactions'
//! bytes joined, where building and dropping the same nested maps for every page cost
//! the simulator milliseconds of real CPU (not the node's modelled time, which is slept
//! apart) on the machine the bench shares with the gateway and the clients. A block's
//! transactions never change once it exists, so an encoding never goes stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::blockgen;
use crate::chain::Chain;

/// What the kept encodings may hold, in bytes, before they start afresh (about 20,000
/// transactions of the bench's 3 KB). It is the simulator's own memory, not the
/// modelled node's.
const MAX_BYTES: usize = 64 << 20;

type Kept = HashMap<(u64, u32, bool), Arc<str>>;

#[derive(Default)]
pub(crate) struct TxJson {
    encoded: Mutex<(Kept, usize)>,
}

impl TxJson {
    /// `ResultTx` of transaction `i` of block `h` (whose transactions are `txs`), as
    /// compact JSON.
    pub(crate) fn get(
        &self,
        chain: &Chain,
        h: u64,
        txs: &[Vec<u8>],
        i: u32,
        prove: bool,
    ) -> Arc<str> {
        let key = (h, i, prove);
        if let Some(hit) = self.lock().0.get(&key) {
            return hit.clone();
        }
        let tree = blockgen::result_tx_of(chain, h, txs, i, prove);
        let text: Arc<str> = serde_json::to_string(&tree).unwrap_or_default().into();
        let mut kept = self.lock();
        let (map, bytes) = &mut *kept;
        if *bytes + text.len() > MAX_BYTES {
            map.clear();
            *bytes = 0;
        }
        if map.insert(key, text.clone()).is_none() {
            *bytes += text.len();
        }
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Kept, usize)> {
        self.encoded.lock().unwrap_or_else(|e| e.into_inner())
    }
}
