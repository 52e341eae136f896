//! Rumors: which claim group a mention joins, and opening a rumor incident when enough
//! authors spread it. A claim group is the set of posts carrying one claim: a known debunked
//! claim, a repost/reply cascade, or copy-paste variants of a post with a rumor cue.

use super::severity::rumor_severity;
use super::{hash32, round2, Engine, OpenKey, PendingMention, MAX_PENDING, RUMOR_BUCKETS};
use crate::detect::analyze::{Analysis, Cues};
use crate::detect::gazetteer::RegionRef;
use crate::detect::rules::RuleSet;
use crate::detect::rumor_model::{CascadeStats, PostSignals};
use crate::detect::spike::Window;
use crate::incidents::incident::{
    Event, Incident, IncidentKind, IncidentState, Rebuttal, SpreadPost, SPREAD_TOP,
};
use crate::normalize::Mention;
use std::collections::VecDeque;
use std::sync::Arc;

/// The posts carrying one claim, and their window of spreading authors.
pub(super) struct ClaimGroup {
    /// The post the group started from (its cascade root, or the first copy).
    pub(super) root: String,
    /// Distinct spreading or asking authors (corrections do not count).
    pub(super) window: Window,
    /// Mentions held to assign when an incident opens.
    pub(super) pending: VecDeque<PendingMention>,
    /// The open rumor incident of this group, if any.
    pub(super) incident: Option<String>,
    pub(super) first_seen: i64,
    pub(super) last_seen: i64,
    /// The first region and category its mentions named.
    pub(super) region: Option<Box<RegionRef>>,
    pub(super) category: Option<Arc<str>>,
    /// The known claim's rebuttal, when the group is a known claim.
    pub(super) rebuttal: Option<Box<Rebuttal>>,
    /// Whether the group is in the sketch index (to remove it from there when dropped).
    pub(super) indexed: bool,
    /// The posts it spread through; at most [`MAX_SPREAD`].
    pub(super) spread: Spread,
    /// What the rumor model reads of the cascade.
    pub(super) stats: CascadeStats,
    /// Started by a repost of a post whose group had closed or gone idle.
    pub(super) revived: bool,
}

/// An original post remembered so that a cascade starting from it later is scored with its
/// text (the model's strongest evidence).
///
/// 32 bytes, held by the 400,000 (two generations): the signals' two flags and the cue bits
/// share one byte, where the [`PostSignals`] and [`Cues`] they come from fill 17 (the table's
/// slot would be 48 bytes, not 40).
#[derive(Debug, Clone, Copy)]
pub(super) struct Seed {
    as_original: f32,
    as_repost: f32,
    chars: u16,
    digits: u8,
    exclaims: u8,
    questions: u8,
    ats: u8,
    /// The cue bits ([`Seed::CUES`]), `nontrivial` and `link`.
    flags: u8,
    pub(super) ts: i64,
    pub(super) author: u64,
}

impl Seed {
    /// The bits of `flags` that hold the cues; the two above them hold the signals' flags.
    const CUES: u8 = 0x3f;
    const NONTRIVIAL: u8 = 0x40;
    const LINK: u8 = 0x80;

    pub(super) fn new(signals: &PostSignals, cues: Cues, ts: i64, author: u64) -> Seed {
        const { assert!((Cues::ENQUIRY | Cues::CORRECTION | Cues::SPREADING) & !Seed::CUES == 0) };
        let mut flags = cues.0 & Self::CUES;
        if signals.nontrivial {
            flags |= Self::NONTRIVIAL;
        }
        if signals.link {
            flags |= Self::LINK;
        }
        Seed {
            as_original: signals.as_original,
            as_repost: signals.as_repost,
            chars: signals.chars,
            digits: signals.digits,
            exclaims: signals.exclaims,
            questions: signals.questions,
            ats: signals.ats,
            flags,
            ts,
            author,
        }
    }

    pub(super) fn signals(&self) -> PostSignals {
        PostSignals {
            as_original: self.as_original,
            as_repost: self.as_repost,
            nontrivial: self.flags & Self::NONTRIVIAL != 0,
            chars: self.chars,
            digits: self.digits,
            exclaims: self.exclaims,
            questions: self.questions,
            link: self.flags & Self::LINK != 0,
            ats: self.ats,
        }
    }

