//! Claim-group look-ups: which claim group a mention belongs to, by repost cascade (a bounded
//! map from post id to group) and by near-duplicate text (MinHash sketches looked up by bands).

use crate::detect::sketch::{bands, similarity, Sketch};
use ahash::AHashMap;

/// A map from post id to `V` that remembers roughly the last `cap`..`2*cap` insertions (two
/// generations), so a cascade lookup costs O(1) and memory stays bounded however long the run.
/// Ids are kept as their 64-bit stable hash, as the de-duplication of mentions keeps them (no
/// string per post; two ids of one run share a hash with odds of ~1e-8 at a million posts).
#[derive(Debug)]
pub struct BoundedMap<V> {
    cap: usize,
    current: AHashMap<u64, V>,
    previous: AHashMap<u64, V>,
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
        let k = crate::stable_hash(k.as_bytes());
        self.current
            .get(&k)
            .or_else(|| self.previous.get(&k))
            .copied()
    }

    /// Insert `k → v`.
    pub fn insert(&mut self, k: &str, v: V) {
        if self.current.len() >= self.cap {
            // The older half goes; its table is reused (no growth from empty, no fresh pages).
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        self.current.insert(crate::stable_hash(k.as_bytes()), v);
    }

    /// Forget `k`.
    pub fn remove(&mut self, k: &str) {
        let k = crate::stable_hash(k.as_bytes());
        self.current.remove(&k);
        self.previous.remove(&k);
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

/// Index of claim groups' sketches for near-duplicate look-up (banded MinHash).
#[derive(Debug, Default)]
pub struct SketchIndex {
    bands: AHashMap<(u8, u64), Vec<u64>>,
    sketches: AHashMap<u64, Sketch>,
}

impl SketchIndex {
    /// Add claim group `id` with sketch `s`.
    pub fn insert(&mut self, id: u64, s: Sketch) {
        for b in bands(&s) {
            self.bands.entry(b).or_default().push(id);
        }
        self.sketches.insert(id, s);
    }

    /// Remove claim group `id`.
    pub fn remove(&mut self, id: u64) {
        if let Some(s) = self.sketches.remove(&id) {
            for b in bands(&s) {
                if let Some(v) = self.bands.get_mut(&b) {
                    v.retain(|x| *x != id);
                    if v.is_empty() {
                        self.bands.remove(&b);
                    }
                }
            }
        }
    }

    /// The most similar claim group at `min_similarity` or more (ties: the oldest, i.e.
    /// smallest id).
    pub fn nearest(&self, s: &Sketch, min_similarity: f64) -> Option<u64> {
        let mut best: Option<(f64, u64)> = None;
        for b in bands(s) {
            if let Some(ids) = self.bands.get(&b) {
                for id in ids {
                    let Some(other) = self.sketches.get(id) else {
                        continue;
                    };
                    let sim = similarity(s, other);
                    let better = match best {
                        None => true,
                        Some((bs, bid)) => sim > bs || (sim == bs && *id < bid),
                    };
                    if sim >= min_similarity && better {
                        best = Some((sim, *id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// Claim groups indexed.
    pub fn len(&self) -> usize {
        self.sketches.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.sketches.is_empty()
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
    fn sketch_index_finds_near_and_forgets_removed() {
        use crate::detect::sketch::sketch;
        let mut s = SketchIndex::default();
        let a = sketch("明天起全市停水三天请大家提前储水", []).expect("sketch");
        let b = sketch("某小学门口有人贩子抢孩子注意安全", []).expect("sketch");
        s.insert(1, a);
        s.insert(2, b);
        let near = sketch("明天起全市要停水三天请大家提前储水", []).expect("sketch");
        assert_eq!(s.nearest(&near, 0.6), Some(1));
        let far = sketch("今天天气不错适合出去跑步公园里人多", []).expect("sketch");
        assert_eq!(s.nearest(&far, 0.6), None);
        s.remove(1);
        assert_eq!(s.nearest(&near, 0.6), None);
        assert_eq!(s.len(), 1);
    }
}
