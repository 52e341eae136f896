//! `huiying eval`: detection measured on labelled JSON Lines. The labels (`event`, `label`
//! and every other field that is not part of a mention) are read, then stripped before the
//! engine sees the line; the lines go through exactly the replay pipeline
//! ([`super::replay::replay_events`]) and the incidents it opens are matched to the labelled
//! events by the mentions assigned to them.
//!
//! - [`rumors`]: event-level precision/recall of rumor incidents on rumor/non-rumor cascades,
//!   how many posts of a cascade were seen when it was flagged, the early-detection curve.
//! - [`bursts`]: real crises injected as bursts into real background: recall (zh/en), delay,
//!   false alarms per 10 h of background, the off-topic rate of the per-mention analysis.

pub mod bursts;
pub mod rumors;

use super::replay::{open_input, replay_events, EventSink, ReplaySummary};
use crate::feeds::jsonl::Speed;
use crate::incidents::{Event, EventKind, IncidentKind};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::ops::Range;
use std::path::Path;

/// The fields of a mention (see `normalize::mention`): everything else is a label and is
/// stripped before the engine sees the line.
use crate::normalize::mention::MENTION_FIELDS;

/// How many bad-line diagnostics are kept (all are counted).
const MAX_ERRORS: usize = 20;

/// One labelled line.
#[derive(Debug, Clone)]
pub struct Record {
    /// Line number in the file (1-based).
    pub line: u64,
    /// Mention id (as a string).
    pub id: String,
    /// Event time (ms), 0 when absent.
    pub ts: i64,
    /// The `event` label.
    pub event: String,
    /// The `label` label.
    pub label: String,
    /// Han characters in the text.
    pub han: u32,
    /// ASCII letters in the text.
    pub latin: u32,
    /// The stripped line in [`Labelled::input`].
    span: Range<usize>,
}

/// A labelled file: the records, and the stripped lines the engine reads (bad lines become
/// blank lines, so the engine's line numbers are the file's).
#[derive(Debug, Default)]
pub struct Labelled {
    /// Good lines, in file order (the engine's items, in order).
    pub records: Vec<Record>,
    /// Stripped JSON Lines.
    pub input: Vec<u8>,
    /// Lines that were not JSON objects with `event` and `label`.
    pub bad_lines: u64,
    /// The first few of them, as `file:line: message`.
    pub errors: Vec<String>,
}

impl Labelled {
    /// Read `file` (`.gz` too). A bad line is counted and named (file:line), never fatal.
    pub fn read(file: &Path) -> anyhow::Result<Labelled> {
        let mut r = open_input(file)?;
        let mut l = Labelled::default();
        let name = file.display().to_string();
        let mut buf = Vec::new();
        let mut line = 0u64;
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|e| anyhow::anyhow!("{name}: reading: {e}"))?;
            if n == 0 {
                break;
            }
            line += 1;
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim();
            if text.is_empty() {
                l.input.push(b'\n');
                continue;
            }
            match strip(text) {
                Ok((mut rec, stripped)) => {
                    rec.line = line;
                    let start = l.input.len();
                    l.input.extend_from_slice(stripped.as_bytes());
                    rec.span = start..l.input.len();
                    l.input.push(b'\n');
                    l.records.push(rec);
                }
                Err(msg) => {
                    l.bad_lines += 1;
                    if l.errors.len() < MAX_ERRORS {
                        l.errors.push(format!("{name}:{line}: {msg}"));
                    }
                    l.input.push(b'\n');
                }
            }
        }
        Ok(l)
    }

    /// [`Labelled::read`], writing the bad lines it names to `diag`.
    pub fn read_reporting(file: &Path, diag: &mut (dyn Write + Send)) -> anyhow::Result<Labelled> {
        let l = Labelled::read(file)?;
        for e in &l.errors {
            let _ = writeln!(diag, "{e}");
        }
        Ok(l)
    }

    /// The stripped line of `r`, as the engine reads it.
    pub fn mention_bytes(&self, r: &Record) -> &[u8] {
        &self.input[r.span.clone()]
    }
}

/// Split one line into its labels and the mention the engine may see.
fn strip(text: &str) -> Result<(Record, String), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(mut obj) = v else {
        return Err("not a JSON object".into());
    };
    let label_of = |obj: &serde_json::Map<String, serde_json::Value>, k: &str| {
        obj.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("missing `{k}` (a string label)"))
    };
    let event = label_of(&obj, "event")?;
    let label = label_of(&obj, "label")?;
    let id = match obj.get("id") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let ts = obj.get("ts").and_then(|x| x.as_i64()).unwrap_or(0);
    let (mut han, mut latin) = (0u32, 0u32);
    if let Some(t) = obj.get("text").and_then(|x| x.as_str()) {
        for c in t.chars() {
            if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                han += 1;
            } else if c.is_ascii_alphabetic() {
                latin += 1;
            }
        }
    }
    obj.retain(|k, _| MENTION_FIELDS.contains(&k.as_str()));
    let stripped = serde_json::Value::Object(obj).to_string();
    Ok((
        Record {
            line: 0,
            id,
            ts,
            event,
            label,
            han,
            latin,
            span: 0..0,
        },
        stripped,
    ))
}

