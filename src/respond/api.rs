//! The respond stage's routes (served by the API stage, each with its access beside it):
//! notices (draft by hand, list, show with plan and per-account job status,
//! approve, reject, edit), the publishing pause switch and the accounts with their limits.
//!
//! The actor is the [`Principal`] that [`crate::api::auth::guard`] resolved (a user's session or an
//! API token; the legacy `[respond] operators` are tokens with the `operator` role); writes
//! need the `operator` role (401 `unauthorized` without a credential, 403 `forbidden` with a
//! lesser role, 403 `csrf` for a cookie request without the CSRF token). Errors are
//! `{"error": code, "message": …}` with stable codes: `not_found` (404), `self_approval` (403),
//! `invalid_state` (409), `too_long` (422), `unknown_account` (422), `invalid` (400),
//! `respond_disabled` (503, the stage is off).

use crate::api::auth::{Access, Principal, Role};
use crate::api::routes::Routes;
use crate::api::ApiError;
use crate::respond::audit::AuditAction;
use crate::respond::dispatch::{limit_kind, system_now_ms};
use crate::respond::notices::{
    EditTarget, ManualDraft, Notice, NoticeError, NoticeFilter, NoticeState,
};
use crate::respond::outbox::JobState;
use crate::respond::stage::Respond;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The respond routes.
pub fn routes(stage: Option<Arc<Respond>>) -> Routes {
    let operator = Access::Role(Role::Operator);
    Routes::new()
        .route("/api/notices", Access::Role(Role::Viewer), get(list))
        .route("/api/notices", operator, post(create))
        .route("/api/notices/{id}", Access::Role(Role::Viewer), get(show))
        .route("/api/notices/{id}/approve", operator, post(approve))
        .route("/api/notices/{id}/reject", operator, post(reject))
        .route("/api/notices/{id}/edit", operator, post(edit))
        .route("/api/publishing/pause", operator, post(pause))
        .route("/api/publishing/resume", operator, post(resume))
        .route("/api/accounts", Access::Role(Role::Viewer), get(accounts))
        .with_state(stage)
}

/// The handlers' state: the stage, `None` when it is off.
type Stage = Option<Arc<Respond>>;

type ApiResult = Result<Json<Value>, ApiError>;

fn stage(s: &Stage) -> Result<Arc<Respond>, ApiError> {
    s.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "respond_disabled",
            "the respond stage is off (disabled, or no valid rules/matrix and rules/templates)",
        )
    })
}

