//! `huiying eval bursts`: crises injected as bursts into background. Lines carry `event`
//! (`none` for background) and `label` (a category id for crisis posts, `off-topic` for
//! off-topic posts). An emergency incident maps to the event holding most of its assigned
//! mentions; it is a *false alarm* when most of them are background or off-topic.

use super::{majority, ratio, Labelled, Replayed};
use crate::detect::Analyzer;
use crate::incidents::IncidentKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The label of off-topic posts.
pub const OFF_TOPIC: &str = "off-topic";
/// The event of background posts.
pub const BACKGROUND: &str = "none";
/// What background and off-topic posts count as when incidents are mapped.
const NOISE: &str = "";

/// One injected event.
#[derive(Debug, Clone, Serialize)]
pub struct BurstEvent {
    /// Event id.
    pub event: String,
    /// The most frequent label of its on-topic posts (a category id).
    pub label: String,
    /// `zh` or `en`, by the script of its texts.
    pub script: &'static str,
    /// On-topic posts.
    pub posts: usize,
    /// Whether an emergency incident maps to it.
    pub detected: bool,
    /// Seconds from its first post to the first mapped incident's opening.
    pub delay_secs: Option<f64>,
    /// The emergency incidents mapped to it: (id, category).
    pub incidents: Vec<(String, String)>,
    /// Whether an emerging incident (a burst no rule names) maps to it.
    pub emerging: bool,
    /// Seconds from its first post to the first mapped emerging incident's opening.
    pub emerging_delay_secs: Option<f64>,
    /// Emerging incidents mapped to it (more than one: the event was split).
    pub emerging_count: usize,
}

/// An emergency incident made mostly of background or off-topic posts.
#[derive(Debug, Clone, Serialize)]
pub struct FalseAlarm {
    /// Incident id.
    pub incident: String,
    /// Category.
    pub category: String,
    /// Assigned mentions.
    pub mentions: usize,
    /// Of which background or off-topic.
    pub noise: usize,
    /// The injected events among the rest, most mentions first (at most three).
    pub events: Vec<(String, usize)>,
}

/// Recall over some events.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Recall {
    /// Events detected.
    pub detected: usize,
    /// Events.
    pub events: usize,
    /// detected / events.
    pub recall: f64,
}

/// What `eval bursts` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BurstReport {
    /// The file.
    pub file: String,
    /// Good lines.
    pub lines: usize,
    /// Bad lines (counted, skipped).
    pub bad_lines: u64,
    /// All injected events.
    pub recall: Recall,
    /// Chinese events.
    pub recall_zh: Recall,
    /// English events.
    pub recall_en: Recall,
    /// Median delay (s) over detected events.
    pub median_delay_secs: Option<f64>,
    /// Emergency incidents opened.
    pub emergency_incidents: usize,
    /// False alarms.
    pub false_alarms: Vec<FalseAlarm>,
    /// Hours spanned by the background (`event` = none) posts.
    pub background_hours: f64,
    /// False alarms per 10 h of background.
    pub false_alarms_per_10h: f64,
    /// Off-topic posts.
    pub off_topic: usize,
    /// Off-topic posts the per-mention analysis gives a category.
    pub off_topic_with_category: usize,
    /// off_topic_with_category / off_topic.
    pub off_topic_rate: f64,
    /// Events with more than one emergency incident.
    pub split_events: Vec<String>,
    /// Every category's keywords were left out of the rules (`--without-categories`).
    pub without_categories: bool,
    /// Emerging incidents opened.
    pub emerging_incidents: usize,
    /// Of which merged into a rule incident (one incident per event: not counted below).
    pub emerging_merged: usize,
    /// Events an emerging incident maps to.
    pub emerging_recall: Recall,
    /// English (CrisisLex) events an emerging incident maps to.
    pub emerging_recall_en: Recall,
    /// Chinese events an emerging incident maps to.
    pub emerging_recall_zh: Recall,
    /// Events an emerging incident maps to within 5 minutes of their first post.
    pub emerging_within_5_min: usize,
    /// Events with more than one emerging incident.
    pub emerging_split_events: usize,
    /// Median delay (s) of the emerging incidents over the events they map to.
    pub emerging_median_delay_secs: Option<f64>,
    /// Emerging incidents made mostly of background or off-topic posts.
    pub emerging_false_alarms: Vec<FalseAlarm>,
    /// Those per 10 h of background.
    pub emerging_false_alarms_per_10h: f64,
    /// Per injected event, in id order.
    pub events: Vec<BurstEvent>,
}

