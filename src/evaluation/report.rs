//! The evaluation as files: JSON (everything, as [`super::Evaluation`] serialises) and CSV (one
//! row per department and account, the figures flat, formulas defused).

use super::{Evaluation, Unit};

/// The CSV header: every column of [`csv`].
pub const CSV_COLUMNS: [&str; 38] = [
    "kind",
    "id",
    "name_zh",
    "name_en",
    "peer_group",
    "received",
    "accepted",
    "accepted_on_time",
    "answered",
    "answered_on_time",
    "overdue",
    "returned",
    "reopened",
    "ack_secs_median",
    "ack_secs_p90",
    "answer_secs_median",
    "answer_secs_p90",
    "rated",
    "satisfaction_rate",
    "addressed",
    "reply_share",
    "service",
    "interaction",
    "approval",
    "reach",
    "overall",
    "previous_overall",
    "trend",
    "rank",
    "peers",
    "silent",
    "posts",
    "engagement_per_post",
    "public_service_share",
    "quiet_days",
    "notices_planned",
    "fanout_coverage",
    "reply_positive_share",
];

fn field(s: &str) -> String {
    crate::cases::api::csv_field(s)
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{}", (v * 1000.0).round() / 1000.0))
        .unwrap_or_default()
}

fn row(u: &Unit) -> String {
    let s = &u.service;
    let i = u.interaction.as_ref();
    let cells: Vec<String> = vec![
        field(u.kind),
        field(&u.id),
        field(&u.name_zh),
        field(&u.name_en),
        field(&u.peer_group),
        s.received.to_string(),
        s.accepted.to_string(),
        s.accepted_on_time.to_string(),
        s.answered.to_string(),
        s.answered_on_time.to_string(),
        s.overdue.to_string(),
        s.returned.to_string(),
        s.reopened.to_string(),
        opt(s.ack_secs.median),
        opt(s.ack_secs.p90),
        opt(s.answer_secs.median),
        opt(s.answer_secs.p90),
        u.approval.rated.to_string(),
        opt(u.approval.satisfaction_rate),
        i.map(|i| i.addressed.to_string()).unwrap_or_default(),
        opt(i.and_then(|i| i.reply_share)),
        opt(u.scores.service),
        opt(u.scores.interaction),
        opt(u.scores.approval),
        opt(u.scores.reach),
        opt(u.scores.overall),
        opt(u.previous.overall),
        opt(u.trend),
        u.rank.map(|r| r.to_string()).unwrap_or_default(),
        u.peers.to_string(),
        u.silent.to_string(),
        u.reach
            .as_ref()
            .filter(|r| r.read)
            .map(|r| r.posts.to_string())
            .unwrap_or_default(),
        opt(u.reach.as_ref().and_then(|r| r.engagement_per_post)),
        opt(u.reach.as_ref().and_then(|r| r.public_service_share)),
        opt(u.reach.as_ref().and_then(|r| r.quiet_days)),
        u.reach
            .as_ref()
            .map(|r| r.planned.to_string())
            .unwrap_or_default(),
        opt(u.reach.as_ref().and_then(|r| r.coverage)),
        opt(u.approval.reply_positive_share),
    ];
    cells.join(",")
}

/// The evaluation as CSV: a header, then the departments, then the accounts.
pub fn csv(e: &Evaluation) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for u in e.departments.iter().chain(&e.accounts) {
        out.push_str(&row(u));
        out.push('\n');
    }
    out
}

/// The evaluation as pretty JSON.
pub fn json(e: &Evaluation) -> String {
    serde_json::to_string_pretty(e).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

// ---- HTML ---------------------------------------------------------------------------------

use crate::html_escape as esc;

/// Local time of `ms` (`YYYY-MM-DD HH:MM`, or the day alone).
fn local(e: &Evaluation, ms: i64, day_only: bool) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms + i64::from(e.utc_offset_secs) * 1000)
        .map(|t| t.naive_utc());
    match t {
        Some(t) if day_only => t.format("%Y-%m-%d").to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => String::new(),
    }
}

