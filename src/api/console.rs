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
        .route(
            "/api/incidents/{id}/dismiss",
            operator,
            post(dismiss_incident),
        )
        .route(
            "/api/incidents/{id}/promote",
            operator,
            post(promote_incident),
        )
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

/// The open emerging incident `id`, or 404 / 422.
fn open_emerging(
    s: &ApiState,
    id: &str,
) -> Result<std::sync::Arc<crate::incidents::Incident>, ApiError> {
    let inc = open_incident(s, id)?;
    if inc.kind != crate::incidents::IncidentKind::Emerging {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{id} is not an emerging incident"),
        ));
    }
    Ok(inc)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DismissBody {
    /// How long its terms stay muted (default 24, at most 720).
    #[serde(default)]
    mute_hours: Option<u32>,
    /// Why (kept in the audit log).
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/incidents/{id}/dismiss {"mute_hours"?, "reason"?}` (operator): an emerging
/// incident is not worth following; it closes and its terms open nothing for the hours chosen.
async fn dismiss_incident(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: DismissBody = if body.iter().all(u8::is_ascii_whitespace) {
        DismissBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
    };
    let hours = b.mute_hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "mute_hours: between 1 and 720",
        ));
    }
    let inc = open_emerging(&s, &id)?;
    super::audit(
        &s,
        &p.name,
        "incident_dismiss",
        json!({"incident": id, "terms": inc.top_terms, "mute_hours": hours,
               "reason": b.reason.as_deref().map(|r| crate::truncate_chars(r, 500))}),
    )
    .await?;
    send_control(
        &s,
        Control::Dismiss {
            id: id.clone(),
            mute_secs: hours * 3600,
        },
    )
    .await?;
    tracing::info!(actor = %p.name, incident = %id, "Emerging incident dismissed.");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"incident": id, "requested": "dismiss", "mute_hours": hours})),
    ))
}

/// A change to one rules file's text: the new text and the terms it adds.
type RulesChange = Box<
    dyn FnOnce(&str) -> Result<(String, Vec<String>), crate::detect::rules::edit::EditError> + Send,
>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    /// Add the terms to this category's keywords …
    #[serde(default)]
    category: Option<String>,
    /// … or make them the phrases of a new known claim.
    #[serde(default)]
    claim: Option<crate::detect::rules::edit::NewClaim>,
    /// The terms (default: the incident's top terms).
    #[serde(default)]
    terms: Option<Vec<String>>,
}

/// `POST /api/incidents/{id}/promote {"category"} | {"claim": {…}}, "terms"?` (operator): the
/// emerging incident's terms become keywords of a category or the phrases of a known claim.
/// The rules file is changed only when the whole rules directory still loads with it; the
/// change is audited, then put in force (the emerging incident merges into the rule incident
/// that opens on its mentions).
async fn promote_incident(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    use crate::detect::rules::edit::{self, EditError};
    let b: PromoteBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let inc = open_emerging(&s, &id)?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    let terms = edit::clean_terms(b.terms.as_ref().unwrap_or(&inc.top_terms))
        .map_err(|e| invalid(format!("terms: {e}")))?;
    let note = format!(
        "由新动向事件 {id} 提升 / promoted from emerging incident {id} by {} at {}",
        p.name,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let dir = s.rules_dir.clone();
    let (file, change): (&'static str, RulesChange) = match (b.category, b.claim) {
        (Some(c), None) => (
            "categories.toml",
            Box::new(move |src: &str| edit::add_keywords(src, &c, &terms, &note)),
        ),
        (None, Some(claim)) => (
            "claims.toml",
            Box::new(move |src: &str| {
                Ok((edit::add_claim(src, &claim, &terms, &note), terms.clone()))
            }),
        ),
        _ => {
            return Err(invalid(
                "give either `category` or `claim`, not both".into(),
            ))
        }
    };
    let rules = s.rules.clone();
    let log = s.audit.clone();
    let who = p.name.clone();
    let iid = id.clone();
    tokio::task::spawn_blocking(move || {
        let src = std::fs::read_to_string(dir.join(file))
            .map_err(|e| invalid(format!("{}: {e}", dir.join(file).display())))?;
        let (text, added) = change(&src).map_err(|e| invalid(e.to_string()))?;
        let normalizer = crate::normalize::Normalizer::new();
        let io = |e: EditError| match e {
            EditError::Io(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "io",
                format!("{}: {e}", dir.join(file).display()),
            ),
            other => invalid(other.to_string()),
        };
        let rs = edit::check(&dir, file, &text, &normalizer).map_err(io)?;
        // Audit first: the change is written and in force only once its record is.
        let detail = json!({"incident": iid, "file": file, "terms": added});
        crate::api::audit_blocking(log.as_ref(), &who, "incident_promote", detail)?;
        edit::write(&dir, file, &text).map_err(io)?;
        crate::detect::reload::install(&rules, rs, &dir);
        tracing::info!(actor = %who, incident = %iid, file, "Emerging incident promoted into the rules.");
        Ok(Json(json!({"incident": iid, "file": file, "added": added, "reloaded": true})))
    })
    .await?
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
