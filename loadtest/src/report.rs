//! What a run measured: the JSON result, the short Markdown report and the SVG chart (rate,
//! latency and RSS over time), written next to each other in the run's output folder.

use crate::driver::{Observed, Opened, Tick};
use crate::fanout::FanoutResult;
use crate::feed::SendLog;
use crate::inject::{INJ_BASE, INJ_SPAN};
use crate::scenario::{InjectKind, Scenario};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Report errors.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Serialising the result failed.
    #[error("result JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Latency percentiles (ms).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// From microsecond samples.
    pub fn of(us: &mut [u64]) -> Latency {
        if us.is_empty() {
            return Latency::default();
        }
        us.sort_unstable();
        let q = |p: f64| us[((us.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
        Latency {
            count: us.len(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: q(1.0),
        }
    }
}

/// Ingest figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ingest {
    /// Mentions the profile asked for.
    pub target: u64,
    /// Mentions sent.
    pub sent: u64,
    /// Mentions the engine accepted (its metric).
    pub accepted: u64,
    /// Mentions the engine rejected.
    pub rejected: u64,
    /// Sent but neither accepted nor rejected by the end of the drain.
    pub lost: u64,
    /// Sent per second over the traffic time.
    pub sent_per_sec: f64,
    /// Accepted per second over the traffic time (median of the per-second rates).
    pub accepted_per_sec_median: f64,
    /// Largest lag of the sender behind the schedule (the engine pushing back), ms.
    pub max_behind_ms: u64,
    /// The highest per-second rate at which the engine kept up: the sender on schedule and
    /// the engine accepting ≥ 98 % of the target in that second, and the p99 latency of that
    /// second (if any mention joined an incident) under 1 s.
    pub max_sustained_per_sec: f64,
    /// Feed connections (1 = never reconnected).
    pub connections: u32,
}

/// One injection's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct InjectionResult {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: InjectKind,
    /// Mentions sent (0: the run ended before its time).
    pub sent: u64,
    /// The incident it produced.
    pub incident: Option<Opened>,
    /// The incident was open before the injection started (it joined it).
    pub joined_open: bool,
    /// Category and region as expected (when the scenario says).
    pub as_expected: bool,
    /// First injected mention sent → `incident.opened` received, seconds (wall clock).
    pub delay_secs: Option<f64>,
    /// The same in event time: `opened_at − ts` of the first injected mention, seconds.
    pub delay_event_secs: Option<f64>,
    /// Injected mentions with an event time up to the opening.
    pub delay_mentions: Option<u64>,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    /// Second.
    pub t: u32,
    /// Mentions the profile asked for in it.
    pub target: f64,
    /// Mentions sent in it.
    pub sent: u64,
    /// Mentions accepted in it.
    pub accepted: f64,
    /// p50 / p99 of `mention.assigned` latency in it (ms).
    pub p50_ms: Option<f64>,
    /// p99.
    pub p99_ms: Option<f64>,
    /// Engine RSS (MB).
    pub rss_mb: f64,
    /// Engine CPU (% of one core).
    pub cpu_pct: f64,
}

/// Engine resources.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// RSS at the first sample (MB).
    pub rss_first_mb: f64,
    /// RSS at the last sample (MB).
    pub rss_last_mb: f64,
    /// Largest RSS (MB).
    pub rss_max_mb: f64,
    /// RSS growth per hour from a least-squares fit over the second half of the run (MB/h).
    pub rss_slope_mb_per_hour: f64,
    /// CPU seconds used during the run.
    pub cpu_secs: f64,
    /// Mean CPU (% of one core).
    pub cpu_pct_mean: f64,
    /// The harness's CPU seconds (generator, feed server, driver) during the run.
    pub harness_cpu_secs: f64,
}

/// A run's result (the JSON file).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Its description.
    pub description: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Seconds of traffic.
    pub duration_secs: f64,
    /// How the engine ran (`in-process`, or the command line).
    pub engine: String,
    /// Engine pid.
    pub engine_pid: u32,
    /// `uptime` at the start (the machine's load).
    pub load_at_start: String,
    /// Ingest.
    pub ingest: Ingest,
    /// `mention.assigned` latency of mentions joining open incidents.
    pub latency_assigned: Latency,
    /// `mention.assigned` latency in the seconds at the profile's peak rate (≥ 98 % of it):
    /// the figure for "sustain N/s with p99 under …".
    pub latency_at_peak: Latency,
    /// Newest mention sent → its incident's `incident.opened` received.
    pub latency_opened: Latency,
    /// Per injection.
    pub injections: Vec<InjectionResult>,
    /// Injections that produced no incident.
    pub missed_injections: usize,
    /// Incidents no injection explains (background traffic), by kind/category.
    pub unmatched_incidents: std::collections::BTreeMap<String, u64>,
    /// Total opened.
    pub incidents_opened: usize,
    /// Stream events received.
    pub stream_events: u64,
    /// Why the stream ended early, if it did.
    pub stream_ended_early: Option<String>,
    /// Engine resources.
    pub resources: Resources,
    /// The publishing drill.
    pub fanout: Option<FanoutResult>,
    /// Per second.
    pub timeline: Vec<Point>,
}

