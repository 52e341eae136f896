//! The evaluation stage: `GET /api/evaluation?from=&to=&department=&account=&format=json|csv|html` over the cases
//! stage's store (a viewer and up; off — 503 `evaluation_disabled` — without the cases stage or
//! with invalid `rules/evaluation.toml`).

use super::weights::Weights;
use super::{evaluate, period, Subjects};
use crate::api::auth::{Access, Role};
use crate::api::routes::Routes;
use crate::api::ApiError;
use crate::cases::Cases;
use crate::respond::dispatch::system_now_ms;
use crate::respond::matrix::Matrix;
use crate::respond::stage::Respond;
use crate::stage::{Context, Handle};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// What the route needs.
#[derive(Clone)]
pub struct Evaluator {
    cases: Arc<Cases>,
    weights: Arc<Weights>,
    matrix: Option<Arc<Matrix>>,
    respond: Option<Arc<Respond>>,
}

type St = Option<Evaluator>;

/// How often the department gauges are refreshed and the monthly report looked for.
const EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// How often the accounts' own timelines are read (传播力).
const TIMELINES_EVERY: std::time::Duration = std::time::Duration::from_secs(1800);

/// Start: register the route (answering 503 when off) and, when on, the task that refreshes
/// the department gauges (last 30 days) and writes last month's report into
/// `{data_dir}/reports/` when it is not there yet.
pub fn start(
    cx: &mut Context,
    cases: Option<Arc<Cases>>,
    respond: Option<Arc<Respond>>,
    data_dir: &std::path::Path,
) -> Handle {
    let weights = match Weights::load(&cx.rules_dir) {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            tracing::warn!(error = %e, "The evaluation is off: invalid rules/evaluation.toml.");
            None
        }
    };
    let st = match (cases, weights) {
        (Some(cases), Some(weights)) => Some(Evaluator {
            cases,
            weights,
            matrix: respond.as_ref().map(|r| r.matrix.clone()),
            respond,
        }),
        _ => None,
    };
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(routes_for(st.clone()));
    let Some(e) = st else {
        return Handle::new("evaluation", Vec::new());
    };
    // Replies to the accounts' own posts (the engine sends every reply as `mention.request`);
    // dropped when this stage falls behind rather than slowing the engine.
    let mut rx = cx.bus.subscribe(
        "evaluation",
        4_096,
        crate::bus::Delivery::DropWhenFull,
        crate::bus::Interest::Requests,
    );
    let e2 = e.clone();
    let replies = tokio::spawn(async move {
        let mut index: Option<(std::collections::HashMap<String, String>, i64)> = None;
        while let Some(ev) = rx.recv().await {
            let crate::incidents::Event::Request { mention, .. } = ev.as_ref() else {
                continue;
            };
            if mention.reply_to.is_none() {
                continue;
            }
            let (e, m) = (e2.clone(), mention.clone());
            let old = index.take();
            let r = tokio::task::spawn_blocking(move || {
                let now = system_now_ms();
                // The posts the accounts made, re-read every 5 minutes.
                let idx = match old {
                    Some((i, at)) if now - at < EVERY.as_millis() as i64 => (i, at),
                    _ => (super::replies::post_index(e.cases.store())?, now),
                };
                if let Some(r) = super::replies::read(&m, &idx.0) {
                    super::replies::keep(e.cases.store(), &r)?;
                }
                Ok::<_, String>(idx)
            })
            .await;
            match r {
                Ok(Ok(idx)) => index = Some(idx),
                Ok(Err(err)) => tracing::warn!(error = %err, "Could not record a reply."),
                Err(err) => tracing::error!(error = %err, "The replies task failed."),
            }
        }
    });
    let dir = data_dir.join("reports");
    let cancel = cx.cancel.clone();
    let timelines = e.matrix.clone().map(|matrix| {
        let (e, cancel) = (e.clone(), cx.cancel.clone());
        let (analyzer, rules) = (cx.analyzer.clone(), cx.rules.clone());
        tokio::spawn(async move {
            let client = match crate::respond::publish::http_client(std::time::Duration::from_secs(20)) {
                Ok(c) => c,
                Err(err) => {
                    tracing::error!(error = %err, "No HTTP client: timelines are not read.");
                    return;
                }
            };
            // The first read one period after start: a restart loop never floods the platforms.
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + TIMELINES_EVERY,
                TIMELINES_EVERY,
            );
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let r = super::timeline::read_all(
                    &client,
                    &matrix,
                    e.cases.store(),
                    &e.weights.reach.public_service_words,
                    &analyzer,
                    &rules,
                    crate::respond::publish::weibo::WEIBO_API,
                )
                .await;
                for (account, why) in &r.failed {
                    tracing::warn!(account = %account, error = %why, "Could not read the account's timeline.");
                }
                tracing::debug!(accounts = r.accounts, posts = r.posts, skipped = r.skipped.len(), "Read the accounts' timelines.");
            }
        })
    });
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (e, dir) = (e.clone(), dir.clone());
            let r = tokio::task::spawn_blocking(move || refresh(&e, &dir, system_now_ms())).await;
            match r {
                Ok(Ok(Some(written))) => {
                    tracing::info!(files = ?written, "Wrote last month's evaluation report.")
                }
                Ok(Ok(None)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "The evaluation refresh failed."),
                Err(err) => tracing::error!(error = %err, "The evaluation task failed."),
            }
        }
    });
    Handle::new(
        "evaluation",
        [task, replies].into_iter().chain(timelines).collect(),
    )
}

