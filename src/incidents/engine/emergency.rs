//! Emergencies: spike windows per (category, region), opening an incident when they are
//! improbable under the baseline, and the fleet merge of window counts.
//!
//! One event, one incident. Windows stay per (category, most specific region): each category
//! keeps its own baseline, prior and `min_authors`. What is shared is the incident: a key
//! without an incident whose category is in the group (`rules/categories.toml`) of an open
//! incident, and whose region is the incident's region, its parent or one of its children
//! (both without a region counts as the same place), *joins* that incident
//! instead of counting towards one of its own: its pending mentions and every later hit are
//! assigned to it. So 暴雨 and 积水 posts about 海淀区 are one incident, and 北京 posts during a
//! 海淀区 burst (or 海淀 posts during a 北京市 one) join it rather than open a second. The
//! incident keeps the region it opened on (the first key to be improbable); when several
//! open incidents fit, the nearest region wins, then the one opened first, then the smaller
//! id. A mention counted under two keys of one incident is assigned once. The primary
//! category (`Incident::category`, what templates and plans use) is the one most of its
//! mentions hit; it changes only when another category has strictly more.

use super::lifecycle::most_frequent;
use super::severity::emergency_severity;
use super::{hash32, round2, Engine, OpenKey, PendingMention, MAX_PENDING};
use crate::detect::gazetteer::Gazetteer;
use crate::detect::gazetteer::RegionRef;
use crate::detect::rules::RuleSet;
use crate::detect::spike::{poisson_sf, Window};
use crate::incidents::coord::{emergency_key, incident_key, parse_emergency_key, FleetCount, Hit};
use crate::incidents::incident::{Event, Incident, IncidentKind, IncidentState};
use crate::SmallMap;
use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;

/// An emergency window's key: (category id, most specific region code or none).
pub(super) type EmergencyKey = (Arc<str>, Option<Arc<str>>);

/// What a counted post was about, for the reposts and replies that do not repeat it: up to
/// [`TOPIC_CATS`] categories and the region.
#[derive(Debug, Clone, Copy)]
pub(super) struct Topic {
    cats: [u16; TOPIC_CATS],
    n: u8,
    /// The region's index plus one (24 bytes a topic, not 32, over 400,000 held).
    region: Option<NonZeroU32>,
    /// Event time of the post that named the categories (echoes keep it).
    pub(super) ts: i64,
}

/// How many times `min_authors` a window carried by echoes needs (see `try_open_emergency`).
const ECHO_FACTOR: u64 = 3;

/// Terms of an incident a place-less key's mentions are compared with (`talks_about`).
const TALK_TERMS: usize = 20;
/// The key's most recent mentions compared.
const TALK_SAMPLE: usize = 40;

/// Categories a [`Topic`] keeps.
const TOPIC_CATS: usize = 4;

impl Topic {
    /// The topic of a post at `ts` with categories `cats` (rule order) and region `region`.
    pub(super) fn new(cats: &[u16], region: Option<u32>, ts: i64) -> Option<Topic> {
        if cats.is_empty() {
            return None;
        }
        let mut t = Topic {
            cats: [0; TOPIC_CATS],
            n: 0,
            region: pack_region(region),
            ts,
        };
        for (i, c) in cats.iter().take(TOPIC_CATS).enumerate() {
            t.cats[i] = *c;
            t.n += 1;
        }
        Some(t)
    }

    /// Its categories.
    pub(super) fn cats(&self) -> &[u16] {
        &self.cats[..usize::from(self.n)]
    }

    /// Its region.
    pub(super) fn region(&self) -> Option<u32> {
        self.region.map(|r| r.get() - 1)
    }

    /// The same topic at `region` when that is known (a reply naming its own place).
    pub(super) fn placed(self, region: Option<u32>) -> Topic {
        Topic {
            region: pack_region(region).or(self.region),
            ..self
        }
    }
}

/// A region index as a [`Topic`] keeps it (`u32::MAX`, more regions than any gazetteer
/// holds, is kept as none).
fn pack_region(region: Option<u32>) -> Option<NonZeroU32> {
    region.and_then(|r| NonZeroU32::new(r.wrapping_add(1)))
}

