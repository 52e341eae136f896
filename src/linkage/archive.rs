//! The public archive of published notices and rebuttals: one server-rendered page, no
//! JavaScript, searchable by text, date, region, category and kind, so a citizen can check
//! whether a claim was debunked and what an office said when (`GET /archive`).

use super::cap;
use crate::detect::gazetteer::{check_region_filter, code_covers};
use crate::incidents::IncidentKind;
use crate::respond::notices::Notice;
use crate::respond::templates::Lang;
use serde::Deserialize;

/// The page's style (`GET /archive/archive.css`: the API's content security policy allows no
/// inline style).
pub const CSS: &str = "body{font-family:\"Noto Sans CJK SC\",\"PingFang SC\",\"Microsoft YaHei\",sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#1a1a1a}
form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:1rem 0}
label{display:flex;flex-direction:column;font-size:.85rem}
input,select,button{font-size:1rem;padding:.3rem;font-family:inherit}
article{border-top:1px solid #ccc;padding:.6rem 0}
.meta{color:#555;font-size:.85rem}.kind-rumor{color:#a40;font-weight:bold}.kind-emergency{color:#036;font-weight:bold}
p{white-space:pre-wrap;margin:.3rem 0}.error{color:#b00;font-weight:bold}
";

/// Results shown at most (newest first).
pub const ARCHIVE_RESULTS: usize = 100;

/// What the archive is asked: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveQuery {
    /// Words the notice's text holds (any language, case-insensitive).
    pub q: Option<String>,
    /// A 6-digit region code (a province or city covers what is under it).
    pub region: Option<String>,
    /// A category id.
    pub category: Option<String>,
    /// `emergency` (notices) or `rumor` (rebuttals).
    pub kind: Option<String>,
    /// First and last day, `YYYY-MM-DD`, Beijing time.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A query checked: what [`select`] filters by.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    words: Option<String>,
    region: Option<String>,
    category: Option<String>,
    kind: Option<IncidentKind>,
    from: Option<i64>,
    to: Option<i64>,
}

fn day_start(d: &str, field: &str) -> Result<i64, String> {
    let date = chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{field}: {d:?} is not a day (YYYY-MM-DD)"))?;
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    Ok(midnight.and_utc().timestamp_millis() - 8 * 3_600_000)
}

impl ArchiveQuery {
    /// The filter, or what is wrong with the query (the field named).
    pub fn check(&self) -> Result<Filter, String> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let words = nonempty(&self.q);
        if words.as_ref().is_some_and(|w| w.chars().count() > 100) {
            return Err("q: at most 100 characters".into());
        }
        let region = check_region_filter(self.region.as_deref())?;
        let category = nonempty(&self.category);
        if let Some(c) = &category {
            if !c
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(format!("category: {c:?} (a category id: a-z, 0-9, _)"));
            }
        }
        let kind = match nonempty(&self.kind).as_deref() {
            None => None,
            Some("emergency") => Some(IncidentKind::Emergency),
            Some("rumor") => Some(IncidentKind::Rumor),
            Some(k) => return Err(format!("kind: {k:?} (emergency, rumor)")),
        };
        let from = nonempty(&self.from)
            .map(|d| day_start(&d, "from"))
            .transpose()?;
        let to = nonempty(&self.to)
            .map(|d| day_start(&d, "to").map(|t| t + 86_400_000))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err("from: after to".into());
            }
        }
        Ok(Filter {
            words: words.map(|w| w.to_lowercase()),
            region,
            category,
            kind,
            from,
            to,
        })
    }
}

impl Filter {
    /// Whether `f` selects the notice `n` (a notice or a rebuttal; emerging-incident notices
    /// are not public); the caller checks it is published ([`cap::published`]).
    pub fn matches(&self, n: &Notice) -> bool {
        matches!(n.kind, IncidentKind::Emergency | IncidentKind::Rumor)
            && self.kind.is_none_or(|k| n.kind == k)
            && self.category.as_deref().is_none_or(|c| n.category == c)
            && self.region.as_deref().is_none_or(|r| {
                n.region
                    .as_ref()
                    .is_some_and(|reg| code_covers(r, &reg.code))
            })
            && (self.from.is_none() && self.to.is_none() || {
                let at = cap::sent_at(n);
                self.from.is_none_or(|t| at >= t) && self.to.is_none_or(|t| at < t)
            })
            && self
                .words
                .as_deref()
                .is_none_or(|w| n.texts.values().any(|t| t.text.to_lowercase().contains(w)))
    }
}

