//! The detection state machine. One thread owns it; mentions are applied strictly in input
//! order and every decision uses event time, so a replay prints the same bytes every run.

use super::coord::{emergency_key, parse_emergency_key, ClusterCount, Coordinator, Hit};
use super::incident::{
    Event, EventKind, Incident, IncidentKind, IncidentState, Rebuttal, SpreadPost, SPREAD_TOP,
};
use super::rumor::{BoundedMap, SimIndex};
use crate::detect::analyze::{Analysis, Cues};
use crate::detect::gazetteer::RegionRef;
use crate::detect::rules::{RuleSet, Settings};
use crate::detect::spike::{poisson_sf, Window};
use crate::normalize::{Mention, SeenIds};
use ahash::{AHashMap, AHashSet};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Mentions kept per key while no incident is open (to assign them when one opens).
const MAX_PENDING: usize = 5_000;
/// Sample mentions kept per incident.
const MAX_SAMPLES: usize = 5;
/// Top terms reported per incident.
const TOP_TERMS: usize = 8;
/// Cascade entries remembered (two generations of this many).
const CASCADE_CAP: usize = 500_000;
/// Event time during which a mention id is remembered for de-duplication.
const DEDUP_HORIZON_MS: i64 = 15 * 60 * 1000;
/// Ids per de-duplication generation (at most twice this many are held: ~40 MB).
const DEDUP_CAP: usize = 1_000_000;
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
    /// Incidents opened, emergency and rumor.
    pub opened: [u64; 2],
    /// Incidents closed.
    pub closed: u64,
    /// Mentions not kept for assignment because a key's pending list was full.
    pub pending_overflow: u64,
    /// Deletions received from the sources.
    pub deleted: u64,
}

type EKey = (Arc<str>, Option<Arc<str>>);

#[derive(Debug, Clone)]
struct Pend {
    ts: i64,
    author: u64,
    boosted: bool,
    verified: bool,
    mention: Mention,
    terms: Vec<String>,
}

struct EState {
    window: Window,
    /// The slow window (an hour of 5-minute buckets) that catches events building up slowly.
    long: Window,
    incident: Option<String>,
    pending: VecDeque<Pend>,
    /// Distinct authors over the cluster (every instance), with the bucket they were counted
    /// at; trusted for one bucket.
    cluster: Option<(i64, u64)>,
    /// The region of the key (to open an incident on a cluster count alone).
    region: Option<RegionRef>,
}

impl EState {
    /// Distinct authors in the fast window: this instance's, or the cluster's when it is fresh
    /// and larger.
    fn authors(&self, now_b: i64) -> u64 {
        let local = self.window.authors();
        match self.cluster {
            Some((at, n)) if at >= now_b - 1 => local.max(n),
            _ => local,
        }
    }
}

struct Cluster {
    root: String,
    window: Window,
    pending: VecDeque<Pend>,
    incident: Option<String>,
    first_seen: i64,
    last_seen: i64,
    region: Option<RegionRef>,
    category: Option<Arc<str>>,
    rebuttal: Option<Rebuttal>,
    indexed: bool,
    /// Post id → (reposts and replies that spread it, where it is); at most [`MAX_SPREAD`].
    spread: AHashMap<String, (u32, Option<String>)>,
}

/// Posts whose spread a cluster counts (beyond that, only the posts already counted grow).
const MAX_SPREAD: usize = 512;

impl Cluster {
    /// A repost or reply (from `source`) spread `parent`.
    fn spread(&mut self, parent: &str, source: Option<&str>) {
        if let Some(e) = self.spread.get_mut(parent) {
            e.0 += 1;
        } else if self.spread.len() < MAX_SPREAD {
            self.spread
                .insert(parent.to_string(), (1, source.map(str::to_string)));
        }
    }

    /// The most-spread posts, most shares first (ties: smaller id).
    fn top_spread(&self) -> Vec<SpreadPost> {
        let mut v: Vec<(&String, &(u32, Option<String>))> = self.spread.iter().collect();
        v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
        v.into_iter()
            .take(SPREAD_TOP)
            .map(|(id, (shares, source))| SpreadPost {
                id: id.clone(),
                source: source.clone(),
                shares: *shares,
            })
            .collect()
    }
}

enum OpenKey {
    Emergency(EKey),
    Rumor(u64),
}

struct Open {
    inc: Incident,
    key: OpenKey,
    authors: AHashSet<u64>,
    authors_base: u64,
    boosted: AHashSet<u64>,
    verified: AHashSet<u64>,
    terms: AHashMap<String, u32>,
    last_emit: i64,
    last_active: i64,
    dirty: bool,
    /// Emergency only: baseline floor per bucket and the authors that keep it active.
    prior: f64,
    close_authors: u64,
    /// The key under which the id was claimed in the cluster (with a coordinator).
    shared_key: Option<String>,
    /// Distinct authors in the window over the cluster, at most (merged counts).
    cluster_authors: u64,
}

