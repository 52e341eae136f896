//! Public-opinion reports (舆情报告): what people posted over a period and what the office did
//! about it, from the store, so the figures survive restarts and add up across a fleet.
//!
//! - `mod.rs` (here): the figures ([`Opinion`], [`compute`]) from the stored hours
//!   ([`crate::incidents::HourStats`]), the incidents opened and the notices published.
//! - `report.rs`: the figures as JSON, CSV and one self-contained HTML page (inline SVG, A4).
//! - `stage.rs`: stores each hour the engine ends, serves `GET /api/reports/opinion`, writes the
//!   daily report into `{data_dir}/reports/` and posts it to a webhook when configured.
//!
//! Volume, regions and the most reposted posts are counted over every mention the engine
//! applied; terms are Chinese bigrams and words of other scripts (bigrams of one word with
//! nearly the same count are read as the word: 陨石 + 石雨 → 陨石雨). A region filter narrows
//! volume, regions and incidents (terms and posts are counted over all regions).

pub mod report;
pub mod stage;

use crate::detect::gazetteer::{code_covers, Gazetteer};
use crate::incidents::{HourPost, HourStats, Incident, IncidentKind, IncidentState};
use crate::respond::notices::{Notice, NoticeState};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// Terms listed.
pub const TERMS_LISTED: usize = 30;
/// Most reposted posts listed.
pub const POSTS_LISTED: usize = 10;
/// Regions listed.
pub const REGIONS_LISTED: usize = 20;
/// Rumors listed (most authors first; all are counted).
pub const RUMORS_LISTED: usize = 30;
/// Beijing time, the offices' own (days of the report run from 00:00 UTC+8).
pub const CST_OFFSET_SECS: i32 = 8 * 3600;

/// What a report is asked for.
#[derive(Debug, Clone)]
pub struct Ask {
    /// Period start (ms, inclusive).
    pub from: i64,
    /// Period end (ms, exclusive).
    pub to: i64,
    /// Only this region (a 6-digit code: a province or city covers its parts).
    pub region: Option<String>,
    /// Seconds east of UTC the days are counted in.
    pub offset_secs: i32,
    /// When it was made (ms).
    pub generated_at: i64,
}

/// A term and how it moved against the period before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TermRow {
    /// The term (bigrams of one word joined).
    pub term: String,
    /// Mentions holding it in the period.
    pub count: u64,
    /// In the period before (of the same length).
    pub previous: u64,
    /// `count / previous − 1`; `None` when it was not among the period before's terms.
    pub change: Option<f64>,
}

/// Incidents opened in the period, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IncidentCounts {
    /// All of them.
    pub total: u64,
    /// By kind (`emergency`, `rumor`, `emerging`).
    pub by_kind: BTreeMap<String, u64>,
    /// By category id.
    pub by_category: BTreeMap<String, u64>,
    /// By region name (none: `-`).
    pub by_region: BTreeMap<String, u64>,
    /// By severity 1..=5 (index 0 is severity 1).
    pub by_severity: [u64; 5],
}

/// A rumor of the period: how far it spread and how it was answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RumorRow {
    /// Incident id.
    pub id: String,
    /// The claim as people wrote it.
    pub headline: String,
    /// Category id.
    pub category: String,
    /// Opened (ms).
    pub opened_at: i64,
    /// Mentions and distinct authors.
    pub mentions: u64,
    /// Distinct authors.
    pub authors: u64,
    /// Open or closed.
    pub open: bool,
    /// `published` (a rebuttal notice went out), `drafted` (waiting for approval), `known`
    /// (a known debunked claim: answered with its rebuttal) or `none`.
    pub rebuttal: &'static str,
    /// Seconds from its opening to its first published rebuttal notice.
    pub time_to_rebuttal_secs: Option<i64>,
}

/// A region ranked by activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    /// 6-digit code.
    pub code: String,
    /// Name.
    pub name: String,
    /// English name.
    pub name_en: String,
    /// Mentions naming it (or a place in it).
    pub mentions: u64,
    /// Incidents opened there.
    pub incidents: u64,
}

