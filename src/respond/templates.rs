//! Notice templates (`rules/templates/*.toml`): one per incident kind and category (or
//! `default`), in Chinese and English, with `{placeholders}`; and the per-platform length rules,
//! enforced before anything is sent. A notice is never truncated: when the text does not fit,
//! the template's short variant is tried, and if that does not fit either rendering fails with
//! [`TemplateError::TooLong`]. The format is documented in `rules/README.md` ("`templates/`").

use super::matrix::Platform;
use crate::detect::diagnostics::{line_at, read_dir_toml, Problems};
use crate::detect::rules::{RuleErrors, RuleSet};
use crate::incidents::{Incident, IncidentKind};
use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// Weibo's limit, in characters (see [`text_len`] for how they are counted).
pub const WEIBO_LIMIT: usize = 140;
/// Mastodon's default limit, in characters.
pub const MASTODON_LIMIT: usize = 500;
/// What Mastodon counts for any URL, whatever its length.
pub const MASTODON_URL_CHARS: usize = 23;

/// The language of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Chinese.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// `zh` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// Parse `zh` or `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notice cannot be rendered for a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Even the shortest variant is longer than the platform allows. Nothing is ever cut.
    #[error(
        "notice too long for {platform}: {len} characters as {platform} counts them, limit {limit} \
         (the short variant was tried too; nothing was cut — shorten the text or edit the notice)"
    )]
    TooLong {
        /// The platform.
        platform: Platform,
        /// Length of the shortest variant, as the platform counts it.
        len: usize,
        /// The platform's limit.
        limit: usize,
    },
    /// The rules have no follow-up template of this purpose for this kind.
    #[error("no {} template for {} notices in rules/templates/", purpose.as_str(), kind.as_str())]
    NoTemplate {
        /// The incident kind.
        kind: IncidentKind,
        /// The follow-up purpose.
        purpose: Purpose,
    },
}

/// The platform's text limit, if it has one.
pub fn limit(platform: Platform) -> Option<usize> {
    match platform {
        Platform::Weibo => Some(WEIBO_LIMIT),
        Platform::Mastodon => Some(MASTODON_LIMIT),
        Platform::Webhook | Platform::File => None,
    }
}

/// The length of `text` as `platform` counts it (conservatively where the platform's own rule is
/// more lenient):
///
/// * Weibo: every character counts 1 — Chinese, ASCII, emoji alike — and a URL counts its own
///   length. Weibo itself counts two ASCII characters as one and a link as about 11 Chinese
///   characters (it shortens links to `t.cn`), so anything accepted here is accepted by Weibo
///   whenever each URL is at least 11 characters long, which every real `https://` URL is.
/// * Mastodon: characters (Unicode scalar values), with every `http://` / `https://` URL
///   counting exactly 23, as Mastodon documents.
/// * Webhook, file: characters (no limit applies).
pub fn text_len(platform: Platform, text: &str) -> usize {
    match platform {
        Platform::Mastodon => {
            let mut n = 0;
            let mut rest = text;
            while let Some((start, end)) = find_url(rest) {
                n += rest[..start].chars().count() + MASTODON_URL_CHARS;
                rest = &rest[end..];
            }
            n + rest.chars().count()
        }
        Platform::Weibo | Platform::Webhook | Platform::File => text.chars().count(),
    }
}

/// Check a finished text (a rendered or hand-edited notice) against the platform's limit;
/// returns its counted length.
pub fn check_length(platform: Platform, text: &str) -> Result<usize, TemplateError> {
    let len = text_len(platform, text);
    match limit(platform) {
        Some(limit) if len > limit => Err(TemplateError::TooLong {
            platform,
            len,
            limit,
        }),
        _ => Ok(len),
    }
}