/// The detection state machine.
pub struct Engine {
    settings: Settings,
    rules_ptr: usize,
    now: i64,
    started: bool,
    next_sweep: i64,
    sweeps: u64,
    seen: SeenIds,
    emergency: AHashMap<EKey, EState>,
    clusters: AHashMap<u64, Cluster>,
    claim_clusters: AHashMap<Arc<str>, u64>,
    root_of: BoundedMap<u64>,
    sim: SimIndex,
    next_cluster: u64,
    open: BTreeMap<String, Open>,
    stats: EngineStats,
    coord: Option<Box<dyn Coordinator>>,
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
            rules_ptr: 0,
            now: i64::MIN,
            started: false,
            next_sweep: i64::MIN,
            sweeps: 0,
            seen: SeenIds::new(DEDUP_HORIZON_MS, DEDUP_CAP),
            emergency: AHashMap::new(),
            clusters: AHashMap::new(),
            claim_clusters: AHashMap::new(),
            root_of: BoundedMap::new(CASCADE_CAP),
            sim: SimIndex::default(),
            next_cluster: 1,
            open: BTreeMap::new(),
            stats: EngineStats::default(),
            coord: None,
        }
    }

    /// An engine that shares incidents and window counts with other instances through `c`.
    pub fn with_coordinator(mut self, c: Box<dyn Coordinator>) -> Self {
        self.coord = Some(c);
        self
    }

    /// What the engine did so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Newest event time seen (ms), if any.
    pub fn now(&self) -> Option<i64> {
        self.started.then_some(self.now)
    }

    /// Open incidents (sorted by id).
    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.open.values().map(|o| &o.inc)
    }

    /// Number of per-key states held (for memory checks).
    pub fn state_sizes(&self) -> (usize, usize, usize) {
        (
            self.emergency.len(),
            self.clusters.len(),
            self.root_of.len(),
        )
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

    fn rumor_bucket_ms(&self) -> i64 {
        (i64::from(self.settings.rumor.window_secs) * 1000 / i64::from(RUMOR_BUCKETS)).max(1000)
    }

    fn decay(&self) -> f64 {
        let half = f64::from(self.settings.emergency.baseline_half_life_secs.max(1));
        0.5f64.powf(f64::from(self.settings.window.bucket_secs) / half)
    }

    fn sync_settings(&mut self, rules: &RuleSet) {
        let p = rules as *const RuleSet as usize;
        if p != self.rules_ptr {
            self.rules_ptr = p;
            self.settings = rules.settings.clone();
        }
    }

    /// Re-create state for incidents that were open when the process last stopped.
    pub fn restore(&mut self, rules: &RuleSet, incidents: Vec<Incident>) {
        self.sync_settings(rules);
        for inc in incidents
            .into_iter()
            .filter(|i| i.state == IncidentState::Open)
        {
            if !self.started || inc.updated_at > self.now {
                self.now = inc.updated_at;
                self.started = true;
            }
            let key = match inc.kind {
                IncidentKind::Emergency => {
                    let k: EKey = (
                        Arc::from(inc.category.as_str()),
                        inc.region.as_ref().map(|r| Arc::from(r.code.as_str())),
                    );
                    let mut window = Window::new(self.buckets(), inc.updated_at / self.bucket_ms());
                    window.frozen = true;
                    let mut long =
                        Window::new(self.long_buckets(), inc.updated_at / self.long_bucket_ms());
                    long.frozen = true;
                    self.emergency.insert(
                        k.clone(),
                        EState {
                            window,
                            long,
                            incident: Some(inc.id.clone()),
                            pending: VecDeque::new(),
                            cluster: None,
                            region: inc.region.clone(),
                        },
                    );
                    OpenKey::Emergency(k)
                }
                IncidentKind::Rumor => {
                    let cid = self.next_cluster;
                    self.next_cluster += 1;
                    let root = inc
                        .root_mention_id
                        .clone()
                        .unwrap_or_else(|| inc.id.clone());
                    self.root_of.insert(&root, cid);
                    for s in &inc.sample_mention_ids {
                        self.root_of.insert(s, cid);
                    }
                    if let Some(r) = &inc.rebuttal {
                        self.claim_clusters
                            .insert(Arc::from(r.claim_id.as_str()), cid);
                    }
                    self.clusters.insert(
                        cid,
                        Cluster {
                            root,
                            window: Window::new(
                                RUMOR_BUCKETS as usize,
                                inc.updated_at / self.rumor_bucket_ms(),
                            ),
                            pending: VecDeque::new(),
                            incident: Some(inc.id.clone()),
                            first_seen: inc.first_seen,
                            last_seen: inc.updated_at,
                            region: inc.region.clone(),
                            category: Some(Arc::from(inc.category.as_str())),
                            rebuttal: inc.rebuttal.clone(),
                            indexed: false,
                            spread: inc
                                .spread
                                .iter()
                                .map(|p| (p.id.clone(), (p.shares, p.source.clone())))
                                .collect(),
                        },
                    );
                    OpenKey::Rumor(cid)
                }
            };
            let shared_key = self.coord.as_ref().map(|_| match &key {
                OpenKey::Emergency(k) => emergency_key(&k.0, k.1.as_deref()),
                OpenKey::Rumor(c) => self.clusters.get(c).map(rumor_key).unwrap_or_default(),
            });
            let terms = inc
                .top_terms
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), (TOP_TERMS - i.min(TOP_TERMS)) as u32))
                .collect();
            // The same floor and activity threshold the incident had before the restart.
            let (prior, close_authors) = match rules.category_index(&inc.category) {
                Some(ci) if inc.kind == IncidentKind::Emergency => {
                    let c = &rules.categories[ci as usize];
                    let per_hour = if inc.region.is_some() {
                        c.prior_per_hour
                    } else {
                        c.prior_per_hour
                            .max(self.settings.emergency.prior_per_hour_no_region)
                    };
                    (
                        self.prior_bucket(per_hour),
                        u64::from(c.min_authors.div_ceil(2)),
                    )
                }
                _ => (0.0, 1),
            };
            self.open.insert(
                inc.id.clone(),
                Open {
                    authors_base: inc.authors,
                    last_emit: inc.updated_at,
                    last_active: inc.updated_at,
                    inc,
                    key,
                    authors: AHashSet::new(),
                    boosted: AHashSet::new(),
                    verified: AHashSet::new(),
                    terms,
                    dirty: false,
                    prior,
                    close_authors,
                    shared_key,
                    cluster_authors: 0,
                },
            );
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
                    o.inc.samples.retain(|m| &m.id != id);
                    o.dirty = true;
                }
            }
        }
        self.stats.deleted += ids.len() as u64;
        let _ = out;
    }

    /// Advance event time without a mention (live mode: quiet feeds still close incidents).
    pub fn tick(&mut self, rules: &RuleSet, now: i64, out: &mut Vec<Event>) {
        self.sync_settings(rules);
        self.advance(now, out);
    }

    fn advance(&mut self, t: i64, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
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
    pub fn process(&mut self, rules: &RuleSet, m: &Mention, a: &Analysis, out: &mut Vec<Event>) {
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
        let parent = m.repost_of.as_deref().or(m.reply_to.as_deref());
        if !a.is_relevant() && parent.is_none() {
            return;
        }
        let pend = || Pend {
            ts,
            author: m.author_key(),
            boosted: a.boosted,
            verified: m.verified(),
            mention: m.clone(),
            terms: a.terms.clone(),
        };
        // A post that spreads, questions or corrects a claim is evidence of the rumor, not of
        // an emergency: counting it would turn every "网传…停水" into an outage spike.
        if !a.cues.any() && a.claims.is_empty() {
            for &ci in &a.categories {
                self.emergency_hit(rules, ci, a, pend(), out);
            }
        }
        self.rumor_hit(rules, m, a, parent, pend, out);
    }

    fn prior_bucket(&self, per_hour: f64) -> f64 {
        per_hour / 3600.0 * f64::from(self.settings.window.bucket_secs)
    }

    /// Baseline floor per bucket of a category (higher without a region: the key is wider).
    fn emergency_prior(&self, per_hour: f64, has_region: bool) -> f64 {
        if has_region {
            self.prior_bucket(per_hour)
        } else {
            self.prior_bucket(per_hour.max(self.settings.emergency.prior_per_hour_no_region))
        }
    }

    fn emergency_hit(
        &mut self,
        rules: &RuleSet,
        ci: u16,
        a: &Analysis,
        p: Pend,
        out: &mut Vec<Event>,
    ) {
        let cat = &rules.categories[ci as usize];
        let region = a.regions.first().map(|r| rules.gazetteer.region_ref(*r));
        let key: EKey = (
            cat.id.clone(),
            region.as_ref().map(|r| Arc::from(r.code.as_str())),
        );
        let (nb, bms, decay) = (self.buckets(), self.bucket_ms(), self.decay());
        let now_b = self.now / bms;
        let prior = self.emergency_prior(cat.prior_per_hour, region.is_some());
        let (lnb, lbms, ldecay) = (
            self.long_buckets(),
            self.long_bucket_ms(),
            self.long_decay(),
        );
        let long_on = self.settings.window.long_window_secs > self.settings.window.window_secs;
        let lprior = prior * lbms as f64 / bms as f64;
        let st = self.emergency.entry(key.clone()).or_insert_with(|| EState {
            window: Window::new(nb, now_b),
            long: Window::new(lnb, self.now / lbms),
            incident: None,
            pending: VecDeque::new(),
            cluster: None,
            region,
        });
        st.window.advance(now_b, decay);
        st.window.add(p.ts / bms, p.author);
        st.long.advance(self.now / lbms, ldecay);
        st.long.add(p.ts / lbms, p.author);
        if let Some(c) = self.coord.as_mut() {
            let k = emergency_key(&key.0, key.1.as_deref());
            c.record(Hit {
                key: &k,
                bucket: p.ts / bms,
                head: now_b,
                buckets: nb,
                bucket_ms: bms,
                author: p.author,
            });
        }
        if let Some(id) = st.incident.clone() {
            let authors = st.authors(now_b);
            let expected = st.window.baseline(prior) * nb as f64;
            let long_authors = st.long.authors();
            let long_expected = st.long.baseline(lprior) * lnb as f64;
            let close_alpha = self.settings.emergency.close_alpha;
            let min = u64::from(cat.min_authors);
            let elevated = authors >= min.div_ceil(2)
                || poisson_sf(authors, expected) < close_alpha
                || (long_on
                    && (long_authors >= min
                        && poisson_sf(long_authors, long_expected) < close_alpha));
            let rate = authors as f64 / (f64::from(self.settings.window.window_secs) / 60.0);
            let base = expected / (f64::from(self.settings.window.window_secs) / 60.0);
            self.join(&id, p, elevated, Some((rate, base, authors)), out);
            if let Some(o) = self.open.get_mut(&id) {
                let s = emergency_severity(cat.severity, cat.min_authors, o, rate, base, authors);
                o.inc.severity = o.inc.severity.max(s);
            }
            return;
        }
        let window_ms = i64::from(if long_on {
            self.settings.window.long_window_secs
        } else {
            self.settings.window.window_secs
        }) * 1000;
        st.pending.push_back(p);
        while st
            .pending
            .front()
            .is_some_and(|f| f.ts < self.now - window_ms)
        {
            st.pending.pop_front();
        }
        if st.pending.len() > MAX_PENDING {
            st.pending.pop_front();
            self.stats.pending_overflow += 1;
        }
        self.try_open_emergency(rules, ci, &key, prior, out);
    }

    /// Open an incident on `key` if its windows (or the cluster's count) are improbable under
    /// the baseline.
    fn try_open_emergency(
        &mut self,
        rules: &RuleSet,
        ci: u16,
        key: &EKey,
        prior: f64,
        out: &mut Vec<Event>,
    ) {
        let cat = &rules.categories[ci as usize];
        let (nb, bms) = (self.buckets(), self.bucket_ms());
        let (lnb, lbms) = (self.long_buckets(), self.long_bucket_ms());
        let long_on = self.settings.window.long_window_secs > self.settings.window.window_secs;
        let lprior = prior * lbms as f64 / bms as f64;
        let Some(st) = self.emergency.get(key) else {
            return;
        };
        if st.incident.is_some() {
            return;
        }
        let authors = st.authors(self.now / bms);
        let expected = st.window.baseline(prior) * nb as f64;
        let long_authors = st.long.authors();
        let long_expected = st.long.baseline(lprior) * lnb as f64;
        let alpha = self.settings.emergency.alpha;
        let min = u64::from(cat.min_authors);
        let fast = authors >= min && poisson_sf(authors, expected) < alpha;
        // The slow window needs twice the authors: it sees twelve times the time.
        let slow =
            long_on && long_authors >= 2 * min && poisson_sf(long_authors, long_expected) < alpha;
        if !fast && !slow {
            return;
        }
        // Open.
        let st = self.emergency.get_mut(key).map(|s| {
            s.window.frozen = true;
            s.long.frozen = true;
            (std::mem::take(&mut s.pending), s.region.clone())
        });
        let (pending, region) = st.unwrap_or_default();
        // Opened on the cluster's count: the incident says so from its first event.
        let cluster_authors = if self.coord.is_some() { authors } else { 0 };
        let mut id = format!(
            "em-{}-{:08x}",
            self.now,
            hash32(&format!("{}|{:?}", key.0, key.1))
        );
        let shared_key = self
            .coord
            .as_ref()
            .map(|_| emergency_key(&key.0, key.1.as_deref()));
        if let (Some(c), Some(k)) = (self.coord.as_mut(), &shared_key) {
            id = c.claim_open(k, &id);
        }
        let minutes = f64::from(self.settings.window.window_secs) / 60.0;
        let (rate, base) = (authors as f64 / minutes, expected / minutes);
        let inc = Incident {
            id: id.clone(),
            kind: IncidentKind::Emergency,
            category: cat.id.to_string(),
            region,
            first_seen: pending.iter().map(|p| p.ts).min().unwrap_or(self.now),
            opened_at: self.now,
            updated_at: self.now,
            mentions: 0,
            authors: 0,
            rate_per_min: round2(rate),
            baseline_per_min: round2(base),
            severity: cat.severity,
            top_terms: Vec::new(),
            sample_mention_ids: Vec::new(),
            root_mention_id: None,
            rebuttal: None,
            state: IncidentState::Open,
            spread: Vec::new(),
            samples: Vec::new(),
        };
        let (sev, min_a) = (cat.severity, cat.min_authors);
        let okey = OpenKey::Emergency(key.clone());
        self.open_incident(inc, okey, pending, cluster_authors, out, |o| {
            emergency_severity(sev, min_a, o, rate, base, authors)
        });
        if let Some(o) = self.open.get_mut(&id) {
            o.prior = prior;
            o.close_authors = u64::from(min_a.div_ceil(2));
            o.shared_key = shared_key;
        }
        if let Some(s) = self.emergency.get_mut(key) {
            s.incident = Some(id);
        }
    }

    /// Distinct authors per emergency key over the whole cluster (from the coordinator's sync
    /// task): a burst split across instances opens here too, and an incident stays active
    /// while the cluster still sees it.
    pub fn merge_cluster(
        &mut self,
        rules: &RuleSet,
        counts: &[ClusterCount],
        out: &mut Vec<Event>,
    ) {
        self.sync_settings(rules);
        if !self.started {
            return;
        }
        let (bms, decay) = (self.bucket_ms(), self.decay());
        let now_b = self.now / bms;
        for c in counts {
            let Some((cat, region)) = parse_emergency_key(&c.key) else {
                continue;
            };
            let Some(ci) = rules.category_index(cat) else {
                continue;
            };
            let key: EKey = (Arc::from(cat), region.map(Arc::from));
            let Some(st) = self.emergency.get_mut(&key) else {
                continue;
            };
            st.window.advance(now_b, decay);
            st.cluster = Some((c.head.min(now_b), c.authors));
            let authors = st.authors(now_b);
            match st.incident.clone() {
                Some(id) => {
                    if let Some(o) = self.open.get_mut(&id) {
                        if authors >= o.close_authors {
                            o.last_active = self.now;
                        }
                        if c.authors > o.cluster_authors {
                            o.cluster_authors = c.authors;
                            o.dirty = true;
                        }
                    }
                }
                None => {
                    let has_region = st.region.is_some();
                    let prior = self
                        .emergency_prior(rules.categories[ci as usize].prior_per_hour, has_region);
                    self.try_open_emergency(rules, ci, &key, prior, out);
                }
            }
        }
    }

    fn open_incident(
        &mut self,
        inc: Incident,
        key: OpenKey,
        pending: VecDeque<Pend>,
        cluster_authors: u64,
        out: &mut Vec<Event>,
        severity: impl Fn(&Open) -> u8,
    ) {
        let id = inc.id.clone();
        let kind = inc.kind;
        let mut o = Open {
            inc,
            key,
            authors: AHashSet::new(),
            authors_base: 0,
            boosted: AHashSet::new(),
            verified: AHashSet::new(),
            terms: AHashMap::new(),
            last_emit: self.now,
            last_active: self.now,
            dirty: false,
            prior: 0.0,
            close_authors: 1,
            shared_key: None,
            cluster_authors,
        };
        let ids: Vec<String> = pending.iter().map(|p| p.mention.id.clone()).collect();
        for p in pending {
            absorb(&mut o, p);
        }
        let s = severity(&o);
        o.inc.severity = o.inc.severity.max(s).clamp(1, 5);
        finish(&mut o);
        self.stats.opened[usize::from(kind == IncidentKind::Rumor)] += 1;
        crate::metrics::global().incident_opened(kind);
        out.push(Event::Incident {
            kind: EventKind::Opened,
            at: self.now,
            incident: Arc::new(o.inc.clone()),
        });
        let iid: Arc<str> = Arc::from(id.as_str());
        for mid in ids {
            out.push(Event::Assigned {
                at: self.now,
                mention_id: mid,
                incident_id: iid.clone(),
            });
        }
        self.open.insert(id, o);
    }

    fn join(
        &mut self,
        id: &str,
        p: Pend,
        elevated: bool,
        rates: Option<(f64, f64, u64)>,
        out: &mut Vec<Event>,
    ) {
        let now = self.now;
        let interval = i64::from(self.settings.window.update_interval_secs) * 1000;
        let Some(o) = self.open.get_mut(id) else {
            return;
        };
        let mid = p.mention.id.clone();
        absorb(o, p);
        if elevated {
            o.last_active = now;
        }
        if let Some((rate, base, _)) = rates {
            o.inc.rate_per_min = round2(rate);
            o.inc.baseline_per_min = round2(base);
        }
        o.inc.updated_at = now;
        o.dirty = true;
        out.push(Event::Assigned {
            at: now,
            mention_id: mid,
            incident_id: Arc::from(id),
        });
        if now - o.last_emit >= interval {
            emit_update(o, now, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rumor_hit(
        &mut self,
        rules: &RuleSet,
        m: &Mention,
        a: &Analysis,
        parent: Option<&str>,
        pend: impl Fn() -> Pend,
        out: &mut Vec<Event>,
    ) {
        let live = |s: &Self, c: u64| s.clusters.contains_key(&c);
        let mut cid = None;
        if let Some(&ci) = a.claims.first() {
            let claim = &rules.claims[ci as usize];
            let existing = self
                .claim_clusters
                .get(&claim.id)
                .copied()
                .filter(|c| live(self, *c));
            cid = Some(match existing {
                Some(c) => c,
                None => {
                    let c = self.new_cluster(m.id.clone(), m.ts);
                    self.claim_clusters.insert(claim.id.clone(), c);
                    if let Some(cl) = self.clusters.get_mut(&c) {
                        cl.rebuttal = Some(Rebuttal {
                            claim_id: claim.id.to_string(),
                            zh: claim.rebuttal_zh.clone(),
                            en: claim.rebuttal_en.clone(),
                            link: claim.link.clone(),
                            source: claim.source.clone(),
                        });
                        if &*claim.category != "other" {
                            cl.category = Some(claim.category.clone());
                        }
                    }
                    c
                }
            });
        }
        if cid.is_none() {
            if let Some(c) = parent
                .and_then(|p| self.root_of.get(p))
                .filter(|c| live(self, *c))
            {
                cid = Some(c);
            }
        }
        if cid.is_none() && a.cues.any() {
            if let Some(p) = parent {
                let c = self.new_cluster(p.to_string(), m.ts);
                self.root_of.insert(p, c);
                cid = Some(c);
            } else if a.simhash != 0 && a.terms.len() >= 3 {
                let near = self
                    .sim
                    .nearest(a.simhash, self.settings.rumor.simhash_max_distance);
                cid = Some(match near.filter(|c| live(self, *c)) {
                    Some(c) => c,
                    None => {
                        let c = self.new_cluster(m.id.clone(), m.ts);
                        self.sim.insert(c, a.simhash);
                        if let Some(cl) = self.clusters.get_mut(&c) {
                            cl.indexed = true;
                        }
                        c
                    }
                });
            }
        }
        let Some(cid) = cid else { return };
        self.root_of.insert(&m.id, cid);
        let (rbms, decay) = (self.rumor_bucket_ms(), self.decay());
        let now = self.now;
        let counts = !(a.cues.has(Cues::CORRECTION)
            && !a.cues.has(Cues::SPREADING)
            && !a.cues.has(Cues::ENQUIRY));
        let Some(cl) = self.clusters.get_mut(&cid) else {
            return;
        };
        cl.last_seen = now;
        cl.window.advance(now / rbms, decay);
        let p = pend();
        if counts {
            cl.window.add(p.ts / rbms, p.author);
            if let Some(parent) = parent {
                cl.spread(parent, m.source.as_deref());
            }
        }
        if cl.region.is_none() {
            cl.region = a.regions.first().map(|r| rules.gazetteer.region_ref(*r));
        }
        if cl.category.is_none() {
            cl.category = a
                .categories
                .first()
                .map(|c| rules.categories[*c as usize].id.clone());
        }
        let minutes = f64::from(self.settings.rumor.window_secs) / 60.0;
        let authors = cl.window.authors();
        if let Some(id) = cl.incident.clone() {
            let top = if counts && parent.is_some() {
                Some(cl.top_spread())
            } else {
                None
            };
            if let (Some(top), Some(o)) = (top, self.open.get_mut(&id)) {
                o.inc.spread = top;
            }
            self.join(
                &id,
                p,
                true,
                Some((authors as f64 / minutes, 0.0, authors)),
                out,
            );
            if let Some(o) = self.open.get_mut(&id) {
                o.inc.severity = o.inc.severity.max(rumor_severity(rules, o));
            }
            return;
        }
        cl.pending.push_back(p);
        if cl.pending.len() > MAX_PENDING {
            cl.pending.pop_front();
            self.stats.pending_overflow += 1;
        }
        let known = cl.rebuttal.is_some();
        if !known && authors < u64::from(self.settings.rumor.min_authors) {
            return;
        }
        let pending = std::mem::take(&mut cl.pending);
        let mut id = format!("ru-{}-{:08x}", now, hash32(&cl.root));
        let shared_key = self.coord.as_ref().map(|_| rumor_key(cl));
        if let (Some(c), Some(k)) = (self.coord.as_mut(), &shared_key) {
            id = c.claim_open(k, &id);
        }
        cl.incident = Some(id.clone());
        let inc = Incident {
            id,
            kind: IncidentKind::Rumor,
            category: cl.category.as_deref().unwrap_or("other").to_string(),
            region: cl.region.clone(),
            first_seen: cl
                .first_seen
                .min(pending.iter().map(|p| p.ts).min().unwrap_or(now)),
            opened_at: now,
            updated_at: now,
            mentions: 0,
            authors: 0,
            rate_per_min: round2(authors as f64 / minutes),
            baseline_per_min: 0.0,
            severity: if known { 3 } else { 2 },
            top_terms: Vec::new(),
            sample_mention_ids: Vec::new(),
            root_mention_id: Some(cl.root.clone()),
            rebuttal: cl.rebuttal.clone(),
            state: IncidentState::Open,
            spread: cl.top_spread(),
            samples: Vec::new(),
        };
        let oid = inc.id.clone();
        self.open_incident(inc, OpenKey::Rumor(cid), pending, 0, out, |o| {
            rumor_severity(rules, o)
        });
        if let Some(o) = self.open.get_mut(&oid) {
            o.shared_key = shared_key;
        }
    }

    fn new_cluster(&mut self, root: String, ts: i64) -> u64 {
        let c = self.next_cluster;
        self.next_cluster += 1;
        self.clusters.insert(
            c,
            Cluster {
                root,
                window: Window::new(RUMOR_BUCKETS as usize, self.now / self.rumor_bucket_ms()),
                pending: VecDeque::new(),
                incident: None,
                first_seen: ts,
                last_seen: self.now,
                region: None,
                category: None,
                rebuttal: None,
                indexed: false,
                spread: AHashMap::new(),
            },
        );
        c
    }

    /// Periodic work at each bucket boundary: close quiet incidents, emit due updates, forget
    /// idle state.
    fn sweep(&mut self, out: &mut Vec<Event>) {
        self.sweeps += 1;
        let now = self.now;
        let (bms, nb, decay) = (self.bucket_ms(), self.buckets(), self.decay());
        let (lbms, lnb, ldecay) = (
            self.long_bucket_ms(),
            self.long_buckets(),
            self.long_decay(),
        );
        let long_on = self.settings.window.long_window_secs > self.settings.window.window_secs;
        let interval = i64::from(self.settings.window.update_interval_secs) * 1000;
        let quiet_e = i64::from(self.settings.emergency.quiet_secs) * 1000;
        let quiet_r = i64::from(self.settings.rumor.quiet_secs) * 1000;
        let minutes = f64::from(self.settings.window.window_secs) / 60.0;
        let mut to_close = Vec::new();
        for (id, o) in self.open.iter_mut() {
            match &o.key {
                OpenKey::Emergency(k) => {
                    if let Some(st) = self.emergency.get_mut(k) {
                        st.window.advance(now / bms, decay);
                        st.long.advance(now / lbms, ldecay);
                        let a = st.authors(now / bms);
                        let expected = st.window.baseline(o.prior) * nb as f64;
                        let la = st.long.authors();
                        let lexpected =
                            st.long.baseline(o.prior * lbms as f64 / bms as f64) * lnb as f64;
                        let close_alpha = self.settings.emergency.close_alpha;
                        // The slow window alone never keeps an incident open here; a mention
                        // joining while it is elevated does (see `emergency_hit`).
                        let _ = (la, lexpected, long_on);
                        if a >= o.close_authors || poisson_sf(a, expected) < close_alpha {
                            o.last_active = now;
                        }
                        let rate = round2(a as f64 / minutes);
                        if rate != o.inc.rate_per_min {
                            o.inc.rate_per_min = rate;
                            o.dirty = true;
                        }
                    }
                    if now - o.last_active >= quiet_e {
                        to_close.push(id.clone());
                        continue;
                    }
                }
                OpenKey::Rumor(c) => {
                    let last = self.clusters.get(c).map_or(o.last_active, |c| c.last_seen);
                    if now - last >= quiet_r {
                        to_close.push(id.clone());
                        continue;
                    }
                }
            }
            if o.dirty && now - o.last_emit >= interval {
                emit_update(o, now, out);
            }
        }
        for id in to_close {
            self.close_open(&id, now, out);
        }
        // Forget idle state now and then (every 60 buckets of event time).
        if self.sweeps.is_multiple_of(60) {
            let prior = self.prior_bucket(self.settings.emergency.prior_per_hour);
            let lprior = prior * lbms as f64 / bms as f64;
            self.emergency.retain(|_, st| {
                st.window.advance(now / bms, decay);
                st.long.advance(now / lbms, ldecay);
                let window_ms = (bms * nb as i64).max(if long_on { lbms * lnb as i64 } else { 0 });
                while st.pending.front().is_some_and(|f| f.ts < now - window_ms) {
                    st.pending.pop_front();
                }
                st.incident.is_some()
                    || !st.window.is_idle(prior)
                    || !st.long.is_idle(lprior)
                    || !st.pending.is_empty()
            });
            let horizon = i64::from(self.settings.rumor.window_secs) * 1000;
            let stale: Vec<u64> = self
                .clusters
                .iter()
                .filter(|(_, c)| c.incident.is_none() && now - c.last_seen > horizon)
                .map(|(id, _)| *id)
                .collect();
            for c in stale {
                self.drop_cluster(c);
            }
        }
    }

    /// Close the open incident `id` at `now`: its windows (or rumor cluster) are cleared so the
    /// same authors cannot reopen it. False if it is not open.
    fn close_open(&mut self, id: &str, now: i64, out: &mut Vec<Event>) -> bool {
        let Some(mut o) = self.open.remove(id) else {
            return false;
        };
        if let (Some(c), Some(k)) = (self.coord.as_mut(), &o.shared_key) {
            c.release(k, &o.inc.id);
        }
        o.inc.state = IncidentState::Closed;
        o.inc.updated_at = now;
        finish(&mut o);
        match &o.key {
            OpenKey::Emergency(k) => {
                if let Some(st) = self.emergency.get_mut(k) {
                    st.incident = None;
                    // The authors behind the closed incident must not reopen it.
                    st.window.clear();
                    st.long.clear();
                    st.cluster = None;
                }
            }
            OpenKey::Rumor(c) => self.drop_cluster(*c),
        }
        self.stats.closed += 1;
        crate::metrics::global().incident_closed(o.inc.kind);
        out.push(Event::Incident {
            kind: EventKind::Closed,
            at: now,
            incident: Arc::new(o.inc),
        });
        true
    }

    /// Apply an operator's change (close, merge) at the current event time. Unknown or already
    /// closed incidents, and merges across kinds, change nothing (logged): the request raced
    /// with the engine closing them itself.
    pub fn control(&mut self, c: &crate::cluster::Control, out: &mut Vec<Event>) {
        use crate::cluster::Control;
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
                        o.inc.samples.clone(),
                        o.inc.severity,
                        o.authors_base,
                    )
                }) else {
                    return;
                };
                self.close_open(from, now, out);
                let Some(o) = self.open.get_mut(into) else {
                    return;
                };
                let (mentions, authors, boosted, verified, terms, samples, severity, base) = src;
                o.inc.mentions += mentions;
                o.authors.extend(authors);
                o.authors_base += base;
                o.boosted.extend(boosted);
                o.verified.extend(verified);
                for (t, n) in terms {
                    *o.terms.entry(t).or_insert(0) += n;
                }
                for m in samples {
                    if o.inc.sample_mention_ids.len() >= MAX_SAMPLES {
                        break;
                    }
                    if !o.inc.sample_mention_ids.contains(&m.id) {
                        o.inc.sample_mention_ids.push(m.id.clone());
                        o.inc.samples.push(m);
                    }
                }
                // Severity never goes down within an incident.
                o.inc.severity = o.inc.severity.max(severity);
                o.last_active = now;
                emit_update(o, now, out);
            }
        }
    }

    fn drop_cluster(&mut self, c: u64) {
        if let Some(cl) = self.clusters.remove(&c) {
            if cl.indexed {
                self.sim.remove(c);
            }
            if let Some(r) = cl.rebuttal {
                self.claim_clusters.remove(r.claim_id.as_str());
            }
        }
    }
}