/// Score `file`.
pub fn eval(
    file: &Path,
    rules_dir: &Path,
    without_categories: bool,
    workers: Option<usize>,
    diag: &mut (dyn Write + Send),
) -> anyhow::Result<BurstReport> {
    let l = Labelled::read_reporting(file, diag)?;
    let opts = crate::detect::rules::LoadOptions {
        without_category_keywords: without_categories,
    };
    let (off_topic, off_topic_with_category) = off_topic_rate(&l, rules_dir, opts)?;
    let run = Replayed::run(&l, file, rules_dir, opts, workers, diag)?;
    let mut r = score(file, &l, &run);
    r.without_categories = without_categories;
    r.off_topic = off_topic;
    r.off_topic_with_category = off_topic_with_category;
    r.off_topic_rate = ratio(off_topic_with_category, off_topic);
    Ok(r)
}

/// Off-topic posts, and those the pure per-mention analysis gives any category.
fn off_topic_rate(
    l: &Labelled,
    rules_dir: &Path,
    opts: crate::detect::rules::LoadOptions,
) -> anyhow::Result<(usize, usize)> {
    let (analyzer, rules) =
        Analyzer::new_with(|n| super::super::commands::load_rules_with(rules_dir, n, opts));
    let rules = rules?;
    let (mut n, mut hit) = (0, 0);
    for r in l.records.iter().filter(|r| r.label == OFF_TOPIC) {
        let Ok(m) = crate::normalize::parse_mention(l.mention_bytes(r)) else {
            continue;
        };
        n += 1;
        if !analyzer.analyze(&rules, &m).categories.is_empty() {
            hit += 1;
        }
    }
    Ok((n, hit))
}

fn is_noise(r: &super::Record) -> bool {
    r.event == BACKGROUND || r.label == OFF_TOPIC
}