/// The first URL in `s` as a byte range: `http://` or `https://` followed by visible ASCII, not
/// counting trailing punctuation (which Mastodon does not link either).
fn find_url(s: &str) -> Option<(usize, usize)> {
    let start = [s.find("https://"), s.find("http://")]
        .into_iter()
        .flatten()
        .min()?;
    let tail = &s[start..];
    let mut end = tail
        .find(|c: char| !c.is_ascii_graphic())
        .unwrap_or(tail.len());
    while end > 0 && tail[..end].ends_with(['.', ',', ';', ':', '!', '?', ')', '\'', '"']) {
        end -= 1;
    }
    Some((start, start + end))
}

// ---------------------------------------------------------------------------------------------
// Placeholders

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Region,
    RegionEn,
    RegionEnShort,
    CategoryZh,
    CategoryEn,
    Time,
    AdviceZh,
    AdviceEn,
    Claim,
    RebuttalZh,
    RebuttalEn,
    Link,
}

const VARS: [(&str, Var); 12] = [
    ("region", Var::Region),
    ("region_en", Var::RegionEn),
    ("region_en_short", Var::RegionEnShort),
    ("category_zh", Var::CategoryZh),
    ("category_en", Var::CategoryEn),
    ("time", Var::Time),
    ("advice_zh", Var::AdviceZh),
    ("advice_en", Var::AdviceEn),
    ("claim", Var::Claim),
    ("rebuttal_zh", Var::RebuttalZh),
    ("rebuttal_en", Var::RebuttalEn),
    ("link", Var::Link),
];