/// A notice published in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoticeRow {
    /// Notice id.
    pub id: String,
    /// Its incident.
    pub incident_id: String,
    /// `emergency` notice or `rumor` rebuttal.
    pub kind: String,
    /// Category id.
    pub category: String,
    /// Region name.
    pub region: String,
    /// First, update or all-clear.
    pub purpose: String,
    /// Published (ms): when the last account's post was done.
    pub published_at: i64,
    /// The lead account's text (Chinese first).
    pub text: String,
}

/// The figures of one report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opinion {
    /// Period start (ms).
    pub from: i64,
    /// Period end (ms).
    pub to: i64,
    /// The region asked for, if any (`code`, name).
    pub region: Option<(String, String)>,
    /// Made at (ms).
    pub generated_at: i64,
    /// Hours of the period with figures stored (the engine was running).
    pub hours_covered: u64,
    /// Hours in the period.
    pub hours_total: u64,
    /// Mentions (with a region: those naming it).
    pub mentions: u64,
    /// Of which reposts and replies (all regions).
    pub reposts: u64,
    /// Replies.
    pub replies: u64,
    /// Mentions of the period before.
    pub previous_mentions: u64,
    /// Hours of the period before with figures stored (none: no comparison).
    pub previous_hours_covered: u64,
    /// Mentions per hour (start ms, count), every hour of the period.
    pub hourly: Vec<(i64, u64)>,
    /// Mentions per local day (`2026-12-05`, count).
    pub daily: Vec<(String, u64)>,
    /// Most frequent terms and their change.
    pub terms: Vec<TermRow>,
    /// Incidents opened.
    pub incidents: IncidentCounts,
    /// Rumors opened (`incidents.by_kind["rumor"]`) answered: a rebuttal published, or a
    /// known claim answered with its rebuttal.
    pub rumors_answered: u64,
    /// Rumors opened, most authors first, at most [`RUMORS_LISTED`].
    pub rumors: Vec<RumorRow>,
    /// Regions by mentions.
    pub regions: Vec<RegionRow>,
    /// Most reposted posts.
    pub posts: Vec<HourPost>,
    /// Notices published.
    pub notices: Vec<NoticeRow>,
}