/// The shared key of a rumor cascade: its known claim, else its root post.
fn rumor_key(cl: &Cluster) -> String {
    match &cl.rebuttal {
        Some(r) => format!("ru|claim|{}", r.claim_id),
        None => format!("ru|root|{}", cl.root),
    }
}

fn absorb(o: &mut Open, p: Pend) {
    o.inc.mentions += 1;
    o.authors.insert(p.author);
    if p.boosted {
        o.boosted.insert(p.author);
    }
    if p.verified {
        o.verified.insert(p.author);
    }
    if o.inc.sample_mention_ids.len() < MAX_SAMPLES {
        o.inc.sample_mention_ids.push(p.mention.id.clone());
        o.inc.samples.push(p.mention);
    }
    for t in p.terms {
        *o.terms.entry(t).or_insert(0) += 1;
    }
    if o.terms.len() > 2_000 {
        // Keep the most frequent half; the long tail never reaches the top anyway.
        let mut v: Vec<(String, u32)> = o.terms.drain().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(1_000);
        o.terms = v.into_iter().collect();
    }
}

fn finish(o: &mut Open) {
    o.inc.authors = (o.authors_base + o.authors.len() as u64).max(o.cluster_authors);
    let mut v: Vec<(&String, &u32)> = o.terms.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    o.inc.top_terms = v
        .into_iter()
        .take(TOP_TERMS)
        .map(|(t, _)| t.clone())
        .collect();
}

