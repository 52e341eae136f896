//! The opinion stage: stores the figures of every hour the engine ends (so reports come from
//! the store and add up across a fleet), serves `GET /api/reports/opinion?from=&to=&region=
//! &format=json|csv|html` (a viewer and up), and writes the scheduled reports into
//! `{data_dir}/reports/`: yesterday's every day (`opinion-YYYYMMDD.{json,csv,html}`, 舆情日报)
//! and last week's every Monday (`opinion-week-YYYYMMDD.…`, named by its Monday, 舆情周报),
//! Beijing time, posting a summary with the HTML of each to the webhook named in `[opinion]`
//! when there is one.

use super::{compute, report, Ask, Opinion, CST_OFFSET_SECS};
use crate::api::auth::{Access, Role};
use crate::api::routes::Routes;
use crate::api::ApiError;
use crate::detect::gazetteer::check_region_filter;
use crate::detect::reload::SharedRules;
use crate::respond::dispatch::system_now_ms;
use crate::respond::stage::Respond;
use crate::stage::{Context, Handle};
use crate::store::Store;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[opinion]` in `huiying.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpinionConfig {
    /// Write yesterday's report every day (Beijing time) into `{data_dir}/reports/`.
    pub daily: bool,
    /// Write last week's report (Monday to Monday, Beijing time) every Monday there too.
    pub weekly: bool,
    /// The environment variable holding a webhook URL the reports are posted to (JSON:
    /// the summary figures and the HTML); none: not posted.
    pub webhook_url_env: Option<String>,
}

impl Default for OpinionConfig {
    fn default() -> Self {
        OpinionConfig {
            daily: true,
            weekly: true,
            webhook_url_env: None,
        }
    }
}

/// What the route and the daily task need.
#[derive(Clone)]
pub struct Reporter {
    store: Arc<dyn Store>,
    rules: SharedRules,
    respond: Option<Arc<Respond>>,
}

impl Reporter {
    /// A reporter over `store`, the rules' gazetteer and, when given, the respond stage's
    /// notices.
    pub fn new(store: Arc<dyn Store>, rules: SharedRules, respond: Option<Arc<Respond>>) -> Self {
        Reporter {
            store,
            rules,
            respond,
        }
    }

    /// The report `ask` over the store, the respond stage's notices and the rules' gazetteer.
    pub fn report(&self, ask: &Ask) -> Result<Opinion, String> {
        let notices = match &self.respond {
            Some(r) => r
                .notices
                .list(&Default::default())
                .map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let rules = self.rules.load();
        compute(self.store.as_ref(), &notices, &rules.gazetteer, ask).map_err(|e| e.to_string())
    }
}

/// How often the scheduled reports are looked for.
const EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Start: subscribe to the hours, register the route, and look for the scheduled reports.
pub fn start(
    cfg: &OpinionConfig,
    cx: &mut Context,
    respond: Option<Arc<Respond>>,
    data_dir: &Path,
) -> Handle {
    let rep = Reporter::new(cx.store.clone(), cx.rules.clone(), respond);
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(
        Routes::new()
            .route(
                "/api/reports/opinion",
                Access::Role(Role::Viewer),
                get(show),
            )
            .with_state(rep.clone()),
    );
    // Every hour must reach the store: the engine waits for room (one event an hour).
    let mut rx = cx.bus.subscribe(
        "opinion",
        64,
        crate::bus::Delivery::Wait,
        crate::bus::Interest::Hours,
    );
    let store = cx.store.clone();
    let hours = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let crate::incidents::Event::Hour(h) = ev.as_ref() else {
                continue;
            };
            let (store, h) = (store.clone(), h.clone());
            match tokio::task::spawn_blocking(move || store.add_hour(&h)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "Could not store an hour's figures."),
                Err(e) => tracing::error!(error = %e, "The hours task failed."),
            }
        }
    });
    let mut tasks = vec![hours];
    if cfg.daily || cfg.weekly {
        let dir = data_dir.join("reports");
        let cfg = cfg.clone();
        let webhook = cfg.webhook_url_env.clone();
        let cancel = cx.cancel.clone();
        tasks.push(tokio::spawn(async move {
            let client = crate::respond::publish::http_client(std::time::Duration::from_secs(20))
                .map_err(|e| tracing::warn!(error = %e, "No HTTP client: the opinion reports are not posted."))
                .ok();
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (rep, dir2, cfg2) = (rep.clone(), dir.clone(), cfg.clone());
                let now = system_now_ms();
                let r = tokio::task::spawn_blocking(move || scheduled(&rep, &dir2, now, &cfg2)).await;
                match r {
                    Ok(Ok(written)) => {
                        for name in written {
                            tracing::info!(report = %name, "Wrote a scheduled opinion report.");
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "A scheduled opinion report failed."),
                    Err(e) => tracing::error!(error = %e, "The scheduled reports' task failed."),
                }
                if let (Some(var), Some(client)) = (&webhook, &client) {
                    match std::env::var(var) {
                        Ok(url) => {
                            post_pending(client, &url, &dir).await;
                        }
                        Err(_) => {
                            tracing::warn!(env = %var, "The opinion webhook's variable is not set.")
                        }
                    }
                }
            }
        }));
    }
    Handle::new("opinion", tasks)
}