/// The report over `ask` from `store` and the respond stage's `notices`.
pub fn compute(
    store: &dyn Store,
    notices: &[Notice],
    gaz: &Gazetteer,
    ask: &Ask,
) -> Result<Opinion, StoreError> {
    let len = ask.to - ask.from;
    let hours = store.hours(ask.from, ask.to)?;
    let before = store.hours(ask.from - len, ask.from)?;
    let region = ask.region.as_deref();
    let covers = |code: u32| region.is_none_or(|f| code_covers(f, &format!("{code:06}")));
    let volume = |h: &HourStats| match region {
        None => h.mentions,
        Some(_) => h
            .regions
            .iter()
            .filter(|(c, _)| covers(**c))
            .map(|(_, n)| n)
            .sum(),
    };
    let step = crate::incidents::hours::HOUR_MS;
    let first = ask.from.div_euclid(step) * step;
    let by_hour: BTreeMap<i64, u64> = hours.iter().map(|h| (h.hour, volume(h))).collect();
    let hourly: Vec<(i64, u64)> = (0..)
        .map(|i| first + i * step)
        .take_while(|h| *h < ask.to)
        .map(|h| (h, by_hour.get(&h).copied().unwrap_or(0)))
        .collect();
    let mut daily: BTreeMap<String, u64> = BTreeMap::new();
    for (h, n) in &hourly {
        *daily.entry(local_day(*h, ask.offset_secs)).or_insert(0) += n;
    }
    let mut all = HourStats::default();
    for h in &hours {
        all.merge(h);
    }
    let mut prev = HourStats::default();
    for h in &before {
        prev.merge(h);
    }
    let terms = term_rows(&all.terms, &prev.terms);

    let incidents: Vec<Incident> = store
        .incidents_between(ask.from, ask.to)?
        .into_iter()
        .filter(|i| {
            region.is_none_or(|f| i.region.as_ref().is_some_and(|r| code_covers(f, &r.code)))
        })
        // An incident merged into another is that one.
        .filter(|i| i.merged_into.is_none())
        .collect();
    let mut counts = IncidentCounts::default();
    let mut per_region: BTreeMap<String, u64> = BTreeMap::new();
    for i in &incidents {
        counts.total += 1;
        *counts
            .by_kind
            .entry(i.kind.as_str().to_string())
            .or_insert(0) += 1;
        *counts.by_category.entry(i.category.clone()).or_insert(0) += 1;
        let name = i
            .region
            .as_ref()
            .map_or("-".to_string(), |r| r.name.clone());
        *counts.by_region.entry(name).or_insert(0) += 1;
        let s = usize::from(i.severity.clamp(1, 5)) - 1;
        counts.by_severity[s] += 1;
        if let Some(r) = &i.region {
            *per_region.entry(r.code.clone()).or_insert(0) += 1;
        }
    }

    let published = |n: &Notice| {
        (n.state == NoticeState::Done)
            .then(|| {
                n.history
                    .iter()
                    .filter(|h| h.action == "done")
                    .map(|h| h.at)
                    .max()
            })
            .flatten()
    };
    let mut rumors: Vec<RumorRow> = incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::Rumor)
        .map(|i| {
            let mine: Vec<&Notice> = notices.iter().filter(|n| n.incident_id == i.id).collect();
            let first_out = mine.iter().filter_map(|n| published(n)).min();
            let rebuttal = if first_out.is_some() {
                "published"
            } else if i.rebuttal.is_some() {
                "known"
            } else if mine.iter().any(|n| {
                matches!(
                    n.state,
                    NoticeState::Draft | NoticeState::Approved | NoticeState::Publishing
                )
            }) {
                "drafted"
            } else {
                "none"
            };
            RumorRow {
                id: i.id.clone(),
                headline: i.headline.clone().unwrap_or_else(|| i.top_terms.join(" ")),
                category: i.category.clone(),
                opened_at: i.opened_at,
                mentions: i.mentions,
                authors: i.authors,
                open: i.state == IncidentState::Open,
                rebuttal,
                time_to_rebuttal_secs: first_out.map(|t| (t - i.opened_at).max(0) / 1000),
            }
        })
        .collect();
    rumors.sort_by(|a, b| b.authors.cmp(&a.authors).then_with(|| a.id.cmp(&b.id)));
    let rumors_answered = rumors
        .iter()
        .filter(|r| r.rebuttal == "published" || r.rebuttal == "known")
        .count() as u64;
    rumors.truncate(RUMORS_LISTED);

    // Regions ranked one level below the one asked for (provinces nationally, cities in a
    // province, districts in a city; a municipality's districts directly): a mention or an
    // incident counts for the highest region under the filter that holds its place.
    let level_of = |c: &str| {
        if c.ends_with("0000") {
            0
        } else if c.ends_with("00") {
            1
        } else {
            2
        }
    };
    let floor = region.map_or(-1, level_of);
    let rank_code = |code: &str| -> Option<String> {
        ancestors(code).into_iter().find(|c| {
            level_of(c) > floor
                && region.is_none_or(|f| code_covers(f, c))
                && gaz.by_code(c).is_some()
        })
    };
    let mut ranked: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (code, n) in &all.regions {
        if let Some(c) = rank_code(&format!("{code:06}")) {
            ranked.entry(c).or_default().0 += n;
        }
    }
    for (code, n) in &per_region {
        if let Some(c) = rank_code(code) {
            ranked.entry(c).or_default().1 += n;
        }
    }
    let mut regions: Vec<RegionRow> = ranked
        .into_iter()
        .filter_map(|(c, (mentions, incidents))| {
            let i = gaz.by_code(&c)?;
            Some(RegionRow {
                name: gaz.get(i).name.clone(),
                name_en: gaz.english_name(i).to_string(),
                code: c,
                mentions,
                incidents,
            })
        })
        .collect();
    regions.sort_by(|a, b| {
        (b.mentions, b.incidents)
            .cmp(&(a.mentions, a.incidents))
            .then_with(|| a.code.cmp(&b.code))
    });
    regions.truncate(REGIONS_LISTED);

    let mut posts = all.spread.clone();
    posts.truncate(POSTS_LISTED);

    let mut notice_rows: Vec<NoticeRow> = notices
        .iter()
        .filter_map(|n| {
            let at = published(n)?;
            if !(ask.from..ask.to).contains(&at) {
                return None;
            }
            if let Some(f) = region {
                if !n.region.as_ref().is_some_and(|r| code_covers(f, &r.code)) {
                    return None;
                }
            }
            Some(NoticeRow {
                id: n.id.clone(),
                incident_id: n.incident_id.clone(),
                kind: n.kind.as_str().to_string(),
                category: n.category.clone(),
                region: n.region.as_ref().map_or(String::new(), |r| r.name.clone()),
                purpose: n.purpose.as_str().to_string(),
                published_at: at,
                text: n
                    .texts
                    .values()
                    .next()
                    .map(|t| crate::truncate_chars(&t.text, 120))
                    .unwrap_or_default(),
            })
        })
        .collect();
    notice_rows.sort_by(|a, b| {
        a.published_at
            .cmp(&b.published_at)
            .then_with(|| a.id.cmp(&b.id))
    });

    let region_named = region.map(|c| {
        let name = gaz
            .by_code(c)
            .map(|i| gaz.get(i).name.clone())
            .unwrap_or_default();
        (c.to_string(), name)
    });
    Ok(Opinion {
        from: ask.from,
        to: ask.to,
        region: region_named,
        generated_at: ask.generated_at,
        hours_covered: hours.len() as u64,
        hours_total: hourly.len() as u64,
        mentions: hourly.iter().map(|(_, n)| n).sum(),
        reposts: all.reposts,
        replies: all.replies,
        previous_mentions: before.iter().map(volume).sum(),
        previous_hours_covered: before.len() as u64,
        hourly,
        daily: daily.into_iter().collect(),
        terms,
        incidents: counts,
        rumors_answered,
        rumors,
        regions,
        posts,
        notices: notice_rows,
    })
}