fn emit_update(o: &mut Open, now: i64, out: &mut Vec<Event>) {
    finish(o);
    o.inc.updated_at = now;
    o.last_emit = now;
    o.dirty = false;
    out.push(Event::Incident {
        kind: EventKind::Updated,
        at: now,
        incident: Arc::new(o.inc.clone()),
    });
}

fn emergency_severity(
    base: u8,
    min_authors: u32,
    o: &Open,
    rate: f64,
    baseline: f64,
    window_authors: u64,
) -> u8 {
    let mut s = i32::from(base);
    if baseline > 0.0 && rate / baseline >= 50.0 {
        s += 1;
    }
    if window_authors >= u64::from(min_authors) * 6 || o.authors.len() >= 100 {
        s += 1;
    }
    if o.boosted.len() >= 3 {
        s += 1;
    }
    if o.verified.len() >= 2 {
        s += 1;
    }
    s.clamp(1, 5) as u8
}

fn rumor_severity(rules: &RuleSet, o: &Open) -> u8 {
    let mut s: i32 = if o.inc.rebuttal.is_some() { 3 } else { 2 };
    let n = o.authors_base as usize + o.authors.len();
    if n >= 30 {
        s += 1;
    }
    if n >= 200 {
        s += 1;
    }
    if rules
        .category_index(&o.inc.category)
        .is_some_and(|c| rules.categories[c as usize].severity >= 4)
    {
        s += 1;
    }
    s.clamp(1, 5) as u8
}