/// Yesterday (Beijing time) as of `now`: its period and name (`20261204`).
pub fn yesterday(now: i64) -> (i64, i64, String) {
    let day = 86_400_000;
    let off = i64::from(CST_OFFSET_SECS) * 1000;
    let today = (now + off).div_euclid(day) * day - off;
    let from = today - day;
    (
        from,
        today,
        super::local_day(from, CST_OFFSET_SECS).replace('-', ""),
    )
}

/// Last week (Monday 00:00 to Monday 00:00, Beijing time) as of `now`: its period and name
/// (`week-20261123`, its Monday).
pub fn last_week(now: i64) -> (i64, i64, String) {
    let day = 86_400_000;
    let off = i64::from(CST_OFFSET_SECS) * 1000;
    let days = (now + off).div_euclid(day);
    // 1970-01-01 was a Thursday: Monday is 0.
    let weekday = (days + 3).rem_euclid(7);
    let monday = (days - weekday) * day - off;
    let from = monday - 7 * day;
    (
        from,
        monday,
        format!(
            "week-{}",
            super::local_day(from, CST_OFFSET_SECS).replace('-', "")
        ),
    )
}

/// Write yesterday's report into `dir` unless it is there: its name when written.
pub fn daily(rep: &Reporter, dir: &Path, now: i64) -> anyhow::Result<Option<String>> {
    let (from, to, name) = yesterday(now);
    period(rep, dir, now, from, to, name)
}

/// The reports `cfg` schedules that are due at `now` and not written yet (yesterday's, last
/// week's), written into `dir`: their names.
pub fn scheduled(
    rep: &Reporter,
    dir: &Path,
    now: i64,
    cfg: &OpinionConfig,
) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    if cfg.daily {
        written.extend(daily(rep, dir, now)?);
    }
    if cfg.weekly {
        let (from, to, name) = last_week(now);
        written.extend(period(rep, dir, now, from, to, name)?);
    }
    Ok(written)
}

/// Write the report of `from..to` as `opinion-{name}` unless it is there: its name when
/// written.
fn period(
    rep: &Reporter,
    dir: &Path,
    now: i64,
    from: i64,
    to: i64,
    name: String,
) -> anyhow::Result<Option<String>> {
    if dir.join(format!("opinion-{name}.html")).is_file() {
        return Ok(None);
    }
    let o = rep
        .report(&Ask {
            from,
            to,
            region: None,
            offset_secs: CST_OFFSET_SECS,
            generated_at: now,
        })
        .map_err(anyhow::Error::msg)?;
    // Nothing stored for the period (the service was not running): nothing to report.
    if o.hours_covered == 0 && o.incidents.total == 0 {
        return Ok(None);
    }
    write(dir, &name, &o)?;
    Ok(Some(name))
}

/// Write `o` as `{dir}/opinion-{name}.{json,csv,html}` (each through a temporary file and a
/// rename; the HTML last, so its presence means the report is whole). The paths written.
pub fn write(dir: &Path, name: &str, o: &Opinion) -> std::io::Result<Vec<PathBuf>> {
    crate::write_report_files(
        dir,
        &format!("opinion-{name}"),
        &[
            ("json", report::json(o)),
            ("csv", report::csv(o)),
            ("html", report::html(o)),
        ],
    )
}