impl Var {
    fn rumor_only(self) -> bool {
        matches!(self, Var::Claim | Var::RebuttalZh | Var::RebuttalEn)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// A template text problem: the text to look for in the source (to find its line) and the
/// message.
struct TextError {
    needle: String,
    message: String,
}

/// Parse `{name}` placeholders; `{{` and `}}` stand for literal braces.
fn parse_text(s: &str, kind: IncidentKind) -> Result<Vec<Piece>, TextError> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '{' if it.peek().map(|x| x.1) == Some('{') => {
                it.next();
                lit.push('{');
            }
            '}' if it.peek().map(|x| x.1) == Some('}') => {
                it.next();
                lit.push('}');
            }
            '{' => {
                let Some(close) = s[i + 1..].find('}') else {
                    return Err(TextError {
                        needle: s[i..].chars().take(12).collect(),
                        message: "unclosed `{` (write `{{` for a literal brace)".into(),
                    });
                };
                let name = &s[i + 1..i + 1 + close];
                let Some((_, var)) = VARS.iter().find(|(n, _)| *n == name) else {
                    let known: Vec<&str> = VARS.iter().map(|(n, _)| *n).collect();
                    return Err(TextError {
                        needle: format!("{{{name}}}"),
                        message: format!(
                            "unknown placeholder {{{name}}} (known: {})",
                            known.join(", ")
                        ),
                    });
                };
                if var.rumor_only() && kind != IncidentKind::Rumor {
                    return Err(TextError {
                        needle: format!("{{{name}}}"),
                        message: format!(
                            "placeholder {{{name}}} is only available in rumor templates"
                        ),
                    });
                }
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(Piece::Var(*var));
                for _ in 0..=close {
                    it.next();
                }
            }
            '}' => {
                return Err(TextError {
                    needle: s[..=i]
                        .chars()
                        .rev()
                        .take(12)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect(),
                    message: "unmatched `}` (write `}}` for a literal brace)".into(),
                })
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

fn uses(pieces: &[Piece], v: Var) -> bool {
    pieces.contains(&Piece::Var(v))
}

// ---------------------------------------------------------------------------------------------
// Loading

/// What a notice is for: the first notice of an incident, an update when the incident grew,
/// or the all-clear when it closed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The first notice (`[[template]]` without `purpose`).
    #[default]
    Notice,
    /// The incident's severity rose or its region grew after a notice went out.
    Update,
    /// The incident closed after a notice went out.
    AllClear,
}

impl Purpose {
    /// The name (`notice`, `update`, `all_clear`).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Notice => "notice",
            Purpose::Update => "update",
            Purpose::AllClear => "all_clear",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateDef {
    kind: Spanned<String>,
    category: Spanned<String>,
    /// `update` or `all_clear` for follow-up templates (one per kind, category "default").
    #[serde(default)]
    purpose: Option<Spanned<String>>,
    zh: Spanned<String>,
    en: Spanned<String>,
    #[serde(default)]
    zh_short: Option<Spanned<String>>,
    #[serde(default)]
    en_short: Option<Spanned<String>>,
    #[serde(default)]
    advice_zh: Option<String>,
    #[serde(default)]
    advice_en: Option<String>,
    #[serde(default)]
    rebuttal_zh: Option<String>,
    #[serde(default)]
    rebuttal_en: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatesFile {
    #[serde(default)]
    template: Vec<TemplateDef>,
}

#[derive(Debug, Clone)]
struct Template {
    zh: Vec<Piece>,
    en: Vec<Piece>,
    zh_short: Option<Vec<Piece>>,
    en_short: Option<Vec<Piece>>,
    advice_zh: Option<String>,
    advice_en: Option<String>,
    rebuttal_zh: Option<String>,
    rebuttal_en: Option<String>,
    link: Option<String>,
}

/// The validated templates, with the category and region names they need.
#[derive(Debug, Clone)]
pub struct Templates {
    by_key: AHashMap<(IncidentKind, String), Template>,
    /// Follow-up texts per kind and purpose (update, all-clear); their advice and link come from
    /// the incident's category template.
    followups: AHashMap<(IncidentKind, Purpose), Template>,
    /// Category id → (Chinese, English) name.
    categories: AHashMap<String, (String, String)>,
    /// Region code → (English name with its province, the name without its suffix), where
    /// the gazetteer has one ("Haidian District, Beijing", "Haidian").
    region_en: AHashMap<String, (String, String)>,
}

fn kind_name(k: IncidentKind) -> &'static str {
    k.as_str()
}

/// An English region name without its generic suffix, for headlines ("Haidian District" →
/// "Haidian", "Enshi Autonomous Prefecture" → "Enshi"); names of zones are kept whole.
fn english_stem(name: &str) -> &str {
    const SUFFIXES: [&str; 12] = [
        " Autonomous Prefecture",
        " Autonomous County",
        " Autonomous Banner",
        " Forestry District",
        " Special District",
        " New Area",
        " Prefecture",
        " District",
        " County",
        " League",
        " Banner",
        " City",
    ];
    SUFFIXES
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|stem| !stem.is_empty())
        .unwrap_or(name)
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Templates {
    /// Load and validate every `*.toml` of the templates directory `dir` (normally
    /// `rules/templates/`). Every problem is reported as `file:line: message`.
    pub fn load(dir: &Path, rules: &RuleSet) -> Result<Templates, RuleErrors> {
        let mut p = Problems::new();
        if !dir.is_dir() {
            p.at(dir, 0, "not a directory");
            return Err(RuleErrors(p.errors));
        }
        let files = read_dir_toml::<TemplatesFile>(dir, &mut p);
        if !p.errors.is_empty() {
            // A file that does not parse would make cross-file checks report phantom problems
            // (its accounts or defaults missing): report the syntax first.
            return Err(RuleErrors(p.errors));
        }
        let mut by_key: AHashMap<(IncidentKind, String), Template> = AHashMap::new();
        let mut at: AHashMap<(IncidentKind, String), (std::path::PathBuf, usize)> = AHashMap::new();
        let mut followups: AHashMap<(IncidentKind, Purpose), Template> = AHashMap::new();
        for (path, src, f) in &files {
            for d in &f.template {
                let line = line_at(src, d.kind.span().start);
                let purpose = match d.purpose.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
                    None | Some(("notice", _)) => Purpose::Notice,
                    Some(("update", _)) => Purpose::Update,
                    Some(("all_clear", _)) => Purpose::AllClear,
                    Some((other, span)) => {
                        p.at(
                            path,
                            line_at(src, span.start),
                            format!("unknown purpose {other:?} (notice, update or all_clear)"),
                        );
                        continue;
                    }
                };
                let kind = match d.kind.get_ref().as_str() {
                    "emergency" => IncidentKind::Emergency,
                    "rumor" => IncidentKind::Rumor,
                    other => {
                        p.at(
                            path,
                            line,
                            format!("unknown kind {other:?} (emergency or rumor)"),
                        );
                        continue;
                    }
                };
                let cat = d.category.get_ref().clone();
                let cat_line = line_at(src, d.category.span().start);
                if purpose != Purpose::Notice && cat != "default" {
                    p.at(
                        path,
                        cat_line,
                        format!(
                            "{} templates are one per kind: category = \"default\" (the advice comes from the category's notice template)",
                            purpose.as_str()
                        ),
                    );
                    continue;
                }
                let known = cat == "default"
                    || rules.category_index(&cat).is_some()
                    || (kind == IncidentKind::Rumor && cat == "other");
                if !known {
                    p.at(
                        path,
                        cat_line,
                        format!(
                            "unknown category {cat:?} (a category id{} or \"default\")",
                            if kind == IncidentKind::Rumor {
                                ", \"other\""
                            } else {
                                ""
                            }
                        ),
                    );
                    continue;
                }
                let key = (kind, cat.clone());
                if purpose != Purpose::Notice && followups.contains_key(&(kind, purpose)) {
                    p.at(
                        path,
                        cat_line,
                        format!(
                            "duplicate {} template for {}",
                            purpose.as_str(),
                            kind_name(kind)
                        ),
                    );
                    continue;
                }
                if let Some((f0, l0)) = at.get(&key).filter(|_| purpose == Purpose::Notice) {
                    p.at(
                        path,
                        cat_line,
                        format!(
                            "duplicate template for {} / {cat} (first at {}:{l0})",
                            kind_name(kind),
                            f0.display()
                        ),
                    );
                    continue;
                }
                let mut text = |s: &Spanned<String>, field: &str| -> Option<Vec<Piece>> {
                    if s.get_ref().trim().is_empty() {
                        p.at(
                            path,
                            line_at(src, s.span().start),
                            format!("{field} is empty"),
                        );
                        return None;
                    }
                    match parse_text(s.get_ref(), kind) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            let span = s.span();
                            let raw = src.get(span.start..span.end).unwrap_or("");
                            let off = raw.find(&e.needle).map(|o| span.start + o);
                            p.at(
                                path,
                                line_at(src, off.unwrap_or(span.start)),
                                format!("{field}: {}", e.message),
                            );
                            None
                        }
                    }
                };
                let zh = text(&d.zh, "zh");
                let en = text(&d.en, "en");
                let zh_short = d.zh_short.as_ref().map(|s| text(s, "zh_short"));
                let en_short = d.en_short.as_ref().map(|s| text(s, "en_short"));
                let (Some(zh), Some(en), Some(zh_short), Some(en_short)) = (
                    zh,
                    en,
                    zh_short.map_or(Some(None), |x| x.map(Some)),
                    en_short.map_or(Some(None), |x| x.map(Some)),
                ) else {
                    continue;
                };
                if purpose != Purpose::Notice {
                    followups.insert(
                        (kind, purpose),
                        Template {
                            zh,
                            en,
                            zh_short,
                            en_short,
                            advice_zh: None,
                            advice_en: None,
                            rebuttal_zh: None,
                            rebuttal_en: None,
                            link: None,
                        },
                    );
                    continue;
                }
                at.insert(key.clone(), (path.clone(), cat_line));
                by_key.insert(
                    key,
                    Template {
                        zh,
                        en,
                        zh_short,
                        en_short,
                        advice_zh: d.advice_zh.clone(),
                        advice_en: d.advice_en.clone(),
                        rebuttal_zh: d.rebuttal_zh.clone(),
                        rebuttal_en: d.rebuttal_en.clone(),
                        link: d.link.clone(),
                    },
                );
            }
        }

        // Every kind has a default; the others inherit its advice, rebuttal and link.
        for kind in [IncidentKind::Emergency, IncidentKind::Rumor] {
            let Some(def) = by_key.get(&(kind, "default".to_string())).cloned() else {
                if !files.is_empty() {
                    p.at(
                        dir,
                        0,
                        format!(
                            "no default template for kind {:?} (category = \"default\")",
                            kind_name(kind)
                        ),
                    );
                }
                continue;
            };
            for ((k, _), t) in by_key.iter_mut() {
                if *k != kind {
                    continue;
                }
                for (mine, theirs) in [
                    (&mut t.advice_zh, &def.advice_zh),
                    (&mut t.advice_en, &def.advice_en),
                    (&mut t.rebuttal_zh, &def.rebuttal_zh),
                    (&mut t.rebuttal_en, &def.rebuttal_en),
                    (&mut t.link, &def.link),
                ] {
                    if mine.is_none() {
                        mine.clone_from(theirs);
                    }
                }
            }
        }
        // A placeholder whose value can be missing.
        let mut keys: Vec<&(IncidentKind, String)> = by_key.keys().collect();
        keys.sort();
        for key in keys {
            let t = &by_key[key];
            let texts = [
                Some(&t.zh),
                Some(&t.en),
                t.zh_short.as_ref(),
                t.en_short.as_ref(),
            ];
            for (var, name, value) in [
                (Var::AdviceZh, "advice_zh", &t.advice_zh),
                (Var::AdviceEn, "advice_en", &t.advice_en),
                (Var::RebuttalZh, "rebuttal_zh", &t.rebuttal_zh),
                (Var::RebuttalEn, "rebuttal_en", &t.rebuttal_en),
            ] {
                if value.is_none() && texts.iter().flatten().any(|x| uses(x, var)) {
                    let (f, l) = at.get(key).cloned().unwrap_or((dir.to_path_buf(), 0));
                    p.at(
                        &f,
                        l,
                        format!(
                            "{} / {}: uses {{{name}}} but neither it nor the {} default sets {name}",
                            kind_name(key.0),
                            key.1,
                            kind_name(key.0)
                        ),
                    );
                }
            }
        }
        p.finish()?;

        let mut categories: AHashMap<String, (String, String)> = rules
            .categories
            .iter()
            .map(|c| (c.id.to_string(), (c.name_zh.clone(), c.name_en.clone())))
            .collect();
        categories
            .entry("other".into())
            .or_insert_with(|| ("其他".into(), "Other".into()));
        let g = &rules.gazetteer;
        let region_en = (0..g.len() as u32)
            .filter_map(|i| {
                let r = g.get(i);
                let full = g.english_name(i);
                let short = if r.name_en.is_empty() {
                    r.en.first().map(|e| title_case(e))?
                } else {
                    english_stem(&r.name_en).to_string()
                };
                let full = if full.is_empty() {
                    short.clone()
                } else {
                    full.to_string()
                };
                Some((r.code.clone(), (full, short)))
            })
            .collect();
        Ok(Templates {
            by_key,
            followups,
            categories,
            region_en,
        })
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none (never, once loaded: each kind has a default).
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether a template specific to (kind, category) exists (else the default is used).
    pub fn has_specific(&self, kind: IncidentKind, category: &str) -> bool {
        category != "default" && self.by_key.contains_key(&(kind, category.to_string()))
    }

    fn template(&self, kind: IncidentKind, category: &str) -> Option<&Template> {
        self.by_key
            .get(&(kind, category.to_string()))
            .or_else(|| self.by_key.get(&(kind, "default".to_string())))
    }

    /// Render the notice for `incident` in `lang`, checked against `platform`'s limit (the
    /// short variant is used when the full one does not fit).
    pub fn render(
        &self,
        incident: &Incident,
        lang: Lang,
        platform: Platform,
    ) -> Result<String, TemplateError> {
        self.render_with_link(incident, lang, platform, None)
    }

    /// [`Templates::render`] with `{link}` set by the caller (e.g. a notice's own page) instead
    /// of the claim's or the template's link.
    pub fn render_with_link(
        &self,
        incident: &Incident,
        lang: Lang,
        platform: Platform,
        link: Option<&str>,
    ) -> Result<String, TemplateError> {
        let Some(t) = self.template(incident.kind, &incident.category) else {
            // Unreachable once loaded (each kind has a default); render nothing rather than panic.
            return Ok(String::new());
        };
        self.render_texts(t, t, incident, lang, platform, link, incident.opened_at)
    }

    /// A category's Chinese and English names (`other`: 其他 / Other; an unknown id: itself).
    pub fn category_names<'a>(&'a self, id: &'a str) -> (&'a str, &'a str) {
        self.categories
            .get(id)
            .map(|(z, e)| (z.as_str(), e.as_str()))
            .unwrap_or((id, id))
    }

