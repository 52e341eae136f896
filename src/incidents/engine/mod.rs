//! The detection engine: the single-threaded state machine that turns analysed mentions into
//! incidents. One thread owns it; mentions are applied strictly in input order and every
//! decision uses event time, so a replay prints the same bytes every run.
//!
//! - `mod.rs`: the [`Engine`] and its state, event time, `process`, `tick`, `delete`, `control`,
//!   stats.
//! - `emergency.rs`: spike windows per (category, region), opening emergencies, the fleet merge
//!   (window counts from the other instances).
//! - `rumor.rs`: claim groups (the posts carrying one claim: a repost cascade plus copy-paste
//!   variants) and opening rumor incidents.
//! - `lifecycle.rs`: what every open incident goes through: opening, joining, updating,
//!   sweeping and closing.
//! - `restore.rs`: re-creating state for incidents open before a restart.
//! - `emerging.rs`: term sketches over every mention, bursting terms grouped into emerging
//!   incidents (bursts no rule names), their merge into rule incidents, mutes.
//! - `severity.rs`: the severity scores of emergencies and rumors.
//! - `terms.rs`: an open incident's term counts (one string of terms, a table of offsets).

mod emergency;
mod emerging;
mod lifecycle;
mod restore;
mod rumor;
mod severity;
mod terms;

use super::coord::Coordinator;
use super::incident::{Event, Incident};
use super::rumor::{BoundedMap, SketchIndex};
use crate::detect::analyze::Analysis;
use crate::detect::rules::{RuleSet, Settings};
use crate::normalize::{Mention, Packed, SeenIds};
use crate::{SmallMap, SmallSet};
use ahash::AHashMap;
use emergency::{EmergencyKey, EmergencyState, Topic};
use lifecycle::emit_update;
use rumor::ClaimGroup;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Mentions kept per key while no incident is open (to assign them when one opens).
const MAX_PENDING: usize = 5_000;
/// Sample mentions kept per incident.
const MAX_SAMPLES: usize = 5;
/// Top terms reported per incident.
const TOP_TERMS: usize = 8;
/// Cascade entries remembered (two generations of this many: 458,752, what a table of 2^19
/// buckets holds).
const CASCADE_CAP: usize = crate::full_table(19);
/// Event time during which a mention id is remembered for de-duplication.
const DEDUP_HORIZON_MS: i64 = 15 * 60 * 1000;
/// Ids per de-duplication generation (917,504, what a table of 2^20 buckets holds; at most
/// twice this many are held: ~19 MB).
const DEDUP_CAP: usize = crate::full_table(20);
/// Original posts remembered for the rumor model (two generations of this many).
const SEED_CAP: usize = 200_000;
/// Buckets in a rumor window.
const RUMOR_BUCKETS: u32 = 30;

/// Counters of what the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Mentions applied (after de-duplication).
    pub mentions: u64,
    /// Duplicate mention ids dropped.
    pub duplicates: u64,
    /// Mentions older than the allowed lateness (still counted, in the oldest bucket).
    pub late: u64,
    /// Incidents opened: emergency, rumor, emerging.
    pub opened: [u64; 3],
    /// Incidents closed.
    pub closed: u64,
    /// Mentions not kept for assignment because a key's pending list was full.
    pub pending_overflow: u64,
    /// Deletions received from the sources.
    pub deleted: u64,
    /// Cascades not started because every claim group held (at their bound) had an incident.
    pub group_overflow: u64,
    /// Claim groups dropped, the longest idle first, to make room for new cascades.
    pub groups_evicted: u64,
}

/// A relevant mention as the engine keeps it: held under its key until an incident opens (then
/// assigned to it), or joined to the open incident at once.
#[derive(Debug, Clone)]
struct PendingMention {
    ts: i64,
    author: u64,
    boosted: bool,
    verified: bool,
    /// The mention and its terms, packed: held by the hundred thousand in pending lists, one
    /// allocation shared by every list the mention went into.
    held: Packed,
    /// A repost or reply counted for its parent's categories (it names none itself).
    echo: bool,
    /// It may be a sample and give the headline (an emerging incident's older mentions are
    /// kept as ids only).
    sample: bool,
}