/// The published notices `f` selects, newest first, at most `limit` (the archive shows
/// [`ARCHIVE_RESULTS`], a feed [`super::stage::FEED_ENTRIES`]); and how many matched in all.
pub fn select<'a>(published: &'a [Notice], f: &Filter, limit: usize) -> (Vec<&'a Notice>, usize) {
    let mut hits: Vec<&Notice> = published.iter().filter(|n| f.matches(n)).collect();
    hits.sort_by(|a, b| {
        cap::sent_at(b)
            .cmp(&cap::sent_at(a))
            .then_with(|| b.id.cmp(&a.id))
    });
    let total = hits.len();
    hits.truncate(limit);
    (hits, total)
}

/// The archive page: the search form (filled with `q`), then the notices, each with its day,
/// kind, category and region, its texts (Chinese first) and its CAP alert.
pub fn page(
    hits: &[&Notice],
    total: usize,
    q: &ArchiveQuery,
    category_name: impl Fn(&str) -> String,
    error: Option<&str>,
) -> String {
    let e = crate::html_escape;
    let v = |o: &Option<String>| e(o.as_deref().unwrap_or(""));
    let mut o = String::with_capacity(8192);
    o.push_str(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>通告与辟谣档案 Notices and rebuttals archive</title>\
<link rel=\"stylesheet\" href=\"/archive/archive.css\"></head><body>\n",
    );
    o.push_str("<h1>通告与辟谣档案 <small>Notices and rebuttals archive</small></h1>\n");
    o.push_str("<form method=\"get\" action=\"/archive\">\n");
    // One labelled field of the form, filled with what was asked.
    let input = |o: &mut String, label: &str, name: &str, value: &Option<String>, attrs: &str| {
        o.push_str(&format!(
            "<label>{label}<input name=\"{name}\" value=\"{}\"{attrs}></label>\n",
            v(value)
        ));
    };
    input(&mut o, "关键词 Words", "q", &q.q, " maxlength=\"100\"");
    input(
        &mut o,
        "地区代码 Region code",
        "region",
        &q.region,
        " size=\"7\" pattern=\"[0-9]{6}\"",
    );
    input(
        &mut o,
        "类别 Category",
        "category",
        &q.category,
        " size=\"12\"",
    );
    let sel = |k: &str| {
        if q.kind.as_deref() == Some(k) {
            " selected"
        } else {
            ""
        }
    };
    o.push_str(&format!(
        "<label>类型 Kind<select name=\"kind\"><option value=\"\">全部 All</option>\
<option value=\"emergency\"{}>通告 Notices</option><option value=\"rumor\"{}>辟谣 Rebuttals</option></select></label>\n",
        sel("emergency"),
        sel("rumor")
    ));
    input(&mut o, "自 From", "from", &q.from, " type=\"date\"");
    input(&mut o, "至 To", "to", &q.to, " type=\"date\"");
    o.push_str("<button type=\"submit\">搜索 Search</button>\n</form>\n");
    if let Some(err) = error {
        o.push_str(&format!("<p class=\"error\">{}</p>\n", e(err)));
    } else {
        o.push_str(&format!(
            "<p class=\"meta\">共 {total} 条，显示最新 {} 条 · {total} found, the newest {} shown</p>\n",
            hits.len(),
            hits.len()
        ));
    }
    for n in hits {
        let (kind_zh, kind_en, class) = match n.kind {
            IncidentKind::Rumor => ("辟谣", "Rebuttal", "kind-rumor"),
            _ => ("通告", "Notice", "kind-emergency"),
        };
        let day = cap::cap_time(cap::sent_at(n));
        let region = n
            .region
            .as_ref()
            .map(|r| format!(" · {} {}", e(&r.name), e(&r.code)))
            .unwrap_or_default();
        o.push_str(&format!("<article id=\"{}\">\n", e(&n.id)));
        o.push_str(&format!(
            "<div class=\"meta\"><time datetime=\"{day}\">{}</time> · <span class=\"{class}\">{kind_zh} {kind_en}</span> · {}{region}</div>\n",
            e(day.get(..16).unwrap_or(&day)).replace('T', " "),
            e(&category_name(&n.category)),
        ));
        for (lang, text) in cap::texts(n) {
            o.push_str(&format!(
                "<p lang=\"{}\">{}</p>\n",
                match lang {
                    Lang::Zh => "zh-CN",
                    Lang::En => "en",
                },
                e(text)
            ));
        }
        if n.kind == IncidentKind::Emergency {
            o.push_str(&format!(
                "<div class=\"meta\"><a href=\"/cap/{}.xml\">CAP 1.2</a></div>\n",
                e(&n.id)
            ));
        }
        o.push_str("</article>\n");
    }
    o.push_str("<p class=\"meta\"><a href=\"/feeds/notices.atom\">Atom</a> · <a href=\"/feeds/notices.rss\">RSS</a></p>\n</body></html>\n");
    o
}