    /// Whether a follow-up template (update or all-clear) exists for `kind`.
    pub fn has_followup(&self, kind: IncidentKind, purpose: Purpose) -> bool {
        purpose == Purpose::Notice || self.followups.contains_key(&(kind, purpose))
    }

    /// Render a notice of `purpose` for `incident` as it is at `at` (ms; `{time}` is this
    /// time for follow-ups, the incident's opening for the first notice). The follow-up texts
    /// take their advice and link from the incident's category template.
    /// [`TemplateError::NoTemplate`] when the rules have no such follow-up template.
    pub fn render_purpose(
        &self,
        incident: &Incident,
        purpose: Purpose,
        lang: Lang,
        platform: Platform,
        link: Option<&str>,
        at: i64,
    ) -> Result<String, TemplateError> {
        if purpose == Purpose::Notice {
            return self.render_with_link(incident, lang, platform, link);
        }
        let Some(base) = self.template(incident.kind, &incident.category) else {
            return Ok(String::new());
        };
        let Some(texts) = self.followups.get(&(incident.kind, purpose)) else {
            return Err(TemplateError::NoTemplate {
                kind: incident.kind,
                purpose,
            });
        };
        self.render_texts(texts, base, incident, lang, platform, link, at)
    }

    #[allow(clippy::too_many_arguments)]
    fn render_texts(
        &self,
        texts: &Template,
        t: &Template,
        incident: &Incident,
        lang: Lang,
        platform: Platform,
        link: Option<&str>,
        at: i64,
    ) -> Result<String, TemplateError> {
        let (full, short) = match lang {
            Lang::Zh => (&texts.zh, texts.zh_short.as_ref()),
            Lang::En => (&texts.en, texts.en_short.as_ref()),
        };
        let text = self.fill(full, t, incident, lang, link, at);
        let err = match check_length(platform, &text) {
            Ok(_) => return Ok(text),
            Err(e) => e,
        };
        match short {
            Some(s) => {
                let text = self.fill(s, t, incident, lang, link, at);
                check_length(platform, &text).map(|_| text)
            }
            None => Err(err),
        }
    }

