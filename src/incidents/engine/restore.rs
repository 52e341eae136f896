//! Restoring the engine's state for incidents that were open when the process last stopped.

use super::emergency::{EmergencyKey, EmergencyState};
use super::rumor::{rumor_key, ClaimGroup};
use super::terms::TermCounts;
use super::{Engine, OpenIncident, OpenKey, RUMOR_BUCKETS, TOP_TERMS};
use crate::detect::rules::RuleSet;
use crate::detect::spike::Window;
use crate::incidents::coord::incident_key;
use crate::incidents::incident::{Incident, IncidentKind, IncidentState};
use crate::normalize::Packed;
use crate::{SmallMap, SmallSet};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

impl Engine {
    /// Re-create state for incidents that were open when the process last stopped.
    pub fn restore(&mut self, rules: &Arc<RuleSet>, incidents: Vec<Incident>) {
        self.sync_settings(rules);
        for mut inc in incidents
            .into_iter()
            .filter(|i| i.state == IncidentState::Open)
        {
            if !self.started || inc.updated_at > self.now {
                self.now = inc.updated_at;
                self.started = true;
            }
            let key = match inc.kind {
                IncidentKind::Emergency => {
                    // One window per category of the incident (older incidents list none:
                    // their one category).
                    let cats: Vec<&str> = if inc.categories.is_empty() {
                        vec![inc.category.as_str()]
                    } else {
                        inc.categories.iter().map(String::as_str).collect()
                    };
                    let mut keys = Vec::new();
                    for c in cats {
                        let k: EmergencyKey = (
                            Arc::from(c),
                            inc.region.as_ref().map(|r| Arc::from(r.code.as_str())),
                        );
                        let mut window =
                            Window::new(self.buckets(), inc.updated_at / self.bucket_ms());
                        window.frozen = true;
                        let mut long = Window::new(
                            self.long_buckets(),
                            inc.updated_at / self.long_bucket_ms(),
                        );
                        long.frozen = true;
                        self.emergency.insert(
                            k.clone(),
                            EmergencyState {
                                window,
                                long,
                                incident: Some(inc.id.clone()),
                                pending: VecDeque::new(),
                                fleet: None,
                                region: inc.region.clone(),
                            },
                        );
                        keys.push(k);
                    }
                    OpenKey::Emergency(keys)
                }
                IncidentKind::Rumor => {
                    let gid = self.next_claim_group;
                    self.next_claim_group += 1;
                    let root = inc
                        .root_mention_id
                        .clone()
                        .unwrap_or_else(|| inc.id.clone());
                    self.group_of_post.insert(&root, gid);
                    for s in &inc.sample_mention_ids {
                        self.group_of_post.insert(s, gid);
                    }
                    if let Some(r) = &inc.rebuttal {
                        self.known_claim_groups
                            .insert(Arc::from(r.claim_id.as_str()), gid);
                    }
                    self.claim_groups.insert(
                        gid,
                        Box::new(ClaimGroup {
                            root,
                            window: Window::new(
                                RUMOR_BUCKETS as usize,
                                inc.updated_at / self.rumor_bucket_ms(),
                            ),
                            pending: VecDeque::new(),
                            incident: Some(inc.id.clone()),
                            first_seen: inc.first_seen,
                            last_seen: inc.updated_at,
                            region: inc.region.clone().map(Box::new),
                            category: Some(Arc::from(inc.category.as_str())),
                            rebuttal: inc.rebuttal.clone().map(Box::new),
                            indexed: false,
                            spread: inc.spread.iter().collect(),
                            // The incident is open already: the model's counts are not needed
                            // to decide it again.
                            stats: Default::default(),
                            revived: false,
                        }),
                    );
                    OpenKey::Rumor(gid)
                }
                // The terms it was opened on (its top terms read back: a joined phrase follows
                // nothing, so the incident stays open until quiet, then closes).
                IncidentKind::Emerging => OpenKey::Emerging(
                    inc.top_terms
                        .iter()
                        .map(|t| crate::detect::emerging::term_hash(t))
                        .collect(),
                ),
            };
            let group = (inc.kind == IncidentKind::Emergency).then(|| {
                rules.category_index(&inc.category).map_or_else(
                    || Arc::from(inc.category.as_str()),
                    |ci| rules.categories[ci as usize].group.clone(),
                )
            });
            if let Some(g) = &group {
                *self.open_groups.entry(g.clone()).or_insert(0) += 1;
            }
            let shared_key = self.coord.as_ref().map(|_| match &key {
                OpenKey::Emergency(_) => incident_key(
                    group.as_deref().unwrap_or(&inc.category),
                    inc.region.as_ref().map(|r| r.code.as_str()),
                ),
                OpenKey::Rumor(c) => self
                    .claim_groups
                    .get(c)
                    .map(|g| rumor_key(g))
                    .unwrap_or_default(),
                OpenKey::Emerging(_) => {
                    super::emerging::fleet_key(inc.top_terms.first().map_or("", String::as_str))
                }
            });
            let mut terms = TermCounts::default();
            for (i, t) in inc.top_terms.iter().enumerate() {
                terms.add(t, (TOP_TERMS - i.min(TOP_TERMS)) as u32);
            }
            // The same baseline floor the incident had before the restart.
            let prior = match rules.category_index(&inc.category) {
                Some(ci) if inc.kind == IncidentKind::Emergency => self.emergency_prior(
                    rules.categories[ci as usize].prior_per_hour,
                    inc.region.is_some(),
                ),
                _ => 0.0,
            };
            // Counts per category are not stored: the primary keeps every mention so far.
            let cats = match inc.kind {
                IncidentKind::Emergency => inc
                    .categories
                    .iter()
                    .chain(std::iter::once(&inc.category))
                    .map(|c| {
                        let n = if *c == inc.category { inc.mentions } else { 0 };
                        (Arc::from(c.as_str()), n)
                    })
                    .collect(),
                IncidentKind::Rumor | IncidentKind::Emerging => BTreeMap::new(),
            };
            let samples = std::mem::take(&mut inc.samples)
                .iter()
                .map(|m| Packed::new(m, &[] as &[&str]))
                .collect();
            self.open.insert(
                inc.id.clone(),
                Box::new(OpenIncident {
                    authors_base: inc.authors,
                    last_emit: inc.updated_at,
                    last_active: inc.updated_at,
                    inc,
                    key,
                    authors: SmallSet::default(),
                    boosted: SmallSet::default(),
                    verified: SmallSet::default(),
                    terms,
                    samples,
                    dirty: false,
                    prior,
                    slow: false,
                    shared_key,
                    extra_keys: Vec::new(),
                    group,
                    cats,
                    recent: SmallMap::default(),
                    fleet_authors: 0,
                }),
            );
        }
    }
}
