//! The report as files: JSON (the figures as [`Opinion`] serialises), CSV (one row per figure:
//! `section,key,value,previous`, formulas defused) and one self-contained HTML page: inline SVG
//! charts, no script, no fonts or styles from elsewhere, Chinese first and English, A4 in print.

use super::{local_day, Opinion};
use crate::html_escape as esc;
use std::fmt::Write;

/// The report as pretty JSON.
pub fn json(o: &Opinion) -> String {
    serde_json::to_string_pretty(o).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The CSV header.
pub const CSV_HEADER: &str = "section,key,value,previous";

/// The report as CSV: `section,key,value,previous` rows.
pub fn csv(o: &Opinion) -> String {
    let f = crate::cases::api::csv_field;
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    let mut row = |section: &str, key: &str, value: String, previous: String| {
        let _ = writeln!(out, "{},{},{},{}", section, f(key), f(&value), f(&previous));
    };
    row(
        "total",
        "mentions",
        o.mentions.to_string(),
        o.previous_mentions.to_string(),
    );
    row("total", "reposts", o.reposts.to_string(), String::new());
    row("total", "replies", o.replies.to_string(), String::new());
    row(
        "total",
        "incidents",
        o.incidents.total.to_string(),
        String::new(),
    );
    row(
        "total",
        "hours_covered",
        o.hours_covered.to_string(),
        o.hours_total.to_string(),
    );
    for (d, n) in &o.daily {
        row("day", d, n.to_string(), String::new());
    }
    for (h, n) in &o.hourly {
        row("hour", &hour_label(*h), n.to_string(), String::new());
    }
    for t in &o.terms {
        row("term", &t.term, t.count.to_string(), t.previous.to_string());
    }
    for (k, n) in &o.incidents.by_kind {
        row("incidents_by_kind", k, n.to_string(), String::new());
    }
    for (k, n) in &o.incidents.by_category {
        row("incidents_by_category", k, n.to_string(), String::new());
    }
    for (k, n) in &o.incidents.by_region {
        row("incidents_by_region", k, n.to_string(), String::new());
    }
    for (i, n) in o.incidents.by_severity.iter().enumerate() {
        row(
            "incidents_by_severity",
            &(i + 1).to_string(),
            n.to_string(),
            String::new(),
        );
    }
    for r in &o.regions {
        row(
            "region",
            &r.name,
            r.mentions.to_string(),
            r.incidents.to_string(),
        );
    }
    for r in &o.rumors {
        let ttr = r
            .time_to_rebuttal_secs
            .map(|s| s.to_string())
            .unwrap_or_default();
        row(
            "rumor",
            &r.headline,
            r.authors.to_string(),
            format!("{} {ttr}", r.rebuttal),
        );
    }
    for p in &o.posts {
        row("post", &p.text, p.reposts.to_string(), p.id.clone());
    }
    for n in &o.notices {
        row("notice", &n.id, n.text.clone(), n.incident_id.clone());
    }
    out
}

fn hour_label(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:00Z").to_string())
        .unwrap_or_default()
}

/// Local `YYYY-MM-DD HH:MM` (UTC+8).
fn local(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms + i64::from(super::CST_OFFSET_SECS) * 1000)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn change(now: u64, before: u64, compared: bool) -> String {
    if !compared {
        return "—".into();
    }
    if before == 0 {
        return if now == 0 {
            "—".into()
        } else {
            "新 new".into()
        };
    }
    let c = now as f64 / before as f64 - 1.0;
    format!("{:+.0}%", c * 100.0)
}

/// Mentions per hour as bars (one per hour; the day's start labelled).
fn volume_svg(o: &Opinion) -> String {
    let n = o.hourly.len().max(1);
    let (w, h, left, bottom, top) = (720.0, 190.0, 44.0, 22.0, 10.0);
    let max = o.hourly.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let bw = (w - left) / n as f64;
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"每小时帖子数 mentions per hour\">"
    );
    for k in 0..=4 {
        let y = top + (h - bottom - top) * (1.0 - k as f64 / 4.0);
        let v = max * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{w}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"lbl\" x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{v:.0}</text>",
            x = left - 4.0,
            ty = y + 4.0
        );
    }
    for (i, (hour, v)) in o.hourly.iter().enumerate() {
        let bh = (h - bottom - top) * (*v as f64 / max);
        let x = left + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{bw2:.2}\" height=\"{bh:.2}\" fill=\"#1f5fbf\"><title>{t} {v}</title></rect>",
            y = h - bottom - bh,
            bw2 = (bw * 0.85).max(0.5),
            t = local(*hour)
        );
        let local_hour = (hour + i64::from(super::CST_OFFSET_SECS) * 1000).rem_euclid(86_400_000);
        if local_hour == 0 || i == 0 {
            let _ = write!(
                s,
                "<text class=\"lbl\" x=\"{x:.1}\" y=\"{y:.1}\">{d}</text>",
                y = h - 6.0,
                d = &local_day(*hour, super::CST_OFFSET_SECS)[5..]
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars of `(label, value)`.
fn bars_svg(rows: &[(String, u64)], colour: &str, what: &str, w: f64) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">无 none</p>".into();
    }
    let (row_h, left) = (20.0, 150.0);
    let h = row_h * rows.len() as f64 + 4.0;
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1) as f64;
    let mut s =
        format!("<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{what}\">");
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 2.0;
        let bw = (w - left - 60.0) * (*v as f64 / max);
        let _ = write!(
            s,
            "<text class=\"lbl\" x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\">{l}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh}\" fill=\"{colour}\"/>\
             <text class=\"val\" x=\"{vx:.1}\" y=\"{ty:.1}\">{v}</text>",
            lx = left - 6.0,
            ty = y + 13.0,
            l = esc(&crate::truncate_chars(label, 16)),
            bh = row_h - 6.0,
            vx = left + bw + 4.0,
        );
    }
    s.push_str("</svg>");
    s
}