fn hours(secs: Option<f64>) -> String {
    secs.map(|s| format!("{:.1}", s / 3600.0))
        .unwrap_or_else(|| "—".into())
}

fn num(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into())
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "—".into()
    } else {
        format!("{:.0}%", 100.0 * n as f64 / d as f64)
    }
}

/// Colours for lines, in order.
const PALETTE: [&str; 8] = [
    "#1f5fbf", "#c0392b", "#1e7d3a", "#a86400", "#7b3fb5", "#0f8a8a", "#b5476f", "#555f6d",
];

/// The departments with a score, best first, as a horizontal bar chart.
fn ranking_svg(e: &Evaluation) -> String {
    let ranked: Vec<&Unit> = e
        .departments
        .iter()
        .filter(|u| u.scores.overall.is_some())
        .collect();
    if ranked.is_empty() {
        return "<p class=\"muted\">无评分 · no scores in this period</p>".into();
    }
    let (row, label, width) = (26, 230, 420.0);
    let h = ranked.len() * row + 10;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {} {h}\" role=\"img\" aria-label=\"ranking\">",
        label + 480
    );
    for (i, u) in ranked.iter().enumerate() {
        let y = i * row + 4;
        let v = u.scores.overall.unwrap_or(0.0);
        let w = (v / 100.0 * width).max(1.0);
        let colour = if v >= 80.0 {
            "#1e7d3a"
        } else if v >= 60.0 {
            "#a86400"
        } else {
            "#c0392b"
        };
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lbl\">{} {}</text>\
             <rect x=\"{label}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{}\" class=\"val\">{v:.1}</text>",
            label - 8,
            y + 15,
            esc(&u.name_zh),
            esc(&u.name_en),
            row - 8,
            label as f64 + w + 6.0,
            y + 15
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The departments' `overall`, step by step, as lines (up to eight departments).
fn trend_svg(e: &Evaluation) -> String {
    let ids: Vec<&Unit> = e
        .departments
        .iter()
        .filter(|u| u.service.received > 0)
        .take(PALETTE.len())
        .collect();
    if ids.is_empty() || e.series.is_empty() {
        return "<p class=\"muted\">无数据 · no data</p>".into();
    }
    let (w, h, left, top, bottom) = (640.0, 240.0, 40.0, 10.0, 30.0);
    let n = e.series.len();
    let x = |i: usize| {
        if n == 1 {
            left + (w - left) / 2.0
        } else {
            left + (w - left - 30.0) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / 100.0);
    let mut svg =
        format!("<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"trend\">");
    for v in [0.0, 50.0, 100.0] {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{w}\" y1=\"{0:.1}\" y2=\"{0:.1}\" class=\"grid\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" class=\"lbl\">{v}</text>",
            y(v),
            left - 4.0,
            y(v) + 4.0
        ));
    }
    for (i, s) in e.series.iter().enumerate() {
        if n <= 12 || i % n.div_ceil(12) == 0 {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"lbl\">{}</text>",
                x(i),
                h - 8.0,
                &local(e, s.from, true)[5..]
            ));
        }
    }
    for (k, u) in ids.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let pts: Vec<String> = e
            .series
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.overall
                    .get(&u.id)
                    .copied()
                    .flatten()
                    .map(|v| format!("{:.1},{:.1}", x(i), y(v)))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        svg.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            pts.join(" ")
        ));
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            svg.push_str(&format!(
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\"/>"
            ));
        }
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (k, u) in ids.iter().enumerate() {
        svg.push_str(&format!(
            "<span><i style=\"background:{}\"></i>{} {}</span>",
            PALETTE[k % PALETTE.len()],
            esc(&u.name_zh),
            esc(&u.name_en)
        ));
    }
    svg.push_str("</p>");
    svg
}

