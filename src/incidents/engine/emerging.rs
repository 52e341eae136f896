//! Emerging incidents: bursts of terms no rule names (a haze, a meteorite, a new word).
//!
//! Every mention's terms (`detect::emerging::terms`) are counted in a fixed-size count-min
//! sketch per bucket beside its EWMA baseline. A term whose estimate in the current bucket rises
//! to three times its baseline (and at least [`NOMINATE_MIN`]) becomes a *candidate*: from then
//! on it is followed exactly, by distinct author, with its recent mentions. At each sweep a
//! candidate *bursts* when its distinct authors in the window are improbable under its baseline
//! (Poisson tail below `alpha`, at least `min_authors`), unless most of its mentions already hit
//! a rule (the rule detectors own them) or it is muted. Bursting terms whose recent mentions
//! overlap are one incident (`kind: "emerging"`); later mentions holding one of its terms join
//! it; it closes when none of its terms has been above its baseline for `quiet_secs`, and its
//! terms are then muted for `mute_secs`, as after an operator dismisses it. When a rule incident
//! takes in enough of its mentions, it is merged into that incident.
//!
//! In a fleet (a coordinator), each followed term's authors are also counted over every instance
//! under `eg|{term}` ([`fleet_key`]); the burst test and the incident's authors take the larger
//! of the local and the fleet's count ([`Engine::merge_fleet`] hands those counts here).
//!
//! Memory: the sketch is fixed ([`TermSketch::bytes`]); candidates are at most
//! `max_candidates`, each with at most [`AUTHORS_CAP`] authors and [`RECENT_CAP`] recent
//! mentions (of which [`FULL_CAP`] kept whole for samples); the member index of open incidents
//! at most [`MEMBERS_CAP`] mention keys. [`EmergingState::bound_bytes`] states the bound.

use super::{round2, Engine, OpenIncident, OpenKey, PendingMention};
use crate::detect::analyze::Analysis;
use crate::detect::emerging::{term_hash, TermFilter, TermSketch};
use crate::detect::rules::RuleSet;
use crate::detect::spike::poisson_tail_at_least;
use crate::incidents::coord::Hit;
use crate::incidents::incident::{Event, Incident, IncidentKind};
use crate::normalize::{Mention, Packed};
use crate::SmallMap;
use ahash::{AHashMap, AHashSet};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A term's estimate in the current bucket must reach this to be followed.
pub const NOMINATE_MIN: u32 = 2;
/// Authors remembered per candidate.
pub const AUTHORS_CAP: usize = 256;
/// Recent mentions remembered per candidate.
pub const RECENT_CAP: usize = 64;
/// Of which kept whole (samples, headline).
pub const FULL_CAP: usize = 3;
/// Mention keys of open emerging incidents remembered for the merge with rule incidents.
pub const MEMBERS_CAP: usize = 200_000;
/// Bytes a recent mention kept whole may take at most (text is cut beyond it).
const FULL_TEXT_BYTES: usize = 1_000;
/// Category of emerging incidents (no rule names them).
pub const CATEGORY: &str = "emerging";
/// Significance below which an open emerging incident's term still counts as active.
const ACTIVE_ALPHA: f64 = 1e-3;
/// A term whose window is at least this probable under its baseline is at its ordinary level:
/// only then does its followed baseline move (the first posts of a burst must not raise it).
const ORDINARY_P: f64 = 0.05;

/// A mention a candidate remembers.
#[derive(Debug, Clone)]
struct Recent {
    ts: i64,
    key: u64,
    id: RecentId,
    author: u64,
    /// It hit a rule (category, cue, known claim).
    rule: bool,
    region: Option<u32>,
    boosted: bool,
    /// Kept whole for samples (the first [`FULL_CAP`]), shared by the candidates that keep it.
    full: Option<Arc<Mention>>,
}

/// A recent mention's id: inline when short (every platform's ids in use are), else shared by
/// every candidate it is recent for. Recent mentions come and go by the million; an inline id
/// costs no allocation, and dropping it touches no other memory.
#[derive(Debug, Clone)]
enum RecentId {
    Inline(u8, [u8; 22]),
    Shared(Arc<str>),
}

impl RecentId {
    fn new(id: &str, shared: &mut Option<Arc<str>>) -> RecentId {
        let b = id.as_bytes();
        if b.len() <= 22 {
            let mut buf = [0u8; 22];
            buf[..b.len()].copy_from_slice(b);
            return RecentId::Inline(b.len() as u8, buf);
        }
        RecentId::Shared(shared.get_or_insert_with(|| Arc::from(id)).clone())
    }

    fn as_str(&self) -> &str {
        match self {
            RecentId::Inline(n, buf) => {
                std::str::from_utf8(&buf[..usize::from(*n)]).unwrap_or_default()
            }
            RecentId::Shared(s) => s,
        }
    }
}

/// A term followed exactly.
#[derive(Debug, Clone)]
struct Candidate {
    name: String,
    /// Author → event time of their last mention of it.
    authors: SmallMap<u64, i64>,
    recent: VecDeque<Recent>,
    fulls: usize,
    last_hit: i64,
    /// At its ordinary level at the last sweep: the first to go when the table is nearly full.
    ordinary: bool,
    /// No author in `authors` is older than this (authors are only dropped at a sweep when
    /// one may have left the window).
    oldest: i64,
    /// Its baseline per bucket before it rose: followed while it is at its ordinary level,
    /// frozen while it is above it (a burst must not raise its own baseline), never frozen
    /// while the baselines learn.
    base: f64,
    /// What it is counted as in its incident's top terms: its phrase (流星雨 for 流星).
    label: String,
    /// Mentioned since the last sweep (only those are looked at between bucket ends).
    dirty: bool,
    /// Already too common in the sketch's first bucket to ever burst ([`doom_count`]):
    /// its recent mentions are no longer kept, and it is dropped when that bucket has ended.
    doomed: bool,
    /// Above its baseline at the last sweep (or just opened on): only then do mentions holding
    /// it join its incident (after the burst, the term's everyday use is not the event).
    active: bool,
    /// The open emerging incident it belongs to.
    incident: Option<String>,
    /// In a fleet: its shared key (`eg|{term}`), under which its authors are counted over
    /// every instance.
    fleet_key: Option<Box<str>>,
    /// Distinct authors in the window over the fleet, with the bucket they were counted to.
    fleet: Option<(i64, u64)>,
}