/// An incident as opened.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Incident id.
    pub id: String,
    /// Emergency or rumor.
    pub kind: IncidentKind,
    /// Category (emergency), claim, or top terms (emerging).
    pub category: String,
    /// The root mention (rumor).
    pub root: Option<String>,
    /// Event time of the opening (ms).
    pub opened_at: i64,
    /// Index of the record whose processing opened it.
    pub item: u64,
}

/// What the eval keeps of the replay's events.
#[derive(Debug, Default)]
struct Collected {
    opened: Vec<Opened>,
    assigned: Vec<(std::sync::Arc<str>, String)>,
    /// Incident id → the incident it was merged into.
    merged: HashMap<String, String>,
}

impl EventSink for Collected {
    fn events(&mut self, item: u64, events: &[Event]) -> std::io::Result<()> {
        for e in events {
            match e {
                Event::Incident {
                    kind: EventKind::Opened,
                    at,
                    incident,
                } => self.opened.push(Opened {
                    id: incident.id.clone(),
                    kind: incident.kind,
                    // An emerging incident names no category: its terms say what it is.
                    category: if incident.kind == IncidentKind::Emerging {
                        incident.top_terms.join(" ")
                    } else {
                        incident.category.clone()
                    },
                    root: incident.root_mention_id.clone(),
                    opened_at: *at,
                    item,
                }),
                Event::Incident {
                    kind: EventKind::Closed,
                    incident,
                    ..
                } => {
                    if let Some(into) = &incident.merged_into {
                        self.merged.insert(incident.id.clone(), into.clone());
                    }
                }
                Event::Assigned {
                    mention_id,
                    incident_id,
                    ..
                } => self
                    .assigned
                    .push((incident_id.clone(), mention_id.clone())),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The incidents a replay of a labelled file opened, with the records assigned to each.
#[derive(Debug)]
pub struct Replayed {
    /// The replay's own summary.
    pub summary: ReplaySummary,
    /// Incidents in the order they opened.
    pub opened: Vec<Opened>,
    /// Per incident id: indices of the records assigned to it.
    pub members: HashMap<String, Vec<usize>>,
    /// Incident id → the incident it was merged into (by the engine or an operator).
    pub merged: HashMap<String, String>,
}

impl Replayed {
    /// Run the labelled file through the replay pipeline.
    pub fn run(
        l: &Labelled,
        file: &Path,
        rules_dir: &Path,
        opts: crate::detect::rules::LoadOptions,
        workers: Option<usize>,
        diag: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<Replayed> {
        let input = Box::new(std::io::Cursor::new(l.input.clone()));
        let (summary, c) = replay_events(
            input,
            file,
            rules_dir,
            opts,
            Speed::Max,
            workers,
            None,
            Collected::default(),
            diag,
        )?;
        let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(l.records.len());
        for (i, r) in l.records.iter().enumerate() {
            by_id.entry(r.id.as_str()).or_insert(i);
        }
        let mut members: HashMap<String, Vec<usize>> = HashMap::new();
        for (inc, m) in &c.assigned {
            if let Some(&i) = by_id.get(m.as_str()) {
                members.entry(inc.to_string()).or_default().push(i);
            }
        }
        Ok(Replayed {
            summary,
            opened: c.opened,
            members,
            merged: c.merged,
        })
    }
}

/// The key holding most of `items` (ties: the smallest key), its count, and the total.
fn majority<'a>(items: impl Iterator<Item = &'a str>) -> Option<(&'a str, usize, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0;
    for k in items {
        *counts.entry(k).or_default() += 1;
        total += 1;
    }
    let mut best: Option<(&str, usize)> = None;
    for (k, n) in counts {
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((k, n));
        }
    }
    best.map(|(k, n)| (k, n, total))
}

/// Harmonic mean of precision and recall (0 when both are 0).
fn f1(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// `n / d`, 0 when `d` is 0.
fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_unknown_fields_are_stripped() {
        let (r, s) = strip(
            r#"{"id":"a1","ts":5,"author":"u","text":"北京暴雨 flood","repost_of":null,"event":"e1","label":"rumor","meta":{"x":1}}"#,
        )
        .expect("good line");
        assert_eq!(
            (r.event.as_str(), r.label.as_str(), r.ts),
            ("e1", "rumor", 5)
        );
        assert_eq!((r.han, r.latin), (4, 5));
        assert!(!s.contains("event") && !s.contains("label") && !s.contains("meta"));
        assert!(s.contains("\"author\":\"u\""));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(strip("{nope").unwrap_err().starts_with("not JSON"));
        assert!(strip(r#"{"id":"a","event":"e"}"#)
            .unwrap_err()
            .contains("`label`"));
        assert!(strip("[1]").unwrap_err().contains("object"));
    }

    #[test]
    fn majority_breaks_ties_by_the_smallest_key() {
        assert_eq!(
            majority(["b", "a", "b", "a"].into_iter()),
            Some(("a", 2, 4))
        );
        assert_eq!(majority(std::iter::empty()), None);
    }
}