/// Median hours to answer by department and weekday, as a coloured grid.
fn heat_svg(e: &Evaluation) -> String {
    if e.heat.is_empty() {
        return "<p class=\"muted\">无数据 · no data</p>".into();
    }
    let days = [
        "一 Mon", "二 Tue", "三 Wed", "四 Thu", "五 Fri", "六 Sat", "日 Sun",
    ];
    let (label, cw, ch, top) = (230, 64, 28, 24);
    let h = top + e.heat.len() * ch + 4;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {} {h}\" role=\"img\" aria-label=\"heat map\">",
        label + 7 * cw + 4
    );
    for (i, d) in days.iter().enumerate() {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"16\" text-anchor=\"middle\" class=\"lbl\">{d}</text>",
            label + i * cw + cw / 2
        ));
    }
    for (r, row) in e.heat.iter().enumerate() {
        let y = top + r * ch;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lbl\">{} {}</text>",
            label - 8,
            y + 18,
            esc(&row.name_zh),
            esc(&row.name_en)
        ));
        for (i, v) in row.median_answer_secs.iter().enumerate() {
            let colour = match v.map(|s| s / 3600.0) {
                None => "#eef0f3",
                Some(h) if h <= 4.0 => "#b7e1c1",
                Some(h) if h <= 24.0 => "#f4e3a1",
                Some(h) if h <= 72.0 => "#f6c28b",
                Some(_) => "#ef9a8f",
            };
            svg.push_str(&format!(
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"cell\">{}</text>",
                label + i * cw,
                cw - 2,
                ch - 2,
                label + i * cw + cw / 2,
                y + 18,
                if v.is_some() {
                    hours(*v) + " h"
                } else {
                    String::new()
                }
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

fn department_rows(e: &Evaluation) -> String {
    let mut out = String::new();
    for u in &e.departments {
        let s = &u.service;
        out.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{} <span class=\"en\">{}</span></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td></tr>",
            if u.silent { "silent" } else { "" },
            u.rank.map(|r| r.to_string()).unwrap_or_else(|| "—".into()),
            esc(&u.name_zh),
            esc(&u.name_en),
            s.received,
            pct(s.accepted_on_time, s.received),
            pct(s.answered, s.received),
            pct(s.answered_on_time, s.received),
            if s.overdue > 0 { "bad" } else { "" },
            s.overdue,
            s.returned,
            s.reopened,
            hours(s.answer_secs.median),
            num(u.approval.satisfaction_rate.map(|r| r * 100.0)),
            num(u.scores.service),
            num(u.scores.overall),
            num(u.previous.overall),
            u.trend
                .map(|t| format!("{}{t:.1}", if t > 0.0 { "+" } else { "" }))
                .unwrap_or_else(|| "—".into()),
        ));
    }
    out
}

fn account_rows(e: &Evaluation) -> String {
    let mut out = String::new();
    for u in &e.accounts {
        let i = u.interaction.clone().unwrap_or_default();
        out.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{} <span class=\"en\">{}</span></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td><b>{}</b></td><td>{}</td></tr>",
            if u.silent { "silent" } else { "" },
            u.rank
                .map(|r| format!("{r}/{}", u.peers))
                .unwrap_or_else(|| "—".into()),
            esc(&u.name_zh),
            esc(&u.name_en),
            esc(&u.peer_group),
            u.reach
                .as_ref()
                .filter(|r| r.read)
                .map(|r| r.posts.to_string())
                .unwrap_or_else(|| "—".into()),
            num(u.scores.reach),
            u.reach
                .as_ref()
                .map(|r| pct(r.fanned_out, r.planned))
                .unwrap_or_else(|| "—".into()),
            i.addressed,
            pct(i.answered, i.addressed),
            num(u.scores.interaction),
            num(u.scores.service),
            num(u.scores.approval),
            num(u.scores.overall),
            u.silent_reason
                .as_deref()
                .map(|r| format!("聋哑 silent: {}", esc(r)))
                .unwrap_or_default(),
        ));
    }
    out
}

