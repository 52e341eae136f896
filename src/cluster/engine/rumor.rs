//! Rumors: which rumor cluster a mention joins (known claim, cascade, near-duplicate text),
//! and opening a rumor incident when enough authors spread it.

use super::severity::rumor_severity;
use super::{hash32, round2, Engine, OpenKey, Pend, MAX_PENDING, RUMOR_BUCKETS};
use crate::cluster::incident::{
    Event, Incident, IncidentKind, IncidentState, Rebuttal, SpreadPost, SPREAD_TOP,
};
use crate::detect::analyze::{Analysis, Cues};
use crate::detect::gazetteer::RegionRef;
use crate::detect::rules::RuleSet;
use crate::detect::spike::Window;
use crate::normalize::Mention;
use ahash::AHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

pub(super) struct Cluster {
    pub(super) root: String,
    pub(super) window: Window,
    pub(super) pending: VecDeque<Pend>,
    pub(super) incident: Option<String>,
    pub(super) first_seen: i64,
    pub(super) last_seen: i64,
    pub(super) region: Option<RegionRef>,
    pub(super) category: Option<Arc<str>>,
    pub(super) rebuttal: Option<Rebuttal>,
    pub(super) indexed: bool,
    /// Post id → (reposts and replies that spread it, where it is); at most [`MAX_SPREAD`].
    pub(super) spread: AHashMap<String, (u32, Option<String>)>,
}

/// Posts whose spread a cluster counts (beyond that, only the posts already counted grow).
const MAX_SPREAD: usize = 512;

impl Cluster {
    /// A repost or reply (from `source`) spread `parent`.
    pub(super) fn spread(&mut self, parent: &str, source: Option<&str>) {
        if let Some(e) = self.spread.get_mut(parent) {
            e.0 += 1;
        } else if self.spread.len() < MAX_SPREAD {
            self.spread
                .insert(parent.to_string(), (1, source.map(str::to_string)));
        }
    }

    /// The most-spread posts, most shares first (ties: smaller id).
    pub(super) fn top_spread(&self) -> Vec<SpreadPost> {
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

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rumor_hit(
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

    pub(super) fn new_cluster(&mut self, root: String, ts: i64) -> u64 {
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

    pub(super) fn drop_cluster(&mut self, c: u64) {
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
pub(super) fn rumor_key(cl: &Cluster) -> String {
    match &cl.rebuttal {
        Some(r) => format!("ru|claim|{}", r.claim_id),
        None => format!("ru|root|{}", cl.root),
    }
}