/// Refresh the gauges (the 30 days up to `now`) and write last month's report into `dir` if it
/// is missing: the files written, if any.
pub fn refresh(
    e: &Evaluator,
    dir: &std::path::Path,
    now: i64,
) -> anyhow::Result<Option<Vec<std::path::PathBuf>>> {
    collect_fanout(e).map_err(anyhow::Error::msg)?;
    let loaded = super::Loaded::from_store(e.cases.store()).map_err(anyhow::Error::msg)?;
    let subjects = Subjects::of(e.cases.router(), e.matrix.as_deref());
    let cal = e.cases.calendar();
    let recent = super::Period {
        from: now - 30 * 86_400_000,
        to: now,
    };
    super::monthly::gauges(&evaluate(
        loaded.inputs(),
        &subjects,
        cal,
        &e.weights,
        recent,
        now,
    ));
    let (month, name) = super::monthly::last_month(now, cal.offset_secs());
    if super::monthly::exists(dir, &name) {
        return Ok(None);
    }
    let r = evaluate(loaded.inputs(), &subjects, cal, &e.weights, month, now);
    Ok(Some(super::monthly::write(dir, &name, &r)?))
}

/// Bring the fan-out records in the case store up to date with the respond stage's notices and
/// outbox (nothing without the respond stage).
fn collect_fanout(e: &Evaluator) -> Result<(), String> {
    let Some(r) = &e.respond else {
        return Ok(());
    };
    let notices = r
        .notices
        .list(&Default::default())
        .map_err(|err| err.to_string())?;
    let planned = super::fanout::collect(&notices, r.outbox.as_ref())?;
    super::fanout::keep(e.cases.store(), &planned)
}

impl Evaluator {
    /// An evaluator over `cases` with `weights` (and the matrix's accounts).
    pub fn new(cases: Arc<Cases>, weights: Weights, matrix: Option<Arc<Matrix>>) -> Evaluator {
        Evaluator {
            cases,
            weights: Arc::new(weights),
            matrix,
            respond: None,
        }
    }

    /// Also collect the notices' fan-out from `respond` (its notices and outbox) on refresh.
    pub fn with_respond(mut self, respond: Arc<Respond>) -> Evaluator {
        self.matrix = Some(respond.matrix.clone());
        self.respond = Some(respond);
        self
    }
}

fn routes_for(st: St) -> Routes {
    Routes::new()
        .route("/api/evaluation", Access::Role(Role::Viewer), get(show))
        .route("/api/evaluation/summary", Access::WallRead, get(summary))
        .with_state(st)
}

/// The wall's line: the last 7 days' most and least responsive departments (names and
/// figures only; the wall may be public).
async fn summary(State(st): State<St>) -> Result<Json<serde_json::Value>, ApiError> {
    // Off: an empty answer, not an error (the wall asks every minute and shows nothing).
    let Some(e) = st else {
        return Ok(Json(
            serde_json::json!({"enabled": false, "best": [], "worst": []}),
        ));
    };
    let now = system_now_ms();
    let v = tokio::task::spawn_blocking(move || {
        let all = e.cases.store().all().map_err(|err| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", err.to_string())
        })?;
        let subjects = Subjects::of(e.cases.router(), None);
        let week = super::Period {
            from: now - 7 * 86_400_000,
            to: now,
        };
        let input = super::Inputs {
            cases: &all,
            ..Default::default()
        };
        let r = evaluate(input, &subjects, e.cases.calendar(), &e.weights, week, now);
        Ok::<_, ApiError>(week_summary(&r))
    })
    .await
    .map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        )
    })??;
    Ok(Json(v))
}

/// The best three and the worst three departments by `overall` (those with requests).
pub fn week_summary(r: &super::Evaluation) -> serde_json::Value {
    let scored: Vec<&super::Unit> = r
        .departments
        .iter()
        .filter(|u| u.scores.overall.is_some())
        .collect();
    let item = |u: &&super::Unit| {
        serde_json::json!({
            "id": u.id,
            "zh": u.name_zh,
            "en": u.name_en,
            "overall": u.scores.overall,
            "received": u.service.received,
            "answered_on_time": u.service.answered_on_time,
            "overdue": u.service.overdue,
        })
    };
    let best: Vec<serde_json::Value> = scored.iter().take(3).map(item).collect();
    let worst: Vec<serde_json::Value> = scored
        .iter()
        .rev()
        .take(3.min(scored.len().saturating_sub(best.len())))
        .map(item)
        .collect();
    serde_json::json!({"period": r.period, "best": best, "worst": worst})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    department: Option<String>,
    account: Option<String>,
    format: Option<String>,
}

async fn show(State(st): State<St>, Query(q): Query<Params>) -> Result<Response, ApiError> {
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "csv" | "html") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("format: {format:?} (json, csv, html)"),
        ));
    }
    let Some(e) = st else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "evaluation_disabled",
            "the evaluation is off (no cases stage, or invalid rules/evaluation.toml); 绩效评估未启用",
        ));
    };
    let now = system_now_ms();
    let p = period(
        q.from.as_deref(),
        q.to.as_deref(),
        e.cases.calendar().offset_secs(),
        now,
    )
    .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid", m))?;
    let r = tokio::task::spawn_blocking(move || {
        collect_fanout(&e)
            .map_err(|err| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", err))?;
        let loaded = super::Loaded::from_store(e.cases.store())
            .map_err(|err| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", err))?;
        let subjects = Subjects::of(e.cases.router(), e.matrix.as_deref())
            .only(q.department.as_deref(), q.account.as_deref());
        Ok::<_, ApiError>(evaluate(
            loaded.inputs(),
            &subjects,
            e.cases.calendar(),
            &e.weights,
            p,
            now,
        ))
    })
    .await
    .map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        )
    })??;
    Ok(match format.as_str() {
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            super::report::csv(&r),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            super::report::html(&r),
        )
            .into_response(),
        _ => Json(r).into_response(),
    })
}