fn overdue_rows(e: &Evaluation) -> String {
    let mut out = String::new();
    for u in e.departments.iter().filter(|u| !u.worst_overdue.is_empty()) {
        for o in &u.worst_overdue {
            out.push_str(&format!(
                "<tr><td>{} <span class=\"en\">{}</span></td><td><code>{}</code></td><td>{}</td>\
                 <td class=\"bad\">{:.1} h</td></tr>",
                esc(&u.name_zh),
                esc(&u.name_en),
                esc(&o.id),
                local(e, o.due, false),
                o.late_secs / 3600.0
            ));
        }
    }
    if out.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"muted\">无 · none</td></tr>");
    }
    out
}

const CSS: &str = "body{font:14px/1.5 'Noto Sans CJK SC','Source Han Sans SC','PingFang SC',\
'Microsoft YaHei',sans-serif;color:#1d232b;margin:24px auto;max-width:1100px;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #dde1e6;\
padding-bottom:4px}.en{color:#6b7480;font-size:12px}.muted{color:#6b7480}\
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}.kpi{border:1px solid #dde1e6;border-radius:6px;\
padding:8px 14px;min-width:130px}.kpi b{display:block;font-size:24px}.kpi span{color:#6b7480;font-size:12px}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e6e9ed;\
padding:4px 6px;text-align:right}th:nth-child(2),td:nth-child(2){text-align:left}\
th{background:#f3f5f7;font-weight:600}tr.silent td{background:#fff1ef}.bad{color:#b3261e;font-weight:600}\
.chart{width:100%;height:auto;max-width:760px}.chart .lbl{font-size:11px;fill:#444}\
.chart .val{font-size:11px;fill:#1d232b}.chart .cell{font-size:11px;fill:#1d232b}\
.chart .grid{stroke:#dde1e6}.legend span{margin-right:14px;font-size:12px}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
.notes{font-size:12px;color:#444}@media print{body{margin:0}h2{break-after:avoid}\
.chart,table{break-inside:avoid}}";