    fn fill(
        &self,
        pieces: &[Piece],
        t: &Template,
        inc: &Incident,
        lang: Lang,
        link: Option<&str>,
        at: i64,
    ) -> String {
        let (cat_zh, cat_en) = self.category_names(&inc.category);
        let region = inc.region.as_ref().map(|r| r.name.as_str());
        let names_en = inc
            .region
            .as_ref()
            .and_then(|r| self.region_en.get(&r.code));
        let region_en = names_en.map(|(full, _)| full.as_str()).or(region);
        let region_en_short = names_en.map(|(_, short)| short.as_str()).or(region);
        let rebuttal = inc.rebuttal.as_ref();
        let link = link
            .or(rebuttal.map(|r| r.link.as_str()).filter(|l| !l.is_empty()))
            .or(t.link.as_deref())
            .unwrap_or("");
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => match v {
                    Var::Region => out.push_str(region.unwrap_or("本地")),
                    Var::RegionEn => out.push_str(region_en.unwrap_or("Local")),
                    Var::RegionEnShort => out.push_str(region_en_short.unwrap_or("Local")),
                    Var::CategoryZh => out.push_str(cat_zh),
                    Var::CategoryEn => out.push_str(cat_en),
                    Var::Time => out.push_str(&clock(at)),
                    Var::AdviceZh => out.push_str(t.advice_zh.as_deref().unwrap_or("")),
                    Var::AdviceEn => out.push_str(t.advice_en.as_deref().unwrap_or("")),
                    Var::Claim => out.push_str(&claim(inc, lang)),
                    Var::RebuttalZh => out.push_str(
                        rebuttal
                            .map(|r| r.zh.as_str())
                            .or(t.rebuttal_zh.as_deref())
                            .unwrap_or(""),
                    ),
                    Var::RebuttalEn => out.push_str(
                        rebuttal
                            .map(|r| r.en.as_str())
                            .or(t.rebuttal_en.as_deref())
                            .unwrap_or(""),
                    ),
                    Var::Link => out.push_str(link),
                },
            }
        }
        out.trim().to_string()
    }
}

