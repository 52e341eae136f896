//! Emergencies: spike windows per (category, region), opening an incident when they are
//! improbable under the baseline, and the fleet merge of window counts.

use super::severity::emergency_severity;
use super::{hash32, round2, Engine, OpenKey, PendingMention, MAX_PENDING};
use crate::detect::analyze::Analysis;
use crate::detect::gazetteer::RegionRef;
use crate::detect::rules::RuleSet;
use crate::detect::spike::{poisson_sf, Window};
use crate::incidents::coord::{emergency_key, parse_emergency_key, FleetCount, Hit};
use crate::incidents::incident::{Event, Incident, IncidentKind, IncidentState};
use std::collections::VecDeque;
use std::sync::Arc;

/// An emergency window's key: (category id, most specific region code or none).
pub(super) type EmergencyKey = (Arc<str>, Option<Arc<str>>);

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
        a: &Analysis,
        p: PendingMention,
        out: &mut Vec<Event>,
    ) {
        let cat = &rules.categories[ci as usize];
        let region = a.regions.first().map(|r| rules.gazetteer.region_ref(*r));
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
        self.open_incident(inc, okey, pending, fleet_authors, out, |o| {
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
        let (bms, decay) = (self.bucket_ms(), self.decay());
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
            let authors = st.authors(now_b);
            match st.incident.clone() {
                Some(id) => {
                    if let Some(o) = self.open.get_mut(&id) {
                        if authors >= o.close_authors {
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
