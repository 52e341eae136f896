//! Claim-group look-ups: which claim group a mention belongs to, by repost cascade (a bounded
//! map from post id to group) and by near-duplicate text (SimHash looked up by 8-bit bands).

use crate::detect::simhash::{bands, distance};
use ahash::AHashMap;

/// A map that remembers roughly the last `cap`..`2*cap` insertions (two generations), so a
/// cascade lookup costs O(1) and memory stays bounded however long the run.
#[derive(Debug)]
pub struct BoundedMap<V> {
    cap: usize,
    current: AHashMap<String, V>,
    previous: AHashMap<String, V>,
}

impl<V: Copy> BoundedMap<V> {
    /// A map keeping at least the last `cap` insertions.
    pub fn new(cap: usize) -> Self {
        BoundedMap {
            cap: cap.max(1),
            current: AHashMap::new(),
            previous: AHashMap::new(),
        }
    }

    /// Look `k` up.
    pub fn get(&self, k: &str) -> Option<V> {
        self.current
            .get(k)
            .or_else(|| self.previous.get(k))
            .copied()
    }

    /// Insert `k → v`.
    pub fn insert(&mut self, k: &str, v: V) {
        if self.current.len() >= self.cap {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(k.to_owned(), v);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Index of claim groups' SimHashes for near-duplicate look-up.
#[derive(Debug, Default)]
pub struct SimIndex {
    bands: AHashMap<(u8, u8), Vec<u64>>,
    hashes: AHashMap<u64, u64>,
}

impl SimIndex {
    /// Add claim group `id` with hash `h`.
    pub fn insert(&mut self, id: u64, h: u64) {
        for b in bands(h) {
            self.bands.entry(b).or_default().push(id);
        }
        self.hashes.insert(id, h);
    }

    /// Remove claim group `id`.
    pub fn remove(&mut self, id: u64) {
        if let Some(h) = self.hashes.remove(&id) {
            for b in bands(h) {
                if let Some(v) = self.bands.get_mut(&b) {
                    v.retain(|x| *x != id);
                    if v.is_empty() {
                        self.bands.remove(&b);
                    }
                }
            }
        }
    }

    /// The nearest claim group within `max_distance` (ties: the oldest, i.e. smallest id).
    pub fn nearest(&self, h: u64, max_distance: u32) -> Option<u64> {
        let mut best: Option<(u32, u64)> = None;
        for b in bands(h) {
            if let Some(ids) = self.bands.get(&b) {
                for id in ids {
                    let d = distance(h, self.hashes[id]);
                    if d <= max_distance && best.is_none_or(|(bd, bid)| (d, *id) < (bd, bid)) {
                        best = Some((d, *id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// Claim groups indexed.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_forgets_old_generations() {
        let mut m = BoundedMap::new(2);
        m.insert("a", 1);
        m.insert("b", 2);
        m.insert("c", 3); // a, b move to the previous generation
        assert_eq!(m.get("a"), Some(1));
        m.insert("d", 4);
        m.insert("e", 5); // a, b forgotten
        assert_eq!(m.get("a"), None);
        assert_eq!(m.get("e"), Some(5));
        assert!(m.len() <= 4);
    }

    #[test]
    fn sim_index_finds_near_and_forgets_removed() {
        let mut s = SimIndex::default();
        s.insert(1, 0xFFFF_0000_FFFF_0000);
        s.insert(2, 0x0000_FFFF_0000_FFFF);
        assert_eq!(s.nearest(0xFFFF_0000_FFFF_0003, 3), Some(1));
        assert_eq!(s.nearest(0xFFFF_0000_FFFF_00FF, 3), None);
        s.remove(1);
        assert_eq!(s.nearest(0xFFFF_0000_FFFF_0000, 3), None);
        assert_eq!(s.len(), 1);
    }
}