/// The windows of one emergency key and what waits on them.
pub(super) struct EmergencyState {
    /// The fast window (5 minutes of 10 s buckets by default).
    pub(super) window: Window,
    /// The slow window (an hour of 5-minute buckets) that catches events building up slowly.
    pub(super) long: Window,
    /// The open incident on this key, if any.
    pub(super) incident: Option<String>,
    /// Mentions held to assign when an incident opens.
    pub(super) pending: VecDeque<PendingMention>,
    /// Distinct authors over the fleet (every instance), with the bucket they were counted
    /// at; trusted for one bucket.
    pub(super) fleet: Option<(i64, u64)>,
    /// The region of the key (to open an incident on a fleet count alone).
    pub(super) region: Option<RegionRef>,
}

impl EmergencyState {
    /// Whether the fast window at bucket `now_b` is above what the key ordinarily sees (the
    /// start-up corrected baseline, floored by `prior`, over `nb` buckets): what keeps an
    /// incident active and lets a related key join one.
    pub(super) fn above_ordinary(
        &self,
        now_b: i64,
        prior: f64,
        corr: f64,
        nb: usize,
        close_alpha: f64,
    ) -> bool {
        let expected = self.window.baseline_corrected(prior, corr) * nb as f64;
        poisson_sf(self.authors(now_b), expected) < close_alpha
    }

    /// Distinct authors in the fast window: this instance's, or the fleet's when it is fresh
    /// and larger.
    pub(super) fn authors(&self, now_b: i64) -> u64 {
        let local = self.window.authors();
        match self.fleet {
            Some((at, n)) if at >= now_b - 1 => local.max(n),
            _ => local,
        }
    }
}

impl Engine {
    /// A baseline floor given per hour, per bucket of the fast window.
    pub(super) fn prior_bucket(&self, per_hour: f64) -> f64 {
        per_hour / 3600.0 * f64::from(self.settings.window.bucket_secs)
    }

    /// Baseline floor per bucket of a category (higher without a region: the key is wider).
    pub(super) fn emergency_prior(&self, per_hour: f64, has_region: bool) -> f64 {
        if has_region {
            self.prior_bucket(per_hour)
        } else {
            self.prior_bucket(per_hour.max(self.settings.emergency.prior_per_hour_no_region))
        }
    }