/// Everything a result is computed from.
pub struct Inputs<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Seconds of traffic.
    pub duration_secs: f64,
    /// Engine description.
    pub engine: String,
    /// Engine pid.
    pub engine_pid: u32,
    /// `uptime` output.
    pub load_at_start: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// The send log.
    pub log: &'a SendLog,
    /// The stream.
    pub obs: &'a Observed,
    /// Samples.
    pub ticks: &'a [Tick],
    /// The drill.
    pub fanout: Option<FanoutResult>,
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Compute the result.
pub fn compute(i: Inputs<'_>) -> RunResult {
    let sc = i.scenario;
    let obs = i.obs;
    let log = i.log;
    let last = i.ticks.last().cloned().unwrap_or_default();
    let accepted = last.accepted as u64;
    let rejected = last.rejected as u64;
    let mut per_sec_acc: Vec<f64> = i
        .ticks
        .windows(2)
        .filter(|w| w[1].t <= i.duration_secs + 0.5)
        .map(|w| (w[1].accepted - w[0].accepted) / (w[1].t - w[0].t).max(1e-3))
        .collect();
    per_sec_acc.sort_by(f64::total_cmp);
    let ingest = Ingest {
        target: sc
            .profile
            .as_ref()
            .map_or(0, |p| p.due(i.duration_secs) as u64)
            + sc.inject.iter().map(|x| u64::from(x.mentions)).sum::<u64>(),
        sent: log.sent,
        accepted,
        rejected,
        lost: log.sent.saturating_sub(accepted + rejected),
        sent_per_sec: log.sent as f64 / i.duration_secs.max(1e-3),
        accepted_per_sec_median: per_sec_acc
            .get(per_sec_acc.len() / 2)
            .copied()
            .unwrap_or(0.0),
        max_behind_ms: log.max_behind_ms,
        max_sustained_per_sec: 0.0,
        connections: log.connections,
    };

    let mut injections = Vec::new();
    for (k, inj) in sc.inject.iter().enumerate() {
        let base = INJ_BASE + k as u64 * INJ_SPAN;
        let stamps: Vec<(u64, i64)> = (0..u64::from(inj.mentions))
            .filter_map(|j| log.injected(base + j))
            .collect();
        let first = log.injected(base);
        let want_kind = if inj.kind == InjectKind::Emergency {
            "emergency"
        } else {
            "rumor"
        };
        let incident = obs
            .opened
            .iter()
            .filter(|o| o.kind == want_kind)
            .filter(|o| {
                obs.injected_in
                    .get(&o.id)
                    .is_some_and(|m| m.contains_key(&k))
            })
            .min_by_key(|o| o.recv_us)
            .cloned();
        let (mut delay_secs, mut delay_event_secs, mut delay_mentions, mut joined_open) =
            (None, None, None, false);
        if let (Some(o), Some((s0, ts0))) = (&incident, first) {
            joined_open = o.recv_us < s0;
            delay_secs = Some(o.recv_us.saturating_sub(s0) as f64 / 1e6);
            delay_event_secs = Some((o.opened_at - ts0).max(0) as f64 / 1e3);
            delay_mentions =
                Some(stamps.iter().filter(|(_, ts)| *ts <= o.opened_at).count() as u64);
        }
        let as_expected = incident.as_ref().is_some_and(|o| {
            inj.expect_category
                .as_ref()
                .is_none_or(|c| *c == o.category)
                && inj
                    .expect_region
                    .as_ref()
                    .is_none_or(|r| o.region.as_ref() == Some(r))
        });
        injections.push(InjectionResult {
            name: inj.name.clone(),
            kind: inj.kind,
            sent: stamps.len() as u64,
            incident,
            joined_open,
            as_expected,
            delay_secs,
            delay_event_secs,
            delay_mentions,
        });
    }
    let mut unmatched = std::collections::BTreeMap::new();
    for o in &obs.opened {
        if !obs.injected_in.contains_key(&o.id) {
            *unmatched
                .entry(format!("{}/{}", o.kind, o.category))
                .or_insert(0) += 1;
        }
    }

    let resources = resources(i.ticks);
    let timeline = timeline(sc, log, obs, i.ticks);
    let ingest = Ingest {
        max_sustained_per_sec: timeline
            .iter()
            .filter(|p| {
                p.target > 0.0
                    && p.sent as f64 >= 0.98 * p.target
                    && p.accepted >= 0.98 * p.target
                    && p.p99_ms.is_none_or(|l| l < 1000.0)
            })
            .map(|p| p.target)
            .fold(0.0, f64::max),
        ..ingest
    };
    let peak = timeline.iter().map(|p| p.target).fold(0.0, f64::max);
    let mut at_peak: Vec<u64> = obs
        .assigned_latency
        .iter()
        .filter(|(s, _)| {
            timeline
                .get(*s as usize)
                .is_some_and(|p| peak > 0.0 && p.target >= 0.98 * peak)
        })
        .map(|x| x.1)
        .collect();
    let mut a: Vec<u64> = obs.assigned_latency.iter().map(|x| x.1).collect();
    let mut o = obs.open_latency.clone();
    RunResult {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        started_at: i.started_at,
        duration_secs: i.duration_secs,
        engine: i.engine,
        engine_pid: i.engine_pid,
        load_at_start: i.load_at_start,
        ingest,
        latency_assigned: Latency::of(&mut a),
        latency_at_peak: Latency::of(&mut at_peak),
        latency_opened: Latency::of(&mut o),
        missed_injections: injections
            .iter()
            .filter(|x| x.sent > 0 && x.incident.is_none())
            .count(),
        injections,
        unmatched_incidents: unmatched,
        incidents_opened: obs.opened.len(),
        stream_events: obs.events,
        stream_ended_early: obs.ended_early.clone(),
        resources,
        fanout: i.fanout,
        timeline,
    }
}

