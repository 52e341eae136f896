//! The evaluation stage: `GET /api/evaluation?from=&to=&department=&account=` over the cases
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
use crate::stage::{Context, Handle};
use axum::extract::{Query, State};
use axum::http::StatusCode;
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
}

type St = Option<Evaluator>;

/// Start: register the route (answering 503 when off). No task of its own.
pub fn start(cx: &mut Context, cases: Option<Arc<Cases>>, matrix: Option<Arc<Matrix>>) -> Handle {
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
            matrix,
        }),
        _ => None,
    };
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(routes_for(st));
    Handle::new("evaluation", Vec::new())
}

fn routes_for(st: St) -> Routes {
    Routes::new()
        .route("/api/evaluation", Access::Role(Role::Viewer), get(show))
        .with_state(st)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    department: Option<String>,
    account: Option<String>,
}

async fn show(
    State(st): State<St>,
    Query(q): Query<Params>,
) -> Result<Json<super::Evaluation>, ApiError> {
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
        let all = e.cases.store().all().map_err(|err| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", err.to_string())
        })?;
        let subjects = Subjects::of(e.cases.router(), e.matrix.as_deref())
            .only(q.department.as_deref(), q.account.as_deref());
        Ok::<_, ApiError>(evaluate(
            &all,
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
    Ok(Json(r))
}
