//! `huiying eval rumors`: rumor incidents against rumor/non-rumor cascades. An event (a
//! cascade) is *flagged* when a rumor incident maps to it: the event holding most of the
//! incident's assigned mentions, or its root mention's event when none was assigned.

use super::{f1, majority, ratio, Labelled, Replayed};
use crate::incidents::IncidentKind;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// The early-detection curve's cut-offs: flags made by the Nth post of the cascade.
pub const CURVE: [usize; 5] = [5, 10, 20, 50, 100];

/// One labelled event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// Event id.
    pub event: String,
    /// Its label (`rumor`, `non-rumor`).
    pub label: String,
    /// Posts of the event in the file.
    pub posts: usize,
    /// Whether a rumor incident maps to it.
    pub flagged: bool,
    /// Posts of the event processed when the earliest such incident opened.
    pub posts_at_flag: Option<usize>,
    /// That incident.
    pub incident: Option<String>,
}

/// One point of the early-detection curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// Flags made by this post.
    pub by_post: usize,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// What `eval rumors` measured.
#[derive(Debug, Clone, Serialize)]
pub struct RumorReport {
    /// The file.
    pub file: String,
    /// Good lines.
    pub lines: usize,
    /// Bad lines (counted, skipped).
    pub bad_lines: u64,
    /// Events: rumor, non-rumor.
    pub rumor_events: usize,
    /// Non-rumor events.
    pub non_rumor_events: usize,
    /// Rumor incidents opened.
    pub rumor_incidents: usize,
    /// Emergency incidents opened (not scored here).
    pub emergency_incidents: usize,
    /// Flagged rumor events.
    pub true_positives: usize,
    /// Flagged non-rumor events.
    pub false_positives: usize,
    /// Rumor events not flagged.
    pub false_negatives: usize,
    /// Precision (positive = rumor).
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Median posts seen at the flag, over flagged rumor events.
    pub median_posts_at_flag: Option<f64>,
    /// F1 counting only flags made by the Nth post.
    pub curve: Vec<CurvePoint>,
    /// Per event, in id order.
    #[serde(skip)]
    pub events: Vec<EventRow>,
}

/// Score `file`.
pub fn eval(
    file: &Path,
    rules_dir: &Path,
    workers: Option<usize>,
    diag: &mut (dyn Write + Send),
) -> anyhow::Result<RumorReport> {
    let l = Labelled::read_reporting(file, diag)?;
    let run = Replayed::run(&l, file, rules_dir, Default::default(), workers, diag)?;
    Ok(score(file, &l, &run))
}

fn score(file: &Path, l: &Labelled, run: &Replayed) -> RumorReport {
    // Per event: its records' indices (ascending) and label.
    let mut posts: BTreeMap<&str, (Vec<usize>, &str)> = BTreeMap::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, r) in l.records.iter().enumerate() {
        posts
            .entry(r.event.as_str())
            .or_insert_with(|| (Vec::new(), r.label.as_str()))
            .0
            .push(i);
        by_id.entry(r.id.as_str()).or_insert(i);
    }
    // Per event: the earliest flag (posts seen, incident).
    let mut flags: HashMap<&str, (usize, &str)> = HashMap::new();
    let mut rumor_incidents = 0;
    for o in &run.opened {
        if o.kind != IncidentKind::Rumor {
            continue;
        }
        rumor_incidents += 1;
        let members = run.members.get(&o.id).map(Vec::as_slice).unwrap_or(&[]);
        let event = majority(members.iter().map(|&i| l.records[i].event.as_str()))
            .map(|(e, _, _)| e)
            .or_else(|| {
                o.root
                    .as_deref()
                    .and_then(|r| by_id.get(r))
                    .map(|&i| l.records[i].event.as_str())
            });
        let Some(event) = event else { continue };
        let Some((idx, _)) = posts.get(event) else {
            continue;
        };
        let seen = idx.partition_point(|&i| i as u64 <= o.item);
        let f = flags.entry(event).or_insert((seen, &o.id));
        if seen < f.0 {
            *f = (seen, &o.id);
        }
    }
    let events: Vec<EventRow> = posts
        .iter()
        .map(|(e, (idx, label))| {
            let f = flags.get(e);
            EventRow {
                event: e.to_string(),
                label: label.to_string(),
                posts: idx.len(),
                flagged: f.is_some(),
                posts_at_flag: f.map(|x| x.0),
                incident: f.map(|x| x.1.to_string()),
            }
        })
        .collect();
    summarize(
        file,
        l.records.len(),
        l.bad_lines,
        events,
        rumor_incidents,
        run.opened
            .iter()
            .filter(|o| o.kind == IncidentKind::Emergency)
            .count(),
    )
}

/// The figures of a list of scored events.
fn summarize(
    file: &Path,
    lines: usize,
    bad_lines: u64,
    events: Vec<EventRow>,
    rumor_incidents: usize,
    emergency_incidents: usize,
) -> RumorReport {
    let counts = |by: Option<usize>| {
        let (mut tp, mut fp, mut fnn) = (0, 0, 0);
        for e in &events {
            let flagged = e.flagged && by.is_none_or(|n| e.posts_at_flag.is_some_and(|p| p <= n));
            match (e.label == "rumor", flagged) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fnn += 1,
                _ => {}
            }
        }
        (tp, fp, fnn)
    };
    let (tp, fp, fnn) = counts(None);
    let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fnn));
    let curve = CURVE
        .iter()
        .map(|&n| {
            let (tp, fp, fnn) = counts(Some(n));
            let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fnn));
            CurvePoint {
                by_post: n,
                precision: p,
                recall: r,
                f1: f1(p, r),
            }
        })
        .collect();
    let mut at: Vec<usize> = events
        .iter()
        .filter(|e| e.label == "rumor")
        .filter_map(|e| e.posts_at_flag)
        .collect();
    at.sort_unstable();
    let median = match at.len() {
        0 => None,
        n if n % 2 == 1 => Some(at[n / 2] as f64),
        n => Some((at[n / 2 - 1] + at[n / 2]) as f64 / 2.0),
    };
    RumorReport {
        file: file.display().to_string(),
        lines,
        bad_lines,
        rumor_events: events.iter().filter(|e| e.label == "rumor").count(),
        non_rumor_events: events.iter().filter(|e| e.label != "rumor").count(),
        rumor_incidents,
        emergency_incidents,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fnn,
        precision,
        recall,
        f1: f1(precision, recall),
        median_posts_at_flag: median,
        curve,
        events,
    }
}