fn kind_zh(k: &str) -> &'static str {
    match k {
        "emergency" => "突发 emergency",
        "rumor" => "谣言 rumor",
        "emerging" => "新动向 emerging",
        _ => "其他 other",
    }
}

fn rebuttal_zh(r: &str) -> &'static str {
    match r {
        "published" => "已辟谣 rebuttal published",
        "drafted" => "待审批 rebuttal awaiting approval",
        "known" => "已知谣言，已回复辟谣 known claim, rebuttal replied",
        _ => "未回应 not answered",
    }
}

/// The report as one HTML page.
pub fn html(o: &Opinion) -> String {
    let region = o.region.as_ref().map_or(String::new(), |(code, name)| {
        format!(" · {} {}", esc(name), esc(code))
    });
    let mut terms = String::new();
    for t in &o.terms {
        let _ = write!(
            terms,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.term),
            t.count,
            t.previous,
            change(t.count, t.previous, o.previous_hours_covered > 0)
        );
    }
    let kinds: Vec<(String, u64)> = o
        .incidents
        .by_kind
        .iter()
        .map(|(k, n)| (kind_zh(k).to_string(), *n))
        .collect();
    let mut cats: Vec<(String, u64)> = o
        .incidents
        .by_category
        .iter()
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    cats.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let sev: Vec<(String, u64)> = o
        .incidents
        .by_severity
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{} 级 severity {}", i + 1, i + 1), *n))
        .collect();
    let mut rumors = String::new();
    for r in &o.rumors {
        let _ = write!(
            rumors,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.headline),
            esc(&r.category),
            local(r.opened_at),
            r.mentions,
            r.authors,
            rebuttal_zh(r.rebuttal),
            r.time_to_rebuttal_secs
                .map(|s| format!("{:.0} min", s as f64 / 60.0))
                .unwrap_or_else(|| "—".into())
        );
    }
    let mut regions = String::new();
    for (i, r) in o.regions.iter().enumerate() {
        let _ = write!(
            regions,
            "<tr><td>{}</td><td>{} <span class=\"en\">{}</span></td><td>{}</td><td>{}</td></tr>",
            i + 1,
            esc(&r.name),
            esc(&r.name_en),
            r.mentions,
            r.incidents
        );
    }
    let mut posts = String::new();
    for p in &o.posts {
        let _ = write!(
            posts,
            "<tr><td>{}</td><td>{}</td><td class=\"id\">{}</td></tr>",
            p.reposts,
            esc(&p.text),
            esc(&p.id)
        );
    }
    let mut notices = String::new();
    for n in &o.notices {
        let _ = write!(
            notices,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            local(n.published_at),
            kind_zh(&n.kind),
            esc(&n.category),
            esc(&n.region),
            esc(&n.text)
        );
    }
    let empty = |s: &str, cols: usize| {
        if s.is_empty() {
            format!("<tr><td colspan=\"{cols}\" class=\"muted\">无 none</td></tr>")
        } else {
            s.to_string()
        }
    };
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<title>舆情报告 Public-opinion report {from} – {to}</title><style>{CSS}</style></head><body>\
<h1>舆情报告 <span class=\"en\">Public-opinion report</span></h1>\
<p class=\"muted\">{from} – {to} (北京时间 UTC+8){region} · 生成于 generated {generated} · \
数据覆盖 hours with data {covered}/{total}</p>\
<div class=\"kpis\">\
<div class=\"kpi\"><b>{mentions}</b><span>帖子 mentions · 上期 previous {prev} ({chg})</span></div>\
<div class=\"kpi\"><b>{reposts}</b><span>转发 reposts · 评论 replies {replies}</span></div>\
<div class=\"kpi\"><b>{incidents}</b><span>新开事件 incidents opened</span></div>\
<div class=\"kpi\"><b>{nrumors}</b><span>谣言 rumors · 已回应 answered {rebutted}</span></div>\
<div class=\"kpi\"><b>{nnotices}</b><span>发布通报 notices published</span></div>\
</div>\
<h2>声量 <span class=\"en\">Mentions per hour</span></h2>{volume}\
<h2>热词 <span class=\"en\">Top terms, against the previous period</span></h2>\
<table><thead><tr><th>词 Term</th><th>本期 Now</th><th>上期 Before</th><th>变化 Change</th></tr></thead>\
<tbody>{terms}</tbody></table>\
<h2>事件 <span class=\"en\">Incidents opened</span></h2>\
<div class=\"cols\"><div><h3>按类型 <span class=\"en\">by kind</span></h3>{kinds}</div>\
<div><h3>按严重程度 <span class=\"en\">by severity</span></h3>{sev}</div></div>\
<h3>按类别 <span class=\"en\">by category</span></h3>{cats}\
<h2>谣言与辟谣 <span class=\"en\">Rumors and rebuttals (most authors first)</span></h2>\
<table><thead><tr><th>说法 Claim</th><th>类别 Category</th><th>发现 Opened</th><th>帖子 Posts</th>\
<th>作者 Authors</th><th>回应 Answer</th><th>辟谣用时 Time to rebuttal</th></tr></thead><tbody>{rumors}</tbody></table>\
<h2>地区活跃度 <span class=\"en\">Regions by activity</span></h2>\
<table><thead><tr><th>#</th><th>地区 Region</th><th>帖子 Mentions</th><th>事件 Incidents</th></tr></thead>\
<tbody>{regions}</tbody></table>\
<h2>转发最多 <span class=\"en\">Most reposted posts</span></h2>\
<table><thead><tr><th>转发 Reposts</th><th>内容 Text</th><th>编号 Id</th></tr></thead><tbody>{posts}</tbody></table>\
<h2>发布的通报 <span class=\"en\">Notices published</span></h2>\
<table><thead><tr><th>发布 Published</th><th>类型 Kind</th><th>类别 Category</th><th>地区 Region</th>\
<th>内容 Text</th></tr></thead><tbody>{notices}</tbody></table>\
<h2>说明 <span class=\"en\">Notes</span></h2><div class=\"notes\">\
<p>声量、地区和转发统计引擎处理的全部帖子（去重后）；热词为中文二字词与其他文字的单词，同一词的相邻二字词合并；\
指定地区时，声量、地区和事件按该地区统计，热词和转发最多的帖子为全部地区。上期为本期之前同样长的时段。\
辟谣用时为谣言事件发现到第一条辟谣通报全部发出。数据来自存储，重启后不丢失，多实例相加。</p>\
<p>Volume, regions and reposts count every post the engine applied (duplicates removed); terms are \
Chinese two-character terms and words of other scripts, neighbouring bigrams of one word joined. With a \
region, volume, regions and incidents are that region's; terms and most reposted posts are over all \
regions. The previous period is the one of the same length just before. Time to rebuttal runs from a \
rumor's detection to its first rebuttal notice fully published. Figures come from the store: they \
survive restarts and add up across instances.</p></div>\
</body></html>\n",
        from = local(o.from),
        to = local(o.to),
        generated = local(o.generated_at),
        covered = o.hours_covered,
        total = o.hours_total,
        mentions = o.mentions,
        prev = o.previous_mentions,
        chg = change(o.mentions, o.previous_mentions, o.previous_hours_covered > 0),
        reposts = o.reposts,
        replies = o.replies,
        incidents = o.incidents.total,
        nrumors = o.incidents.by_kind.get("rumor").copied().unwrap_or(0),
        rebutted = o.rumors_answered,
        nnotices = o.notices.len(),
        volume = volume_svg(o),
        terms = empty(&terms, 4),
        kinds = bars_svg(&kinds, "#1f5fbf", "按类型 by kind", 360.0),
        sev = bars_svg(&sev, "#c0392b", "按严重程度 by severity", 360.0),
        cats = bars_svg(&cats, "#1e7d3a", "按类别 by category", 720.0),
        rumors = empty(&rumors, 7),
        regions = empty(&regions, 4),
        posts = empty(&posts, 3),
        notices = empty(&notices, 5),
    )
}