/// `HH:MM` in China Standard Time (UTC+08:00) of an event time in milliseconds.
fn clock(ms: i64) -> String {
    let Some(cst) = chrono::FixedOffset::east_opt(8 * 3600) else {
        return "--:--".into();
    };
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&cst).format("%H:%M").to_string())
        .unwrap_or_else(|| "--:--".into())
}

/// What a rumor says, from its most frequent terms (at most three).
fn claim(inc: &Incident, lang: Lang) -> String {
    let terms: Vec<&str> = inc
        .top_terms
        .iter()
        .map(String::as_str)
        .filter(|t| !t.trim().is_empty())
        .take(3)
        .collect();
    match (terms.is_empty(), lang) {
        (true, Lang::Zh) => "有关信息".into(),
        (true, Lang::En) => "an incident".into(),
        (false, Lang::Zh) => terms.join("、"),
        (false, Lang::En) => terms.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_parse_with_escapes() {
        let p = parse_text("【{region}】{{x}} {time}", IncidentKind::Emergency).ok();
        assert_eq!(
            p,
            Some(vec![
                Piece::Lit("【".into()),
                Piece::Var(Var::Region),
                Piece::Lit("】{x} ".into()),
                Piece::Var(Var::Time),
            ])
        );
        let e = parse_text("a {regoin} b", IncidentKind::Emergency).expect_err("unknown");
        assert_eq!(e.needle, "{regoin}");
        assert!(e.message.contains("unknown placeholder {regoin}"));
        assert!(parse_text("a {region", IncidentKind::Emergency).is_err());
        assert!(parse_text("a } b", IncidentKind::Emergency).is_err());
        let e = parse_text("{claim}", IncidentKind::Emergency).expect_err("rumor only");
        assert!(e.message.contains("only available in rumor"));
        assert!(parse_text("{claim}{rebuttal_en}", IncidentKind::Rumor).is_ok());
    }

    #[test]
    fn lengths_follow_each_platform() {
        let url = "https://www.example.gov.cn/a/very/long/path/that/goes/on/and/on.html";
        let text = format!("积水严重，请绕行。详见{url}。");
        let cjk = "积水严重，请绕行。详见".chars().count() + 1;
        assert_eq!(text_len(Platform::Weibo, &text), cjk + url.chars().count());
        assert_eq!(text_len(Platform::Mastodon, &text), cjk + 23);
        // Trailing punctuation is not part of the URL; two URLs count 23 each.
        assert_eq!(
            text_len(Platform::Mastodon, "see http://a.cn/x. and https://b.cn"),
            4 + 23 + 6 + 23
        );
        assert_eq!(text_len(Platform::Mastodon, "no links"), 8);
        assert!(check_length(Platform::Weibo, &"字".repeat(140)).is_ok());
        assert_eq!(
            check_length(Platform::Weibo, &"字".repeat(141)),
            Err(TemplateError::TooLong {
                platform: Platform::Weibo,
                len: 141,
                limit: 140
            })
        );
        assert!(check_length(Platform::File, &"字".repeat(10_000)).is_ok());
    }

    #[test]
    fn clock_is_china_time() {
        // 2024-07-01T06:05:00Z is 14:05 in Beijing.
        assert_eq!(clock(1_719_813_900_000), "14:05");
        assert_eq!(title_case("hong kong"), "Hong Kong");
    }
}
