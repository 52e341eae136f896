//! `huiying cases classify` and `huiying cases eval`: the router of [`crate::cases::routing`]
//! over JSON Lines of requests (the generic mention format; `.gz` too). `eval` reads the labels
//! `department` (and optionally `kinds`), strips them before routing, and reports accuracy.

use super::replay::open_input;
use crate::cases::{Router, Routing};
use crate::feeds::jsonl::{read_batches, Speed};
use crate::ingest::Item;
use crate::normalize::mention::parse_value;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// How many bad lines are named on stderr (all are counted).
const MAX_ERRORS: usize = 20;

/// One routed line: its labels (if any) and what the router said.
struct Routed {
    id: String,
    text: String,
    department: Option<String>,
    kinds: Option<Vec<String>>,
    routing: Routing,
}

/// Route every line of `file`; bad lines are named (`file:line: message`) on `diag` and
/// counted, never fatal. Returns the routed lines and the number of bad ones.
fn route_file(
    router: &Router,
    file: &Path,
    diag: &mut dyn Write,
) -> anyhow::Result<(Vec<Routed>, u64)> {
    let name = file.display();
    let (mut out, mut bad) = (Vec::new(), 0u64);
    let mut io: std::io::Result<()> = Ok(());
    read_batches(open_input(file)?, 256, Speed::Max, |items| {
        for (line, bytes) in items.iter().flat_map(Item::lines) {
            match labelled_request(bytes) {
                Ok(r) => {
                    let routing = router.classify(&r.mention);
                    out.push(Routed {
                        id: r.mention.id,
                        text: r.mention.text,
                        department: r.department,
                        kinds: r.kinds,
                        routing,
                    });
                }
                Err(msg) => {
                    bad += 1;
                    if bad <= MAX_ERRORS as u64 {
                        if let Err(e) = writeln!(diag, "{name}:{line}: {msg}") {
                            io = Err(e);
                            return false;
                        }
                    }
                }
            }
        }
        true
    })?;
    io?;
    if bad > MAX_ERRORS as u64 {
        writeln!(diag, "{name}: {bad} bad lines in all")?;
    }
    Ok((out, bad))
}

/// One line: the request (the mention fields) and its labels.
struct LabelledRequest {
    mention: crate::normalize::Mention,
    department: Option<String>,
    kinds: Option<Vec<String>>,
}

/// Read one line: the labels `department` and `kinds` are taken off, the rest is the mention.
fn labelled_request(bytes: &[u8]) -> Result<LabelledRequest, String> {
    let Value::Object(mut o) =
        serde_json::from_slice::<Value>(bytes).map_err(|e| format!("not JSON: {e}"))?
    else {
        return Err("not a JSON object".into());
    };
    let department = match o.remove("department") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("field `department`: not a string".into()),
    };
    let kinds = match o.remove("kinds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<Vec<String>>(v)
                .map_err(|_| "field `kinds`: not a list of strings".to_string())?,
        ),
    };
    o.retain(|k, _| crate::normalize::mention::MENTION_FIELDS.contains(&k.as_str()));
    let mention = parse_value(&Value::Object(o)).map_err(|e| e.to_string())?;
    Ok(LabelledRequest {
        mention,
        department,
        kinds,
    })
}

/// `huiying cases classify`: one JSON line per good input line,
/// `{"id","department","kinds","confidence"}`.
pub fn classify(
    rules: &Path,
    file: &Path,
    out: &mut dyn Write,
    diag: &mut dyn Write,
) -> anyhow::Result<u64> {
    let router = Router::load(rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (routed, bad) = route_file(&router, file, diag)?;
    for r in routed {
        writeln!(
            out,
            "{}",
            json!({"id": r.id, "department": r.routing.department, "kinds": r.routing.kinds,
                   "confidence": r.routing.confidence})
        )?;
    }
    Ok(bad)
}

/// The router measured on labelled lines.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoutingEval {
    /// Lines with a `department` label.
    pub labelled: usize,
    /// Routed to the labelled department.
    pub correct: usize,
    /// Routed nowhere (no keyword).
    pub unrouted: usize,
    /// `correct / labelled`.
    pub accuracy: f64,
    /// Accuracy among the routed lines.
    pub accuracy_routed: f64,
    /// Per department: (labelled, routed there, correct), precision, recall.
    pub departments: BTreeMap<String, DepartmentScore>,
    /// Lines with a `kinds` label.
    pub kinds_labelled: usize,
    /// The predicted kinds equal the labelled ones.
    pub kinds_exact: usize,
    /// The first labelled kind is among the predicted ones.
    pub kinds_primary: usize,
    /// The most frequent confusions: (labelled, routed) → count.
    pub confusions: Vec<(String, String, usize)>,
    /// Bad lines.
    pub bad_lines: u64,
}