impl Candidate {
    /// Distinct authors in the window: this instance's, or the fleet's when counted up to
    /// `now_b - 1` or later (a count from before the last bucket ended is stale).
    fn authors_now(&self, now_b: i64) -> u64 {
        let here = self.authors.len() as u64;
        match self.fleet {
            Some((head, n)) if head >= now_b - 1 => here.max(n),
            _ => here,
        }
    }
}

/// What the engine keeps for emerging incidents.
#[derive(Debug, Default)]
pub(super) struct EmergingState {
    sketch: TermSketch,
    cands: AHashMap<u64, Candidate>,
    /// A filter of `cands`, so the common term that is no candidate costs no hash-table lookup.
    cand_bits: TermFilter,
    /// Muted terms (hash → until, event time ms).
    muted: AHashMap<u64, i64>,
    /// Stop terms from the settings (hashes).
    stop: AHashSet<u64>,
    /// Mention key → the open emerging incident holding it.
    members: AHashMap<u64, Arc<str>>,
    /// Per open emerging incident: mentions shared with each rule incident.
    shared: BTreeMap<String, BTreeMap<String, u32>>,
    /// Merges due (emerging id, rule incident id).
    merges: Vec<(String, String)>,
    /// Candidates not followed because the table was full.
    pub(super) overflow: u64,
    /// The bucket of the last sweep: every candidate is looked at once per bucket, the ones
    /// mentioned since at every sweep.
    swept_bucket: i64,
    /// The candidates mentioned since the last sweep (marked `dirty`), so a sweep between
    /// bucket ends visits them, not every candidate; a hash no longer followed is skipped.
    dirty: Vec<u64>,
    /// Bursts not opened because a rule incident already held their mentions.
    pub(super) covered: u64,
    /// [`doom_count`] under the settings (set with them; none before).
    doom_at: Option<u32>,
}

impl EmergingState {
    fn may_follow(&self, h: u64) -> bool {
        self.cand_bits.may_contain(h)
    }

    fn mark(&mut self, h: u64) {
        self.cand_bits.insert(h);
    }

    /// Rebuild the filter after candidates were dropped.
    fn remark(&mut self) {
        self.cand_bits.clear();
        for h in self.cands.keys() {
            self.cand_bits.insert(*h);
        }
    }

    /// Candidates followed now.
    pub(super) fn candidates(&self) -> usize {
        self.cands.len()
    }

    /// The most memory this state can hold with `max_candidates` (bytes, approximate: hash
    /// table overhead included as a factor of two).
    pub fn bound_bytes(max_candidates: usize) -> usize {
        let sketch = TermSketch::default().bytes();
        let recent = std::mem::size_of::<Recent>() + 48;
        let full = std::mem::size_of::<Mention>() + FULL_TEXT_BYTES + 200;
        // Hash tables counted at twice their entries (load factor and control bytes).
        let cand = (std::mem::size_of::<Candidate>() + 16) * 2
            + AUTHORS_CAP * 16 * 2
            + RECENT_CAP * recent
            + FULL_CAP * full;
        sketch + max_candidates * cand + MEMBERS_CAP * 40 * 2
    }
}

impl Engine {
    fn emerging_bucket_ms(&self) -> i64 {
        i64::from(self.settings.emerging.bucket_secs.max(1)) * 1000
    }

    fn emerging_decay(&self) -> f32 {
        let half = f64::from(self.settings.emerging.baseline_half_life_secs.max(1));
        0.5f64.powf(f64::from(self.settings.emerging.bucket_secs.max(1)) / half) as f32
    }

    /// Prior distinct authors per bucket of any term.
    fn emerging_prior(&self) -> f64 {
        self.settings.emerging.prior_per_hour * f64::from(self.settings.emerging.bucket_secs)
            / 3600.0
    }

    /// Buckets in a term's window (the Poisson tests' multiplier).
    fn emerging_window_buckets(&self) -> f64 {
        let s = &self.settings.emerging;
        f64::from(s.window_secs) / f64::from(s.bucket_secs.max(1))
    }

    /// The stop terms of the settings and the names of places, as hashes, and the count that
    /// dooms a term in the first bucket (after a reload).
    pub(super) fn emerging_settings_changed(&mut self, rules: &RuleSet) {
        self.em.doom_at = Some(doom_count(
            self.emerging_prior(),
            self.emerging_window_buckets(),
            self.settings.emerging.alpha,
        ));
        let mut stop = if self.settings.emerging.place_terms {
            ahash::AHashSet::new()
        } else {
            crate::detect::emerging::place_terms(&rules.gazetteer)
        };
        stop.extend(
            self.settings
                .emerging
                .stop_terms
                .iter()
                .map(|t| term_hash(&t.to_lowercase())),
        );
        self.em.stop = stop;
    }

