//! A bounded set of mention ids: duplicates (the same mention from two feeds, or replayed after
//! a reconnect) are dropped. Two generations: a generation ends after `horizon_ms` of event time
//! or `cap` ids, whichever comes first, so memory stays flat whatever the ingest rate (at most
//! 2 × cap ids) and at least the last `min(cap, ids in horizon)` ids are always remembered.

use ahash::AHashSet;

/// Ids seen within roughly the last `horizon_ms` of event time.
pub struct SeenIds {
    horizon_ms: i64,
    cap: usize,
    current: AHashSet<u64>,
    previous: AHashSet<u64>,
    generation_start: i64,
}

impl SeenIds {
    /// A set remembering ids for between `horizon_ms` and twice that, and at most `2 × cap`.
    pub fn new(horizon_ms: i64, cap: usize) -> Self {
        SeenIds {
            horizon_ms: horizon_ms.max(1),
            cap: cap.max(1),
            current: AHashSet::new(),
            previous: AHashSet::new(),
            generation_start: i64::MIN,
        }
    }

    /// Record `key` at event time `now`; returns false if it was already seen.
    pub fn insert(&mut self, key: u64, now: i64) -> bool {
        if self.generation_start == i64::MIN {
            self.generation_start = now;
        } else if now - self.generation_start >= self.horizon_ms || self.current.len() >= self.cap {
            // The older generation's table, emptied, holds the next one: at full rate both
            // reach `cap` every generation, and a table grown again from empty rehashes
            // through every size and briefly holds two of them.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            self.generation_start = now;
        }
        if self.previous.contains(&key) {
            return false;
        }
        self.current.insert(key)
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_and_forgets_old_ids() {
        let mut s = SeenIds::new(1000, 1_000_000);
        assert!(s.insert(1, 0));
        assert!(!s.insert(1, 10));
        assert!(s.insert(2, 1500));
        assert!(!s.insert(1, 1600), "still within two generations");
        assert!(s.insert(3, 2600));
        assert!(s.insert(1, 3700), "forgotten after the horizon");
        assert!(s.len() <= 3);
    }

    #[test]
    fn a_generation_of_a_full_tables_size_never_grows_its_table() {
        // The engine's bound is `full_table(20)`; the same holds at every size from 8 buckets.
        for log2 in [4, 10, 14] {
            let cap = crate::full_table(log2);
            let mut s = SeenIds::new(i64::MAX / 4, cap);
            for k in 0..(3 * cap) as u64 {
                s.insert(k, 0);
            }
            assert_eq!(s.current.capacity(), cap, "2^{log2} buckets hold {cap}");
            assert_eq!(s.previous.capacity(), cap);
            // One more per generation and each table doubles.
            let mut s = SeenIds::new(i64::MAX / 4, cap + 1);
            for k in 0..(3 * cap) as u64 {
                s.insert(k, 0);
            }
            assert!(s.current.capacity() > cap && s.previous.capacity() > cap);
        }
    }

    #[test]
    fn memory_is_bounded_by_count_too() {
        let mut s = SeenIds::new(i64::MAX / 4, 100);
        for k in 0..10_000u64 {
            assert!(s.insert(k, 0));
            assert!(s.len() <= 200);
        }
        // The most recent `cap` ids are always remembered.
        for k in 9_900..10_000u64 {
            assert!(!s.insert(k, 0), "{k} forgotten");
        }
    }
}