fn resources(ticks: &[Tick]) -> Resources {
    let (Some(first), Some(last)) = (ticks.first(), ticks.last()) else {
        return Resources::default();
    };
    let half = &ticks[ticks.len() / 2..];
    // Least squares of RSS on time over the second half (after warm-up).
    let n = half.len() as f64;
    let (sx, sy) = half
        .iter()
        .fold((0.0, 0.0), |(sx, sy), t| (sx + t.t, sy + mb(t.rss_bytes)));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = half.iter().fold((0.0, 0.0), |(a, b), t| {
        (
            a + (t.t - mx) * (mb(t.rss_bytes) - my),
            b + (t.t - mx) * (t.t - mx),
        )
    });
    let span = (last.t - first.t).max(1e-3);
    Resources {
        rss_first_mb: mb(first.rss_bytes),
        rss_last_mb: mb(last.rss_bytes),
        rss_max_mb: mb(ticks.iter().map(|t| t.rss_bytes).max().unwrap_or(0)),
        rss_slope_mb_per_hour: if sxx > 0.0 { sxy / sxx * 3600.0 } else { 0.0 },
        cpu_secs: last.cpu_secs - first.cpu_secs,
        cpu_pct_mean: (last.cpu_secs - first.cpu_secs) / span * 100.0,
        harness_cpu_secs: last.harness_cpu_secs - first.harness_cpu_secs,
    }
}

fn timeline(sc: &Scenario, log: &SendLog, obs: &Observed, ticks: &[Tick]) -> Vec<Point> {
    let secs = log
        .per_sec
        .len()
        .max(ticks.last().map_or(0, |t| t.t as usize + 1));
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); secs + 1];
    for &(s, us) in &obs.assigned_latency {
        if let Some(v) = lat.get_mut(s as usize) {
            v.push(us);
        }
    }
    let mut pts: Vec<Point> = (0..secs)
        .map(|s| {
            let l = Latency::of(&mut lat[s]);
            let target = sc
                .profile
                .as_ref()
                .map_or(0.0, |p| p.due(s as f64 + 1.0) - p.due(s as f64));
            Point {
                t: s as u32,
                target,
                sent: log.per_sec.get(s).copied().unwrap_or(0),
                p50_ms: (l.count > 0).then_some(l.p50_ms),
                p99_ms: (l.count > 0).then_some(l.p99_ms),
                ..Point::default()
            }
        })
        .collect();
    for w in ticks.windows(2) {
        let s = w[1].t as usize;
        if let Some(p) = pts.get_mut(s) {
            let dt = (w[1].t - w[0].t).max(1e-3);
            p.accepted = (w[1].accepted - w[0].accepted) / dt;
            p.rss_mb = mb(w[1].rss_bytes);
            p.cpu_pct = (w[1].cpu_secs - w[0].cpu_secs) / dt * 100.0;
        }
    }
    pts
}