/// What an open incident was opened on.
enum OpenKey {
    /// Emergency keys: (category, region code), the one it opened on first, then the keys of
    /// related categories and regions that joined it (see `emergency.rs`).
    Emergency(Vec<EmergencyKey>),
    /// A claim group, by its id.
    Rumor(u64),
    /// Emerging: the hashes of its bursting terms.
    Emerging(Vec<u64>),
}

/// An open incident with what the engine counts for it beyond the public [`Incident`].
struct OpenIncident {
    inc: Incident,
    key: OpenKey,
    authors: SmallSet<u64>,
    authors_base: u64,
    boosted: SmallSet<u64>,
    verified: SmallSet<u64>,
    terms: terms::TermCounts,
    /// The sample mentions, packed (shared with the pending lists they came from); `inc`
    /// holds none: they are unpacked into the copies emitted ([`OpenIncident::public`]).
    samples: Vec<Packed>,
    last_emit: i64,
    last_active: i64,
    dirty: bool,
    /// Emergency only: baseline floor per bucket.
    prior: f64,
    /// Emergency only: opened by the slow window (not the fast one).
    slow: bool,
    /// The key under which the id was claimed in the fleet (with a coordinator).
    shared_key: Option<String>,
    /// Emergency only: further fleet claims held for it (regions of keys that joined it).
    extra_keys: Vec<String>,
    /// Emergency only: the group of its categories (`rules/categories.toml`).
    group: Option<Arc<str>>,
    /// Emergency only: mentions assigned per category (a mention hitting two categories
    /// counts for both); the primary category is the one with the most.
    cats: BTreeMap<Arc<str>, u64>,
    /// Emergency only: the mentions assigned (hashed id → event time) within the last window,
    /// so a mention counted under two keys of the incident is assigned once.
    recent: SmallMap<u64, i64>,
    /// Distinct authors in the window over the fleet, at most (merged counts).
    fleet_authors: u64,
}

impl OpenIncident {
    /// The public incident as it stands, its samples unpacked.
    fn public(&self) -> Incident {
        Incident {
            samples: self.unpacked_samples(),
            ..self.inc.clone()
        }
    }

    /// The sample mentions whole.
    fn unpacked_samples(&self) -> Vec<Mention> {
        self.samples.iter().map(Packed::mention).collect()
    }
}

