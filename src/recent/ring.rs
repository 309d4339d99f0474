//! A ring of the last `N` values: a rolling window whose memory is fixed by its type.

/// The last `N` values pushed, oldest first; a push past `N` overwrites the oldest.
#[derive(Clone, Debug)]
pub(crate) struct Ring<T, const N: usize> {
    items: Vec<T>,
    /// Where the next push goes once the ring is full.
    next: usize,
}

impl<T, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Ring {
            items: Vec::with_capacity(N),
            next: 0,
        }
    }
}

impl<T, const N: usize> Ring<T, N> {
    pub(crate) fn push(&mut self, item: T) {
        if N == 0 {
            return;
        }
        if self.items.len() < N {
            self.items.push(item);
        } else {
            self.items[self.next] = item;
            self.next = (self.next + 1) % N;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The value pushed `k` pushes ago (0: the latest), if the ring still holds it.
    pub(crate) fn back(&self, k: usize) -> Option<&T> {
        let len = self.items.len();
        if k >= len {
            return None;
        }
        // The latest is just before `next` once full, at the end before.
        let latest = if len < N {
            len - 1
        } else {
            (self.next + N - 1) % N
        };
        Some(&self.items[(latest + N - k) % N])
    }

    /// The oldest value still held.
    pub(crate) fn oldest(&self) -> Option<&T> {
        self.back(self.len().checked_sub(1)?)
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len()).rev().filter_map(|k| self.back(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_last_n_oldest_first() {
        let mut ring = Ring::<u32, 3>::default();
        assert_eq!(ring.back(0), None);
        assert_eq!(ring.oldest(), None);
        for v in 1..=2 {
            ring.push(v);
        }
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [1, 2]);
        for v in 3..=7 {
            ring.push(v);
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [5, 6, 7]);
        assert_eq!(
            (ring.back(0), ring.back(2), ring.back(3)),
            (Some(&7), Some(&5), None)
        );
        assert_eq!(ring.oldest(), Some(&5));
    }

    #[test]
    fn memory_never_grows_past_capacity() {
        let mut ring = Ring::<u64, 4>::default();
        for v in 0..10_000 {
            ring.push(v);
        }
        assert_eq!(ring.len(), 4);
        assert!(ring.items.capacity() < 8);
    }
}
