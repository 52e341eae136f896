//! Routing a citizen request to the department that answers it: the departments of
//! `rules/routing/*.toml` (ids, names, keywords, the department's account and per-region
//! overrides), matched in one Aho-Corasick pass over the normalised text, and the request kinds
//! (`rules/requests.toml` cues, through the detect stage's analysis).
//!
//! The rules router is the cold start: every keyword a department's text contains adds its
//! weight (longer keywords weigh more: `赔偿` says less than `拖欠工资`), each keyword once; the
//! department with the highest score wins (ties: more distinct keywords, then file order), and
//! the confidence is its share of all the scores. No keyword: no department (the case waits in
//! the unassigned queue for a person).

use crate::detect::diagnostics::{line_at, normalized_pattern, read_dir_toml, Problems};
use crate::detect::{Analyzer, RuleErrors, RuleSet};
use crate::normalize::text::Normalizer;
use crate::normalize::Mention;
use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// The department ids every office has (`rules/routing/departments.toml`); an office adds its
/// own in another file of the directory.
pub const DEPARTMENT_IDS: [&str; 16] = [
    "housing",
    "urban_management",
    "natural_resources",
    "water",
    "environment",
    "transport",
    "education",
    "culture_tourism",
    "human_resources",
    "civil_affairs",
    "health",
    "commerce",
    "market_regulation",
    "public_security",
    "emergency_management",
    "agriculture",
];