const CSS: &str = "body{font:13px/1.5 'Noto Sans CJK SC','Source Han Sans SC','PingFang SC',\
'Microsoft YaHei',sans-serif;color:#1d232b;margin:20px auto;max-width:1000px;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px;border-bottom:2px solid #dde1e6;\
padding-bottom:4px;break-after:avoid}h3{font-size:13px;margin:8px 0 4px}.en{color:#6b7480;font-size:11px}\
.muted{color:#6b7480}.kpis{display:flex;gap:10px;flex-wrap:wrap;margin:12px 0}\
.kpi{border:1px solid #dde1e6;border-radius:6px;padding:6px 12px;min-width:120px}\
.kpi b{display:block;font-size:22px}.kpi span{color:#6b7480;font-size:11px}\
table{border-collapse:collapse;width:100%;font-size:12px}th,td{border-bottom:1px solid #e6e9ed;\
padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f5f7;font-weight:600}\
td.id{color:#6b7480;font-size:11px}tr{break-inside:avoid}\
.cols{display:flex;gap:16px}.cols>div{flex:1}\
.chart{width:100%;height:auto}.chart .lbl{font-size:10px;fill:#444}.chart .val{font-size:10px;fill:#1d232b}\
.chart .grid{stroke:#dde1e6}.notes p{color:#3b434d;font-size:12px}\
@page{size:A4;margin:14mm}@media print{body{margin:0;max-width:none;padding:0}\
.kpi{padding:4px 8px}h2{margin-top:14px}}";