/// Each notice error with its status and stable code.
impl From<NoticeError> for ApiError {
    fn from(e: NoticeError) -> Self {
        let (status, code) = match &e {
            NoticeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            NoticeError::BelowThreshold { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "below_threshold")
            }
            NoticeError::TooLong { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_long"),
            NoticeError::InvalidState { .. } => (StatusCode::CONFLICT, "invalid_state"),
            NoticeError::SelfApproval { .. } => (StatusCode::FORBIDDEN, "self_approval"),
            NoticeError::AlreadyApproved { .. } => (StatusCode::CONFLICT, "already_approved"),
            NoticeError::Changed { .. } => (StatusCode::CONFLICT, "changed"),
            NoticeError::UnknownAccount { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown_account")
            }
            NoticeError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            NoticeError::MissingAccount(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            NoticeError::Audit(_) => return crate::api::audit_unavailable(e),
            NoticeError::Storage { .. } | NoticeError::Outbox(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn bad_json(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
}

/// One change to a notice by an operator, off the async threads: the changed notice as JSON
/// (the dispatcher is woken when it is now publishing).
async fn on_notices(
    s: &Stage,
    f: impl FnOnce(&Respond) -> Result<Notice, NoticeError> + Send + 'static,
) -> ApiResult {
    let r = stage(s)?;
    let n = blocking(move || {
        let n = f(&r)?;
        r.wake_if_publishing(n.state);
        Ok(n)
    })
    .await?;
    Ok(Json(to_value(&n)?))
}

/// Run blocking notice work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    Ok(serde_json::to_value(v)?)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    state: Option<String>,
    incident_id: Option<String>,
}

async fn list(State(s): State<Stage>, Query(p): Query<ListParams>) -> ApiResult {
    let r = stage(&s)?;
    let state = match p.state.as_deref() {
        None | Some("") => None,
        Some(st) => Some(
            serde_json::from_value::<NoticeState>(json!(st)).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!(
                        "state: unknown {st:?} (draft, held, approved, rejected, publishing, done)"
                    ),
                )
            })?,
        ),
    };
    let filter = NoticeFilter {
        state,
        incident_id: p.incident_id.filter(|i| !i.is_empty()),
        kind: None,
    };
    let v = blocking(move || r.notices.list(&filter).map_err(ApiError::from)).await?;
    Ok(Json(json!({ "notices": v })))
}

/// A due job its account's (or the app's) limiter holds back: until when (unix ms).
pub fn waiting_for_limit_until(
    r: &Respond,
    j: &crate::respond::outbox::Job,
    now: i64,
) -> Option<i64> {
    if !j.is_due(now) {
        return None;
    }
    let a = r.matrix.account(&j.account_id)?;
    let kind = limit_kind(a.platform.as_str(), j.action);
    let w = r.limits.wait_for(&j.account_id, kind).ok()?;
    (!w.is_zero()).then(|| now.saturating_add(i64::try_from(w.as_millis()).unwrap_or(i64::MAX)))
}

async fn show(State(s): State<Stage>, Path(id): Path<String>) -> ApiResult {
    let r = stage(&s)?;
    blocking(move || {
        // A publishing notice whose jobs all finished moves to `done` here.
        let n = r
            .notices
            .refresh(&id, system_now_ms())
            .map_err(ApiError::from)?;
        let jobs = r.outbox.jobs_for_notice(&id).map_err(internal)?;
        let now = system_now_ms();
        let mut v = to_value(&n)?;
        let mut status = Vec::with_capacity(jobs.len());
        for j in &jobs {
            let mut jv = to_value(j)?;
            if let Some(t) = waiting_for_limit_until(&r, j, now) {
                jv["waiting_for_limit_until"] = json!(t);
            }
            status.push(jv);
        }
        v["jobs_status"] = Value::Array(status);
        v["all_done"] = json!(!jobs.is_empty() && jobs.iter().all(|j| j.state == JobState::Done));
        // Jobs given up because their uncertain outcome could not be checked: an operator
        // must look on the platform.
        v["check_failed"] = json!(jobs
            .iter()
            .filter(|j| j.state == JobState::CheckFailed)
            .count());
        Ok(Json(v))
    })
    .await
}

async fn create(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> ApiResult {
    let draft: ManualDraft = serde_json::from_slice(&body).map_err(bad_json)?;
    on_notices(&s, move |r| {
        let rules = r.rules.load();
        r.notices.draft_manual(
            &draft,
            &rules,
            &r.matrix,
            &r.templates,
            system_now_ms(),
            &p.name,
        )
    })
    .await
}

/// What an approval says: the version of the notice the approver read (`version` of
/// `GET /api/notices/{id}`). Required: an approval of unread text is no approval.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    version: u32,
}

async fn approve(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    stage(&s)?;
    let b: ApproveBody = serde_json::from_slice(&body).map_err(bad_json)?;
    on_notices(&s, move |r| {
        r.notices.approve(&id, b.version, &p.name, system_now_ms())
    })
    .await
}

#[derive(Debug, Deserialize, Default)]
struct RejectBody {
    #[serde(default)]
    reason: String,
}

async fn reject(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    // No body is an empty reason (refused for a draft by the workflow, with the field named).
    let b: RejectBody = if body.iter().all(u8::is_ascii_whitespace) {
        RejectBody::default()
    } else {
        serde_json::from_slice(&body).map_err(bad_json)?
    };
    on_notices(&s, move |r| {
        r.notices.reject(&id, &p.name, &b.reason, system_now_ms())
    })
    .await
}

#[derive(Debug, Deserialize)]
struct EditBody {
    #[serde(default)]
    account: Option<String>,
    text: String,
}

async fn edit(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: EditBody = serde_json::from_slice(&body).map_err(bad_json)?;
    let target = match b.account {
        Some(a) => EditTarget::Account(a),
        None => EditTarget::All,
    };
    on_notices(&s, move |r| {
        r.notices
            .edit(&id, &target, &b.text, &p.name, system_now_ms())
    })
    .await
}

async fn set_paused(s: Stage, p: Principal, paused: bool) -> ApiResult {
    let r = stage(&s)?;
    let who = p.name;
    blocking(move || {
        let now = system_now_ms();
        let action = if paused {
            AuditAction::Pause
        } else {
            AuditAction::Resume
        };
        r.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(now, &who, action, None, json!({}))
            .map_err(crate::api::audit_unavailable)?;
        if paused {
            r.outbox.pause().map_err(internal)?;
        } else {
            r.outbox.resume().map_err(internal)?;
            r.wake.notify_one();
        }
        tracing::info!(actor = %who, paused, "Publishing switch.");
        Ok(Json(json!({ "paused": paused })))
    })
    .await
}

async fn pause(State(s): State<Stage>, Extension(p): Extension<Principal>) -> ApiResult {
    set_paused(s, p, true).await
}

async fn resume(State(s): State<Stage>, Extension(p): Extension<Principal>) -> ApiResult {
    set_paused(s, p, false).await
}

/// The matrix's accounts with their limits, last post and failures. Where each account's
/// credential comes from (an environment variable's name, a file's path) is for operators.
async fn accounts(State(s): State<Stage>, Extension(p): Extension<Principal>) -> ApiResult {
    let r = stage(&s)?;
    let operator = p.role.allows(Role::Operator);
    blocking(move || {
        let paused = r.outbox.is_paused().map_err(internal)?;
        let now = system_now_ms();
        // Last post and failures per account, from the jobs of the notices on record.
        let mut last: std::collections::HashMap<String, (i64, Option<String>)> = Default::default();
        let mut failures: std::collections::HashMap<String, Vec<Value>> = Default::default();
        let notices = r.notices.list(&NoticeFilter::default()).map_err(ApiError::from)?;
        for n in notices.iter().filter(|n| !n.jobs.is_empty()) {
            for j in r.outbox.jobs_for_notice(&n.id).map_err(internal)? {
                match j.state {
                    JobState::Done => {
                        let e = last.entry(j.account_id.clone()).or_insert((i64::MIN, None));
                        if j.updated_at >= e.0 {
                            *e = (j.updated_at, j.platform_post_id.clone());
                        }
                    }
                    JobState::Failed | JobState::CheckFailed => failures.entry(j.account_id.clone()).or_default().push(
                        json!({"job": j.id, "notice": j.notice_id, "at": j.updated_at, "error": j.last_error, "state": j.state}),
                    ),
                    _ => {}
                }
            }
        }
        let v: Vec<Value> = r
            .matrix
            .accounts()
            .iter()
            .map(|a| {
                let id = a.id.as_str();
                let mut v = json!({
                    "id": id,
                    "name": a.name,
                    "platform": a.platform,
                    "handle": a.handle,
                    "region": a.region,
                    "level": a.level,
                    "function": a.function,
                    "profile": a.profile,
                    "token_source": a.token_source,
                    "remaining": r.limits.remaining(id).map(|rs| rs.iter().map(|x| {
                        let mut v = json!(x);
                        if x.wait_ms > 0 {
                            let ms = i64::try_from(x.wait_ms).unwrap_or(i64::MAX);
                            v["waiting_until"] = json!(now.saturating_add(ms));
                        }
                        v
                    }).collect::<Vec<_>>()),
                    "last_post": last.get(id).map(|(at, post)| json!({"at": at, "post_id": post})),
                    "failures": failures.get(id).cloned().unwrap_or_default(),
                });
                if !operator {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("token_source");
                    }
                }
                v
            })
            .collect();
        Ok(Json(json!({ "paused": paused, "accounts": v })))
    })
    .await
}
