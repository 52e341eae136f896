//! Planning: from an incident to its lead, co-publishers and amplifiers.

use super::*;
use crate::detect::gazetteer::Gazetteer;
use crate::detect::rules::RuleSet;
use crate::incidents::{Incident, IncidentKind};
use ahash::{AHashMap, AHashSet};

/// Region codes from `i` up to its province (guarded against a malformed parent loop).
pub(super) fn chain_codes(g: &Gazetteer, i: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Some(i);
    while let Some(c) = cur {
        if out.len() >= 8 {
            break;
        }
        let r = g.get(c);
        out.push(r.code.clone());
        cur = r.parent;
    }
    out
}

impl Matrix {
    fn at_region(&self, code: &str) -> &[usize] {
        self.by_region.get(code).map(Vec::as_slice).unwrap_or(&[])
    }

    fn with_function<'a>(&'a self, code: &str, f: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.at_region(code)
            .iter()
            .copied()
            .filter(move |i| self.accounts[*i].function == f)
    }

    /// The fan-out plan for an incident (see the module docs and `rules/README.md`).
    ///
    /// * Region R: the incident's; if it has none, or the matrix has no publicity account up
    ///   its chain (another province), the matrix's `default_region`.
    /// * Lead: walking up from R, the first region with an account of the category link's
    ///   `lead_function` (emergencies only) or a publicity account; that account (lowest id).
    /// * Co-publishers: for each function of the category's link, the accounts with that
    ///   function at R, or at the nearest ancestor that has one; plus the other accounts with
    ///   the lead's function at the lead's region (e.g. an English mirror).
    /// * Amplifiers: the publicity accounts of the lead's region (when the lead is not one), of
    ///   the nearest ancestor region with any, and of the nearest descendant regions with any;
    ///   plus every account that `amplifies` the lead, transitively.
    pub fn plan(&self, incident: &Incident, rules: &RuleSet) -> Plan {
        let g = &rules.gazetteer;
        let link = self.link(&incident.category);
        let lead_fn = match incident.kind {
            IncidentKind::Emergency => link.and_then(|l| l.lead_function.as_deref()),
            IncidentKind::Rumor | IncidentKind::Emerging => None,
        };
        let own = incident.region.as_ref().and_then(|r| {
            let chain = chain_codes(g, g.by_code(&r.code)?);
            let (lead, pos) = find_lead(&self.accounts, &self.by_region, &chain, lead_fn)?;
            Some((r.clone(), chain, lead, pos))
        });
        let (region, chain, lead, lead_pos) = match own {
            Some(x) => x,
            None => {
                let (lead, pos) = find_lead(
                    &self.accounts,
                    &self.by_region,
                    &self.default_chain,
                    lead_fn,
                )
                .unwrap_or((self.default_lead, 0));
                (
                    self.default_region.clone(),
                    self.default_chain.clone(),
                    lead,
                    pos,
                )
            }
        };
        let lead_acc = &self.accounts[lead];
        let lead_region = chain[lead_pos].as_str();

        let mut co: Vec<usize> = Vec::new();
        if let Some(l) = link {
            for f in &l.functions {
                for code in &chain {
                    let found: Vec<usize> = self.with_function(code, f).collect();
                    if !found.is_empty() {
                        co.extend(found);
                        break;
                    }
                }
            }
        }
        co.extend(self.with_function(lead_region, &lead_acc.function));
        let co = self.ordered(co, &[lead]);

        let mut amp: Vec<usize> = Vec::new();
        if lead_acc.function != PUBLICITY {
            amp.extend(self.with_function(lead_region, PUBLICITY));
        }
        for code in &chain[lead_pos + 1..] {
            let found: Vec<usize> = self.with_function(code, PUBLICITY).collect();
            if !found.is_empty() {
                amp.extend(found);
                break;
            }
        }
        for (code, parent) in &self.publicity_parent {
            if parent.as_deref() == Some(lead_region) {
                amp.extend(self.with_function(code, PUBLICITY));
            }
        }
        let mut stack = vec![lead];
        let mut seen: AHashSet<usize> = AHashSet::new();
        while let Some(i) = stack.pop() {
            for &j in &self.amplified_by[i] {
                if seen.insert(j) {
                    amp.push(j);
                    stack.push(j);
                }
            }
        }
        let mut exclude = co.clone();
        exclude.push(lead);
        let amp = self.ordered(amp, &exclude);

        Plan {
            region,
            lead: lead_acc.id.clone(),
            co_publishers: co.iter().map(|i| self.accounts[*i].id.clone()).collect(),
            amplifiers: amp.iter().map(|i| self.accounts[*i].id.clone()).collect(),
        }
    }

    /// Deduplicated, without `exclude`, by region level then id.
    fn ordered(&self, mut v: Vec<usize>, exclude: &[usize]) -> Vec<usize> {
        v.retain(|i| !exclude.contains(i));
        v.sort_by(|a, b| {
            let (a, b) = (&self.accounts[*a], &self.accounts[*b]);
            (a.level, &a.id).cmp(&(b.level, &b.id))
        });
        v.dedup();
        v
    }
}

/// Walking up `chain`, the first region with a `lead_fn` account or else a publicity account:
/// (account, position in the chain).
pub(super) fn find_lead(
    accounts: &[Account],
    by_region: &AHashMap<String, Vec<usize>>,
    chain: &[String],
    lead_fn: Option<&str>,
) -> Option<(usize, usize)> {
    for (pos, code) in chain.iter().enumerate() {
        let Some(v) = by_region.get(code) else {
            continue;
        };
        let pick = |f: &str| v.iter().copied().find(|i| accounts[*i].function == f);
        if let Some(i) = lead_fn.and_then(pick).or_else(|| pick(PUBLICITY)) {
            return Some((i, pos));
        }
    }
    None
}
