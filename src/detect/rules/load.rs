//! Loading a `rules/` directory into a [`RuleSet`]: the file formats, validation (every
//! problem reported as `file:line: message`), pattern normalisation and the automaton build.

use super::settings::{
    EmergencySettings, EmergingSettings, RumorSettings, Settings, WindowSettings,
};
use super::{Category, Claim, CueKind, Pattern, PatternRef, RequestKind, RuleSet};
use crate::detect::diagnostics::{line_at, read_toml, LineIndex};
use crate::detect::gazetteer::{Gazetteer, Level, Region};
use crate::normalize::Normalizer;
use ahash::{AHashMap, AHashSet};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// The category ids other parts of the system (API, templates, matrix, dashboards) rely on.
pub const CATEGORY_IDS: [&str; 19] = [
    "flood",
    "rainstorm",
    "typhoon",
    "earthquake",
    "fire",
    "explosion",
    "collapse",
    "landslide",
    "traffic_accident",
    "rail_accident",
    "air_crash",
    "hazmat_leak",
    "epidemic",
    "food_poisoning",
    "outage",
    "stampede",
    "violent_attack",
    "missing_person",
    "extreme_weather",
];

/// Files a rules directory holds; each is required.
pub const RULE_FILES: [&str; 6] = [
    "detection.toml",
    "categories.toml",
    "rumor.toml",
    "claims.toml",
    "requests.toml",
    "regions.toml",
];