/// One department.
#[derive(Debug, Clone, Serialize)]
pub struct Department {
    /// Stable id (`water`).
    pub id: String,
    /// Chinese name (`水务局`).
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Its account in the matrix, if it has one (answers and acknowledgements go out from it).
    pub account: Option<String>,
    /// Per-region accounts: division code → account (a district's own bureau).
    pub regions: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionDef {
    code: Spanned<String>,
    account: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentDef {
    id: Spanned<String>,
    name_zh: String,
    name_en: String,
    #[serde(default)]
    account: Option<String>,
    keywords: Vec<Spanned<String>>,
    #[serde(default)]
    region: Vec<RegionDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    #[serde(default)]
    department: Vec<DepartmentDef>,
}

/// The loaded departments and their keyword automaton.
#[derive(Debug, Clone)]
pub struct Departments {
    departments: Vec<Department>,
    automaton: AhoCorasick,
    /// Per pattern: (department index, weight).
    patterns: Vec<(usize, u32)>,
    /// Per pattern: whether it must sit on English word boundaries.
    ascii: Vec<bool>,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Routing {
    /// The department, `None` when no keyword matched.
    pub department: Option<String>,
    /// Its share of all the departments' scores (0 without a department).
    pub confidence: f64,
    /// Request kinds (`rules/requests.toml` ids), in rule order; without any cue, `inquiry` for
    /// a question and `complaint` otherwise.
    pub kinds: Vec<String>,
    /// The most specific region the text (or the mention's `region`) names: its code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A keyword's weight: its length in characters (an English keyword: 3), at most 4.
fn weight(k: &str) -> u32 {
    if k.is_ascii() {
        3
    } else {
        (k.chars().count() as u32).min(4)
    }
}

impl Departments {
    /// Load every `*.toml` of `dir` (`rules/routing/`): problems as `file:line: message`.
    pub fn load(dir: &Path, normalizer: &Normalizer) -> Result<Departments, RuleErrors> {
        let mut p = Problems::new();
        let files = read_dir_toml::<RoutingFile>(dir, &mut p);
        let mut departments: Vec<Department> = Vec::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut patterns: Vec<(usize, u32)> = Vec::new();
        let mut seen: std::collections::BTreeSet<String> = Default::default();
        // Keyword → its pattern index (a keyword belongs to one department).
        let mut owner: std::collections::HashMap<String, usize> = Default::default();
        for (path, src, file) in &files {
            for d in &file.department {
                let line = line_at(src, d.id.span().start);
                let id = d.id.get_ref().trim().to_string();
                if id.is_empty()
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    p.at(
                        path,
                        line,
                        format!("department id {id:?}: use a-z, 0-9 and '_'"),
                    );
                    continue;
                }
                if seen.contains(&id) {
                    p.at(path, line, format!("department {id:?} is defined twice"));
                    continue;
                }
                if d.keywords.is_empty() {
                    p.at(path, line, format!("department {id:?} has no keywords"));
                }
                seen.insert(id.clone());
                let mut regions = BTreeMap::new();
                for r in &d.region {
                    let code = r.code.get_ref();
                    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                        p.at(
                            path,
                            line_at(src, r.code.span().start),
                            format!("region code {code:?} is not a 6-digit division code"),
                        );
                        continue;
                    }
                    regions.insert(code.clone(), r.account.clone());
                }
                let index = departments.len();
                departments.push(Department {
                    id,
                    name_zh: d.name_zh.clone(),
                    name_en: d.name_en.clone(),
                    account: d.account.clone(),
                    regions,
                });
                for k in &d.keywords {
                    let kline = line_at(src, k.span().start);
                    let norm = match normalized_pattern(normalizer, k.get_ref()) {
                        Ok(n) => n,
                        Err(message) => {
                            p.at(path, kline, message);
                            continue;
                        }
                    };
                    if let Some(&i) = owner.get(&norm) {
                        let other = &departments[patterns[i].0].id;
                        p.at(
                            path,
                            kline,
                            format!("keyword {norm:?} is already a keyword of {other:?}"),
                        );
                        continue;
                    }
                    owner.insert(norm.clone(), keywords.len());
                    patterns.push((index, weight(&norm)));
                    keywords.push(norm);
                }
            }
        }
        if departments.is_empty() && p.errors.is_empty() {
            p.at(dir, 0, "no departments");
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&keywords);
        let automaton = match automaton {
            Ok(a) => a,
            Err(e) => {
                p.at(dir, 0, format!("cannot build the keyword automaton: {e}"));
                return Err(p.finish().err().unwrap_or(RuleErrors(Vec::new())));
            }
        };
        p.finish()?;
        let ascii = keywords.iter().map(|k| k.is_ascii()).collect();
        Ok(Departments {
            departments,
            automaton,
            patterns,
            ascii,
        })
    }

    /// The departments, in file order.
    pub fn all(&self) -> &[Department] {
        &self.departments
    }

    /// One department.
    pub fn get(&self, id: &str) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }

    /// Each department's score for a normalised text (file order).
    pub fn scores(&self, normalized: &str) -> Vec<(u32, u32)> {
        let mut scores = vec![(0u32, 0u32); self.departments.len()];
        let mut hit = vec![false; self.patterns.len()];
        let bytes = normalized.as_bytes();
        for m in self.automaton.find_iter(normalized) {
            let i = m.pattern().as_usize();
            if self.ascii[i] {
                let before = m.start().checked_sub(1).map(|j| bytes[j]);
                let after = bytes.get(m.end()).copied();
                if before.is_some_and(|b| b.is_ascii_alphanumeric())
                    || after.is_some_and(|b| b.is_ascii_alphanumeric())
                {
                    continue;
                }
            }
            if std::mem::replace(&mut hit[i], true) {
                continue;
            }
            let (d, w) = self.patterns[i];
            scores[d].0 += w;
            scores[d].1 += 1;
        }
        scores
    }

    /// The department for a normalised text and the confidence (see the module docs).
    pub fn route(&self, normalized: &str) -> (Option<&Department>, f64) {
        let scores = self.scores(normalized);
        let total: u32 = scores.iter().map(|s| s.0).sum();
        let mut best: Option<usize> = None;
        for (i, s) in scores.iter().enumerate() {
            if s.0 == 0 {
                continue;
            }
            if best.is_none_or(|b| s > &scores[b]) {
                best = Some(i);
            }
        }
        match best {
            Some(b) => (
                self.departments.get(b),
                f64::from(scores[b].0) / f64::from(total.max(1)),
            ),
            None => (None, 0.0),
        }
    }
}

/// The rules' confidence from which they decide alone; below it a trained model, when there is
/// one, picks the department.
pub const RULES_DECIDE: f64 = 0.6;

/// The router: the departments with the detect rules (for the request kinds), and the trained
/// classifier of `routing/model.bin` when an office has trained one.
pub struct Router {
    /// The departments.
    pub departments: Departments,
    analyzer: Analyzer,
    rules: RuleSet,
    model: Option<super::classifier::Classifier>,
}

impl Router {
    /// Load the detect rules of `rules_dir` and its `routing/` directory.
    pub fn load(rules_dir: &Path) -> Result<Router, RuleErrors> {
        let analyzer = Analyzer::new();
        let rules = RuleSet::load(rules_dir, &analyzer.normalizer)?;
        let departments = Departments::load(&rules_dir.join("routing"), &analyzer.normalizer)?;
        let path = rules_dir.join(super::classifier::MODEL_PATH);
        let model = if path.is_file() {
            let m = super::classifier::Classifier::load(&path).map_err(|message| {
                RuleErrors(vec![crate::detect::RuleError {
                    file: path.clone(),
                    line: 0,
                    message,
                }])
            })?;
            if let Some(l) = m.labels.iter().find(|l| departments.get(l).is_none()) {
                return Err(RuleErrors(vec![crate::detect::RuleError {
                    file: path,
                    line: 0,
                    message: format!("the model knows department {l:?}, which routing/ does not"),
                }]));
            }
            Some(m)
        } else {
            None
        };
        Ok(Router {
            departments,
            analyzer,
            rules,
            model,
        })
    }

