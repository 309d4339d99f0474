//! What a running load shares with the progress line, the node sampler and its own
//! clients: counts so far and the chain head as last seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::record::Outcome;

/// Counters shared with the progress line and the node sampler.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub errors: AtomicU64,
    /// The chain head as last seen; mixes aim their heights at it.
    pub head: AtomicU64,
    /// One line about the node, written by the sampler, shown by the progress line.
    pub node_line: Mutex<String>,
}

impl Live {
    pub(crate) fn note(&self, outcome: &Outcome) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_ok() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