/// The detection state machine.
pub struct Engine {
    settings: Settings,
    /// The rule set `settings` were copied from (a reload swaps the whole set).
    rules: Option<Arc<RuleSet>>,
    now: i64,
    started: bool,
    /// Event time of the first mention (the baselines' start-up correction counts from it).
    started_at: i64,
    next_sweep: i64,
    sweeps: u64,
    seen: SeenIds,
    emergency: AHashMap<EmergencyKey, EmergencyState>,
    /// Claim groups by id, at most `[rumor] max_groups` (boxed: the table is rehashed as it
    /// grows, and most groups are one or two posts).
    claim_groups: AHashMap<u64, Box<ClaimGroup>>,
    /// The claim group of each known (debunked) claim id.
    known_claim_groups: AHashMap<Arc<str>, u64>,
    /// The claim group of each post seen in a cascade (bounded: two generations).
    group_of_post: BoundedMap<u64>,
    /// Claim groups started by a rumor cue, by sketch (for copy-paste variants).
    sim: SketchIndex,
    /// Original posts with text of their own, for the rumor model (bounded: two generations).
    seeds: BoundedMap<rumor::Seed>,
    /// Posts counted for an emergency and what they were about (their reposts inherit it).
    topics: BoundedMap<Topic>,
    next_claim_group: u64,
    /// Boxed: a B-tree node holds eleven entries and is often half full; an incident is ~1 kB.
    open: BTreeMap<String, Box<OpenIncident>>,
    /// Open emergency incidents per group (to skip looking for one to join when none is open).
    open_groups: AHashMap<Arc<str>, u32>,
    stats: EngineStats,
    coord: Option<Box<dyn Coordinator>>,
    /// Emit `mention.request` events (a stage subscribed to them).
    requests: bool,
    /// The hour being counted, when a stage asked for the hourly figures.
    hours: Option<crate::incidents::hours::HourAgg>,
    /// Count hours (a stage asked).
    emit_hours: bool,
    /// Emerging incidents: the term sketch, the terms followed, mutes.
    em: emerging::EmergingState,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

fn hash32(s: &str) -> u32 {
    crate::stable_hash(s.as_bytes()) as u32
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Engine {
    /// An empty engine.
    pub fn new() -> Self {
        Engine {
            settings: Settings::default(),
            rules: None,
            now: i64::MIN,
            started: false,
            started_at: 0,
            next_sweep: i64::MIN,
            sweeps: 0,
            seen: SeenIds::new(DEDUP_HORIZON_MS, DEDUP_CAP),
            emergency: AHashMap::new(),
            claim_groups: AHashMap::new(),
            known_claim_groups: AHashMap::new(),
            group_of_post: BoundedMap::new(CASCADE_CAP),
            sim: SketchIndex::default(),
            seeds: BoundedMap::new(SEED_CAP),
            topics: BoundedMap::new(SEED_CAP),
            next_claim_group: 1,
            open: BTreeMap::new(),
            open_groups: AHashMap::new(),
            stats: EngineStats::default(),
            coord: None,
            requests: false,
            hours: None,
            emit_hours: false,
            em: emerging::EmergingState::default(),
        }
    }

    /// An engine that shares incidents and window counts with other instances through `c`.
    pub fn with_coordinator(mut self, c: Box<dyn Coordinator>) -> Self {
        self.coord = Some(c);
        self
    }

    /// An engine that also emits [`Event::Request`] for every new mention with a request cue,
    /// and for every reply or mention addressed to an account (`to`): the cases stage reads them.
    pub fn emitting_requests(mut self) -> Self {
        self.requests = true;
        self
    }

    /// An engine that also counts the figures of every event-time hour and emits them as
    /// [`Event::Hour`] when event time leaves the hour: the opinion stage stores them.
    pub fn emitting_hours(mut self) -> Self {
        self.emit_hours = true;
        self
    }

    /// Count `m` into its hour; the hour before it ends first. A late mention counts in the
    /// hour being counted.
    fn count_hour(&mut self, rules: &RuleSet, m: &Mention, a: &Analysis, out: &mut Vec<Event>) {
        use crate::incidents::hours::{HourAgg, HOUR_MS};
        let h = m.ts.div_euclid(HOUR_MS) * HOUR_MS;
        if self.hours.as_ref().is_some_and(|agg| h > agg.hour()) {
            self.end_hour(out);
        }
        let region = a
            .regions
            .first()
            .filter(|r| (**r as usize) < rules.gazetteer.len())
            .and_then(|r| rules.gazetteer.get(*r).code.parse::<u32>().ok());
        self.hours
            .get_or_insert_with(|| HourAgg::new(h))
            .observe(m, a, region);
    }

    /// Emit the hour being counted, if any.
    pub fn end_hour(&mut self, out: &mut Vec<Event>) {
        if let Some(agg) = self.hours.take() {
            out.push(Event::Hour(Arc::new(agg.finish())));
        }
    }

    /// What the engine did so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Newest event time seen (ms), if any.
    pub fn now(&self) -> Option<i64> {
        self.started.then_some(self.now)
    }

    /// Open incidents as they stand (sorted by id), each a copy with its samples unpacked.
    pub fn open_incidents(&self) -> impl Iterator<Item = Incident> + '_ {
        self.open.values().map(|o| o.public())
    }

    /// Number of per-key states held (for memory checks).
    pub fn state_sizes(&self) -> (usize, usize, usize) {
        (
            self.emergency.len(),
            self.claim_groups.len(),
            self.group_of_post.len(),
        )
    }

    /// Terms the emerging detector follows exactly now, and those it could not follow for
    /// want of room (for memory checks and metrics).
    pub fn emerging_sizes(&self) -> (usize, u64) {
        (self.em.candidates(), self.em.overflow)
    }

    /// The most memory the emerging detector may hold with `max_candidates` (bytes).
    pub fn emerging_bound_bytes(max_candidates: usize) -> usize {
        emerging::EmergingState::bound_bytes(max_candidates)
    }

    fn bucket_ms(&self) -> i64 {
        i64::from(self.settings.window.bucket_secs.max(1)) * 1000
    }

    fn buckets(&self) -> usize {
        (self.settings.window.window_secs / self.settings.window.bucket_secs.max(1)).max(1) as usize
    }

    fn long_bucket_ms(&self) -> i64 {
        i64::from(self.settings.window.long_bucket_secs.max(1)) * 1000
    }

    fn long_buckets(&self) -> usize {
        (self.settings.window.long_window_secs / self.settings.window.long_bucket_secs.max(1))
            .max(1) as usize
    }

    fn long_decay(&self) -> f64 {
        let half = f64::from(self.settings.emergency.baseline_half_life_secs.max(1));
        0.5f64.powf(f64::from(self.settings.window.long_bucket_secs) / half)
    }

    /// Start-up correction of the fast baselines (see `Window::baseline_corrected`), and
    /// whether a full window of history has left the window (before that a baseline is not
    /// frozen: it would be frozen on a guess; see [`Engine::freeze_corrections`]).
    fn fast_correction(&self) -> (f64, bool) {
        self.correction(self.bucket_ms(), self.buckets(), self.decay())
    }

    /// The same for the slow windows.
    fn long_correction(&self) -> (f64, bool) {
        self.correction(
            self.long_bucket_ms(),
            self.long_buckets(),
            self.long_decay(),
        )
    }

    /// 1 − decay^(buckets of `bucket_ms` that have left a window of `nb` since the engine's
    /// first mention), and whether `nb` of them have.
    fn correction(&self, bucket_ms: i64, nb: usize, decay: f64) -> (f64, bool) {
        let nb = nb as i64;
        let expired = ((self.now - self.started_at) / bucket_ms - nb).max(0);
        (1.0 - decay.powf(expired as f64), expired >= nb)
    }

    /// The corrections to freeze baselines with: 0 (do not freeze) before a window of history.
    fn freeze_corrections(&self) -> (f64, f64) {
        let ((c, w), (lc, lw)) = (self.fast_correction(), self.long_correction());
        (if w { c } else { 0.0 }, if lw { lc } else { 0.0 })
    }

    fn rumor_bucket_ms(&self) -> i64 {
        (i64::from(self.settings.rumor.window_secs) * 1000 / i64::from(RUMOR_BUCKETS)).max(1000)
    }

    fn decay(&self) -> f64 {
        let half = f64::from(self.settings.emergency.baseline_half_life_secs.max(1));
        0.5f64.powf(f64::from(self.settings.window.bucket_secs) / half)
    }

    /// Copy the settings of `rules` when they are not the set seen last (after a reload).
    fn sync_settings(&mut self, rules: &Arc<RuleSet>) {
        if !self.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules)) {
            self.rules = Some(Arc::clone(rules));
            self.settings = rules.settings.clone();
            self.emerging_settings_changed(rules);
        }
    }

    /// Mentions deleted at the source: a later copy of them is dropped as a duplicate, and they
    /// leave the samples of open incidents (the next update shows it). Counts stay: they
    /// happened.
    pub fn delete(&mut self, ids: &[String], out: &mut Vec<Event>) {
        let at = if self.started { self.now } else { 0 };
        for id in ids {
            self.seen.insert(crate::stable_hash(id.as_bytes()), at);
            for o in self.open.values_mut() {
                if let Some(i) = o.inc.sample_mention_ids.iter().position(|s| s == id) {
                    o.inc.sample_mention_ids.remove(i);
                    o.samples.retain(|m| m.id() != id);
                    o.dirty = true;
                }
            }
        }
        self.stats.deleted += ids.len() as u64;
        let _ = out;
    }

    /// Advance event time without a mention (live mode: quiet feeds still close incidents).
    pub fn tick(&mut self, rules: &Arc<RuleSet>, now: i64, out: &mut Vec<Event>) {
        self.sync_settings(rules);
        self.advance(now, out);
    }

    fn advance(&mut self, t: i64, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            self.started_at = t;
            self.now = t;
            self.next_sweep = (t / self.bucket_ms() + 1) * self.bucket_ms();
            return;
        }
        if t <= self.now {
            return;
        }
        self.now = t;
        if self.now >= self.next_sweep {
            self.sweep(out);
            self.next_sweep = (self.now / self.bucket_ms() + 1) * self.bucket_ms();
        }
    }

    /// Apply one analysed mention.
    pub fn process(
        &mut self,
        rules: &Arc<RuleSet>,
        m: &Mention,
        a: &Analysis,
        out: &mut Vec<Event>,
    ) {
        self.sync_settings(rules);
        let ts = m.ts;
        let id_key = crate::stable_hash(m.id.as_bytes());
        if !self
            .seen
            .insert(id_key, ts.max(if self.started { self.now } else { ts }))
        {
            self.stats.duplicates += 1;
            crate::metrics::global().duplicates.inc();
            return;
        }
        self.stats.mentions += 1;
        if self.started
            && ts < self.now - i64::from(self.settings.window.allowed_lateness_secs) * 1000
        {
            self.stats.late += 1;
            crate::metrics::global().late.inc();
        }
        self.advance(ts, out);
        if self.emit_hours {
            self.count_hour(rules, m, a, out);
        }
        self.emerging_hit(m, a, out);
        self.emerging_merges(out);
        // The cases stage also reads replies (a rating of an answer, a follow-up) and mentions
        // a feed marked as addressed to an account, even without a request cue.
        if self.requests && (!a.requests.is_empty() || m.reply_to.is_some() || m.to.is_some()) {
            out.push(Event::Request {
                at: ts,
                mention: Arc::new(m.clone()),
                kinds: a
                    .requests
                    .iter()
                    .filter_map(|k| rules.requests.get(usize::from(*k)).map(|r| r.id.clone()))
                    .collect(),
            });
        }
        let parent = m.repost_of.as_deref().or(m.reply_to.as_deref());
        if let (None, Some(sig)) = (parent, &a.signals) {
            if sig.nontrivial {
                self.seeds
                    .insert(&m.id, rumor::Seed::new(sig, a.cues, ts, m.author_key()));
            }
        }
        if !a.is_relevant() && parent.is_none() {
            return;
        }
        let held = std::cell::OnceCell::new();
        let pending_mention = || PendingMention {
            ts,
            author: m.author_key(),
            boosted: a.boosted,
            verified: m.verified(),
            held: held.get_or_init(|| Packed::new(m, &a.terms)).clone(),
            echo: false,
            sample: true,
        };
        // A post that spreads, questions or corrects a claim is evidence of the rumor, not of
        // an emergency: counting it would turn every "网传…停水" into an outage spike.
        if !a.cues.any() && a.claims.is_empty() {
            // A repost or reply that names no category of its own ("转发微博", "天哪") is
            // about what its parent was about, when the parent counted and the report it
            // echoes is fresh: a repost today of yesterday's report is not a new one.
            let horizon = i64::from(self.settings.emergency.echo_horizon_secs) * 1000;
            let (topic, echo) = match Topic::new(&a.categories, a.regions.first().copied(), ts) {
                Some(t) => (Some(t), false),
                None => (
                    parent
                        .and_then(|p| self.topics.get(p))
                        .filter(|t| ts - t.ts <= horizon)
                        .map(|t| t.placed(a.regions.first().copied())),
                    true,
                ),
            };
            if let Some(t) = topic {
                self.topics.insert(&m.id, t);
                for &ci in t.cats() {
                    let p = PendingMention {
                        echo,
                        ..pending_mention()
                    };
                    self.emergency_hit(rules, ci, t.region(), p, out);
                }
            }
        }
        self.rumor_hit(rules, m, a, parent, pending_mention, out);
    }

    /// Apply an operator's change (close, merge) at the current event time. Unknown or already
    /// closed incidents, and merges across kinds, change nothing (logged): the request raced
    /// with the engine closing them itself.
    pub fn control(&mut self, c: &crate::incidents::Control, out: &mut Vec<Event>) {
        use crate::incidents::Control;
        let now = if self.started {
            self.now
        } else {
            chrono::Utc::now().timestamp_millis()
        };
        match c {
            Control::Close { id } => {
                if !self.close_open(id, now, out) {
                    tracing::info!(incident = %id, "Close requested for an incident that is not open.");
                }
            }
            Control::Dismiss { id, mute_secs } => {
                let terms = match self.open.get(id).map(|o| &o.key) {
                    Some(OpenKey::Emerging(t)) => t.clone(),
                    _ => {
                        tracing::info!(incident = %id, "Dismiss requested for an incident that is not an open emerging one.");
                        return;
                    }
                };
                self.close_open(id, now, out);
                self.emerging_mute(&terms, *mute_secs);
            }
            Control::Merge { into, from } => {
                let same_kind = match (self.open.get(into), self.open.get(from)) {
                    (Some(a), Some(b)) => into != from && a.inc.kind == b.inc.kind,
                    _ => false,
                };
                if !same_kind {
                    tracing::info!(into = %into, from = %from, "Merge refused: both must be open, distinct and of one kind.");
                    return;
                }
                let Some(src) = self.open.get(from).map(|o| {
                    (
                        o.inc.mentions,
                        o.authors.clone(),
                        o.boosted.clone(),
                        o.verified.clone(),
                        o.terms.clone(),
                        o.samples.clone(),
                        o.inc.severity,
                        o.authors_base,
                        o.inc.official,
                    )
                }) else {
                    return;
                };
                // Emergencies: its windows and category counts move to `into`, so later
                // mentions of its keys join the merged incident.
                let moved = self.open.get(from).map(|o| {
                    let keys = match &o.key {
                        OpenKey::Emergency(k) => k.clone(),
                        OpenKey::Rumor(_) | OpenKey::Emerging(_) => Vec::new(),
                    };
                    (keys, o.cats.clone(), o.recent.clone())
                });
                if let Some(o) = self.open.get_mut(from) {
                    o.inc.merged_into = Some(into.clone());
                }
                self.close_open(from, now, out);
                let (keys, cats, recent) = moved.unwrap_or_default();
                let (corr, lcorr) = self.freeze_corrections();
                for k in &keys {
                    if let Some(st) = self.emergency.get_mut(k) {
                        st.incident = Some(into.clone());
                        st.window.freeze(corr);
                        st.long.freeze(lcorr);
                    }
                }
                let Some(o) = self.open.get_mut(into) else {
                    return;
                };
                if let OpenKey::Emergency(own) = &mut o.key {
                    for k in keys {
                        if !own.contains(&k) {
                            own.push(k);
                        }
                    }
                }
                for (c, n) in cats {
                    *o.cats.entry(c).or_insert(0) += n;
                }
                o.recent.extend(recent);
                if let Some(rules) = &self.rules {
                    emergency::set_categories(rules, o);
                }
                let (
                    mentions,
                    authors,
                    boosted,
                    verified,
                    terms,
                    samples,
                    severity,
                    base,
                    official,
                ) = src;
                o.inc.mentions += mentions;
                o.inc.official |= official;
                o.authors.extend(authors);
                o.authors_base += base;
                o.boosted.extend(boosted);
                o.verified.extend(verified);
                for (t, n) in terms.iter() {
                    o.terms.add(t, n);
                }
                for m in samples {
                    if o.inc.sample_mention_ids.len() >= MAX_SAMPLES {
                        break;
                    }
                    if !o.inc.sample_mention_ids.iter().any(|s| s == m.id()) {
                        o.inc.sample_mention_ids.push(m.id().to_string());
                        o.samples.push(m);
                    }
                }
                // Severity never goes down within an incident.
                o.inc.severity = o.inc.severity.max(severity);
                o.last_active = now;
                emit_update(o, now, out);
            }
        }
    }
}