    /// Count the terms of one mention; join it to the open emerging incidents holding them.
    pub(super) fn emerging_hit(&mut self, m: &Mention, a: &Analysis, out: &mut Vec<Event>) {
        if !self.settings.emerging.enabled || a.emerging.is_empty() {
            return;
        }
        let bms = self.emerging_bucket_ms();
        let decay = self.emerging_decay();
        self.em.sketch.roll(self.now, bms, decay);
        let prior = self.emerging_prior();
        let max = self.settings.emerging.max_candidates as usize;
        let author = voice(m, a);
        let key = crate::stable_hash(m.id.as_bytes());
        let rule = a.is_relevant();
        let region = a.regions.first().copied();
        let window_buckets = (self.settings.emerging.window_secs
            / self.settings.emerging.bucket_secs.max(1))
        .max(1) as usize;
        // Open emerging incidents this mention joins, with the names of their terms it holds.
        let mut join: Vec<(String, Vec<String>)> = Vec::new();
        // The mention's id (when long) and whole copy, made once for every followed term that
        // keeps them.
        let mut shared_id: Option<Arc<str>> = None;
        let mut shared_full: Option<Arc<Mention>> = None;
        // The baseline's divisor, the same for every term until the next roll (a `powf`).
        let mut correction: Option<f64> = None;
        // In the sketch's first bucket, while the warm-up lasts past the end of the next one
        // (the sweep that drops a term too common to burst must still be in the warm-up, when a
        // term's baseline follows the sketch's), the count that dooms a followed term.
        let doom_at = {
            let s = &self.settings.emerging;
            let b0 = self.em.sketch.bucket();
            match self.em.doom_at {
                Some(n)
                    if self.em.sketch.rolled == 0
                        && self.started_at + i64::from(s.warmup_secs) * 1000 >= (b0 + 2) * bms =>
                {
                    n
                }
                _ => u32::MAX,
            }
        };
        for t in &a.emerging {
            let est = self.em.sketch.add(t.hash);
            // One look-up for a followed term (most terms are not: the filter answers for them).
            let followed = if self.em.may_follow(t.hash) {
                self.em.cands.get_mut(&t.hash)
            } else {
                None
            };
            let c = match followed {
                Some(c) => c,
                None => {
                    if est < NOMINATE_MIN || self.em.stop.contains(&t.hash) {
                        continue;
                    }
                    let corr = *correction.get_or_insert_with(|| self.em.sketch.correction(decay));
                    let base = self.em.sketch.baseline_with(t.hash, corr);
                    if f64::from(est) < 3.0 * (base + prior) {
                        continue;
                    }
                    if self.em.cands.len() >= max {
                        self.em.overflow += 1;
                        crate::metrics::global().emerging_overflow.inc();
                        continue;
                    }
                    self.em.mark(t.hash);
                    self.em.dirty.push(t.hash);
                    let term = t.text(a.normalized(m));
                    self.em.cands.entry(t.hash).or_insert(Candidate {
                        name: term.to_string(),
                        base,
                        label: term.to_string(),
                        active: false,
                        dirty: true,
                        doomed: false,
                        authors: SmallMap::default(),
                        recent: VecDeque::new(),
                        fulls: 0,
                        last_hit: m.ts,
                        ordinary: false,
                        oldest: m.ts,
                        incident: None,
                        fleet_key: self
                            .coord
                            .is_some()
                            .then(|| fleet_key(term).into_boxed_str()),
                        fleet: None,
                    })
                }
            };
            c.last_hit = c.last_hit.max(m.ts);
            if !c.dirty {
                c.dirty = true;
                self.em.dirty.push(t.hash);
            }
            if est >= doom_at && !c.doomed && c.incident.is_none() && c.fleet_key.is_none() {
                c.doomed = true;
                c.recent = VecDeque::new();
                c.fulls = 0;
            }
            if let (Some(k), Some(co)) = (c.fleet_key.as_deref(), self.coord.as_mut()) {
                co.record(Hit {
                    key: k,
                    bucket: m.ts.div_euclid(bms),
                    head: self.now.div_euclid(bms),
                    buckets: window_buckets,
                    bucket_ms: bms,
                    author,
                });
            }
            // One look-up: a new author is only added below the cap.
            if c.authors.len() < AUTHORS_CAP {
                if c.authors.is_empty() {
                    c.oldest = m.ts;
                }
                let e = c.authors.entry(author).or_insert(m.ts);
                *e = (*e).max(m.ts);
            } else if let Some(e) = c.authors.get_mut(&author) {
                *e = (*e).max(m.ts);
            }
            if c.doomed {
                continue;
            }
            if c.recent.len() >= RECENT_CAP
                && c.recent.pop_front().is_some_and(|r| r.full.is_some())
            {
                // A term followed long keeps whole copies of its latest mentions, not none.
                c.fulls -= 1;
            }
            let full = (c.fulls < FULL_CAP && !m.text.trim().is_empty()).then(|| {
                c.fulls += 1;
                shared_full
                    .get_or_insert_with(|| {
                        let mut copy = m.clone();
                        if copy.text.len() > FULL_TEXT_BYTES {
                            copy.text = crate::truncate_chars(&copy.text, FULL_TEXT_BYTES / 4);
                        }
                        Arc::new(copy)
                    })
                    .clone()
            });
            c.recent.push_back(Recent {
                ts: m.ts,
                key,
                id: RecentId::new(&m.id, &mut shared_id),
                author,
                rule,
                region,
                boosted: a.boosted,
                full,
            });
            if let Some(id) = c.incident.as_ref().filter(|_| c.active) {
                match join.iter_mut().find(|(j, _)| j == id) {
                    Some((_, names)) => {
                        if !names.contains(&c.label) {
                            names.push(c.label.clone());
                        }
                    }
                    None => join.push((id.clone(), vec![c.label.clone()])),
                }
            }
        }
        for (id, names) in join {
            if self.em.members.len() < MEMBERS_CAP {
                self.em.members.insert(key, Arc::from(id.as_str()));
            }
            let p = PendingMention {
                ts: m.ts,
                author,
                boosted: a.boosted,
                verified: m.verified(),
                held: Packed::new(m, &names),
                echo: false,
                sample: true,
            };
            self.join(&id, p, false, None, out);
        }
    }