/// One department's scores.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DepartmentScore {
    /// Lines labelled with it.
    pub labelled: usize,
    /// Lines routed to it.
    pub routed: usize,
    /// Both.
    pub correct: usize,
    /// `correct / routed`.
    pub precision: f64,
    /// `correct / labelled`.
    pub recall: f64,
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        (n as f64 / d as f64 * 1000.0).round() / 1000.0
    }
}

/// `huiying cases train`: a department classifier from past cases labelled `department`
/// (lines naming a department `routing/` does not know are named and skipped), written to
/// `out`. Returns the number of examples.
pub fn train(rules: &Path, file: &Path, out: &Path, diag: &mut dyn Write) -> anyhow::Result<usize> {
    let router = Router::load(rules)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .rules_only();
    let (routed, _bad) = route_file(&router, file, diag)?;
    let mut examples = Vec::new();
    for r in routed {
        match r.department {
            Some(d) if router.departments.get(&d).is_some() => {
                examples.push((router.normalizer().normalize(&r.text).into_owned(), d))
            }
            Some(d) => writeln!(
                diag,
                "{}: {}: unknown department {d:?}",
                file.display(),
                r.id
            )?,
            None => writeln!(diag, "{}: {}: no `department` label", file.display(), r.id)?,
        }
    }
    if examples.is_empty() {
        anyhow::bail!("{}: no labelled examples", file.display());
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = crate::cases::classifier::Classifier::train(
        &examples,
        Default::default(),
        format!("{name}: {} examples", examples.len()),
    );
    c.save(out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    Ok(examples.len())
}

/// `huiying cases eval`: route labelled lines and score the router (`rules_only`: without the
/// trained model).
pub fn eval(
    rules: &Path,
    file: &Path,
    rules_only: bool,
    diag: &mut dyn Write,
) -> anyhow::Result<RoutingEval> {
    let mut router = Router::load(rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    if rules_only {
        router = router.rules_only();
    }
    let (routed, bad_lines) = route_file(&router, file, diag)?;
    let mut deps: BTreeMap<String, DepartmentScore> = BTreeMap::new();
    let mut confusions: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut labelled, mut correct, mut unrouted) = (0, 0, 0);
    let (mut kinds_labelled, mut kinds_exact, mut kinds_primary) = (0, 0, 0);
    for r in &routed {
        if let Some(want) = &r.department {
            labelled += 1;
            deps.entry(want.clone()).or_default().labelled += 1;
            match &r.routing.department {
                None => unrouted += 1,
                Some(got) => {
                    let d = deps.entry(got.clone()).or_default();
                    d.routed += 1;
                    if got == want {
                        d.correct += 1;
                        correct += 1;
                    } else {
                        *confusions.entry((want.clone(), got.clone())).or_default() += 1;
                    }
                }
            }
        }
        if let Some(want) = &r.kinds {
            kinds_labelled += 1;
            let mut a = want.clone();
            a.sort();
            let mut b = r.routing.kinds.clone();
            b.sort();
            kinds_exact += usize::from(a == b);
            kinds_primary += usize::from(want.first().is_some_and(|k| r.routing.kinds.contains(k)));
        }
    }
    for d in deps.values_mut() {
        d.precision = ratio(d.correct, d.routed);
        d.recall = ratio(d.correct, d.labelled);
    }
    let mut confusions: Vec<(String, String, usize)> = confusions
        .into_iter()
        .map(|((a, b), n)| (a, b, n))
        .collect();
    confusions.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    confusions.truncate(10);
    Ok(RoutingEval {
        labelled,
        correct,
        unrouted,
        accuracy: ratio(correct, labelled),
        accuracy_routed: ratio(correct, labelled - unrouted),
        departments: deps,
        kinds_labelled,
        kinds_exact,
        kinds_primary,
        confusions,
        bad_lines,
    })
}

impl RoutingEval {
    /// A readable report (Chinese and English).
    pub fn write_text(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            w,
            "部门准确率 department accuracy: {:.3} ({}/{}); 未分派 unrouted: {}; 已分派中准确率 accuracy of routed: {:.3}",
            self.accuracy, self.correct, self.labelled, self.unrouted, self.accuracy_routed
        )?;
        writeln!(
            w,
            "诉求类型 kinds: exact {:.3}, first kind found {:.3} (of {})",
            ratio(self.kinds_exact, self.kinds_labelled),
            ratio(self.kinds_primary, self.kinds_labelled),
            self.kinds_labelled
        )?;
        writeln!(
            w,
            "{:<22} {:>8} {:>7} {:>8} {:>9} {:>7}",
            "department", "labelled", "routed", "correct", "precision", "recall"
        )?;
        for (id, d) in &self.departments {
            writeln!(
                w,
                "{id:<22} {:>8} {:>7} {:>8} {:>9.3} {:>7.3}",
                d.labelled, d.routed, d.correct, d.precision, d.recall
            )?;
        }
        if !self.confusions.is_empty() {
            writeln!(w, "most frequent confusions (labelled → routed):")?;
            for (a, b, n) in &self.confusions {
                writeln!(w, "  {a} → {b}: {n}")?;
            }
        }
        if self.bad_lines > 0 {
            writeln!(w, "bad lines: {}", self.bad_lines)?;
        }
        Ok(())
    }
}

/// One history line: `id`, `ts` (ms, RFC 3339 or Weibo time), `author`, `text`, `title`,
/// `department`, `reply`, `reply_ts`, `state`, `kind`, `region`, `satisfaction`; anything else is
/// an error naming the field.
fn history_line(bytes: &[u8]) -> Result<crate::cases::workflow::Imported, String> {
    use crate::cases::{CaseState, Satisfaction};
    let Value::Object(o) =
        serde_json::from_slice::<Value>(bytes).map_err(|e| format!("not JSON: {e}"))?
    else {
        return Err("not a JSON object".into());
    };
    const FIELDS: [&str; 12] = [
        "id",
        "ts",
        "author",
        "text",
        "title",
        "department",
        "reply",
        "reply_ts",
        "state",
        "kind",
        "region",
        "satisfaction",
    ];
    if let Some(k) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("field `{k}`: unknown ({})", FIELDS.join(", ")));
    }
    let text = |k: &str| -> Result<Option<String>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if k == "id" => Ok(Some(n.to_string())),
            Some(_) => Err(format!("field `{k}`: not a string")),
        }
    };
    let time = |k: &str| -> Result<Option<i64>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("field `{k}`: not whole milliseconds")),
            Some(Value::String(s)) => crate::normalize::mention::parse_time(s)
                .map(Some)
                .ok_or_else(|| format!("field `{k}`: cannot parse {s:?} as a time")),
            Some(_) => Err(format!("field `{k}`: not a time")),
        }
    };
    let id = text("id")?.ok_or("field `id`: missing")?;
    let at = time("ts")?.ok_or("field `ts`: missing")?;
    let state = match text("state")? {
        None => None,
        Some(s) => Some(
            CaseState::ALL
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| format!("field `state`: unknown {s:?}"))?,
        ),
    };
    let satisfaction = match text("satisfaction")?.as_deref() {
        None => None,
        Some("satisfied") => Some(Satisfaction::Satisfied),
        Some("dissatisfied") => Some(Satisfaction::Dissatisfied),
        Some(s) => {
            return Err(format!(
                "field `satisfaction`: unknown {s:?} (satisfied, dissatisfied)"
            ))
        }
    };
    Ok(crate::cases::workflow::Imported {
        id,
        at,
        author: text("author")?,
        text: text("text")?.ok_or("field `text`: missing")?,
        title: text("title")?,
        department: text("department")?,
        reply: text("reply")?,
        reply_at: time("reply_ts")?,
        state,
        kind: text("kind")?,
        region: text("region")?,
        satisfaction,
    })
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// New cases.
    pub imported: u64,
    /// Lines already imported (nothing changed).
    pub existing: u64,
    /// Lines refused (named on the diagnostics).
    pub bad: u64,
}

