//! The lifecycle every open incident shares, emergency or rumor: opening with the pending
//! mentions, joining, due updates, the periodic sweep that closes quiet incidents, closing.

use super::terms::{ranked, TermCounts};
use super::{round2, Engine, OpenIncident, OpenKey, PendingMention, MAX_SAMPLES, TOP_TERMS};
use crate::incidents::incident::{Event, EventKind, Incident, IncidentKind, IncidentState};
use crate::{SmallMap, SmallSet};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

impl Engine {
    pub(super) fn open_incident(
        &mut self,
        inc: Incident,
        key: OpenKey,
        pending: VecDeque<PendingMention>,
        fleet_authors: u64,
        out: &mut Vec<Event>,
        severity: impl Fn(&OpenIncident) -> u8,
    ) {
        let id = inc.id.clone();
        let kind = inc.kind;
        let mut o = OpenIncident {
            inc,
            key,
            authors: SmallSet::default(),
            authors_base: 0,
            boosted: SmallSet::default(),
            verified: SmallSet::default(),
            terms: TermCounts::default(),
            samples: Vec::new(),
            last_emit: self.now,
            last_active: self.now,
            dirty: false,
            prior: 0.0,
            slow: false,
            shared_key: None,
            extra_keys: Vec::new(),
            group: None,
            cats: BTreeMap::new(),
            recent: SmallMap::default(),
            fleet_authors,
        };
        let ids: Vec<String> = pending.iter().map(|p| p.held.id().to_string()).collect();
        for p in pending {
            absorb(&mut o, p);
        }
        let s = severity(&o);
        o.inc.severity = o.inc.severity.max(s).clamp(1, 5);
        finish(&mut o);
        self.stats.opened[match kind {
            IncidentKind::Emergency => 0,
            IncidentKind::Rumor => 1,
            IncidentKind::Emerging => 2,
        }] += 1;
        crate::metrics::global().incident_opened(kind);
        out.push(Event::Incident {
            kind: EventKind::Opened,
            at: self.now,
            incident: Arc::new(o.public()),
        });
        let iid: Arc<str> = Arc::from(id.as_str());
        let totals = (o.inc.mentions, o.inc.authors);
        for mid in ids {
            if kind != IncidentKind::Emerging {
                self.emerging_overlap(&mid, &id);
            }
            out.push(Event::Assigned {
                at: self.now,
                mention_id: mid,
                incident_id: iid.clone(),
                totals,
            });
        }
        self.open.insert(id, Box::new(o));
    }

    pub(super) fn join(
        &mut self,
        id: &str,
        p: PendingMention,
        elevated: bool,
        rates: Option<(f64, f64, u64)>,
        out: &mut Vec<Event>,
    ) {
        let now = self.now;
        let interval = i64::from(self.settings.window.update_interval_secs) * 1000;
        let Some(o) = self.open.get_mut(id) else {
            return;
        };
        let mid = p.held.id().to_string();
        let rule_kind = o.inc.kind != IncidentKind::Emerging;
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
        let authors = (o.authors_base + o.authors.len() as u64).max(o.fleet_authors);
        out.push(Event::Assigned {
            at: now,
            mention_id: mid.clone(),
            incident_id: Arc::from(id),
            totals: (o.inc.mentions, authors),
        });
        if now - o.last_emit >= interval {
            emit_update(o, now, out);
        }
        if rule_kind {
            self.emerging_overlap(&mid, id);
        }
    }