    /// A mention joined a rule incident: when it is also an emerging incident's, count the
    /// overlap; enough of it merges the emerging incident into the rule one.
    pub(super) fn emerging_overlap(&mut self, mention_id: &str, rule_incident: &str) {
        if self.em.members.is_empty() {
            return;
        }
        let key = crate::stable_hash(mention_id.as_bytes());
        let Some(eid) = self.em.members.get(&key).cloned() else {
            return;
        };
        let n = {
            let per = self.em.shared.entry(eid.to_string()).or_default();
            let n = per.entry(rule_incident.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let total = self.open.get(&*eid).map_or(0, |o| o.inc.mentions);
        if shares_event(u64::from(n), total) {
            let pair = (eid.to_string(), rule_incident.to_string());
            if !self.em.merges.contains(&pair) {
                self.em.merges.push(pair);
            }
        }
    }

    /// Apply the merges found: the emerging incident closes, merged into the rule incident.
    pub(super) fn emerging_merges(&mut self, out: &mut Vec<Event>) {
        if self.em.merges.is_empty() {
            return;
        }
        let now = self.now;
        for (eid, into) in std::mem::take(&mut self.em.merges) {
            if !self.open.contains_key(&into) {
                continue;
            }
            if let Some(o) = self.open.get_mut(&eid) {
                o.inc.merged_into = Some(into.clone());
                self.close_open(&eid, now, out);
            }
        }
    }

    /// At each sweep: roll the sketch, find the bursting terms, group them, open, keep active,
    /// forget idle candidates and expired mutes.
    pub(super) fn emerging_sweep(&mut self, rules: Option<&Arc<RuleSet>>, out: &mut Vec<Event>) {
        if !self.settings.emerging.enabled {
            return;
        }
        let s = self.settings.emerging.clone();
        let now = self.now;
        let bms = self.emerging_bucket_ms();
        let decay = self.emerging_decay();
        self.em.sketch.roll(now, bms, decay);
        let corr = self.em.sketch.correction(decay);
        let now_b = now.div_euclid(bms);
        let full = now_b != self.em.swept_bucket;
        self.em.swept_bucket = now_b;
        let window_ms = i64::from(s.window_secs) * 1000;
        let nb = self.emerging_window_buckets();
        let prior = self.emerging_prior();
        let warm = now - self.started_at >= i64::from(s.warmup_secs) * 1000;
        self.em.muted.retain(|_, until| *until > now);
        let mut bursting: Vec<(u64, u64)> = Vec::new();
        let mut active: Vec<String> = Vec::new();
        let mut idle: Vec<u64> = Vec::new();
        let mut dirty = std::mem::take(&mut self.em.dirty);
        let (sketch, muted) = (&self.em.sketch, &self.em.muted);
        let mut one = |h: u64, c: &mut Candidate| {
            if !c.dirty && !full {
                return;
            }
            c.dirty = false;
            // Doomed in the first bucket, which has ended: the test below drops it when the next
            // bucket followed at once (its baseline is then its first bucket's count); after a
            // longer gap that baseline has decayed, and it goes all the same (it holds no recent
            // mentions; a rise to 3 × its baseline follows it again).
            if c.doomed && sketch.rolled > 0 {
                idle.push(h);
                return;
            }
            // Between bucket ends (baselines move only at them) only a burst matters: a term
            // that would not burst with every author it holds, some perhaps out of the window
            // by now, will not with fewer: no need to count them (the everyday words followed
            // at a high rate hold hundreds).
            if !full && c.incident.is_none() {
                let upper = c.authors_now(now_b);
                if !warm
                    || upper < u64::from(s.min_authors)
                    || poisson_tail_at_least(
                        upper,
                        (c.base.min(sketch.baseline_with(h, corr)) + prior) * nb,
                        s.alpha,
                    )
                {
                    return;
                }
            }
            if c.oldest <= now - window_ms {
                c.authors.retain(|_, ts| *ts > now - window_ms);
                c.oldest = c.authors.values().copied().min().unwrap_or(now);
            }
            while c
                .recent
                .front()
                .is_some_and(|r| r.ts <= now - 2 * window_ms)
            {
                if c.recent.front().is_some_and(|r| r.full.is_some()) {
                    c.fulls -= 1;
                }
                c.recent.pop_front();
            }
            if c.authors.is_empty() && c.incident.is_none() {
                idle.push(h);
                return;
            }
            let n = c.authors_now(now_b);
            let current = sketch.baseline_with(h, corr);
            let lambda = (c.base.min(current) + prior) * nb;
            // At its ordinary level: P(authors >= n | baseline) at least ORDINARY_P.
            let ordinary = poisson_tail_at_least(n, lambda, ORDINARY_P);
            // Still part of its event: improbable even under the baseline its burst has raised
            // (a word in everyday use, "flood", stops taking mentions soon after the burst).
            c.active = !poisson_tail_at_least(n, (current + prior) * nb, ACTIVE_ALPHA);
            if !warm || ordinary {
                c.base = current;
            }
            c.ordinary = ordinary;
            // A term so common here that even [`AUTHORS_CAP`] authors in its window (the most
            // it counts) would not be improbable under its baseline cannot burst on this
            // instance: it is no longer followed. Its sketch still counts it, and a rise to
            // three times its baseline follows it again. (In a fleet the instances' authors add
            // up past the cap: followed there.) Words in everyday use at a high rate are most
            // of a post's terms; following each cost most of the engine thread's time.
            if c.incident.is_none()
                && c.fleet_key.is_none()
                && poisson_tail_at_least(
                    AUTHORS_CAP as u64,
                    (c.base.min(current) + prior) * nb,
                    s.alpha,
                )
            {
                idle.push(h);
                return;
            }
            if let Some(id) = &c.incident {
                if c.active {
                    active.push(id.clone());
                }
                return;
            }
            let rules_share =
                || c.recent.iter().filter(|r| r.rule).count() as f64 / c.recent.len().max(1) as f64;
            if warm
                && n >= u64::from(s.min_authors)
                && !poisson_tail_at_least(n, lambda, s.alpha)
                && !muted.contains_key(&h)
                && rules_share() <= s.max_rule_share
            {
                bursting.push((h, n));
            }
        };
        // At a bucket's end every candidate; between, only those mentioned since the last
        // sweep: any other's count can only have fallen (looked at again at the bucket's end,
        // when it may go quiet).
        if full {
            for (h, c) in self.em.cands.iter_mut() {
                one(*h, c);
            }
        } else {
            for h in dirty.drain(..) {
                if let Some(c) = self.em.cands.get_mut(&h) {
                    one(h, c);
                }
            }
        }
        dirty.clear(); // a full sweep visited every candidate without draining the list
        self.em.dirty = dirty;
        if full {
            crate::metrics::global()
                .emerging_terms
                .set(self.em.cands.len() as i64);
        }
        // Nearly full (a wide vocabulary at a high rate nominates many rare terms, and words in
        // everyday use stay followed): drop followed terms that belong to no incident, those
        // at their ordinary level first, then those with the fewest authors (too few to burst)
        // and the longest unmentioned, down to half, so a rising term finds room. Only then:
        // a term followed all along counts the authors its window held before it rose.
        let max = s.max_candidates as usize;
        if self.em.cands.len() - idle.len().min(self.em.cands.len()) > max - max / 8 {
            let gone: AHashSet<u64> = idle.iter().copied().collect();
            let mut weak: Vec<(bool, usize, i64, u64)> = self
                .em
                .cands
                .iter()
                .filter(|(h, c)| {
                    c.incident.is_none()
                        && (c.ordinary || c.authors.len() < s.min_authors as usize)
                        && !gone.contains(*h)
                })
                .map(|(h, c)| (!c.ordinary, c.authors.len(), c.last_hit, *h))
                .collect();
            weak.sort_unstable();
            let excess = (self.em.cands.len() - gone.len()).saturating_sub(max / 2);
            idle.extend(weak.into_iter().take(excess).map(|(_, _, _, h)| h));
        }
        if !idle.is_empty() {
            for h in idle {
                self.em.cands.remove(&h);
            }
            self.em.remark();
        }
        active.sort_unstable();
        active.dedup();
        for id in active {
            if let Some(o) = self.open.get_mut(&id) {
                o.last_active = now;
            }
        }
        if bursting.is_empty() {
            return;
        }
        // Most authors first, then by name: the same order every run.
        bursting.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| self.em.cands[&a.0].name.cmp(&self.em.cands[&b.0].name))
        });
        let keys_of = |c: &Candidate| c.recent.iter().map(|r| r.key).collect::<AHashSet<u64>>();
        // A bursting term goes with a group when this share of its recent mentions (or of the
        // group's, when fewer) hold the group's terms too: the bigrams of one word (陨石, 一颗)
        // share nearly all, a word and its place most.
        let overlaps = |a: &AHashSet<u64>, b: &AHashSet<u64>| {
            let small = a.len().min(b.len()).max(1);
            a.intersection(b).count() as f64 / small as f64 >= s.group_overlap
        };
        // Groups: (terms, their mention keys).
        let mut groups: Vec<(Vec<u64>, AHashSet<u64>)> = Vec::new();
        for (h, _) in bursting {
            let ks = keys_of(&self.em.cands[&h]);
            // An open incident takes it when `group_overlap` of its mentions are already the
            // incident's (assigned to it), the one holding most of them.
            let mut of: BTreeMap<&str, usize> = BTreeMap::new();
            for k in &ks {
                if let Some(id) = self.em.members.get(k) {
                    *of.entry(&**id).or_insert(0) += 1;
                }
            }
            let host = of
                .iter()
                .filter(|(id, n)| {
                    **n as f64 >= s.group_overlap * ks.len().max(1) as f64
                        && self.open.contains_key(**id)
                })
                .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
                .map(|(id, _)| id.to_string());
            if let Some(id) = host {
                self.emerging_attach(&id, h, out);
                continue;
            }
            match groups.iter_mut().find(|(_, g)| overlaps(&ks, g)) {
                Some((terms, g)) => {
                    terms.push(h);
                    g.extend(ks);
                }
                None => groups.push((vec![h], ks)),
            }
        }
        for (terms, _) in groups {
            self.emerging_open(rules, terms, out);
        }
    }

    /// A bursting term joins the open emerging incident `id`, with its recent mentions.
    fn emerging_attach(&mut self, id: &str, h: u64, out: &mut Vec<Event>) {
        let Some(c) = self.em.cands.get_mut(&h) else {
            return;
        };
        c.incident = Some(id.to_string());
        c.active = true;
        let name = c.label.clone();
        let recent: Vec<Recent> = c.recent.iter().cloned().collect();
        if let Some(o) = self.open.get_mut(id) {
            if let OpenKey::Emerging(terms) = &mut o.key {
                terms.push(h);
            }
            o.terms.add(&name, recent.len() as u32);
        }
        let iid: Arc<str> = Arc::from(id);
        for r in recent {
            if self.em.members.contains_key(&r.key) {
                continue;
            }
            if self.em.members.len() < MEMBERS_CAP {
                self.em.members.insert(r.key, iid.clone());
            }
            let p = pending(&r, std::slice::from_ref(&name));
            self.join(id, p, false, None, out);
        }
    }

    /// Open an emerging incident on bursting terms that go together.
    fn emerging_open(
        &mut self,
        rules: Option<&Arc<RuleSet>>,
        terms: Vec<u64>,
        out: &mut Vec<Event>,
    ) {
        let now = self.now;
        let s = &self.settings.emerging;
        let nb = self.emerging_window_buckets();
        let minutes = f64::from(s.window_secs) / 60.0;
        let prior = self.emerging_prior();
        // Recent mentions of the group, once each, oldest first; the whole ones first of all
        // (samples and headline come from them).
        let mut seen: AHashSet<u64> = AHashSet::new();
        let mut recent: Vec<Recent> = Vec::new();
        let mut authors: AHashSet<u64> = AHashSet::new();
        // The group's terms each recent mention holds.
        let mut names_of: AHashMap<u64, Vec<String>> = AHashMap::new();
        let (mut rate, mut base) = (0.0f64, 0.0f64);
        let now_b = now.div_euclid(self.emerging_bucket_ms());
        let mut rate_n = Vec::new();
        for h in &terms {
            if let Some(c) = self.em.cands.get(h) {
                rate_n.push((c.name.clone(), c.authors_now(now_b)));
            }
        }
        // In a fleet: the most distinct authors any of its terms has over every instance.
        let fleet_authors = if self.coord.is_some() {
            rate_n.iter().map(|(_, n)| *n).max().unwrap_or(0)
        } else {
            0
        };
        // Texts kept whole of the group's recent mentions: where a phrase splits a word.
        let texts: Vec<&str> = terms
            .iter()
            .filter_map(|h| self.em.cands.get(h))
            .flat_map(|c| c.recent.iter().filter_map(|r| r.full.as_deref()))
            .map(|m| m.text.as_str())
            .take(12)
            .collect();
        let top: Vec<(String, Vec<String>)> = phrases(rate_n)
            .into_iter()
            .map(|(p, parts)| (crate::detect::emerging::trim_phrase(&p, &texts), parts))
            .collect();
        for h in &terms {
            if let Some(c) = self.em.cands.get_mut(h) {
                if let Some((p, _)) = top.iter().find(|(_, parts)| parts.contains(&c.name)) {
                    c.label = p.clone();
                }
            }
        }
        for h in &terms {
            let Some(c) = self.em.cands.get(h) else {
                continue;
            };
            authors.extend(c.authors.keys());
            let n = c.authors_now(now_b) as f64;
            if n > rate {
                rate = n;
                base = (c
                    .base
                    .min(self.em.sketch.baseline_corrected(*h, self.emerging_decay()))
                    + prior)
                    * nb;
            }
            for r in &c.recent {
                let names = names_of.entry(r.key).or_default();
                if !names.contains(&c.label) {
                    names.push(c.label.clone());
                }
                if seen.insert(r.key) {
                    recent.push(r.clone());
                }
            }
        }
        // A rule incident already holds enough of these mentions: the burst is its event
        // (one incident per event); its terms rest while it lasts.
        let covered = self.open.values().any(|o| {
            o.inc.kind != IncidentKind::Emerging && {
                let n = recent
                    .iter()
                    .filter(|r| o.recent.contains_key(&r.key))
                    .count();
                shares_event(n as u64, recent.len() as u64)
            }
        });
        if covered {
            let until = now + i64::from(self.settings.emerging.quiet_secs) * 1000;
            for h in &terms {
                self.em.muted.insert(*h, until);
            }
            self.em.covered += 1;
            return;
        }
        recent.sort_by_key(|r| (r.full.is_none(), r.ts, r.key));
        let mut regions: BTreeMap<u32, usize> = BTreeMap::new();
        for r in &recent {
            if let Some(g) = r.region {
                *regions.entry(g).or_insert(0) += 1;
            }
        }
        let region = regions
            .iter()
            .max_by_key(|(g, n)| (**n, std::cmp::Reverse(**g)))
            .filter(|(_, n)| **n * 3 >= recent.len())
            .and_then(|(g, _)| rules.map(|r| r.gazetteer.region_ref(*g)));
        let mut id = format!(
            "eg-{}-{:08x}",
            now,
            super::hash32(top.first().map_or("", |(t, _)| t.as_str()))
        );
        let shared_key = self
            .coord
            .as_ref()
            .map(|_| fleet_key(top.first().map_or("", |(t, _)| t.as_str())));
        if let (Some(c), Some(k)) = (self.coord.as_mut(), &shared_key) {
            id = c.claim_open(k, &id);
        }
        if self.open.contains_key(&id) {
            return;
        }
        let n_authors = (authors.len() as u64).max(fleet_authors);
        let inc = Incident {
            region,
            first_seen: recent.iter().map(|r| r.ts).min().unwrap_or(now),
            rate_per_min: round2(rate / minutes),
            baseline_per_min: round2(base / minutes),
            severity: severity(n_authors, recent.iter().any(|r| r.boosted)),
            top_terms: Vec::new(),
            ..Incident::new(id.clone(), IncidentKind::Emerging, CATEGORY, now)
        };
        for h in &terms {
            if let Some(c) = self.em.cands.get_mut(h) {
                c.incident = Some(id.clone());
                c.active = true;
            }
        }
        let iid: Arc<str> = Arc::from(id.as_str());
        for r in &recent {
            if self.em.members.len() < MEMBERS_CAP {
                self.em.members.insert(r.key, iid.clone());
            }
        }
        // The terms counted are the burst's (not the mentions' jieba tokens).
        let pend: VecDeque<PendingMention> = recent
            .iter()
            .map(|r| pending(r, &names_of.remove(&r.key).unwrap_or_default()))
            .collect();
        self.open_incident(
            inc,
            OpenKey::Emerging(terms),
            pend,
            fleet_authors,
            out,
            |o| {
                severity(
                    (o.authors.len() as u64).max(o.fleet_authors),
                    !o.boosted.is_empty(),
                )
            },
        );
        // Released when it closes (the key may open another incident later).
        if let Some(o) = self.open.get_mut(&id) {
            o.shared_key = shared_key;
        }
    }

    /// An emerging incident closed: its terms are muted (it must not reopen on the same
    /// burst), its members forgotten. Merged into a rule incident, every term rests too, the
    /// ones that joined it later included: freeing those split the Alberta flood of a dev
    /// burst set in two ("yyc" joined "yycflood", then opened again once it merged).
    pub(super) fn emerging_closed(&mut self, o: &OpenIncident) {
        let OpenKey::Emerging(terms) = &o.key else {
            return;
        };
        let until = self.now + i64::from(self.settings.emerging.mute_secs) * 1000;
        for h in terms {
            self.em.muted.insert(*h, until);
            if let Some(c) = self.em.cands.get_mut(h) {
                c.incident = None;
                c.active = false;
            }
        }
        let id = o.inc.id.as_str();
        self.em.members.retain(|_, v| &**v != id);
        self.em.shared.remove(id);
    }

    /// Distinct authors of a followed term over the whole fleet (`eg|{term}`, from the
    /// coordinator's sync task): a burst split across instances bursts on each that follows
    /// the term, and its incident carries the fleet's authors.
    pub(super) fn emerging_fleet(&mut self, term: &str, head: i64, authors: u64) {
        let now_b = self.now.div_euclid(self.emerging_bucket_ms());
        let Some(c) = self.em.cands.get_mut(&term_hash(term)) else {
            return;
        };
        c.fleet = Some((head.min(now_b), authors));
        c.dirty = true;
        if let Some(o) = c.incident.as_ref().and_then(|id| self.open.get_mut(id)) {
            if authors > o.fleet_authors {
                o.fleet_authors = authors;
                o.dirty = true;
            }
        }
    }

    /// Mute the terms of an emerging incident for `secs` (an operator dismissed it).
    pub(super) fn emerging_mute(&mut self, terms: &[u64], secs: u32) {
        let until = self.now + i64::from(secs) * 1000;
        for h in terms {
            self.em.muted.insert(*h, until);
        }
    }
}