/// `huiying cases import`: every line of `file` into `store` (see [`history_line`]); bad lines
/// are named (`file:line: field …`) and counted, never fatal.
pub fn import(
    rules: &Path,
    file: &Path,
    store: crate::cases::store::CaseStore,
    diag: &mut dyn Write,
) -> anyhow::Result<ImportReport> {
    let router = Router::load(rules).map_err(|e| anyhow::anyhow!("invalid rules:\n{e}"))?;
    let calendar = crate::cases::deadlines::Calendar::load(
        &rules.join("cases/calendar.toml"),
        &crate::cases::KINDS,
    )
    .map_err(|e| anyhow::anyhow!("invalid calendar:\n{e}"))?;
    let texts = crate::cases::texts::Texts::load(rules)
        .map_err(|e| anyhow::anyhow!("invalid case texts:\n{e}"))?;
    let cases = crate::cases::Cases::new(
        store,
        router,
        calendar,
        texts,
        crate::cases::CasesConfig::default(),
        None,
        None,
        None,
    );
    let name = file.display();
    let mut r = ImportReport::default();
    let mut failure: Option<anyhow::Error> = None;
    read_batches(open_input(file)?, 256, Speed::Max, |items| {
        for (line, bytes) in items.iter().flat_map(Item::lines) {
            let res = history_line(bytes).and_then(|h| {
                cases.import(h).map_err(|e| match e {
                    crate::cases::WorkflowError::Invalid { field, message } => {
                        format!("field `{field}`: {message}")
                    }
                    other => format!("STORE {other}"),
                })
            });
            match res {
                Ok(true) => r.imported += 1,
                Ok(false) => r.existing += 1,
                Err(m) if m.starts_with("STORE ") => {
                    failure = Some(anyhow::anyhow!("{name}:{line}: {}", &m[6..]));
                    return false;
                }
                Err(m) => {
                    r.bad += 1;
                    if r.bad <= MAX_ERRORS as u64 {
                        let _ = writeln!(diag, "{name}:{line}: {m}");
                    }
                }
            }
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(r)
}