fn score(file: &Path, l: &Labelled, run: &Replayed) -> BurstReport {
    struct Acc<'a> {
        posts: usize,
        first_ts: i64,
        labels: BTreeMap<&'a str, usize>,
        han: u64,
        latin: u64,
    }
    let mut acc: BTreeMap<&str, Acc> = BTreeMap::new();
    let (mut bg_min, mut bg_max) = (i64::MAX, i64::MIN);
    for r in &l.records {
        if r.event == BACKGROUND {
            bg_min = bg_min.min(r.ts);
            bg_max = bg_max.max(r.ts);
        }
        if is_noise(r) {
            continue;
        }
        let a = acc.entry(r.event.as_str()).or_insert(Acc {
            posts: 0,
            first_ts: r.ts,
            labels: BTreeMap::new(),
            han: 0,
            latin: 0,
        });
        a.posts += 1;
        a.first_ts = a.first_ts.min(r.ts);
        *a.labels.entry(r.label.as_str()).or_default() += 1;
        a.han += u64::from(r.han);
        a.latin += u64::from(r.latin);
    }
    let (mapped, false_alarms, emergency_incidents) =
        map_incidents(l, run, IncidentKind::Emergency);
    let (em_mapped, em_false_alarms, emerging_incidents) =
        map_incidents(l, run, IncidentKind::Emerging);
    let background_hours = if bg_max > bg_min {
        (bg_max - bg_min) as f64 / 3_600_000.0
    } else {
        0.0
    };
    let events: Vec<BurstEvent> = acc
        .iter()
        .map(|(e, a)| {
            let inc = mapped.get(e).map(Vec::as_slice).unwrap_or(&[]);
            let label = a
                .labels
                .iter()
                .max_by_key(|(k, n)| (**n, std::cmp::Reverse(*k)))
                .map(|(k, _)| k.to_string())
                .unwrap_or_default();
            BurstEvent {
                event: e.to_string(),
                label,
                script: if a.han > a.latin { "zh" } else { "en" },
                posts: a.posts,
                detected: !inc.is_empty(),
                delay_secs: inc
                    .iter()
                    .map(|o| o.opened_at)
                    .min()
                    .map(|t| (t - a.first_ts) as f64 / 1000.0),
                incidents: inc
                    .iter()
                    .map(|o| (o.id.clone(), o.category.clone()))
                    .collect(),
                emerging: em_mapped.contains_key(e),
                emerging_count: em_mapped.get(e).map_or(0, Vec::len),
                emerging_delay_secs: em_mapped
                    .get(e)
                    .and_then(|v| v.iter().map(|o| o.opened_at).min())
                    .map(|t| (t - a.first_ts) as f64 / 1000.0),
            }
        })
        .collect();
    let recall_by = |script: Option<&str>, emerging: bool| {
        let es: Vec<&BurstEvent> = events
            .iter()
            .filter(|e| script.is_none_or(|s| e.script == s))
            .collect();
        let detected = es
            .iter()
            .filter(|e| if emerging { e.emerging } else { e.detected })
            .count();
        Recall {
            detected,
            events: es.len(),
            recall: ratio(detected, es.len()),
        }
    };
    let recall_of = |script: Option<&str>| recall_by(script, false);
    let median_delay_secs = median(events.iter().filter_map(|e| e.delay_secs).collect());
    let emerging_median_delay_secs = median(
        events
            .iter()
            .filter_map(|e| e.emerging_delay_secs)
            .collect(),
    );
    let per_10h = |n: usize| {
        if background_hours > 0.0 {
            n as f64 * 10.0 / background_hours
        } else {
            0.0
        }
    };
    BurstReport {
        file: file.display().to_string(),
        lines: l.records.len(),
        bad_lines: l.bad_lines,
        recall: recall_of(None),
        recall_zh: recall_of(Some("zh")),
        recall_en: recall_of(Some("en")),
        median_delay_secs,
        emergency_incidents,
        false_alarms_per_10h: per_10h(false_alarms.len()),
        false_alarms,
        background_hours,
        off_topic: 0,
        off_topic_with_category: 0,
        off_topic_rate: 0.0,
        split_events: events
            .iter()
            .filter(|e| e.incidents.len() > 1)
            .map(|e| e.event.clone())
            .collect(),
        without_categories: false,
        emerging_incidents,
        emerging_merged: run
            .opened
            .iter()
            .filter(|o| o.kind == IncidentKind::Emerging && run.merged.contains_key(&o.id))
            .count(),
        emerging_recall: recall_by(None, true),
        emerging_recall_en: recall_by(Some("en"), true),
        emerging_recall_zh: recall_by(Some("zh"), true),
        emerging_within_5_min: events
            .iter()
            .filter(|e| e.emerging_delay_secs.is_some_and(|d| d <= 300.0))
            .count(),
        emerging_median_delay_secs,
        emerging_split_events: events.iter().filter(|e| e.emerging_count > 1).count(),
        emerging_false_alarms_per_10h: per_10h(em_false_alarms.len()),
        emerging_false_alarms: em_false_alarms,
        events,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

type Mapped<'a> = BTreeMap<&'a str, Vec<&'a super::Opened>>;

/// The incidents of `kind` mapped to the event holding most of their mentions, the false
/// alarms (mostly background or off-topic), and how many opened.
fn map_incidents<'a>(
    l: &'a Labelled,
    run: &'a Replayed,
    kind: IncidentKind,
) -> (Mapped<'a>, Vec<FalseAlarm>, usize) {
    let mut mapped: Mapped = BTreeMap::new();
    let mut false_alarms = Vec::new();
    let mut n = 0;
    for o in &run.opened {
        if o.kind != kind {
            continue;
        }
        n += 1;
        // Merged into a rule incident: part of that one, not an incident of its own.
        let into_rule = run.merged.get(&o.id).is_some_and(|into| {
            run.opened
                .iter()
                .any(|r| &r.id == into && r.kind != IncidentKind::Emerging)
        });
        if into_rule {
            continue;
        }
        let members = run.members.get(&o.id).map(Vec::as_slice).unwrap_or(&[]);
        let key = |i: &usize| {
            let r = &l.records[*i];
            if is_noise(r) {
                NOISE
            } else {
                r.event.as_str()
            }
        };
        let noise = members.iter().filter(|i| key(i) == NOISE).count();
        match majority(members.iter().map(key)) {
            Some((event, _, _)) if event != NOISE && noise * 2 < members.len() => {
                mapped.entry(event).or_default().push(o);
            }
            _ => {
                let mut by: BTreeMap<&str, usize> = BTreeMap::new();
                for e in members.iter().map(key).filter(|k| *k != NOISE) {
                    *by.entry(e).or_default() += 1;
                }
                let mut events: Vec<(String, usize)> =
                    by.into_iter().map(|(e, n)| (e.to_string(), n)).collect();
                events.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                events.truncate(3);
                false_alarms.push(FalseAlarm {
                    incident: o.id.clone(),
                    category: o.category.clone(),
                    mentions: members.len(),
                    noise,
                    events,
                })
            }
        }
    }
    (mapped, false_alarms, n)
}