    /// Count a mention of category `ci` in its emergency window; join the open incident or
    /// hold the mention and try to open one.
    pub(super) fn emergency_hit(
        &mut self,
        rules: &RuleSet,
        ci: u16,
        region_idx: Option<u32>,
        p: PendingMention,
        out: &mut Vec<Event>,
    ) {
        let cat = &rules.categories[ci as usize];
        let region = region_idx.map(|r| rules.gazetteer.region_ref(r));
        let key: EmergencyKey = (
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
        let st = self
            .emergency
            .entry(key.clone())
            .or_insert_with(|| EmergencyState {
                window: Window::new(nb, now_b),
                long: Window::new(lnb, self.now / lbms),
                incident: None,
                pending: VecDeque::new(),
                fleet: None,
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
        if self
            .emergency
            .get(&key)
            .is_some_and(|s| s.incident.is_none())
        {
            if let Some(id) = self.related_open(rules, &cat.group, region_idx, &key, prior) {
                self.attach(rules, ci, &key, &id, out);
            }
        }
        let ((corr, _), (lcorr, _)) = (self.fast_correction(), self.long_correction());
        let Some(st) = self.emergency.get_mut(&key) else {
            return;
        };
        if let Some(id) = st.incident.clone() {
            let authors = st.authors(now_b);
            let expected = st.window.baseline_corrected(prior, corr) * nb as f64;
            let long_authors = st.long.authors();
            let long_expected = st.long.baseline_corrected(lprior, lcorr) * lnb as f64;
            let close_alpha = self.settings.emergency.close_alpha;
            let min = u64::from(cat.min_authors);
            // Active only while above what the key ordinarily sees: background that keeps
            // mentioning the category's words does not keep an incident open for hours.
            // The slow window keeps an incident active only when it is what opened it: after
            // a fast burst it stays elevated for an hour and would keep background attached.
            let slow_opened = self.open.get(&id).is_some_and(|o| o.slow);
            let elevated = st.above_ordinary(now_b, prior, corr, nb, close_alpha)
                || (long_on
                    && slow_opened
                    && (long_authors >= min
                        && poisson_sf(long_authors, long_expected) < close_alpha));
            let rate = authors as f64 / (f64::from(self.settings.window.window_secs) / 60.0);
            let base = expected / (f64::from(self.settings.window.window_secs) / 60.0);
            self.join_emergency(
                rules,
                &id,
                &cat.id,
                p,
                elevated,
                Some((rate, base, authors)),
                out,
            );
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

    /// Open an incident on `key` if its windows (or the fleet's count) are improbable under
    /// the baseline.
    pub(super) fn try_open_emergency(
        &mut self,
        rules: &RuleSet,
        ci: u16,
        key: &EmergencyKey,
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
        let region_idx = st
            .region
            .as_ref()
            .and_then(|r| rules.gazetteer.by_code(&r.code));
        if let Some(id) = self.related_open(rules, &cat.group, region_idx, key, prior) {
            self.attach(rules, ci, key, &id, out);
            return;
        }
        let ((corr, warm), (lcorr, _)) = (self.fast_correction(), self.long_correction());
        let (fcorr, flcorr) = self.freeze_corrections();
        let Some(st) = self.emergency.get(key) else {
            return;
        };
        // A key without a place pools the whole country's mentions of its words: until a
        // window of history has shown what that pool ordinarily holds (ten minutes after
        // start), its prior is only a guess, and it does not open.
        if st.region.is_none() && !warm {
            return;
        }
        let authors = st.authors(self.now / bms);
        let expected = st.window.baseline_corrected(prior, corr) * nb as f64;
        let long_authors = st.long.authors();
        let long_expected = st.long.baseline_corrected(lprior, lcorr) * lnb as f64;
        let alpha = self.settings.emergency.alpha;
        let min = u64::from(cat.min_authors);
        // Authors counted by other instances of a fleet: whether they echo or report is not
        // known here, so they count as reports.
        let remote = authors.saturating_sub(st.window.authors());
        let fast_ms = i64::from(self.settings.window.window_secs) * 1000;
        // A category may open on fewer own reports than the default (a rare, serious kind),
        // never on fewer echoes.
        let echo_min = min.max(u64::from(self.settings.emergency.min_authors));
        // One post echoed by its reposts is one report: a window carried by echoes (reposts
        // and replies that name no category themselves) needs three times the authors, unless
        // `min` of them wrote their own report.
        let fast = authors >= min
            && poisson_sf(authors, expected) < alpha
            && (authors >= ECHO_FACTOR * echo_min
                || own_authors_at_least(st, self.now - fast_ms, min.saturating_sub(remote)));
        // The slow window needs twice the authors: it sees twelve times the time. It counts
        // only authors of their own reports: a post reposted through the afternoon is not a
        // slowly building event. A key without a place has no slow window: its pool is a
        // whole country's mentions, where an hour's drift is the news cycle (on real
        // background every slow opening without a place was a false alarm), not an event.
        let slow = long_on
            && st.region.is_some()
            && long_authors >= 2 * min
            && poisson_sf(long_authors, long_expected) < alpha
            && own_authors_at_least(st, i64::MIN, 2 * min);
        if !fast && !slow {
            return;
        }
        // Open, taking along the mentions waiting under related keys (same group, same place,
        // its parent or a child): the first event already is the one incident.
        let mut keys = vec![key.clone()];
        keys.extend(self.related_waiting(rules, &cat.group, region_idx, key));
        let mut pending: VecDeque<PendingMention> = VecDeque::new();
        let since = self.now
            - i64::from(if fast {
                self.settings.window.window_secs
            } else {
                self.settings.window.long_window_secs
            }) * 1000;
        let mut cats: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        let mut recent: SmallMap<u64, i64> = SmallMap::default();
        let mut region = None;
        for (n, k) in keys.iter().enumerate() {
            let Some(s) = self.emergency.get_mut(k) else {
                continue;
            };
            s.window.freeze(fcorr);
            s.long.freeze(flcorr);
            if n == 0 {
                region = s.region.clone();
            }
            for p in std::mem::take(&mut s.pending) {
                // The burst is what the window that opened it saw: mentions from before it
                // (kept for the slow window) are ordinary traffic unless the slow window opened.
                if p.ts < since {
                    continue;
                }
                *cats.entry(k.0.clone()).or_insert(0) += 1;
                if recent
                    .insert(crate::stable_hash(p.held.id().as_bytes()), p.ts)
                    .is_none()
                {
                    pending.push_back(p);
                }
            }
        }
        let (primary, categories) = categories_of(rules, &cat.id, &cats);
        // Opened on the fleet's count: the incident says so from its first event.
        let fleet_authors = if self.coord.is_some() { authors } else { 0 };
        let mut id = format!(
            "em-{}-{:08x}",
            self.now,
            hash32(&format!("{}|{:?}", key.0, key.1))
        );
        let shared_key = self
            .coord
            .as_ref()
            .map(|_| incident_key(&cat.group, key.1.as_deref()));
        if let (Some(c), Some(k)) = (self.coord.as_mut(), &shared_key) {
            id = c.claim_open(k, &id);
        }
        let minutes = f64::from(self.settings.window.window_secs) / 60.0;
        let (rate, base) = (authors as f64 / minutes, expected / minutes);
        let inc = Incident {
            id: id.clone(),
            kind: IncidentKind::Emergency,
            category: primary,
            categories,
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
            official: false,
            verified_authors: 0,
            merged_into: None,
            headline: None,
            why: None,
        };
        let (sev, min_a) = (cat.severity, cat.min_authors);
        let group = cat.group.clone();
        let okey = OpenKey::Emergency(keys.clone());
        self.open_incident(inc, okey, pending, fleet_authors, out, |o| {
            emergency_severity(sev, min_a, o, rate, base, authors)
        });
        if let Some(o) = self.open.get_mut(&id) {
            o.prior = prior;
            o.slow = !fast;
            o.shared_key = shared_key;
            o.group = Some(group.clone());
            *self.open_groups.entry(group.clone()).or_insert(0) += 1;
            o.cats = cats;
            o.recent = recent;
        }
        for k in &keys {
            if let Some(s) = self.emergency.get_mut(k) {
                s.incident = Some(id.clone());
            }
            if k.1 != key.1 {
                self.claim_extra(&group, k.1.as_deref(), &id);
            }
        }
    }

    /// Whether `key`'s fast window is above what it ordinarily sees (the level that keeps an
    /// incident active).
    fn key_elevated(&self, key: &EmergencyKey, prior: f64) -> bool {
        let (corr, _) = self.fast_correction();
        self.emergency.get(key).is_some_and(|st| {
            st.above_ordinary(
                self.now / self.bucket_ms(),
                prior,
                corr,
                self.buckets(),
                self.settings.emergency.close_alpha,
            )
        })
    }

    /// Whether most of the mentions `key` holds from the last window share a term with the
    /// most frequent terms of the incident `o`: without a place, a tornado and a flood
    /// bursting at the same time are one event only if they are talked about in the same
    /// words (Queensland's floods and rain, not Oklahoma's tornado).
    fn talks_about(&self, key: &EmergencyKey, o: &super::OpenIncident) -> bool {
        let top = most_frequent(o.terms.iter(), TALK_TERMS);
        let top: Vec<&str> = top.iter().map(String::as_str).collect();
        self.emergency
            .get(key)
            .is_some_and(|st| shares_terms(&st.pending, &top, self.fast_since()))
    }

    /// Event time the fast window starts at.
    fn fast_since(&self) -> i64 {
        self.now - i64::from(self.settings.window.window_secs) * 1000
    }

    /// Keys without an incident that have mentions waiting and are related (same group; same
    /// region, its parent or a child) to an incident
    /// about to open on `own` (group `group`, region `region`), in key order.
    fn related_waiting(
        &self,
        rules: &RuleSet,
        group: &str,
        region: Option<u32>,
        own: &EmergencyKey,
    ) -> Vec<EmergencyKey> {
        let own_top = self
            .emergency
            .get(own)
            .map(|st| top_terms(&st.pending, self.fast_since()))
            .unwrap_or_default();
        let own_top: Vec<&str> = own_top.iter().map(String::as_str).collect();
        let mut v: Vec<EmergencyKey> = self
            .emergency
            .iter()
            .filter(|(k, st)| *k != own && st.incident.is_none() && !st.pending.is_empty())
            .filter(|(k, _)| {
                rules
                    .category_index(&k.0)
                    .is_some_and(|ci| &*rules.categories[ci as usize].group == group)
            })
            .filter(|(_, st)| {
                let r = match &st.region {
                    Some(r) => match rules.gazetteer.by_code(&r.code) {
                        Some(i) => Some(i),
                        None => return false,
                    },
                    None => None,
                };
                lineage_distance(&rules.gazetteer, region, r).is_some()
            })
            // Without a place, only a key bursting now, in the same words, is this event.
            .filter(|(k, st)| {
                region.is_some()
                    || st.region.is_some()
                    || (rules.category_index(&k.0).is_some_and(|ci| {
                        let p = rules.categories[ci as usize].prior_per_hour;
                        self.key_elevated(k, self.emergency_prior(p, false))
                    }) && shares_terms(&st.pending, &own_top, self.fast_since()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        // The map's order is not deterministic; the output must be.
        v.sort();
        v
    }

    /// In a fleet, claim the place `region` of group `group` for the incident `id` too (a key
    /// of another region joined it), so that another instance opening there adopts its id.
    fn claim_extra(&mut self, group: &str, region: Option<&str>, id: &str) {
        let (Some(c), Some(o)) = (self.coord.as_mut(), self.open.get_mut(id)) else {
            return;
        };
        let k = incident_key(group, region);
        if o.shared_key.as_ref() == Some(&k) || o.extra_keys.contains(&k) {
            return;
        }
        if c.claim_open(&k, id) == id {
            o.extra_keys.push(k);
        } else {
            // Another instance has its own incident there: leave its claim alone.
            c.release(&k, id);
        }
    }

    /// The open emergency incident a key of group `group` in region `region` joins, if any:
    /// same group, and the region is the incident's, its parent or a child of it.
    /// Nearest region first, then opened first, then id (deterministic).
    pub(super) fn related_open(
        &self,
        rules: &RuleSet,
        group: &str,
        region: Option<u32>,
        key: &EmergencyKey,
        prior: f64,
    ) -> Option<String> {
        if self.open_groups.get(group).is_none_or(|n| *n == 0) {
            return None;
        }
        // Without a place, only time ties related categories to an incident: a key joins
        // one opened within the last window, and only while it is bursting itself (the
        // ordinary background of a category's words is not part of another's event).
        let young = self.now - i64::from(self.settings.window.window_secs) * 1000;
        let placeless_ok = region.is_some() || self.key_elevated(key, prior);
        self.open
            .iter()
            .filter(|(_, o)| o.group.as_deref() == Some(group))
            .filter(|(_, o)| {
                region.is_some()
                    || o.inc.region.is_some()
                    || (o.inc.opened_at >= young && placeless_ok && self.talks_about(key, o))
            })
            .filter_map(|(id, o)| {
                let r = match &o.inc.region {
                    Some(r) => Some(rules.gazetteer.by_code(&r.code)?),
                    None => None,
                };
                lineage_distance(&rules.gazetteer, region, r).map(|d| (d, o.inc.opened_at, id))
            })
            .min()
            .map(|(_, _, id)| id.clone())
    }

    /// Make the open incident `id` the incident of `key` (category `ci`): the key's pending
    /// mentions join it, its windows freeze as on opening, and (in a fleet) the incident also
    /// claims the key's region so that another instance opening there adopts its id.
    pub(super) fn attach(
        &mut self,
        rules: &RuleSet,
        ci: u16,
        key: &EmergencyKey,
        id: &str,
        out: &mut Vec<Event>,
    ) {
        let cat = &rules.categories[ci as usize];
        let (fcorr, flcorr) = self.freeze_corrections();
        let Some(st) = self.emergency.get_mut(key) else {
            return;
        };
        let Some(o) = self.open.get_mut(id) else {
            return;
        };
        st.incident = Some(id.to_string());
        st.window.freeze(fcorr);
        st.long.freeze(flcorr);
        let since = self.now - i64::from(self.settings.window.window_secs) * 1000;
        let pending: Vec<PendingMention> = std::mem::take(&mut st.pending)
            .into_iter()
            .filter(|p| p.ts >= since)
            .collect();
        if let OpenKey::Emergency(keys) = &mut o.key {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let group = cat.group.clone();
        self.claim_extra(&group, key.1.as_deref(), id);
        let cat_id = cat.id.clone();
        for p in pending {
            self.join_emergency(rules, id, &cat_id, p, false, None, out);
        }
    }

    /// A mention of category `cat` joins the emergency incident `id`: counted for the category
    /// (and the primary category updated), assigned unless another key of the incident
    /// assigned it already.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join_emergency(
        &mut self,
        rules: &RuleSet,
        id: &str,
        cat: &Arc<str>,
        p: PendingMention,
        elevated: bool,
        rates: Option<(f64, f64, u64)>,
        out: &mut Vec<Event>,
    ) {
        let now = self.now;
        let Some(o) = self.open.get_mut(id) else {
            return;
        };
        let n = o.cats.entry(cat.clone()).or_insert(0);
        *n += 1;
        // The primary or the list can only move when a category is new or passes the primary.
        if **cat != *o.inc.category
            && (*n == 1 || *n > o.cats.get(o.inc.category.as_str()).copied().unwrap_or(0))
        {
            set_categories(rules, o);
        }
        let h = crate::stable_hash(p.held.id().as_bytes());
        if o.recent.insert(h, p.ts).is_some() {
            if elevated {
                o.last_active = now;
            }
            return;
        }
        self.join(id, p, elevated, rates, out);
    }

    /// Distinct authors per emergency key over the whole fleet (from the coordinator's sync
    /// task): a burst split across instances opens here too, and an incident stays active
    /// while the fleet still sees it.
    pub fn merge_fleet(
        &mut self,
        rules: &Arc<RuleSet>,
        counts: &[FleetCount],
        out: &mut Vec<Event>,
    ) {
        self.sync_settings(rules);
        if !self.started {
            return;
        }
        for c in counts {
            if let Some(term) = c.key.strip_prefix(super::emerging::FLEET_PREFIX) {
                self.emerging_fleet(term, c.head, c.authors);
            }
        }
        let (bms, decay, nb) = (self.bucket_ms(), self.decay(), self.buckets());
        let (corr, _) = self.fast_correction();
        let close_alpha = self.settings.emergency.close_alpha;
        let now_b = self.now / bms;
        for c in counts {
            let Some((cat, region)) = parse_emergency_key(&c.key) else {
                continue;
            };
            let Some(ci) = rules.category_index(cat) else {
                continue;
            };
            let key: EmergencyKey = (Arc::from(cat), region.map(Arc::from));
            let Some(st) = self.emergency.get_mut(&key) else {
                continue;
            };
            st.window.advance(now_b, decay);
            st.fleet = Some((c.head.min(now_b), c.authors));
            match st.incident.clone() {
                Some(id) => {
                    if let Some(o) = self.open.get_mut(&id) {
                        if st.above_ordinary(now_b, o.prior, corr, nb, close_alpha) {
                            o.last_active = self.now;
                        }
                        if c.authors > o.fleet_authors {
                            o.fleet_authors = c.authors;
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
}

/// The primary category and the list of categories of an incident whose mentions hit
/// `cats`: the primary is `current` unless another category has strictly more mentions (then
/// the one with the most, the first in rule order among equals); the list is the primary,
/// then the others in rule order.
fn categories_of(
    rules: &RuleSet,
    current: &str,
    cats: &BTreeMap<Arc<str>, u64>,
) -> (String, Vec<String>) {
    let order = |c: &str| rules.category_index(c).unwrap_or(u16::MAX);
    let have = cats.get(current).copied().unwrap_or(0);
    let primary = cats
        .iter()
        .filter(|(_, n)| **n > have)
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| order(b.0).cmp(&order(a.0))))
        .map_or(current, |(c, _)| &**c);
    let mut others: Vec<&str> = cats
        .keys()
        .map(|c| &**c)
        .filter(|c| *c != primary)
        .collect();
    others.sort_by_key(|c| order(c));
    let list = std::iter::once(primary)
        .chain(others)
        .map(str::to_string)
        .collect();
    (primary.to_string(), list)
}

/// Update the primary category and the list of an open incident after its counts changed
/// (see [`categories_of`]); marks it changed when either moved.
pub(super) fn set_categories(rules: &RuleSet, o: &mut super::OpenIncident) {
    let (primary, list) = categories_of(rules, &o.inc.category, &o.cats);
    if primary != o.inc.category || list != o.inc.categories {
        o.inc.category = primary;
        o.inc.categories = list;
        o.dirty = true;
    }
}

/// How far up or down the regions a key may be from an incident's region and still join it:
/// the region itself, its parent or a child (海淀区 and 北京市, 西湖区 and 杭州市, 杭州市 and
/// 浙江省), not further: a province-wide incident must not swallow every district's.
const MAX_LINEAGE_STEPS: u32 = 1;

/// Parent steps from one region to the other when one is the other or an ancestor of it, at
/// most [`MAX_LINEAGE_STEPS`]; two mentions without a region are at the same (unknown) place.
fn lineage_distance(g: &Gazetteer, a: Option<u32>, b: Option<u32>) -> Option<u32> {
    let up = |from: u32, to: u32| {
        let (mut i, mut d) = (from, 0);
        loop {
            if i == to {
                return Some(d);
            }
            if d == MAX_LINEAGE_STEPS {
                return None;
            }
            i = g.get(i).parent?;
            d += 1;
        }
    };
    match (a, b) {
        (None, None) => Some(0),
        (Some(a), Some(b)) => up(a, b).or_else(|| up(b, a)),
        _ => None,
    }
}

/// Whether at least `need` distinct authors of the mentions held on `st` since `since` name
/// the category themselves (not echoes of a parent's). Stops at `need`: the pending list can
/// hold thousands of mentions.
fn own_authors_at_least(st: &EmergencyState, since: i64, need: u64) -> bool {
    let mut seen: Vec<u64> = Vec::new();
    for p in st.pending.iter().rev().filter(|p| p.ts >= since && !p.echo) {
        if seen.len() as u64 >= need {
            break;
        }
        if !seen.contains(&p.author) {
            seen.push(p.author);
        }
    }
    seen.len() as u64 >= need
}

/// The [`TALK_TERMS`] most frequent terms of the mentions in `pending` since `since`.
fn top_terms(pending: &VecDeque<PendingMention>, since: i64) -> Vec<String> {
    let mut n: BTreeMap<&str, u32> = BTreeMap::new();
    for p in pending.iter().rev().take_while(|p| p.ts >= since) {
        for t in p.held.words() {
            *n.entry(t).or_insert(0) += 1;
        }
    }
    most_frequent(n.into_iter(), TALK_TERMS)
}

/// Whether at least half of the (at most [`TALK_SAMPLE`]) latest mentions in `pending` since
/// `since` have a term in `top`.
fn shares_terms(pending: &VecDeque<PendingMention>, top: &[&str], since: i64) -> bool {
    let (mut n, mut shared) = (0usize, 0usize);
    for p in pending
        .iter()
        .rev()
        .take_while(|p| p.ts >= since)
        .take(TALK_SAMPLE)
    {
        n += 1;
        if p.held.words().any(|t| top.contains(&t)) {
            shared += 1;
        }
    }
    n > 0 && shared * 2 >= n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_keeps_its_region_and_categories_in_24_bytes() {
        assert!(std::mem::size_of::<Topic>() <= 24);
        for r in [None, Some(0), Some(1), Some(3_340), Some(u32::MAX - 1)] {
            let t = Topic::new(&[3, 1], r, 5).expect("categories given");
            assert_eq!((t.region(), t.cats(), t.ts), (r, &[3u16, 1][..], 5));
            // A reply naming its own place moves it; one naming none keeps it.
            assert_eq!(t.placed(Some(7)).region(), Some(7));
            assert_eq!(t.placed(None).region(), r);
        }
        assert!(Topic::new(&[], Some(1), 5).is_none());
        let many = Topic::new(&[1, 2, 3, 4, 5, 6], None, 0).expect("categories given");
        assert_eq!(many.cats(), &[1, 2, 3, 4]);
    }
}