/// Post every scheduled report not yet posted (`opinion-*.html` without its `.posted` mark) to
/// the webhook at `url`, in name order (the days, then the weeks, each oldest first); a
/// failure is retried at the next look. The reports posted.
pub async fn post_pending(client: &reqwest::Client, url: &str, dir: &Path) -> Vec<String> {
    let mut posted = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return posted;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|f| {
            f.strip_prefix("opinion-")
                .and_then(|r| r.strip_suffix(".html"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    for name in names {
        let mark = dir.join(format!(".opinion-{name}.posted"));
        if mark.exists() {
            continue;
        }
        let (Ok(json), Ok(html)) = (
            std::fs::read_to_string(dir.join(format!("opinion-{name}.json"))),
            std::fs::read_to_string(dir.join(format!("opinion-{name}.html"))),
        ) else {
            continue;
        };
        let figures: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let (period, title) = match name.strip_prefix("week-") {
            Some(monday) => (
                "week",
                format!("舆情周报 Weekly public-opinion report, week of {monday}"),
            ),
            None => (
                "day",
                format!("舆情日报 Daily public-opinion report {name}"),
            ),
        };
        let body = serde_json::json!({
            "report": "opinion",
            "period": period,
            "name": name,
            "title": title,
            "mentions": figures["mentions"],
            "incidents": figures["incidents"]["total"],
            "rumors": figures["rumors"].as_array().map_or(0, Vec::len),
            "html": html,
        });
        match client.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                if let Err(e) = std::fs::write(&mark, b"") {
                    tracing::warn!(error = %e, "Could not mark the report posted.");
                }
                tracing::info!(report = %name, "Posted an opinion report.");
                posted.push(name);
            }
            // The URL holds a secret: never logged.
            Ok(r) => {
                tracing::warn!(report = %name, status = %r.status(), "The opinion webhook refused the report.")
            }
            Err(e) => {
                tracing::warn!(report = %name, error = %e.without_url(), "Could not post the opinion report.")
            }
        }
    }
    posted
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    region: Option<String>,
    format: Option<String>,
}

async fn show(State(rep): State<Reporter>, Query(q): Query<Params>) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid", m);
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "csv" | "html") {
        return Err(bad(format!("format: {format:?} (json, csv, html)")));
    }
    let now = system_now_ms();
    let (from, to) =
        crate::clock::period(q.from.as_deref(), q.to.as_deref(), CST_OFFSET_SECS, now, 1)
            .map_err(bad)?;
    let region = check_region_filter(q.region.as_deref()).map_err(bad)?;
    let ask = Ask {
        from,
        to,
        region,
        offset_secs: CST_OFFSET_SECS,
        generated_at: now,
    };
    let o = tokio::task::spawn_blocking(move || rep.report(&ask))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", e))?;
    Ok(match format.as_str() {
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report::csv(&o),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            report::html(&o),
        )
            .into_response(),
        _ => Json(o).into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yesterday_is_the_beijing_day_before() {
        // 2026-12-05 01:30 in Beijing is 2026-12-04 17:30 UTC.
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T17:30:00Z")
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        let (from, to, name) = yesterday(now);
        assert_eq!(name, "20261204");
        assert_eq!(to - from, 86_400_000);
        assert_eq!(super::super::local_day(from, CST_OFFSET_SECS), "2026-12-04");
        assert!(to <= now && now < to + 86_400_000);
    }

    #[test]
    fn last_week_runs_monday_to_monday_in_beijing() {
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .unwrap_or_default()
        };
        // Monday 2026-12-07 00:00 in Beijing: the week of 11-30 has just ended.
        let (from, to, name) = last_week(at("2026-12-07T00:00:00+08:00"));
        assert_eq!(name, "week-20261130");
        assert_eq!(from, at("2026-11-30T00:00:00+08:00"));
        assert_eq!(to, at("2026-12-07T00:00:00+08:00"));
        // A minute before (Sunday night in Beijing, Sunday afternoon UTC): the week before.
        assert_eq!(
            last_week(at("2026-12-06T23:59:00+08:00")).2,
            "week-20261123"
        );
        // Any time of the week names the same one.
        assert_eq!(last_week(at("2026-12-10T12:00:00Z")).2, "week-20261130");
    }
}