/// The count in the sketch's first bucket from which a term cannot burst once that bucket
/// has ended: the first sweep after it sets the term's baseline to that count (no bucket
/// before it: the corrected EWMA of one bucket is its count) and drops the term when even
/// [`AUTHORS_CAP`] authors in its window would not be improbable under it. With a margin of
/// 1 % (the sketch's baseline is an `f32`), so a term at this count is dropped then for
/// certain. `u32::MAX` when no count is.
///
/// In that first bucket no term has a baseline: every term seen twice is followed, up to
/// `max_candidates`, most of them words in everyday use, each costing its recent mentions
/// and authors on every post (the engine ran at half speed for that minute). A term that
/// reaches this count keeps its place and its authors (what else is followed, and the sweeps
/// of the first bucket, do not change) but no longer its recent mentions.
fn doom_count(prior: f64, nb: f64, alpha: f64) -> u32 {
    let idle =
        |e: u32| poisson_tail_at_least(AUTHORS_CAP as u64, (f64::from(e) + prior) * nb, alpha);
    if idle(1 << 24) {
        // The least count that is idle (idle is monotone in the count).
        let (mut lo, mut hi) = (0u32, 1u32 << 24);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if idle(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo.saturating_add(lo / 100 + 1)
    } else {
        u32::MAX
    }
}

/// Who a mention counts as for the emerging detector: its author; without one (a source that
/// gives none), its terms (a distinct text is the best stand-in for a distinct voice: a bot's
/// alerts that differ only in numbers, times and links, or retweets of one post, are one
/// voice).
fn voice(m: &Mention, a: &Analysis) -> u64 {
    if m.author.is_some() {
        return m.author_key();
    }
    a.emerging
        .iter()
        .filter(|t| !t.text(a.normalized(m)).bytes().any(|b| b.is_ascii_digit()))
        .fold(0x517c_c1b7_2722_0a95_u64, |h, t| h ^ t.hash)
}

/// The fleet-wide key of a term: its window of distinct authors is merged under it, and an
/// incident opened on it claims its id under it (see [`crate::incidents::coord`]).
pub fn fleet_key(term: &str) -> String {
    format!("{FLEET_PREFIX}{term}")
}

/// Prefix of the fleet keys of terms.
pub const FLEET_PREFIX: &str = "eg|";

/// Whether an emerging incident of `total` mentions sharing `shared` of them with a rule
/// incident is that incident's event: at least 3 and a tenth of them (a mention holding the
/// bursting terms and a category's keyword ties the two; the rest of a burst often names no
/// category: "#prayforboston").
fn shares_event(shared: u64, total: u64) -> bool {
    shared >= 3 && shared * 10 >= total
}

fn pending(r: &Recent, terms: &[String]) -> PendingMention {
    let (held, sample) = match &r.full {
        Some(m) => (Packed::new(m, terms), true),
        None => (
            Packed::new(&Mention::new(r.id.as_str(), r.ts, String::new()), terms),
            false,
        ),
    };
    PendingMention {
        ts: r.ts,
        author: r.author,
        boosted: r.boosted,
        verified: false,
        held,
        echo: false,
        sample,
    }
}

/// Severity of an emerging incident: 2 (no rule knows how bad it is), 3 from 50 distinct
/// authors or with casualty words, 4 from 300.
fn severity(authors: u64, boosted: bool) -> u8 {
    match authors {
        a if a >= 300 => 4,
        a if a >= 50 || boosted => 3,
        _ => 2,
    }
}

/// Terms as people read them: Chinese bigrams that chain (流星 + 星雨 → 流星雨, 一颗 + 颗陨 +
/// 陨石 → 一颗陨石) joined into phrases of at most 8 characters, most authors first; each
/// phrase with the terms it is made of.
fn phrases(named: Vec<(String, u64)>) -> Vec<(String, Vec<String>)> {
    crate::detect::emerging::chain_bigrams(named, |_, _| true)
        .into_iter()
        .map(|(t, _, parts)| (t, parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_bigrams_read_as_one_phrase() {
        let p = phrases(vec![
            ("流星".into(), 9),
            ("星雨".into(), 8),
            ("meteor".into(), 7),
            ("雾霾".into(), 3),
            ("一颗".into(), 2),
            ("陨石".into(), 2),
            ("颗陨".into(), 2),
        ]);
        let names: Vec<&str> = p.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["流星雨", "meteor", "雾霾", "一颗陨石"]);
        assert_eq!(p[0].1, ["流星", "星雨"]);
    }

    #[test]
    fn recent_ids_read_back_as_given() {
        let mut shared = None;
        let long = "https://mastodon.example/@someone/112233445566778899";
        for id in [
            "",
            "t1",
            "4962847271847231",
            "1234567890123456789012",
            long,
            "微博3号",
        ] {
            assert_eq!(RecentId::new(id, &mut shared).as_str(), id);
        }
        assert!(matches!(
            RecentId::new("1234567890123456789012", &mut None),
            RecentId::Inline(..)
        ));
        assert!(matches!(
            RecentId::new(long, &mut None),
            RecentId::Shared(_)
        ));
    }

    #[test]
    fn the_memory_bound_is_stated() {
        let b = EmergingState::bound_bytes(4096);
        assert!(b > TermSketch::default().bytes());
        assert!(b < 200 << 20, "{b}");
    }

    /// The count that dooms a term in the first bucket is one the sweep after it drops for
    /// certain, and not far above the least such count.
    #[test]
    fn a_doomed_count_is_one_the_first_sweep_drops() {
        let s = crate::detect::rules::EmergingSettings::default();
        let prior = s.prior_per_hour * f64::from(s.bucket_secs) / 3600.0;
        let nb = f64::from(s.window_secs) / f64::from(s.bucket_secs);
        let at = doom_count(prior, nb, s.alpha);
        let idle = |e: f64| poisson_tail_at_least(AUTHORS_CAP as u64, (e + prior) * nb, s.alpha);
        assert!(at < 100, "{at}");
        // The sweep's baseline is the count as an f32 EWMA: a little off either way.
        assert!(idle(f64::from(at) * (1.0 - 1e-6)));
        assert!(
            !idle(f64::from(at) * 0.95 - 1.0),
            "{at}: the margin is small"
        );
        // A function of the settings.
        assert_eq!(doom_count(prior, nb, s.alpha), at);
        assert_ne!(doom_count(prior, nb * 4.0, s.alpha), at);
    }

    /// Everyday words flood the first bucket: each is followed from its second mention (no
    /// baseline yet) until it is too common to burst; from then its recent mentions are not
    /// kept. Every event, and the terms followed with their authors after every minute, are
    /// those of an engine that keeps them all until the sweep drops them.
    #[test]
    fn terms_doomed_in_the_first_bucket_change_nothing_but_what_they_hold() {
        let analyzer = crate::detect::Analyzer::new();
        let words = [
            "早上好今天地铁人好多",
            "中午吃了一碗牛肉面",
            "下班路上堵车心累",
            "新买的耳机音质很好",
            "公司楼下开了家奶茶店",
            "晚上跑步五公里打卡",
        ];
        let rare = "梧桐银杏樱花海棠茉莉芍药牡丹杜鹃丁香紫藤";
        let rare: Vec<char> = rare.chars().collect();
        // At a bucket's start: the first minute is the sketch's first bucket.
        let t0: i64 = 1_795_833_120_000;
        let mut lines = Vec::new();
        // The first minute: 3,000 posts by 800 authors.
        for i in 0..3000i64 {
            // 361 pairs of flowers, each ~8 times: followed, not doomed.
            let r = format!(
                "{}{}",
                rare[(i % 19) as usize],
                rare[(i / 19 % 19) as usize]
            );
            lines.push((
                t0 + i * 20,
                i % 800,
                format!("{} {r}", words[(i % 6) as usize]),
            ));
        }
        // Minutes 1 to 10: 200 posts a minute; from minute 6 a meteorite by 40 authors.
        for i in 0..2000i64 {
            let (author, text) = if i >= 1000 && i % 25 == 0 {
                (5000 + i, "天上掉下一颗陨石".to_string())
            } else {
                (1000 + i % 300, words[(i % 6) as usize].to_string())
            };
            lines.push((t0 + 60_000 + i * 300, author, text));
        }
        let run = |keep_all: bool, max_candidates: u32| {
            let mut rules = RuleSet::load(std::path::Path::new("rules"), &analyzer.normalizer)
                .expect("the shipped rules load");
            rules.settings.emerging.warmup_secs = 240;
            rules.settings.emerging.max_candidates = max_candidates;
            let rules = Arc::new(rules);
            let mut e = Engine::new();
            let (mut events, mut all, mut followed) = (Vec::new(), Vec::new(), Vec::new());
            let (mut doomed, mut step) = (0usize, 0);
            for (n, (ts, author, text)) in lines.iter().enumerate() {
                let line = serde_json::json!({
                    "id": format!("m{n}"), "ts": ts, "author": format!("u{author}"), "text": text
                })
                .to_string();
                let m = crate::normalize::parse_mention(line.as_bytes()).expect("mention");
                let a = analyzer.analyze(&rules, &m);
                events.clear();
                e.process(&rules, &m, &a, &mut events);
                // The settings are synced by the first mention (one, that dooms nothing).
                if keep_all {
                    e.em.doom_at = Some(u32::MAX);
                }
                all.extend(events.iter().map(|x| format!("{x:?}")));
                // The terms followed and their authors at every sweep (every 10 s).
                if (ts - t0) / 10_000 != step {
                    step = (ts - t0) / 10_000;
                    let mut f: Vec<(u64, usize, String)> =
                        e.em.cands
                            .iter()
                            .map(|(h, c)| (*h, c.authors.len(), c.name.clone()))
                            .collect();
                    f.sort_unstable();
                    followed.push(f);
                }
                if ts - t0 < 60_000 {
                    doomed = e.em.cands.values().filter(|c| c.doomed).count();
                    for c in e.em.cands.values().filter(|c| c.doomed) {
                        assert!(c.recent.is_empty() && c.fulls == 0, "{}", c.name);
                    }
                }
            }
            (all, followed, doomed)
        };
        // The table roomy, then so small that it is nearly full within the first bucket (the
        // sweeps then drop the followed terms with the fewest authors).
        for max in [4096, 48] {
            let (events, followed, doomed) = run(false, max);
            let (events_all, followed_all, doomed_all) = run(true, max);
            assert!(doomed >= 20, "everyday words doomed: {doomed}");
            assert_eq!(doomed_all, 0);
            assert!(followed[4].len() >= 20, "{}", followed[4].len());
            assert_eq!(followed, followed_all);
            assert_eq!(events, events_all);
            assert!(
                events
                    .iter()
                    .any(|e| e.contains("Opened") && e.contains("陨石")),
                "the meteorite opens an emerging incident"
            );
        }
    }
}
