//! Spike statistics: a ring of event-time buckets counting distinct authors per key, an EWMA
//! baseline, and the Poisson upper tail that says how improbable a window is under it.

use std::collections::VecDeque;

/// ln Γ(x) for x > 0 (Lanczos, g = 7), accurate to ~1e-13.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// P(X ≥ k) for X ~ Poisson(lambda).
pub fn poisson_sf(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    let kf = k as f64;
    if kf <= lambda {
        // Not in the upper tail; the exact value does not matter for a spike test.
        return 1.0;
    }
    // Sum terms from k upward; each term is lambda/(j+1) times the previous, which is < 1 here.
    let ln_first = ln_pmf(kf, lambda);
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut j = kf;
    for _ in 0..10_000 {
        j += 1.0;
        term *= lambda / j;
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    (ln_first + sum.ln()).exp().min(1.0)
}

/// ln P(X = k) for X ~ Poisson(lambda).
#[inline]
fn ln_pmf(kf: f64, lambda: f64) -> f64 {
    -lambda + kf * lambda.ln() - ln_gamma(kf + 1.0)
}

/// Whether `poisson_sf(k, lambda) >= p`, decided the same way, but without summing the tail
/// when P(X = k) alone reaches `p` (the tail is at least that term): a term in everyday use,
/// tested thousands of times a minute, sits near its mean, where the sum is longest.
pub fn poisson_tail_at_least(k: u64, lambda: f64, p: f64) -> bool {
    if k > 0 && lambda > 0.0 && (k as f64) > lambda && ln_pmf(k as f64, lambda).exp().min(1.0) >= p
    {
        return true;
    }
    poisson_sf(k, lambda) >= p
}

/// A ring of buckets over a window for one key, counting mentions and distinct authors, with
/// an EWMA of distinct authors per bucket as the baseline.
///
/// Only the buckets that hold something are stored (oldest first): most keys, a claim group's
/// cascade above all, have a post in one or two of their 30 buckets (a whole ring took ~1 KB
/// per cascade).
#[derive(Debug, Clone)]
pub struct Window {
    /// Index (event time / bucket width) of the newest bucket.
    head: i64,
    /// Buckets in the ring.
    n: usize,
    /// The buckets that hold something, by index, oldest first; every index is in
    /// `head - n + 1 ..= head`.
    buckets: VecDeque<(i64, Bucket)>,
    /// Author → number of buckets in the ring it appears in.
    authors: crate::SmallMap<u64, u32>,
    mentions: u64,
    /// EWMA of distinct authors per bucket (without the prior floor).
    ewma: f64,
    /// Whether the baseline is frozen (an incident is open on this key).
    pub frozen: bool,
    /// Whether `ewma` already holds the start-up bias correction (baked in when frozen).
    baked: bool,
    /// Expirations still to come of slots emptied by `clear` (their time is accounted for).
    skip: usize,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    authors: Vec<u64>,
    mentions: u64,
}

impl Window {
    /// An empty window of `n` buckets starting at bucket index `head`.
    pub fn new(n: usize, head: i64) -> Self {
        Window {
            head,
            n: n.max(1),
            buckets: VecDeque::new(),
            authors: crate::SmallMap::default(),
            mentions: 0,
            ewma: 0.0,
            frozen: false,
            baked: false,
            skip: 0,
        }
    }

    /// Take bucket `idx` out of the ring (empty when it held nothing). Buckets leave oldest
    /// first, so it is the front one if stored.
    fn take_oldest(&mut self, idx: i64) -> Bucket {
        match self.buckets.front() {
            Some((i, _)) if *i == idx => {
                self.buckets.pop_front().map(|(_, b)| b).unwrap_or_default()
            }
            _ => Bucket::default(),
        }
    }

    /// Move the newest bucket to `idx`, expiring older ones into the baseline (`decay` is the
    /// EWMA's weight kept per bucket).
    pub fn advance(&mut self, idx: i64, decay: f64) {
        if idx <= self.head {
            return;
        }
        let n = self.n as i64;
        let steps = idx - self.head;
        let expire = steps.min(n);
        for k in 1..=expire {
            // The bucket leaving is the one `n` before the new slot's.
            let b = self.take_oldest(self.head + k - n);
            if self.skip > 0 {
                self.skip -= 1;
            } else if !self.frozen {
                self.ewma = self.ewma * decay + (1.0 - decay) * b.authors.len() as f64;
            }
            self.mentions -= b.mentions;
            for a in b.authors {
                if let Some(c) = self.authors.get_mut(&a) {
                    *c -= 1;
                    if *c == 0 {
                        self.authors.remove(&a);
                    }
                }
            }
        }
        // Buckets skipped beyond one ring turn were empty: decay the baseline in closed form.
        if steps > n && !self.frozen {
            self.ewma *= decay.powi((steps - n).min(i32::MAX as i64) as i32);
        }
        self.head = idx;
    }

    /// Count one mention by `author` at bucket `idx` (late ones go to the oldest bucket).
    pub fn add(&mut self, idx: i64, author: u64) {
        let n = self.n as i64;
        let idx = idx.clamp(self.head - n + 1, self.head);
        if self.buckets.capacity() == 0 {
            // Most windows (a claim group's) only ever hold one bucket: room for one, not the
            // four a first push makes.
            self.buckets.reserve_exact(1);
        }
        // Most mentions land in the newest bucket or open the next one: the back first.
        let last = self.buckets.len().saturating_sub(1);
        let pos = match self.buckets.back() {
            Some((i, _)) if *i == idx => last,
            Some((i, _)) if *i < idx => {
                self.buckets.push_back((idx, Bucket::default()));
                last + 1
            }
            _ => match self.buckets.iter().rposition(|(i, _)| *i <= idx) {
                Some(p) if self.buckets[p].0 == idx => p,
                found => {
                    let p = found.map_or(0, |p| p + 1);
                    self.buckets.insert(p, (idx, Bucket::default()));
                    p
                }
            },
        };
        let b = &mut self.buckets[pos].1;
        b.mentions += 1;
        self.mentions += 1;
        if !b.authors.contains(&author) {
            if b.authors.capacity() == 0 {
                b.authors.reserve_exact(1);
            }
            b.authors.push(author);
            *self.authors.entry(author).or_insert(0) += 1;
        }
    }

    /// Empty the ring and unfreeze the baseline. A baseline that was learning takes in what
    /// the ring held now (oldest first, as if it had expired); a frozen one keeps its value.
    /// Either way the emptied slots do not count again when they expire: an hour of zeros
    /// after every closed incident would teach the slow window that nothing ever happens.
    pub fn clear(&mut self, decay: f64) {
        let n = self.n as i64;
        for k in 1..=n {
            let b = self.take_oldest(self.head + k - n);
            if !self.frozen {
                self.ewma = self.ewma * decay + (1.0 - decay) * b.authors.len() as f64;
            }
        }
        self.buckets.clear();
        self.skip = self.n;
        self.authors.clear();
        self.mentions = 0;
        self.frozen = false;
    }

    /// Distinct authors in the window.
    pub fn authors(&self) -> u64 {
        self.authors.len() as u64
    }

    /// Mentions in the window.
    pub fn mentions(&self) -> u64 {
        self.mentions
    }

    /// Baseline distinct authors per bucket, floored by `prior`.
    pub fn baseline(&self, prior: f64) -> f64 {
        self.ewma.max(prior)
    }

    /// The baseline corrected for start-up bias, floored by `prior`. A zero-started EWMA
    /// underestimates the rate by the factor `corr` = 1 − decay^(buckets that have left the
    /// window since the engine started): the same for every key, since a key created later had
    /// zero counts before. Without it, an engine that just started takes ordinary background
    /// for a spike.
    pub fn baseline_corrected(&self, prior: f64, corr: f64) -> f64 {
        let e = if self.baked || corr <= 0.0 {
            self.ewma
        } else {
            self.ewma / corr.min(1.0)
        };
        e.max(prior)
    }

    /// Freeze the baseline (an incident opened on the key), baking in the start-up correction
    /// so that the frozen value does not drift as the engine ages. `corr` = 0 means nothing
    /// is known yet (the engine just started): then the baseline keeps learning, since
    /// freezing it at its prior would make the key's ordinary traffic look like an event
    /// for as long as the incident lasts.
    pub fn freeze(&mut self, corr: f64) {
        if corr <= 0.0 {
            return;
        }
        if !self.frozen && !self.baked {
            self.ewma /= corr.min(1.0);
            self.baked = true;
        }
        self.frozen = true;
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the ring holds nothing and the baseline has decayed to nothing.
    pub fn is_idle(&self, prior: f64) -> bool {
        self.mentions == 0 && self.ewma <= prior && !self.frozen
    }

    /// Whether the ring is empty (all buckets zero).
    pub fn is_empty(&self) -> bool {
        self.mentions == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahash::AHashMap;

    #[test]
    fn the_tail_test_decides_as_the_summed_tail() {
        let mut shortcuts = 0;
        for k in 0..400u64 {
            for lambda in [0.0, 0.01, 0.3, 1.0, 2.5, 7.0, 15.0, 60.0, 150.0, 399.0] {
                for p in [1e-12, 1e-9, 1e-3, 0.05, 0.5, 1.0] {
                    let sf = poisson_sf(k, lambda);
                    assert_eq!(
                        poisson_tail_at_least(k, lambda, p),
                        sf >= p,
                        "k {k} lambda {lambda} p {p} sf {sf}"
                    );
                    if k as f64 > lambda && lambda > 0.0 && ln_pmf(k as f64, lambda).exp() >= p {
                        shortcuts += 1;
                    }
                }
            }
        }
        // The shortcut is taken (the test covers it, not only the summed path).
        assert!(shortcuts > 300, "{shortcuts}");
    }

    #[test]
    fn poisson_tail_matches_known_values() {
        // P(X >= 1 | 1) = 1 - e^-1
        assert!(
            (poisson_sf(1, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-6
                || poisson_sf(1, 1.0) == 1.0
        );
        // P(X >= 5 | 0.1) ≈ 7.66e-8
        let p = poisson_sf(5, 0.1);
        assert!((p / 7.66e-8 - 1.0).abs() < 0.01, "{p}");
        // P(X >= 10 | 2) ≈ 4.65e-5
        let p = poisson_sf(10, 2.0);
        assert!((p / 4.650_4e-5 - 1.0).abs() < 0.01, "{p}");
        assert!(poisson_sf(3, 5.0) >= 0.5);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn window_counts_distinct_authors_and_expires() {
        let mut w = Window::new(3, 0);
        w.add(0, 1);
        w.add(0, 1);
        w.add(0, 2);
        assert_eq!((w.authors(), w.mentions()), (2, 3));
        w.advance(1, 0.5);
        w.add(1, 1);
        assert_eq!(w.authors(), 2);
        w.advance(3, 0.5); // bucket 0 expires
        assert_eq!((w.authors(), w.mentions()), (1, 1));
        w.advance(100, 0.5);
        assert_eq!((w.authors(), w.mentions()), (0, 0));
        assert!(w.baseline(0.0) < 1e-6);
    }

    #[test]
    fn late_mentions_land_in_the_oldest_bucket() {
        let mut w = Window::new(3, 10);
        w.add(2, 7);
        assert_eq!(w.mentions(), 1);
        w.advance(12, 0.9); // slot of bucket 8 (holding the late one) expires at 11
        assert_eq!(w.mentions(), 0);
    }

    #[test]
    fn clear_takes_in_a_learning_ring_once_and_not_its_empty_slots_again() {
        let mut w = Window::new(4, 0);
        for i in 0..40 {
            w.add(i, i as u64);
            w.add(i, 1_000 + i as u64);
            w.advance(i + 1, 0.9);
        }
        let before = w.baseline(0.0);
        assert!((before - 2.0).abs() < 0.1, "{before}");
        w.add(40, 7);
        w.add(40, 8);
        w.clear(0.9);
        assert_eq!((w.authors(), w.mentions()), (0, 0));
        // Two authors a bucket go on: the emptied slots expiring must not pull it to zero.
        for i in 41..45 {
            w.add(i, i as u64);
            w.add(i, 2_000 + i as u64);
            w.advance(i + 1, 0.9);
        }
        assert!(w.baseline(0.0) > 1.6, "{}", w.baseline(0.0));
        // A frozen baseline keeps its value through a clear.
        let mut f = Window::new(4, 0);
        for i in 0..40 {
            f.add(i, i as u64);
            f.advance(i + 1, 0.9);
        }
        f.freeze(1.0);
        for a in 0..50 {
            f.add(40, a);
        }
        let frozen = f.baseline(0.0);
        f.clear(0.9);
        assert!((f.baseline(0.0) - frozen).abs() < 1e-12);
    }

    #[test]
    fn baseline_learns_and_freezes() {
        let mut w = Window::new(2, 0);
        for i in 0..200 {
            w.add(i, i as u64);
            w.add(i, 1_000 + i as u64);
            w.advance(i + 1, 0.9);
        }
        assert!((w.baseline(0.0) - 2.0).abs() < 0.05, "{}", w.baseline(0.0));
        w.frozen = true;
        for i in 200..210 {
            for a in 0..50 {
                w.add(i, a);
            }
            w.advance(i + 1, 0.9);
        }
        assert!((w.baseline(0.0) - 2.0).abs() < 0.05);
    }

    /// The ring as it was before only non-empty buckets were stored: every slot held.
    struct Dense {
        head: i64,
        buckets: Vec<Bucket>,
        authors: AHashMap<u64, u32>,
        mentions: u64,
        ewma: f64,
        frozen: bool,
        skip: usize,
    }

    impl Dense {
        fn slot(&self, idx: i64) -> usize {
            idx.rem_euclid(self.buckets.len() as i64) as usize
        }
        fn advance(&mut self, idx: i64, decay: f64) {
            if idx <= self.head {
                return;
            }
            let n = self.buckets.len() as i64;
            let steps = idx - self.head;
            for k in 1..=steps.min(n) {
                let s = self.slot(self.head + k);
                let b = std::mem::take(&mut self.buckets[s]);
                if self.skip > 0 {
                    self.skip -= 1;
                } else if !self.frozen {
                    self.ewma = self.ewma * decay + (1.0 - decay) * b.authors.len() as f64;
                }
                self.mentions -= b.mentions;
                for a in b.authors {
                    if let Some(c) = self.authors.get_mut(&a) {
                        *c -= 1;
                        if *c == 0 {
                            self.authors.remove(&a);
                        }
                    }
                }
            }
            if steps > n && !self.frozen {
                self.ewma *= decay.powi((steps - n).min(i32::MAX as i64) as i32);
            }
            self.head = idx;
        }
        fn add(&mut self, idx: i64, author: u64) {
            let n = self.buckets.len() as i64;
            let s = self.slot(idx.clamp(self.head - n + 1, self.head));
            let b = &mut self.buckets[s];
            b.mentions += 1;
            self.mentions += 1;
            if !b.authors.contains(&author) {
                b.authors.push(author);
                *self.authors.entry(author).or_insert(0) += 1;
            }
        }
        fn clear(&mut self, decay: f64) {
            let n = self.buckets.len() as i64;
            for k in 1..=n {
                let s = self.slot(self.head + k);
                let b = std::mem::take(&mut self.buckets[s]);
                if !self.frozen {
                    self.ewma = self.ewma * decay + (1.0 - decay) * b.authors.len() as f64;
                }
            }
            self.skip = self.buckets.len();
            self.authors.clear();
            self.mentions = 0;
            self.frozen = false;
        }
    }

    #[test]
    fn the_sparse_ring_counts_exactly_as_a_ring_of_every_slot() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for n in [1usize, 2, 3, 12, 30] {
            let head = 1_000;
            let mut w = Window::new(n, head);
            let mut d = Dense {
                head,
                buckets: vec![Bucket::default(); n],
                authors: AHashMap::new(),
                mentions: 0,
                ewma: 0.0,
                frozen: false,
                skip: 0,
            };
            let mut stored = 0;
            for _ in 0..20_000 {
                match next(100) {
                    // Mostly the newest bucket, some late (older than the ring), some in it.
                    0..=59 => {
                        let back = match next(10) {
                            0 => next(3 * n as u64 + 2) as i64,
                            1..=5 => next(n as u64) as i64,
                            _ => 0,
                        };
                        let a = next(40);
                        w.add(d.head - back, a);
                        d.add(d.head - back, a);
                    }
                    60..=89 => {
                        // One bucket on, a few, or past a whole ring turn.
                        let to = d.head
                            + match next(50) {
                                0 => 1 + next(3 * n as u64 + 3) as i64,
                                k => i64::from(k % 4 == 1),
                            };
                        w.advance(to, 0.9);
                        d.advance(to, 0.9);
                    }
                    90..=98 => {
                        w.frozen = !w.frozen;
                        d.frozen = w.frozen;
                    }
                    _ if next(4) == 0 => {
                        w.clear(0.9);
                        d.clear(0.9);
                    }
                    _ => {}
                }
                assert_eq!(w.authors(), d.authors.len() as u64);
                assert_eq!(w.mentions(), d.mentions);
                assert_eq!(w.ewma.to_bits(), d.ewma.to_bits());
                assert_eq!(w.skip, d.skip);
                assert!(w.buckets.len() <= n);
                assert!(w
                    .buckets
                    .iter()
                    .zip(w.buckets.iter().skip(1))
                    .all(|(a, b)| a.0 < b.0));
                stored = stored.max(w.buckets.len());
            }
            // The ring did fill up (the sparse form was tested full, not only near empty).
            assert_eq!(stored, n, "n {n}");
        }
    }
}