/// Cross-validation through the engine: events split into `k` folds by a stable hash of their
/// id; for each fold a model is trained (`huiying train rumor`, its own inner cross-validation
/// choosing the threshold) on the other folds into a copy of the rules, and the fold is replayed
/// with it. The figures are those of every event scored by a model that never saw it.
pub fn eval_cv(
    file: &Path,
    rules_dir: &Path,
    k: u32,
    workers: Option<usize>,
    diag: &mut (dyn Write + Send),
) -> anyhow::Result<RumorReport> {
    use anyhow::Context;
    use std::io::BufRead;
    let k = k.max(2);
    let tmp = std::env::temp_dir().join(format!("huiying-cv-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> anyhow::Result<RumorReport> {
        let mut folds: Vec<Vec<u8>> = vec![Vec::new(); k as usize];
        let input = super::super::replay::open_input(file)?;
        for line in input.split(b'\n') {
            let line = line.with_context(|| format!("{}: read error", file.display()))?;
            let event = serde_json::from_slice::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string));
            // Lines without an event go to fold 0, where `eval` names them.
            let f = event.map_or(0, |e| {
                (crate::stable_hash(e.as_bytes()) % u64::from(k)) as usize
            });
            folds[f].extend_from_slice(&line);
            folds[f].push(b'\n');
        }
        let mut events = Vec::new();
        let (mut lines, mut bad, mut ri, mut ei) = (0, 0, 0, 0);
        for f in 0..k as usize {
            let train_file = tmp.join(format!("train{f}.jsonl"));
            let test_file = tmp.join(format!("test{f}.jsonl"));
            let train: Vec<u8> = folds
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != f)
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            std::fs::write(&train_file, train)?;
            std::fs::write(&test_file, &folds[f])?;
            let rules = tmp.join(format!("rules{f}"));
            copy_rules(rules_dir, &rules)?;
            let _ = writeln!(diag, "fold {}/{k}: training", f + 1);
            super::super::train::train_rumor(
                &train_file,
                &rules,
                &rules.join(crate::detect::rumor_model::MODEL_PATH),
                &Default::default(),
                &mut std::io::sink(),
            )?;
            let r = eval(&test_file, &rules, workers, diag)?;
            lines += r.lines;
            bad += r.bad_lines;
            ri += r.rumor_incidents;
            ei += r.emergency_incidents;
            events.extend(r.events);
        }
        events.sort_by(|a, b| a.event.cmp(&b.event));
        Ok(summarize(file, lines, bad, events, ri, ei))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Copy a rules directory without its rumor model.
fn copy_rules(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let p = e.path();
        if p.is_dir() {
            copy_rules(&p, &to.join(e.file_name()))?;
        } else if p.file_name().is_some_and(|n| n != "rumor.bin") {
            std::fs::copy(&p, to.join(e.file_name()))?;
        }
    }
    Ok(())
}

impl RumorReport {
    /// The human summary, Chinese first.
    pub fn write_text(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "谣言检测评估 / rumor eval: {}", self.file)?;
        writeln!(
            w,
            "  行 / lines: {} (坏行 / bad: {})",
            self.lines, self.bad_lines
        )?;
        writeln!(
            w,
            "  事件 / events: 谣言 / rumor {}, 非谣言 / non-rumor {}",
            self.rumor_events, self.non_rumor_events
        )?;
        writeln!(
            w,
            "  谣言事件数 / rumor incidents: {} (突发 / emergency incidents: {})",
            self.rumor_incidents, self.emergency_incidents
        )?;
        writeln!(
            w,
            "  标记 / flagged: TP {} FP {} FN {}",
            self.true_positives, self.false_positives, self.false_negatives
        )?;
        writeln!(w, "  谣言 精确率 / rumor precision: {:.3}", self.precision)?;
        writeln!(w, "  谣言 召回率 / rumor recall: {:.3}", self.recall)?;
        writeln!(w, "  谣言 F1 / rumor F1: {:.3}", self.f1)?;
        match self.median_posts_at_flag {
            Some(m) => writeln!(w, "  标记时帖数中位数 / median posts at flag: {m}")?,
            None => writeln!(w, "  标记时帖数中位数 / median posts at flag: -")?,
        }
        writeln!(w, "  早期检测 / early detection (F1 by the Nth post):")?;
        for p in &self.curve {
            writeln!(
                w,
                "    第 {:>3} 帖前 / by post {:>3}: F1 {:.3} (P {:.3}, R {:.3})",
                p.by_post, p.by_post, p.f1, p.precision, p.recall
            )?;
        }
        Ok(())
    }

    /// The per-event table as tab-separated values.
    pub fn write_table(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "event\tlabel\tposts\tflagged\tposts_at_flag\tincident")?;
        for e in &self.events {
            writeln!(
                w,
                "{}\t{}\t{}\t{}\t{}\t{}",
                e.event,
                e.label,
                e.posts,
                e.flagged,
                e.posts_at_flag.map(|n| n.to_string()).unwrap_or_default(),
                e.incident.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}
