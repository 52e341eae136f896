//! A time-bounded set of mention ids: duplicates (the same mention from two feeds, or replayed
//! after a reconnect) are dropped; memory stays bounded because ids older than the horizon are
//! forgotten two generations at a time.

use ahash::AHashSet;

/// Ids seen within roughly the last `horizon_ms` of event time.
pub struct SeenIds {
    horizon_ms: i64,
    current: AHashSet<u64>,
    previous: AHashSet<u64>,
    generation_start: i64,
}

impl SeenIds {
    /// A set remembering ids for between `horizon_ms` and twice that.
    pub fn new(horizon_ms: i64) -> Self {
        SeenIds {
            horizon_ms: horizon_ms.max(1),
            current: AHashSet::new(),
            previous: AHashSet::new(),
            generation_start: i64::MIN,
        }
    }

    /// Record `key` at event time `now`; returns false if it was already seen.
    pub fn insert(&mut self, key: u64, now: i64) -> bool {
        if self.generation_start == i64::MIN {
            self.generation_start = now;
        } else if now - self.generation_start >= self.horizon_ms {
            self.previous = std::mem::take(&mut self.current);
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
        let mut s = SeenIds::new(1000);
        assert!(s.insert(1, 0));
        assert!(!s.insert(1, 10));
        assert!(s.insert(2, 1500));
        assert!(!s.insert(1, 1600), "still within two generations");
        assert!(s.insert(3, 2600));
        assert!(s.insert(1, 3700), "forgotten after the horizon");
        assert!(s.len() <= 3);
    }
}