    /// Periodic work at each bucket boundary: close quiet incidents, emit due updates, forget
    /// idle state.
    pub(super) fn sweep(&mut self, out: &mut Vec<Event>) {
        self.sweeps += 1;
        let now = self.now;
        let (bms, nb, decay) = (self.bucket_ms(), self.buckets(), self.decay());
        let (lbms, lnb, ldecay) = (
            self.long_bucket_ms(),
            self.long_buckets(),
            self.long_decay(),
        );
        let long_on = self.settings.window.long_window_secs > self.settings.window.window_secs;
        let recent_ms = (bms * nb as i64).max(if long_on { lbms * lnb as i64 } else { 0 });
        let interval = i64::from(self.settings.window.update_interval_secs) * 1000;
        let quiet_e = i64::from(self.settings.emergency.quiet_secs) * 1000;
        let quiet_n = i64::from(self.settings.emergency.quiet_secs_no_region) * 1000;
        let quiet_r = i64::from(self.settings.rumor.quiet_secs) * 1000;
        let minutes = f64::from(self.settings.window.window_secs) / 60.0;
        let mut to_close = Vec::new();
        let (corr, _) = self.fast_correction();
        let close_alpha = self.settings.emergency.close_alpha;
        for (id, o) in self.open.iter_mut() {
            match &o.key {
                OpenKey::Emergency(keys) => {
                    // Active while any of its windows is; the rate is the busiest window's.
                    let mut best: Option<u64> = None;
                    for k in keys {
                        let Some(st) = self.emergency.get_mut(k) else {
                            continue;
                        };
                        st.window.advance(now / bms, decay);
                        st.long.advance(now / lbms, ldecay);
                        let a = st.authors(now / bms);
                        // The slow window alone never keeps an incident open here; a mention
                        // joining while it is elevated does (see `emergency_hit`). A window at
                        // the key's ordinary level is not activity.
                        if st.above_ordinary(now / bms, o.prior, corr, nb, close_alpha) {
                            o.last_active = now;
                        }
                        best = Some(best.map_or(a, |b| b.max(a)));
                    }
                    if let Some(a) = best {
                        let rate = round2(a as f64 / minutes);
                        if rate != o.inc.rate_per_min {
                            o.inc.rate_per_min = rate;
                            o.dirty = true;
                        }
                    }
                    let quiet = if o.inc.region.is_some() {
                        quiet_e
                    } else {
                        quiet_e.min(quiet_n)
                    };
                    if now - o.last_active >= quiet {
                        to_close.push(id.clone());
                        continue;
                    }
                }
                OpenKey::Emerging(_) => {
                    let quiet = i64::from(self.settings.emerging.quiet_secs) * 1000;
                    if now - o.last_active >= quiet {
                        to_close.push(id.clone());
                        continue;
                    }
                }
                OpenKey::Rumor(c) => {
                    let last = self
                        .claim_groups
                        .get(c)
                        .map_or(o.last_active, |c| c.last_seen);
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
        // An hour no later mention ends still ends with event time.
        if self
            .hours
            .as_ref()
            .is_some_and(|h| now >= h.hour() + crate::incidents::hours::HOUR_MS)
        {
            self.end_hour(out);
        }
        let rules = self.rules.clone();
        self.emerging_sweep(rules.as_ref(), out);
        self.emerging_merges(out);
        // Forget idle state now and then (every 60 buckets of event time).
        if self.sweeps.is_multiple_of(60) {
            // A mention older than every window is in no pending list any more.
            for o in self.open.values_mut() {
                o.recent.retain(|_, ts| *ts >= now - recent_ms);
            }
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
            // A cascade the rumor model scores is kept while it may still grow (reposts can
            // come days apart); without a model a group lives for its counting window.
            let horizon = if self.rules.as_ref().is_some_and(|r| r.rumor_model.is_some()) {
                i64::from(self.settings.rumor.cascade_idle_secs) * 1000
            } else {
                i64::from(self.settings.rumor.window_secs) * 1000
            };
            let stale: Vec<u64> = self
                .claim_groups
                .iter()
                .filter(|(_, c)| c.incident.is_none() && now - c.last_seen > horizon)
                .map(|(id, _)| *id)
                .collect();
            for c in stale {
                self.drop_claim_group(c);
            }
        }
    }

    /// Close the open incident `id` at `now`: its windows (or claim group) are cleared so the
    /// same authors cannot reopen it. False if it is not open.
    pub(super) fn close_open(&mut self, id: &str, now: i64, out: &mut Vec<Event>) -> bool {
        let Some(mut o) = self.open.remove(id) else {
            return false;
        };
        let (decay, ldecay) = (self.decay(), self.long_decay());
        if let Some(n) = o.group.as_ref().and_then(|g| self.open_groups.get_mut(g)) {
            *n = n.saturating_sub(1);
        }
        if let Some(c) = self.coord.as_mut() {
            for k in o.shared_key.iter().chain(&o.extra_keys) {
                c.release(k, &o.inc.id);
            }
        }
        o.inc.state = IncidentState::Closed;
        o.inc.updated_at = now;
        finish(&mut o);
        match &o.key {
            OpenKey::Emergency(keys) => {
                for k in keys {
                    if let Some(st) = self.emergency.get_mut(k) {
                        st.incident = None;
                        // The authors behind the closed incident must not reopen it.
                        st.window.clear(decay);
                        st.long.clear(ldecay);
                        st.fleet = None;
                    }
                }
            }
            OpenKey::Rumor(c) => self.drop_claim_group(*c),
            OpenKey::Emerging(_) => self.emerging_closed(&o),
        }
        self.stats.closed += 1;
        crate::metrics::global().incident_closed(o.inc.kind);
        out.push(Event::Incident {
            kind: EventKind::Closed,
            at: now,
            incident: Arc::new(Incident {
                samples: o.unpacked_samples(),
                ..o.inc
            }),
        });
        true
    }
}

pub(super) fn absorb(o: &mut OpenIncident, p: PendingMention) {
    o.inc.mentions += 1;
    o.authors.insert(p.author);
    if p.boosted {
        o.boosted.insert(p.author);
    }
    if p.verified {
        o.verified.insert(p.author);
    }
    o.inc.official |= p.held.official();
    if o.inc.headline.is_none() && p.sample {
        let h = crate::incidents::headline(p.held.text());
        if !h.is_empty() {
            o.inc.headline = Some(h);
        }
    }
    if o.inc.sample_mention_ids.len() < MAX_SAMPLES && p.sample {
        o.inc.sample_mention_ids.push(p.held.id().to_string());
        o.samples.push(p.held.clone());
    }
    for t in p.held.words() {
        o.terms.add(t, 1);
    }
    if o.terms.len() > 2_000 {
        // Keep the most frequent half; the long tail never reaches the top anyway.
        o.terms.keep_top(1_000);
    }
}

pub(super) fn finish(o: &mut OpenIncident) {
    o.inc.authors = (o.authors_base + o.authors.len() as u64).max(o.fleet_authors);
    o.inc.verified_authors = o.inc.verified_authors.max(o.verified.len() as u64);
    o.inc.top_terms = most_frequent(o.terms.iter(), TOP_TERMS);
}

/// The `n` terms with the highest counts, most frequent first, then by term (deterministic).
pub(super) fn most_frequent<'a>(
    counts: impl Iterator<Item = (&'a str, u32)>,
    n: usize,
) -> Vec<String> {
    ranked(counts)
        .into_iter()
        .take(n)
        .map(|(t, _)| t.to_string())
        .collect()
}

pub(super) fn emit_update(o: &mut OpenIncident, now: i64, out: &mut Vec<Event>) {
    finish(o);
    o.inc.updated_at = now;
    o.last_emit = now;
    o.dirty = false;
    out.push(Event::Incident {
        kind: EventKind::Updated,
        at: now,
        incident: Arc::new(o.public()),
    });
}