    pub(super) fn cues(&self) -> Cues {
        Cues(self.flags & Self::CUES)
    }
}

/// Posts whose spread a claim group counts (beyond that, only the posts already counted grow).
const MAX_SPREAD: usize = 512;

/// Post id → (reposts and replies that spread it, where it is), in a list: most groups spread
/// through one or two posts, and a hash map's smallest table is four 56-byte slots plus an id
/// string each. Looked up by the id's hash first; at most [`MAX_SPREAD`] entries.
#[derive(Debug, Default)]
pub(super) struct Spread(Vec<SpreadEntry>);

#[derive(Debug)]
struct SpreadEntry {
    hash: u64,
    shares: u32,
    id: Box<str>,
    source: Option<Box<str>>,
}

impl Spread {
    fn find(&self, hash: u64, id: &str) -> Option<usize> {
        self.0.iter().position(|e| e.hash == hash && &*e.id == id)
    }

    /// One more share of post `id` (from `source`); a post not yet counted is added while
    /// fewer than [`MAX_SPREAD`] are.
    fn add(&mut self, id: &str, source: Option<&str>) {
        let hash = crate::stable_hash(id.as_bytes());
        if let Some(i) = self.find(hash, id) {
            self.0[i].shares += 1;
        } else if self.0.len() < MAX_SPREAD {
            if self.0.capacity() == 0 {
                self.0.reserve_exact(1);
            }
            self.0.push(SpreadEntry {
                hash,
                shares: 1,
                id: id.into(),
                source: source.map(Into::into),
            });
        }
    }

    /// The most-spread posts, most shares first (ties: smaller id).
    fn top(&self) -> Vec<SpreadPost> {
        let mut v: Vec<&SpreadEntry> = self.0.iter().collect();
        v.sort_by(|a, b| b.shares.cmp(&a.shares).then_with(|| a.id.cmp(&b.id)));
        v.into_iter()
            .take(SPREAD_TOP)
            .map(|e| SpreadPost {
                id: e.id.to_string(),
                source: e.source.as_deref().map(str::to_string),
                shares: e.shares,
            })
            .collect()
    }
}

impl<'a> FromIterator<&'a SpreadPost> for Spread {
    /// The spread of a restored incident (a post listed twice keeps its last count).
    fn from_iter<I: IntoIterator<Item = &'a SpreadPost>>(posts: I) -> Self {
        let mut s = Spread::default();
        for p in posts {
            let hash = crate::stable_hash(p.id.as_bytes());
            let source = p.source.as_deref().map(Into::into);
            match s.find(hash, &p.id) {
                Some(i) => {
                    s.0[i].shares = p.shares;
                    s.0[i].source = source;
                }
                None => s.0.push(SpreadEntry {
                    hash,
                    shares: p.shares,
                    id: p.id.as_str().into(),
                    source,
                }),
            }
        }
        s
    }
}

impl ClaimGroup {
    /// A repost or reply (from `source`) spread `parent`.
    pub(super) fn spread(&mut self, parent: &str, source: Option<&str>) {
        self.spread.add(parent, source);
    }

    /// The most-spread posts, most shares first (ties: smaller id).
    pub(super) fn top_spread(&self) -> Vec<SpreadPost> {
        self.spread.top()
    }
}