    /// Without the trained model (the rules alone).
    pub fn rules_only(mut self) -> Router {
        self.model = None;
        self
    }

    /// The normaliser the router reads texts with.
    pub fn normalizer(&self) -> &Normalizer {
        &self.analyzer.normalizer
    }

    /// The request kinds of the rules: (id, Chinese name, English name).
    pub fn request_kinds(&self) -> Vec<(String, String, String)> {
        self.rules
            .requests
            .iter()
            .map(|k| (k.id.to_string(), k.name_zh.clone(), k.name_en.clone()))
            .collect()
    }

    /// The gazetteer of the rules the router reads (region codes and names).
    pub fn gazetteer(&self) -> &crate::detect::gazetteer::Gazetteer {
        &self.rules.gazetteer
    }

    /// Route one request.
    pub fn classify(&self, m: &Mention) -> Routing {
        let normalized = self.analyzer.normalizer.normalize(&m.text);
        let (rules_dep, rules_conf) = self.departments.route(&normalized);
        let mut department = rules_dep.map(|d| d.id.clone());
        let mut confidence = rules_conf;
        if rules_conf < RULES_DECIDE {
            if let Some((label, p)) = self.model.as_ref().and_then(|c| c.predict(&normalized)) {
                department = Some(label.to_string());
                confidence = f64::from(p);
            }
        }
        let a = self.analyzer.analyze(&self.rules, m);
        let mut kinds: Vec<u8> = a.requests.clone();
        kinds.sort_unstable();
        let mut kinds: Vec<String> = kinds
            .iter()
            .filter_map(|k| self.rules.requests.get(usize::from(*k)))
            .map(|k| k.id.to_string())
            .collect();
        if kinds.is_empty() {
            // No cue: a question is an inquiry; anything else addressed to an office is a
            // complaint until a person says otherwise.
            let question = m.text.contains('?') || m.text.contains('？');
            kinds.push(if question { "inquiry" } else { "complaint" }.to_string());
        }
        let region = a
            .regions
            .first()
            .map(|i| self.rules.gazetteer.get(*i).code.clone());
        Routing {
            department,
            confidence: (confidence * 1000.0).round() / 1000.0,
            kinds,
            region,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn the_highest_weighted_department_wins_and_each_keyword_counts_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "a.toml",
            r#"
[[department]]
id = "water"
name_zh = "水务局"
name_en = "Water"
keywords = ["停水", "水管爆裂", "water outage"]

[[department]]
id = "housing"
name_zh = "住建局"
name_en = "Housing"
keywords = ["物业", "漏水"]
"#,
        );
        let n = Normalizer::new();
        let d = Departments::load(dir.path(), &n).expect("load");
        let (dep, conf) = d.route(&n.normalize("小区停水停水停水，物业不管"));
        // 停水 (2, once) against 物业 (2): a tie on score and keywords goes to file order.
        assert_eq!(dep.map(|d| d.id.as_str()), Some("water"));
        assert!((conf - 0.5).abs() < 1e-9, "{conf}");
        let (dep, _) = d.route(&n.normalize("水管爆裂了，物业说不归他们管"));
        assert_eq!(dep.map(|d| d.id.as_str()), Some("water"));
        let (dep, _) = d.route(&n.normalize("楼上漏水，物业不管"));
        assert_eq!(dep.map(|d| d.id.as_str()), Some("housing"));
        // English keywords need word boundaries.
        let (dep, _) = d.route(&n.normalize("Water outage on our street"));
        assert_eq!(dep.map(|d| d.id.as_str()), Some("water"));
        let (dep, conf) = d.route(&n.normalize("nothing to see"));
        assert!(dep.is_none() && conf == 0.0);
    }

    #[test]
    fn bad_departments_are_reported_at_their_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "a.toml",
            r#"[[department]]
id = "water"
name_zh = "水务局"
name_en = "Water"
keywords = ["停水", "水"]

[[department]]
id = "water"
name_zh = "again"
name_en = "again"
keywords = ["停电"]

[[department]]
id = "Bad Id"
name_zh = "x"
name_en = "x"
keywords = ["y"]

[[department]]
id = "roads"
name_zh = "x"
name_en = "x"
keywords = ["停水"]
[[department.region]]
code = "6401"
account = "x"
"#,
        );
        let e = Departments::load(dir.path(), &Normalizer::new()).expect_err("bad");
        let text = e.to_string();
        for want in [
            "a.toml:5: pattern \"水\" is a single character",
            "a.toml:8: department \"water\" is defined twice",
            "a.toml:14: department id \"Bad Id\"",
            "a.toml:23: keyword \"停水\" is already a keyword of \"water\"",
            "a.toml:25: region code \"6401\"",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    }
}
