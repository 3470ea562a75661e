//! A bounded plan cache: plans keyed by what they were built for, oldest dropped past the bound
//! (each plan holds its buffers, so an unbounded cache would hold every shape ever seen).

/// Values keyed by `K` in insertion order; inserting past `cap` drops the oldest.
#[derive(Debug)]
pub struct PlanCache<K, V> {
    items: Vec<(K, V)>,
    cap: usize,
}

impl<K: PartialEq, V> PlanCache<K, V> {
    /// An empty cache of at most `cap` (at least 1) entries.
    pub fn new(cap: usize) -> Self {
        PlanCache {
            items: Vec::new(),
            cap: cap.max(1),
        }
    }

    /// The index of `key`'s entry.
    pub fn position(&self, key: &K) -> Option<usize> {
        self.items.iter().position(|(k, _)| k == key)
    }

    /// Inserts `key`'s value (dropping the oldest entry when full) and returns its index.
    pub fn insert(&mut self, key: K, value: V) -> usize {
        if self.items.len() >= self.cap {
            self.items.remove(0);
        }
        self.items.push((key, value));
        self.items.len() - 1
    }

    /// The value at `index` (from `position` or `insert`).
    pub fn at(&self, index: usize) -> &V {
        &self.items[index].1
    }

    /// The value at `index`, mutably.
    pub fn at_mut(&mut self, index: usize) -> &mut V {
        &mut self.items[index].1
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.items.retain(|(k, v)| keep(k, v));
    }

    /// Every value, oldest first.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::PlanCache;

    #[test]
    fn the_oldest_entry_goes_past_the_bound() {
        let mut c = PlanCache::new(2);
        let a = c.insert("a", 1);
        assert_eq!((a, c.position(&"a")), (0, Some(0)));
        c.insert("b", 2);
        let i = c.insert("c", 3);
        assert_eq!((c.len(), c.position(&"a"), *c.at(i)), (2, None, 3));
        c.retain(|k, _| *k != "b");
        assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![3]);
    }
}
