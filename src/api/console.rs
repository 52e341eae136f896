//! The operator console (`/console`): one HTML page, one script and one style sheet, embedded in
//! the binary (no CDN), in Chinese and English. The page logs in with `POST /api/login` and then
//! uses the same JSON API as everyone else with the session cookie and the CSRF token: the
//! incidents, the notices with their per-platform preview, approval buttons and fan-out board,
//! the accounts, the audit log, and (admins) tokens and reloads. The audit log's read endpoint,
//! `GET /api/audit`, lives here too.

use super::auth::{Access, Principal, Role};
use super::routes::Routes;
use super::{ApiError, ApiState};
use crate::incidents::Control;
use crate::ingest::Item;
use crate::respond::audit::MAX_TAIL;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// The console routes.
pub fn routes() -> Routes<ApiState> {
    let operator = Access::Role(Role::Operator);
    Routes::new()
        .route("/console", Access::Public, get(index))
        .route("/console/", Access::Public, get(index))
        .route("/console/app.js", Access::Public, get(script))
        .route("/console/app.css", Access::Public, get(style))
        .route("/api/audit", operator, get(audit_log))
        .route("/api/incidents/{id}/close", operator, post(close_incident))
        .route("/api/incidents/merge", operator, post(merge_incidents))
}

/// Pages must not be cached: a logged-out browser's back button shows nothing stale.
const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_STORE],
        INDEX,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            NO_STORE,
        ],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), NO_STORE],
        STYLE,
    )
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    limit: Option<usize>,
}

/// The newest records of the audit log (default 200, at most [`MAX_TAIL`]), newest first.
/// Only the records appended since the last call are read and checked (`checked`); on Redis
/// the tail of the shared list is read with `LRANGE`.
async fn audit_log(
    State(s): State<ApiState>,
    Query(q): Query<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let log = s.audit.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "respond_disabled",
            "the respond stage (which keeps the audit log) is off",
        )
    })?;
    let limit = q.limit.unwrap_or(200).clamp(1, MAX_TAIL);
    let view = tokio::task::spawn_blocking(move || {
        log.lock().unwrap_or_else(|p| p.into_inner()).tail(limit)
    })
    .await?
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unreadable",
            e.to_string(),
        )
    })?;
    Ok(Json(json!({
        "total": view.total,
        "checked": view.checked,
        "records": view.records,
    })))
}

/// The open incident `id` from the live view, or 404.
fn open_incident(
    s: &ApiState,
    id: &str,
) -> Result<std::sync::Arc<crate::incidents::Incident>, ApiError> {
    s.live
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no open incident {id}"),
            )
        })
}

/// Hand an operator's change to the engine thread (it owns incident state); the result shows
/// on `/api/stream` as `incident.closed` / `incident.updated`.
async fn send_control(s: &ApiState, c: Control) -> Result<(), ApiError> {
    s.control.send(Item::Control(c)).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the pipeline is stopping",
        )
    })
}

/// `POST /api/incidents/{id}/close` (operator): 202, the engine closes it in input order.
async fn close_incident(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let inc = open_incident(&s, &id)?;
    super::audit(
        &s,
        &p.name,
        "incident_close",
        json!({"incident": id, "kind": inc.kind, "category": inc.category}),
    )
    .await?;
    send_control(&s, Control::Close { id: id.clone() }).await?;
    tracing::info!(actor = %p.name, incident = %id, "Incident close requested.");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"incident": id, "requested": "close"})),
    ))
}

#[derive(Debug, Deserialize)]
struct MergeBody {
    into: String,
    from: String,
}

/// `POST /api/incidents/merge {"into", "from"}` (operator): both open, distinct, one kind.
async fn merge_incidents(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: MergeBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let (into, from) = (open_incident(&s, &b.into)?, open_incident(&s, &b.from)?);
    if into.id == from.id || into.kind != from.kind {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "merge needs two different open incidents of the same kind",
        ));
    }
    super::audit(
        &s,
        &p.name,
        "incident_merge",
        json!({"into": b.into, "from": b.from}),
    )
    .await?;
    send_control(
        &s,
        Control::Merge {
            into: b.into.clone(),
            from: b.from.clone(),
        },
    )
    .await?;
    tracing::info!(actor = %p.name, into = %b.into, from = %b.from, "Incident merge requested.");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"into": b.into, "from": b.from, "requested": "merge"})),
    ))
}