/// One problem in the rules, located at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// File path as given.
    pub file: PathBuf,
    /// 1-based line (0 when the problem is the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// All problems found in a rules directory (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SeverityFile {
    boosters: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DetectionFile {
    window: WindowSettings,
    emergency: EmergencySettings,
    rumor: RumorSettings,
    emerging: EmergingSettings,
    severity: SeverityFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryDef {
    id: Spanned<String>,
    name_zh: String,
    name_en: String,
    severity: Spanned<u8>,
    keywords: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    boosters: Vec<Spanned<String>>,
    #[serde(default)]
    min_authors: Option<u32>,
    #[serde(default)]
    prior_per_hour: Option<f64>,
    #[serde(default)]
    group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoriesFile {
    category: Vec<CategoryDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RumorFile {
    enquiry: Vec<Spanned<String>>,
    correction: Vec<Spanned<String>>,
    spreading: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimDef {
    id: Spanned<String>,
    category: Spanned<String>,
    phrases: Vec<Spanned<String>>,
    #[serde(default)]
    require: Vec<Spanned<String>>,
    rebuttal_zh: String,
    rebuttal_en: String,
    link: String,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    #[serde(default)]
    claim: Vec<ClaimDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestDef {
    id: Spanned<String>,
    name_zh: String,
    name_en: String,
    cues: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsFile {
    request: Vec<RequestDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionDef {
    code: Spanned<String>,
    name: String,
    level: Spanned<String>,
    #[serde(default)]
    parent: Option<Spanned<String>>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    en: Vec<String>,
    #[serde(default)]
    name_en: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionsFile {
    region: Vec<RegionDef>,
}

struct Loader<'a> {
    normalizer: &'a Normalizer,
    errors: Vec<RuleError>,
    patterns: Vec<Pattern>,
    by_text: AHashMap<String, usize>,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

impl Loader<'_> {
    fn err(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &mut self,
        dir: &Path,
        name: &str,
    ) -> Option<(PathBuf, String, T)> {
        let path = dir.join(name);
        match read_toml::<T>(&path) {
            Ok((src, v)) => Some((path, src, v)),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn add(&mut self, file: &Path, src: &str, raw: &Spanned<String>, r: PatternRef) {
        let line = line_at(src, raw.span().start);
        match crate::detect::diagnostics::normalized_pattern(self.normalizer, raw.get_ref()) {
            Ok(norm) => self.add_normalized(norm, r),
            Err(message) => self.err(file, line, message),
        }
    }

    fn add_normalized(&mut self, norm: String, r: PatternRef) {
        let idx = match self.by_text.get(&norm) {
            Some(i) => *i,
            None => {
                let word_start = norm.chars().next().is_some_and(is_word_char);
                let word_end = norm.chars().last().is_some_and(is_word_char);
                self.patterns.push(Pattern {
                    text: norm.clone(),
                    refs: Vec::new(),
                    word_start,
                    word_end,
                    short_region: false,
                });
                self.by_text.insert(norm, self.patterns.len() - 1);
                self.patterns.len() - 1
            }
        };
        let refs = &mut self.patterns[idx].refs;
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
}

/// Validate the `group` fields of the categories and set them: a group id is written like a
/// category id, names at least two categories (a group of one says nothing) and is not the id
/// of a category outside it (the fleet claims incident ids per group, under the same key shape
/// as an ungrouped category's).
fn check_groups(
    l: &mut Loader<'_>,
    path: &Path,
    categories: &mut [Category],
    groups: Vec<(usize, u16, String)>,
) {
    let mut members: AHashMap<&str, usize> = AHashMap::new();
    for (_, _, g) in &groups {
        *members.entry(g.as_str()).or_insert(0) += 1;
    }
    for (line, ci, g) in &groups {
        let own = &*categories[*ci as usize].id;
        if g.is_empty()
            || !g
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            l.err(
                path,
                *line,
                format!("group {g:?} must be lower-case letters, digits and _"),
            );
            continue;
        }
        if members.get(g.as_str()).copied().unwrap_or(0) < 2 {
            l.err(
                path,
                *line,
                format!("group {g:?} of {own:?} has no other category"),
            );
            continue;
        }
        let clash = categories.iter().enumerate().any(|(j, c)| {
            &*c.id == g
                && !groups
                    .iter()
                    .any(|(_, cj, gj)| usize::from(*cj) == j && gj == g)
        });
        if clash {
            l.err(
                path,
                *line,
                format!("group {g:?} is the id of a category outside the group"),
            );
            continue;
        }
        categories[*ci as usize].group = Arc::from(g.as_str());
    }
}

/// How to load a rule set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Leave out every category's keywords, exclusions and boosters (the categories stay, so
    /// claims and templates still name them): what detection finds without a category rule.
    pub without_category_keywords: bool,
}

impl RuleSet {
    /// Load and validate every file of `dir`.
    pub fn load(dir: &Path, normalizer: &Normalizer) -> Result<RuleSet, RuleErrors> {
        Self::load_with(dir, normalizer, LoadOptions::default())
    }

    /// [`RuleSet::load`] with options (the evaluations' "every category rule removed").
    pub fn load_with(
        dir: &Path,
        normalizer: &Normalizer,
        opts: LoadOptions,
    ) -> Result<RuleSet, RuleErrors> {
        let mut l = Loader {
            normalizer,
            errors: Vec::new(),
            patterns: Vec::new(),
            by_text: AHashMap::new(),
        };
        if !dir.is_dir() {
            l.err(dir, 0, "not a directory");
            return Err(RuleErrors(l.errors));
        }
        // Unknown top-level TOML files are probably misnamed rule files: say so.
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect();
            names.sort();
            for n in names {
                // Read by other stages: the evaluation's weights.
                let others = ["evaluation.toml"];
                if !RULE_FILES.contains(&n.as_str()) && !others.contains(&n.as_str()) {
                    l.err(
                        &dir.join(&n),
                        0,
                        format!(
                            "unknown rules file (expected one of {})",
                            RULE_FILES.join(", ")
                        ),
                    );
                }
            }
        }

        let mut settings = Settings::default();
        if let Some((path, src, d)) = l.parse::<DetectionFile>(dir, "detection.toml") {
            // A window is a whole number of buckets.
            for (section, bucket, window) in [
                ("window", d.window.bucket_secs, d.window.window_secs),
                ("emerging", d.emerging.bucket_secs, d.emerging.window_secs),
            ] {
                if bucket == 0 || window < bucket || window % bucket != 0 {
                    l.err(
                        &path,
                        0,
                        format!(
                            "[{section}] window_secs must be a positive multiple of bucket_secs"
                        ),
                    );
                }
            }
            let e = &d.emergency;
            if !(e.alpha > 0.0 && e.alpha < 1.0 && e.close_alpha > 0.0 && e.close_alpha < 1.0) {
                l.err(
                    &path,
                    0,
                    "[emergency] alpha and close_alpha must be between 0 and 1",
                );
            }
            if e.min_authors == 0 || d.rumor.min_authors == 0 {
                l.err(&path, 0, "min_authors must be at least 1");
            }
            if d.rumor.max_groups == 0 {
                l.err(&path, 0, "[rumor] max_groups must be at least 1");
            }
            let g = &d.emerging;
            if !(g.alpha > 0.0 && g.alpha < 1.0) || g.min_authors == 0 {
                l.err(
                    &path,
                    0,
                    "[emerging] alpha must be between 0 and 1 and min_authors at least 1",
                );
            }
            let ok = g.prior_per_hour > 0.0
                && (0.0..=1.0).contains(&g.max_rule_share)
                && g.group_overlap > 0.0
                && g.group_overlap <= 1.0
                && g.max_candidates > 0;
            if !ok {
                l.err(
                    &path,
                    0,
                    "[emerging] prior_per_hour and max_candidates must be positive, max_rule_share and group_overlap between 0 and 1",
                );
            }
            for b in &d.severity.boosters {
                l.add(&path, &src, b, PatternRef::Booster(None));
            }
            settings = Settings {
                window: d.window,
                emergency: d.emergency,
                rumor: d.rumor,
                emerging: d.emerging,
            };
        }

        let mut categories = Vec::new();
        let mut cat_index: AHashMap<String, u16> = AHashMap::new();
        // (line, category, group) of every `group` field, checked once all ids are known.
        let mut groups: Vec<(usize, u16, String)> = Vec::new();
        if let Some((path, src, f)) = l.parse::<CategoriesFile>(dir, "categories.toml") {
            for c in f.category {
                let line = line_at(&src, c.id.span().start);
                let id = c.id.get_ref().clone();
                if id.is_empty()
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    l.err(
                        &path,
                        line,
                        format!("category id {id:?} must be lower-case letters, digits and _"),
                    );
                }
                if cat_index.contains_key(&id) {
                    l.err(&path, line, format!("duplicate category id {id:?}"));
                    continue;
                }
                let sev = *c.severity.get_ref();
                if !(1..=5).contains(&sev) {
                    l.err(
                        &path,
                        line_at(&src, c.severity.span().start),
                        format!("severity {sev} is not in 1..=5"),
                    );
                }
                if c.keywords.is_empty() {
                    l.err(&path, line, format!("category {id:?} has no keywords"));
                }
                let ci = categories.len() as u16;
                let excl: AHashSet<String> = c
                    .exclude
                    .iter()
                    .map(|e| normalizer.normalize(e.get_ref().trim()).into_owned())
                    .collect();
                for k in &c.keywords {
                    if excl.contains(normalizer.normalize(k.get_ref().trim()).as_ref()) {
                        l.err(
                            &path,
                            line_at(&src, k.span().start),
                            format!("keyword {:?} is also an exclusion of {id:?}", k.get_ref()),
                        );
                    }
                    if !opts.without_category_keywords {
                        l.add(&path, &src, k, PatternRef::Keyword(ci));
                    }
                }
                if !opts.without_category_keywords {
                    for e in &c.exclude {
                        l.add(&path, &src, e, PatternRef::Exclude(ci));
                    }
                    for b in &c.boosters {
                        l.add(&path, &src, b, PatternRef::Booster(Some(ci)));
                    }
                }
                cat_index.insert(id.clone(), ci);
                categories.push(Category {
                    id: Arc::from(id.as_str()),
                    name_zh: c.name_zh,
                    name_en: c.name_en,
                    severity: sev.clamp(1, 5),
                    min_authors: c
                        .min_authors
                        .unwrap_or(settings.emergency.min_authors)
                        .max(1),
                    prior_per_hour: c
                        .prior_per_hour
                        .unwrap_or(settings.emergency.prior_per_hour),
                    group: Arc::from(id.as_str()),
                });
                if let Some(g) = &c.group {
                    groups.push((line_at(&src, g.span().start), ci, g.get_ref().clone()));
                }
            }
            check_groups(&mut l, &path, &mut categories, groups);
            for want in CATEGORY_IDS {
                if !cat_index.contains_key(want) {
                    l.err(
                        &path,
                        0,
                        format!(
                            "category {want:?} is missing (category ids are a public contract)"
                        ),
                    );
                }
            }
        }

        let mut cue_words = AHashSet::new();
        if let Some((path, src, f)) = l.parse::<RumorFile>(dir, "rumor.toml") {
            for (list, kind) in [
                (&f.enquiry, CueKind::Enquiry),
                (&f.correction, CueKind::Correction),
                (&f.spreading, CueKind::Spreading),
            ] {
                for p in list {
                    cue_words.insert(normalizer.normalize(p.get_ref().trim()).into_owned());
                    l.add(&path, &src, p, PatternRef::Cue(kind));
                }
            }
        }

        let mut claims = Vec::new();
        if let Some((path, src, f)) = l.parse::<ClaimsFile>(dir, "claims.toml") {
            let mut seen = AHashSet::new();
            for c in f.claim {
                let line = line_at(&src, c.id.span().start);
                let id = c.id.get_ref().clone();
                if !seen.insert(id.clone()) {
                    l.err(&path, line, format!("duplicate claim id {id:?}"));
                    continue;
                }
                let cat = c.category.get_ref();
                if cat != "other" && !cat_index.contains_key(cat) {
                    l.err(
                        &path,
                        line_at(&src, c.category.span().start),
                        format!("claim {id:?}: unknown category {cat:?}"),
                    );
                }
                if c.phrases.is_empty() {
                    l.err(&path, line, format!("claim {id:?} has no phrases"));
                }
                if c.require.len() > 8 {
                    l.err(
                        &path,
                        line,
                        format!("claim {id:?}: at most 8 `require` phrases"),
                    );
                }
                let ci = claims.len() as u16;
                for p in &c.phrases {
                    l.add(&path, &src, p, PatternRef::Claim(ci));
                }
                for (ri, p) in c.require.iter().take(8).enumerate() {
                    l.add(&path, &src, p, PatternRef::ClaimRequire(ci, ri as u8));
                }
                claims.push(Claim {
                    id: Arc::from(id.as_str()),
                    category: Arc::from(cat.as_str()),
                    rebuttal_zh: c.rebuttal_zh,
                    rebuttal_en: c.rebuttal_en,
                    link: c.link,
                    source: c.source,
                    required: c.require.len().min(8),
                });
            }
        }

        let mut requests = Vec::new();
        if let Some((path, src, f)) = l.parse::<RequestsFile>(dir, "requests.toml") {
            for r in f.request {
                let ri = requests.len() as u8;
                for p in &r.cues {
                    l.add(&path, &src, p, PatternRef::Request(ri));
                }
                requests.push(RequestKind {
                    id: Arc::from(r.id.get_ref().as_str()),
                    name_zh: r.name_zh,
                    name_en: r.name_en,
                });
            }
        }

        let mut gazetteer = Gazetteer::default();
        if let Some((path, src, f)) = l.parse::<RegionsFile>(dir, "regions.toml") {
            let lines = LineIndex::new(&src);
            let mut regions = Vec::with_capacity(f.region.len());
            let mut parents = Vec::with_capacity(f.region.len());
            let mut by_code: AHashMap<String, u32> = AHashMap::new();
            for r in f.region {
                let line = lines.line(r.code.span().start);
                let code = r.code.get_ref().clone();
                if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                    l.err(&path, line, format!("region code {code:?} is not 6 digits"));
                    continue;
                }
                let level = match r.level.get_ref().as_str() {
                    "province" => Level::Province,
                    "city" => Level::City,
                    "district" => Level::District,
                    other => {
                        l.err(
                            &path,
                            lines.line(r.level.span().start),
                            format!("unknown level {other:?}"),
                        );
                        continue;
                    }
                };
                if by_code.contains_key(&code) {
                    l.err(&path, line, format!("duplicate region code {code}"));
                    continue;
                }
                by_code.insert(code.clone(), regions.len() as u32);
                parents.push(
                    r.parent
                        .map(|p| (lines.line(p.span().start), p.into_inner())),
                );
                regions.push(Region {
                    code,
                    name: r.name,
                    level,
                    parent: None,
                    aliases: r.aliases,
                    en: r.en,
                    name_en: r.name_en,
                });
            }
            for (i, p) in parents.into_iter().enumerate() {
                if let Some((line, p)) = p {
                    match by_code.get(&p) {
                        Some(pi) => regions[i].parent = Some(*pi),
                        None => l.err(
                            &path,
                            line,
                            format!("region {}: unknown parent {p}", regions[i].code),
                        ),
                    }
                }
            }
            let full_names: AHashSet<String> = regions
                .iter()
                .map(|r| normalizer.normalize(r.name.trim()).into_owned())
                .collect();
            for (i, r) in regions.iter().enumerate() {
                let mut names = vec![r.name.clone()];
                names.extend(r.aliases.iter().cloned());
                names.extend(r.en.iter().cloned());
                for n in names {
                    let norm = normalizer.normalize(n.trim()).into_owned();
                    let len = norm.chars().count();
                    if len >= 2 {
                        // Two-character names ending in 区 (东区, 矿区, 城区) are ordinary words.
                        let weak = len == 2 && norm.ends_with('区');
                        let r = if weak {
                            PatternRef::WeakRegion(i as u32)
                        } else {
                            PatternRef::Region(i as u32)
                        };
                        l.add_normalized(norm, r);
                    }
                }
            }
            // Short forms are often inside other words (天全 in 明天全天, 道真 in 知道真相):
            // they need a word boundary; full names (…县, …区, …市) are taken as they are.
            for p in l.patterns.iter_mut() {
                p.short_region = !p.text.is_ascii()
                    && !full_names.contains(&p.text)
                    && p.refs
                        .iter()
                        .all(|r| matches!(r, PatternRef::Region(_) | PatternRef::WeakRegion(_)));
            }
            gazetteer = Gazetteer::new(regions, by_code);
        }

        // The trained rumor scorer, when the rules ship one (`huiying train rumor`).
        let model_path = dir.join(super::super::rumor_model::MODEL_PATH);
        let rumor_model = if model_path.is_file() {
            match super::super::rumor_model::RumorModel::load(&model_path) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    l.errors.push(RuleError {
                        file: model_path.clone(),
                        line: 0,
                        message: match e {
                            super::super::rumor_model::ModelError::Io { source, .. } => {
                                source.to_string()
                            }
                            super::super::rumor_model::ModelError::Format { what, .. } => what,
                        },
                    });
                    None
                }
            }
        } else {
            None
        };

        if !l.errors.is_empty() {
            return Err(RuleErrors(l.errors));
        }
        let texts: Vec<&str> = l.patterns.iter().map(|p| p.text.as_str()).collect();
        let scanner = super::scan::Scanner::new(&texts).map_err(|e| {
            RuleErrors(vec![RuleError {
                file: dir.to_path_buf(),
                line: 0,
                message: format!("cannot build automaton: {e}"),
            }])
        })?;
        Ok(RuleSet {
            settings,
            categories,
            claims,
            requests,
            gazetteer,
            scanner,
            patterns: l.patterns,
            cue_words,
            rumor_model,
            dir: dir.to_path_buf(),
        })
    }
}