fn lat(l: &Latency) -> String {
    format!(
        "{:.1} / {:.1} / {:.1} ms (n={})",
        l.p50_ms, l.p99_ms, l.max_ms, l.count
    )
}

fn fmt_opt(x: Option<f64>, unit: &str) -> String {
    x.map_or("—".into(), |v| format!("{v:.1} {unit}"))
}

/// The short Markdown report.
pub fn markdown(r: &RunResult) -> String {
    let mut s = String::new();
    let i = &r.ingest;
    let _ = writeln!(
        s,
        "# 负载测试 Load test: `{}`\n\n{}\n",
        r.scenario, r.description
    );
    let _ = writeln!(
        s,
        "Started {} · {:.0} s of traffic · engine: {} (pid {}) · load at start: {}\n",
        r.started_at, r.duration_secs, r.engine, r.engine_pid, r.load_at_start
    );
    let _ = writeln!(s, "| 指标 measure | 值 value |\n|---|---|");
    let rows = [
        ("发送 sent (target)", format!("{} ({})", i.sent, i.target)),
        (
            "摄入速率 ingest rate",
            format!(
                "{:.0}/s sent, {:.0}/s accepted (median second)",
                i.sent_per_sec, i.accepted_per_sec_median
            ),
        ),
        (
            "最大可持续速率 max sustained rate (engine kept up, p99 < 1 s)",
            format!("{:.0}/s", i.max_sustained_per_sec),
        ),
        (
            "丢失 lost / rejected",
            format!("{} / {}", i.lost, i.rejected),
        ),
        (
            "发送滞后 sender behind schedule (max)",
            format!("{} ms", i.max_behind_ms),
        ),
        (
            "端到端延迟 e2e latency, assigned (p50/p99/max)",
            lat(&r.latency_assigned),
        ),
        (
            "峰值延迟 e2e latency at the peak rate (p50/p99/max)",
            lat(&r.latency_at_peak),
        ),
        (
            "开启延迟 newest mention → incident.opened (p50/p99/max)",
            lat(&r.latency_opened),
        ),
        (
            "漏报 missed injections",
            format!(
                "{} of {} sent",
                r.missed_injections,
                r.injections.iter().filter(|x| x.sent > 0).count()
            ),
        ),
        (
            "其他事件 incidents not from injections (background posts)",
            format!("{:?}", r.unmatched_incidents),
        ),
        (
            "内存 RSS first / last / max, slope",
            format!(
                "{:.0} / {:.0} / {:.0} MB, {:+.1} MB/h",
                r.resources.rss_first_mb,
                r.resources.rss_last_mb,
                r.resources.rss_max_mb,
                r.resources.rss_slope_mb_per_hour
            ),
        ),
        (
            "CPU (engine)",
            format!(
                "{:.1} s, mean {:.0} % of a core (harness: {:.1} s)",
                r.resources.cpu_secs, r.resources.cpu_pct_mean, r.resources.harness_cpu_secs
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    if !r.injections.is_empty() {
        let _ = writeln!(
            s,
            "\n## 注入 Injections\n\n| name | kind | sent | incident | delay (wall) | delay (event time) | mentions until open | as expected |\n|---|---|---|---|---|---|---|---|"
        );
        for x in &r.injections {
            let inc = x
                .incident
                .as_ref()
                .map_or("**missed 漏报**".to_string(), |o| {
                    format!(
                        "{} {}/{}{}",
                        o.id,
                        o.kind,
                        o.category,
                        o.region
                            .as_ref()
                            .map(|r| format!(" @{r}"))
                            .unwrap_or_default()
                    )
                });
            let _ = writeln!(
                s,
                "| {} | {:?} | {} | {}{} | {} | {} | {} | {} |",
                x.name,
                x.kind,
                x.sent,
                inc,
                if x.joined_open { " (already open)" } else { "" },
                fmt_opt(x.delay_secs, "s"),
                fmt_opt(x.delay_event_secs, "s"),
                x.delay_mentions.map_or("—".into(), |m| m.to_string()),
                if x.as_expected { "yes" } else { "no" },
            );
        }
    }
    if let Some(f) = &r.fanout {
        let _ = writeln!(
            s,
            "\n## 发布 Publishing: one notice to {} accounts\n\nProfile: {} posts and {} reposts per hour per account → limiter period T = (3600 s + 30 s margin) / {} = {:.0} ms (burst 1); no per-app limit is configured in the service. Minimum for notice i: lead_i = max(A_i, lead_(i−1) + T); each amplifier a: max(lead_i, amp_(i−1),a + T); the notice's minimum is the largest (previous posts from the platform's record).\n\n| notice | posts | approval → lead | approval → last post | minimum allowed | ratio |\n|---|---|---|---|---|---|",
            f.accounts, f.per_hour, f.per_hour, f.per_hour, f.period_ms
        );
        for n in &f.notices {
            let _ = writeln!(
                s,
                "| {} | {} | {} ms | {} ms | {} ms | {} |",
                n.id,
                n.posts,
                n.approval_to_lead_ms,
                n.approval_to_last_ms,
                n.min_allowed_ms,
                if n.ratio.is_finite() {
                    format!("{:.3}", n.ratio)
                } else {
                    "— (limits do not bind)".into()
                }
            );
        }
        let _ = writeln!(
            s,
            "\nLimit violations 超限: {} · duplicates 重复: {} · engine CPU {:.2} s, {:.2} ms per post",
            f.limit_violations, f.duplicates, f.engine_cpu_secs, f.cpu_ms_per_post
        );
    }
    if let Some(e) = &r.stream_ended_early {
        let _ = writeln!(s, "\n**The stream ended early:** {e}");
    }
    let _ = writeln!(
        s,
        "\nChart 图表: `chart.svg` (rate, latency, RSS per second) · full figures: `result.json`."
    );
    s
}

/// A small SVG: three panels over time (rate, latency, RSS), no fonts or libraries needed.
pub fn svg(r: &RunResult) -> String {
    type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);
    let (w, ph, left, top) = (900.0, 180.0, 70.0, 30.0);
    let t = &r.timeline;
    let pts = |f: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        t.iter()
            .filter_map(|p| f(p).map(|v| (f64::from(p.t), v)))
            .collect()
    };
    let panels: Vec<(&str, Vec<Series>)> = vec![
        (
            "速率 rate (mentions/s)",
            vec![
                ("sent 发送", "#1f77b4", pts(&|p| Some(p.sent as f64))),
                ("accepted 接收", "#ff7f0e", pts(&|p| Some(p.accepted))),
            ],
        ),
        (
            "延迟 latency (ms)",
            vec![
                ("p50", "#2ca02c", pts(&|p| p.p50_ms)),
                ("p99", "#d62728", pts(&|p| p.p99_ms)),
            ],
        ),
        (
            "内存 RSS (MB) · CPU (%)",
            vec![
                (
                    "RSS",
                    "#9467bd",
                    pts(&|p| (p.rss_mb > 0.0).then_some(p.rss_mb)),
                ),
                (
                    "CPU %",
                    "#8c564b",
                    pts(&|p| (p.rss_mb > 0.0).then_some(p.cpu_pct)),
                ),
            ],
        ),
    ];
    let tmax = t.last().map_or(1.0, |p| f64::from(p.t).max(1.0));
    let height = top + panels.len() as f64 * (ph + 50.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14">{} — {}</text>"#,
        xml(&r.scenario),
        xml(&r.started_at)
    );
    let pw = w - left - 20.0;
    for (i, (title, series)) in panels.iter().enumerate() {
        let y0 = top + i as f64 * (ph + 50.0) + 20.0;
        let vmax = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let _ = writeln!(
            s,
            r##"<text x="{left}" y="{}">{}</text><rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##,
            y0 - 5.0,
            xml(title)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text><text x="{}" y="{}" text-anchor="end">{:.0} s</text>"#,
            left - 4.0,
            y0 + 10.0,
            short(vmax),
            left - 4.0,
            y0 + ph,
            left + pw,
            y0 + ph + 14.0,
            tmax
        );
        for (j, (name, color, data)) in series.iter().enumerate() {
            let path: Vec<String> = data
                .iter()
                .map(|(x, v)| format!("{:.1},{:.1}", left + x / tmax * pw, y0 + ph - v / vmax * ph))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" fill="{color}">{}</text>"#,
                path.join(" "),
                left + pw - 160.0 + j as f64 * 80.0,
                y0 - 5.0,
                xml(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Write `result.json`, `report.md` and `chart.svg` into `dir`.
pub fn write(dir: &Path, r: &RunResult) -> Result<(), ReportError> {
    let put = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| ReportError::Write { path, source })
    };
    put("result.json", serde_json::to_string_pretty(r)?)?;
    put("report.md", markdown(r))?;
    put("chart.svg", svg(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        let l = Latency::of(&mut v);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, 51.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Latency::of(&mut []).count, 0);
    }
}