impl BurstReport {
    /// The human summary and per-event table, Chinese first.
    pub fn write_text(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let rec = |r: &Recall| format!("{:.3} ({}/{})", r.recall, r.detected, r.events);
        writeln!(w, "突发事件检测评估 / burst eval: {}", self.file)?;
        writeln!(
            w,
            "  行 / lines: {} (坏行 / bad: {})",
            self.lines, self.bad_lines
        )?;
        writeln!(w, "  召回率 / recall: {}", rec(&self.recall))?;
        writeln!(
            w,
            "    中文 / zh: {}   英文 / en: {}",
            rec(&self.recall_zh),
            rec(&self.recall_en)
        )?;
        match self.median_delay_secs {
            Some(d) => writeln!(w, "  延迟中位数 / median delay: {d:.0} s")?,
            None => writeln!(w, "  延迟中位数 / median delay: -")?,
        }
        writeln!(
            w,
            "  突发事件数 / emergency incidents: {}",
            self.emergency_incidents
        )?;
        writeln!(
            w,
            "  误报 / false alarms: {} (每 10 小时背景 / per 10 h of background: {:.1}; 背景 / background {:.1} h)",
            self.false_alarms.len(),
            self.false_alarms_per_10h,
            self.background_hours
        )?;
        writeln!(
            w,
            "  无关帖被分类 / off-topic given a category: {:.1} % ({}/{})",
            self.off_topic_rate * 100.0,
            self.off_topic_with_category,
            self.off_topic
        )?;
        writeln!(
            w,
            "  一事多报 / events with >1 incident: {} {:?}",
            self.split_events.len(),
            self.split_events
        )?;
        writeln!(
            w,
            "  新动向事件 / emerging incidents: {} (并入规则事件 / merged into rule incidents: {}){}",
            self.emerging_incidents,
            self.emerging_merged,
            if self.without_categories {
                " (已移除全部类别规则 / every category rule removed)"
            } else {
                ""
            }
        )?;
        writeln!(
            w,
            "    召回率 / recall: {}   中文 / zh: {}   英文 / en: {}",
            rec(&self.emerging_recall),
            rec(&self.emerging_recall_zh),
            rec(&self.emerging_recall_en)
        )?;
        writeln!(
            w,
            "    5 分钟内 / within 5 min: {}   延迟中位数 / median delay: {}   一事多报 / events with >1: {}",
            self.emerging_within_5_min,
            self.emerging_median_delay_secs
                .map(|d| format!("{d:.0} s"))
                .unwrap_or_else(|| "-".into()),
            self.emerging_split_events
        )?;
        writeln!(
            w,
            "    误报 / false alarms: {} (每 10 小时背景 / per 10 h of background: {:.1})",
            self.emerging_false_alarms.len(),
            self.emerging_false_alarms_per_10h
        )?;
        writeln!(w, "  事件 / events:")?;
        for e in &self.events {
            writeln!(
                w,
                "    {:<40} {:<17} {} {:>5} posts  {:<3} {:>7}  {:?}  emerging {:>7}",
                e.event,
                e.label,
                e.script,
                e.posts,
                if e.detected { "yes" } else { "no" },
                e.delay_secs
                    .map(|d| format!("{d:.0}s"))
                    .unwrap_or_else(|| "-".into()),
                e.incidents.iter().map(|(_, c)| c).collect::<Vec<_>>(),
                e.emerging_delay_secs
                    .map(|d| format!("{d:.0}s"))
                    .unwrap_or_else(|| "-".into())
            )?;
        }
        if !self.emerging_false_alarms.is_empty() {
            writeln!(w, "  新动向误报 / emerging false alarms:")?;
            for f in &self.emerging_false_alarms {
                writeln!(
                    w,
                    "    {} [{}] ({} of {} mentions background/off-topic) {:?}",
                    f.incident, f.category, f.noise, f.mentions, f.events
                )?;
            }
        }
        if !self.false_alarms.is_empty() {
            writeln!(w, "  误报 / false alarms:")?;
            for f in &self.false_alarms {
                writeln!(
                    w,
                    "    {} {} ({} of {} mentions background/off-topic) {:?}",
                    f.incident, f.category, f.noise, f.mentions, f.events
                )?;
            }
        }
        Ok(())
    }
}