impl Engine {
    /// Put a mention into its claim group (known claim, then the parent's group, then a new
    /// cascade or the nearest copy when it carries a rumor cue); join the group's incident or
    /// open one when enough authors spread it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rumor_hit(
        &mut self,
        rules: &RuleSet,
        m: &Mention,
        a: &Analysis,
        parent: Option<&str>,
        pending_mention: impl Fn() -> PendingMention,
        out: &mut Vec<Event>,
    ) {
        let live = |s: &Self, c: u64| s.claim_groups.contains_key(&c);
        let mut gid = None;
        if let Some(&ci) = a.claims.first() {
            let claim = &rules.claims[ci as usize];
            let existing = self
                .known_claim_groups
                .get(&claim.id)
                .copied()
                .filter(|c| live(self, *c));
            gid = Some(match existing {
                Some(c) => c,
                None => {
                    let Some(c) = self.new_claim_group(m.id.clone(), m.ts) else {
                        return;
                    };
                    self.known_claim_groups.insert(claim.id.clone(), c);
                    if let Some(group) = self.claim_groups.get_mut(&c) {
                        group.rebuttal = Some(Box::new(Rebuttal {
                            claim_id: claim.id.to_string(),
                            zh: claim.rebuttal_zh.clone(),
                            en: claim.rebuttal_en.clone(),
                            link: claim.link.clone(),
                            source: claim.source.clone(),
                        }));
                        if &*claim.category != "other" {
                            group.category = Some(claim.category.clone());
                        }
                    }
                    c
                }
            });
        }
        // A parent whose group is gone: its cascade had an incident (closed) or went idle.
        let mut revived = false;
        if gid.is_none() {
            if let Some(c) = parent.and_then(|p| self.group_of_post.get(p)) {
                if live(self, c) {
                    gid = Some(c);
                } else {
                    revived = true;
                }
            }
        }
        if gid.is_none() && rules.rumor_model.is_some() {
            // A repost of an original seen earlier: its cascade starts now, scored from the
            // original's text on.
            if let Some((p, seed)) = parent.and_then(|p| self.seeds.get(p).map(|s| (p, s))) {
                if let Some(c) = self.new_claim_group(p.to_string(), seed.ts) {
                    self.group_of_post.insert(p, c);
                    if let Some(g) = self.claim_groups.get_mut(&c) {
                        g.stats
                            .add(seed.ts, seed.author, &seed.signals(), seed.cues(), true);
                    }
                    gid = Some(c);
                }
            }
        }
        if gid.is_none() && a.cues.any() {
            if let Some(p) = parent {
                if let Some(c) = self.new_claim_group(p.to_string(), m.ts) {
                    self.group_of_post.insert(p, c);
                    if let Some(g) = self.claim_groups.get_mut(&c) {
                        g.revived = revived;
                    }
                    gid = Some(c);
                }
            } else if let Some(sk) = &a.sketch {
                let near = self
                    .sim
                    .nearest(sk, self.settings.rumor.near_duplicate_similarity);
                gid = match near.filter(|c| live(self, *c)) {
                    Some(c) => Some(c),
                    None => self.new_claim_group(m.id.clone(), m.ts).inspect(|c| {
                        self.sim.insert(*c, (**sk).clone());
                        if let Some(group) = self.claim_groups.get_mut(c) {
                            group.indexed = true;
                        }
                    }),
                };
            }
        }
        let Some(gid) = gid else { return };
        self.group_of_post.insert(&m.id, gid);
        let (rbms, decay) = (self.rumor_bucket_ms(), self.decay());
        let now = self.now;
        let counts = !(a.cues.has(Cues::CORRECTION)
            && !a.cues.has(Cues::SPREADING)
            && !a.cues.has(Cues::ENQUIRY));
        let Some(group) = self.claim_groups.get_mut(&gid) else {
            return;
        };
        group.last_seen = now;
        group.window.advance(now / rbms, decay);
        let p = pending_mention();
        let model = rules.rumor_model.as_deref();
        if let Some(sig) = &a.signals {
            let original = parent.is_none() && group.stats.original.is_none() && group.root == m.id;
            group.stats.add(p.ts, p.author, sig, a.cues, original);
        }
        if counts {
            group.window.add(p.ts / rbms, p.author);
            if let Some(parent) = parent {
                group.spread(parent, m.source.as_deref());
            }
        }
        if group.region.is_none() {
            group.region = a
                .regions
                .first()
                .map(|r| Box::new(rules.gazetteer.region_ref(*r)));
        }
        if group.category.is_none() {
            group.category = a
                .categories
                .first()
                .map(|c| rules.categories[*c as usize].id.clone());
        }
        let minutes = f64::from(self.settings.rumor.window_secs) / 60.0;
        let authors = group.window.authors();
        if let Some(id) = group.incident.clone() {
            let top = if counts && parent.is_some() {
                Some(group.top_spread())
            } else {
                None
            };
            let seen = why(&group.stats, false);
            if let Some(o) = self.open.get_mut(&id) {
                if let Some(top) = top {
                    o.inc.spread = top;
                }
                let scored = o.inc.why.as_ref().is_some_and(|w| w.scored);
                o.inc.why = Some(crate::incidents::RumorWhy { scored, ..seen });
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
        if group.pending.capacity() == 0 {
            // Most groups hold one waiting mention and never open: room for one, not four.
            group.pending.reserve_exact(1);
        }
        group.pending.push_back(p);
        if group.pending.len() > MAX_PENDING {
            group.pending.pop_front();
            self.stats.pending_overflow += 1;
        }
        let known = group.rebuttal.is_some();
        // A trained model decides when the rules ship one; else enough spreading authors.
        // A cascade coming back after its incident closed must spread again as a burst (enough
        // authors in the window) before the model's word counts.
        let enough_authors = authors >= u64::from(self.settings.rumor.min_authors);
        let flagged = match model {
            _ if known => true,
            Some(model) => model.flags(&group.stats) && (!group.revived || enough_authors),
            None => enough_authors,
        };
        if !flagged {
            return;
        }
        let pending = std::mem::take(&mut group.pending);
        let mut id = format!("ru-{}-{:08x}", now, hash32(&group.root));
        let shared_key = self.coord.as_ref().map(|_| rumor_key(group));
        if let (Some(c), Some(k)) = (self.coord.as_mut(), &shared_key) {
            id = c.claim_open(k, &id);
        }
        group.incident = Some(id.clone());
        let inc = Incident {
            id,
            kind: IncidentKind::Rumor,
            category: group.category.as_deref().unwrap_or("other").to_string(),
            categories: Vec::new(),
            region: group.region.as_deref().cloned(),
            first_seen: group
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
            root_mention_id: Some(group.root.clone()),
            rebuttal: group.rebuttal.as_deref().cloned(),
            state: IncidentState::Open,
            spread: group.top_spread(),
            samples: Vec::new(),
            official: false,
            verified_authors: 0,
            merged_into: None,
            headline: None,
            why: Some(why(&group.stats, model.is_some() && !known)),
        };
        let oid = inc.id.clone();
        self.open_incident(inc, OpenKey::Rumor(gid), pending, 0, out, |o| {
            rumor_severity(rules, o)
        });
        if let Some(o) = self.open.get_mut(&oid) {
            o.shared_key = shared_key;
        }
    }

    /// Claim groups held at most (`[rumor] max_groups`).
    fn max_groups(&self) -> usize {
        self.settings.rumor.max_groups.max(1) as usize
    }

    /// A new, empty claim group starting from post `root`. With `max_groups` held, the
    /// longest idle sixteenth of those without an incident are dropped first (a later repost
    /// of theirs starts its cascade again, as after an idle drop); none when every group held
    /// has an incident.
    pub(super) fn new_claim_group(&mut self, root: String, ts: i64) -> Option<u64> {
        if self.claim_groups.len() >= self.max_groups() {
            self.evict_claim_groups();
            if self.claim_groups.len() >= self.max_groups() {
                self.stats.group_overflow += 1;
                return None;
            }
        }
        let c = self.next_claim_group;
        self.next_claim_group += 1;
        self.claim_groups.insert(
            c,
            Box::new(ClaimGroup {
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
                spread: Spread::default(),
                stats: CascadeStats::default(),
                revived: false,
            }),
        );
        Some(c)
    }

    /// Drop the longest idle sixteenth of the claim groups without an incident (ties: the
    /// older group), counted in `groups_evicted`. A steady stream of reposts fills the table
    /// in minutes, and a full table that refused new cascades would stop rumor detection for
    /// as long as a cascade may stay idle (days).
    fn evict_claim_groups(&mut self) {
        let mut idle: Vec<(i64, u64)> = self
            .claim_groups
            .iter()
            .filter(|(_, g)| g.incident.is_none())
            .map(|(id, g)| (g.last_seen, *id))
            .collect();
        let n = (self.max_groups() / 16).max(1);
        if idle.len() > n {
            idle.select_nth_unstable(n - 1);
            idle.truncate(n);
        }
        let evicted = idle.len() as u64;
        for (_, c) in idle {
            self.drop_claim_group(c);
        }
        self.stats.groups_evicted += evicted;
        crate::metrics::global()
            .claim_groups_evicted
            .inc_by(evicted);
    }

    /// Forget a claim group and its entries in the claim and sketch indexes. A cascade that
    /// had an incident forgets its original too, so its late reposts do not start it again.
    pub(super) fn drop_claim_group(&mut self, c: u64) {
        if let Some(group) = self.claim_groups.remove(&c) {
            if group.incident.is_some() {
                self.seeds.remove(&group.root);
            }
            if group.indexed {
                self.sim.remove(c);
            }
            if let Some(r) = group.rebuttal {
                self.known_claim_groups.remove(r.claim_id.as_str());
            }
        }
    }
}

/// The fleet-wide key of a claim group: its known claim, else its root post.
pub(super) fn rumor_key(group: &ClaimGroup) -> String {
    match &group.rebuttal {
        Some(r) => format!("ru|claim|{}", r.claim_id),
        None => format!("ru|root|{}", group.root),
    }
}

/// What a cascade shows, for the rumor card ([`crate::incidents::RumorWhy`]).
fn why(s: &crate::detect::rumor_model::CascadeStats, scored: bool) -> crate::incidents::RumorWhy {
    crate::incidents::RumorWhy {
        posts: s.posts,
        enquiry: s.enquiry,
        correction: s.correction,
        spreading: s.spreading,
        original_cue: s.original.is_some_and(|(_, c)| c.any()),
        scored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the 50,000 (`[rumor] max_groups`): a map with its own random key (64 bytes, not
    /// 32) or a spread table in place of the list shows here first.
    #[test]
    fn a_claim_group_and_its_window_stay_small() {
        assert_eq!(std::mem::size_of::<crate::SmallMap<u64, u32>>(), 32);
        assert!(std::mem::size_of::<Window>() <= 112);
        assert!(std::mem::size_of::<ClaimGroup>() <= 368);
    }

    #[test]
    fn a_seed_is_32_bytes_and_gives_back_what_it_was_made_of() {
        assert_eq!(std::mem::size_of::<Seed>(), 32);
        for bits in 0..8u8 {
            for (nontrivial, link) in [(false, false), (true, false), (false, true), (true, true)] {
                let sig = PostSignals {
                    as_original: -1.25,
                    as_repost: 0.5,
                    nontrivial,
                    chars: 65_535,
                    digits: 3,
                    exclaims: 255,
                    questions: 1,
                    link,
                    ats: 7,
                };
                let s = Seed::new(&sig, Cues(bits), -5, u64::MAX);
                assert_eq!(s.signals(), sig);
                assert_eq!(s.cues(), Cues(bits));
                assert_eq!((s.ts, s.author), (-5, u64::MAX));
            }
        }
    }

    #[test]
    fn spread_counts_each_post_lists_the_top_and_stops_adding_at_the_cap() {
        let mut s = Spread::default();
        for (id, n) in [("b", 3), ("a", 3), ("c", 5), ("d", 1)] {
            for _ in 0..n {
                s.add(id, Some("weibo"));
            }
        }
        let top = s.top();
        let got: Vec<(&str, u32)> = top.iter().map(|p| (p.id.as_str(), p.shares)).collect();
        assert_eq!(&got[..3], &[("c", 5), ("a", 3), ("b", 3)]);
        assert_eq!(top[0].source.as_deref(), Some("weibo"));
        for k in 0..MAX_SPREAD + 10 {
            s.add(&format!("x{k}"), None);
        }
        assert_eq!(s.0.len(), MAX_SPREAD);
        // Posts already counted still grow; a new one is not added.
        s.add("d", None);
        s.add("late", None);
        assert_eq!(
            s.0.iter().find(|e| &*e.id == "d").map(|e| e.shares),
            Some(2)
        );
        assert!(s.0.iter().all(|e| &*e.id != "late"));
        // Read back from an incident's list: a post listed twice keeps its last count.
        let posts = [
            SpreadPost {
                id: "a".into(),
                source: None,
                shares: 2,
            },
            SpreadPost {
                id: "a".into(),
                source: Some("m".into()),
                shares: 4,
            },
        ];
        let r: Spread = posts.iter().collect();
        assert_eq!(r.top().len(), 1);
        assert_eq!(
            (r.top()[0].shares, r.top()[0].source.as_deref()),
            (4, Some("m"))
        );
    }
}