/// The evaluation as one self-contained printable HTML page (inline CSS and SVG, nothing
/// fetched), Chinese and English.
pub fn html(e: &Evaluation) -> String {
    let received: usize = e.departments.iter().map(|u| u.service.received).sum();
    let on_time: usize = e
        .departments
        .iter()
        .map(|u| u.service.answered_on_time)
        .sum();
    let overdue: usize = e.departments.iter().map(|u| u.service.overdue).sum();
    let rated: usize = e.departments.iter().map(|u| u.approval.rated).sum();
    let satisfied: usize = e.departments.iter().map(|u| u.approval.satisfied).sum();
    let silent = e.accounts.iter().filter(|u| u.silent).count()
        + e.departments.iter().filter(|u| u.silent).count();
    let w = &e.weights;
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<title>绩效评估报告 Evaluation report {from} – {to}</title><style>{CSS}</style></head><body>\
<h1>绩效评估报告 <span class=\"en\">Evaluation report</span></h1>\
<p class=\"muted\">{from} – {to} · 生成于 generated {generated} · 上期 previous period {pfrom} – {pto}</p>\
<div class=\"kpis\">\
<div class=\"kpi\"><b>{received}</b><span>收到诉求 requests received</span></div>\
<div class=\"kpi\"><b>{on_time_pct}</b><span>按时答复 answered on time</span></div>\
<div class=\"kpi\"><b class=\"{overdue_class}\">{overdue}</b><span>超期 overdue at the end</span></div>\
<div class=\"kpi\"><b>{satisfaction}</b><span>满意率 satisfied ({rated} rated)</span></div>\
<div class=\"kpi\"><b class=\"{silent_class}\">{silent}</b><span>聋哑 silent accounts and departments</span></div>\
</div>\
<h2>部门排名 <span class=\"en\">Departments by overall score</span></h2>{ranking}\
<h2>得分走势 <span class=\"en\">Overall score through the period</span></h2>{trend}\
<h2>答复时长 <span class=\"en\">Median hours to answer, by the weekday requests came in</span></h2>{heat}\
<h2>部门 <span class=\"en\">Departments</span></h2>\
<table><thead><tr><th>名次 Rank</th><th>部门 Department</th><th>收到 Received</th><th>按时受理 Accepted on time</th>\
<th>答复 Answered</th><th>按时答复 On time</th><th>超期 Overdue</th><th>退回 Returned</th><th>重办 Reopened</th>\
<th>答复中位 h Median h</th><th>满意 % Satisfied</th><th>服务力 Service</th><th>综合 Overall</th><th>上期 Previous</th>\
<th>变化 Trend</th></tr></thead><tbody>{departments}</tbody></table>\
<h2>账号 <span class=\"en\">Accounts</span></h2>\
<table><thead><tr><th>名次 Rank</th><th>账号 Account</th><th>同类 Peers</th><th>发布 Posts</th><th>传播力 Reach</th><th>通报转发 Notices posted</th><th>@诉求 Addressed</th>\
<th>答复 Answered</th><th>互动力 Interaction</th><th>服务力 Service</th><th>认同度 Approval</th><th>综合 Overall</th>\
<th>备注 Note</th></tr></thead><tbody>{accounts}</tbody></table>\
<h2>超期最久 <span class=\"en\">Longest overdue</span></h2>\
<table><thead><tr><th>部门 Department</th><th>编号 Case</th><th>期限 Due</th><th>超期 Late</th></tr></thead>\
<tbody>{overdue_rows}</tbody></table>\
<h2>说明 <span class=\"en\">Notes</span></h2><div class=\"notes\">\
<p>综合得分为各维度加权平均（传播力 {wr}，服务力 {ws}，互动力 {wi}，认同度 {wa}），无数据的维度不计；\
传播力由各账号自己的时间线（平台接口，每 30 分钟读取）计算：发布活跃度与每条原创的转评赞。服务力按本期收到的诉求计算：按时受理、答复、按时答复、未退回、未重办。\
期限按 rules/cases/calendar.toml 的工作日和节假日计算。权重见 rules/evaluation.toml。</p>\
<p>Overall is the weighted mean of the dimensions with data (reach {wr}, service {ws}, interaction {wi}, \
approval {wa}); reach comes from each account's own timeline (read through its platform's API every 30 \
minutes): how often it posts and the reposts, replies and likes per own post. Service counts the requests received in the period: accepted \
on time, answered, answered on time, not sent back, not reopened, as things stood at the period's end. \
Deadlines follow the working days and holidays of rules/cases/calendar.toml; weights are in \
rules/evaluation.toml. Silent (聋哑): answered under {share:.0}% of at least {min} requests.</p></div>\
</body></html>\n",
        from = local(e, e.period.from, true),
        to = local(e, e.period.to - 1, true),
        pfrom = local(e, e.previous_period.from, true),
        pto = local(e, e.previous_period.to - 1, true),
        generated = local(e, e.generated_at, false),
        on_time_pct = pct(on_time, received),
        overdue_class = if overdue > 0 { "bad" } else { "" },
        satisfaction = pct(satisfied, rated),
        silent_class = if silent > 0 { "bad" } else { "" },
        ranking = ranking_svg(e),
        trend = trend_svg(e),
        heat = heat_svg(e),
        departments = department_rows(e),
        accounts = account_rows(e),
        overdue_rows = overdue_rows(e),
        wr = w.dimensions.reach,
        ws = w.dimensions.service,
        wi = w.dimensions.interaction,
        wa = w.dimensions.approval,
        share = w.silence.min_answer_share * 100.0,
        min = w.silence.min_requests,
    )
}