/// The province, city and the region itself of a 6-digit code (each once).
fn ancestors(code: &str) -> Vec<String> {
    let mut v = vec![format!("{}0000", &code[..2.min(code.len())])];
    if code.len() >= 4 {
        let city = format!("{}00", &code[..4]);
        if !v.contains(&city) {
            v.push(city);
        }
    }
    if !v.iter().any(|c| c == code) {
        v.push(code.to_string());
    }
    v
}

/// `YYYY-MM-DD` of `ms` at `offset_secs` east of UTC.
pub fn local_day(ms: i64, offset_secs: i32) -> String {
    chrono::DateTime::from_timestamp_millis(ms + i64::from(offset_secs) * 1000)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The most frequent terms, bigrams of one word joined, with their change against `before`.
fn term_rows(now: &[(String, u64)], before: &[(String, u64)]) -> Vec<TermRow> {
    let joined = join_bigrams(now);
    let prev: BTreeMap<String, u64> = join_bigrams(before).into_iter().collect();
    joined
        .into_iter()
        .take(TERMS_LISTED)
        .map(|(term, count)| {
            let previous = prev.get(&term).copied().unwrap_or(0);
            TermRow {
                change: (previous > 0).then(|| count as f64 / previous as f64 - 1.0),
                term,
                count,
                previous,
            }
        })
        .collect()
}

/// Chinese bigrams that chain with nearly the same count (≥ 80 % of the larger) are one word:
/// 陨石 + 石雨 → 陨石雨, counted as its least frequent part. Most frequent first.
fn join_bigrams(terms: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> =
        crate::detect::emerging::chain_bigrams(terms.to_vec(), |a, b| {
            a.min(b) as f64 >= 0.8 * a.max(b) as f64
        })
        .into_iter()
        .map(|(t, n, _)| (t, n))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_of_one_word_read_as_the_word_and_unrelated_ones_stay_apart() {
        let t = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
        };
        let j = join_bigrams(&t(&[
            ("暴雨", 100),
            ("雨预", 90),
            ("预警", 95),
            ("天气", 50),
            ("气温", 20),
            ("flood", 40),
        ]));
        assert_eq!(
            j,
            t(&[("暴雨预警", 90), ("天气", 50), ("flood", 40), ("气温", 20)])
        );
    }

    #[test]
    fn a_district_counts_for_its_city_and_province() {
        assert_eq!(ancestors("110108"), ["110000", "110100", "110108"]);
        assert_eq!(ancestors("110000"), ["110000"]);
        assert_eq!(ancestors("510100"), ["510000", "510100"]);
    }
}
