//! The cases stage's routes (served by the API stage, each with its access beside it).
//!
//! | route | access | what |
//! |---|---|---|
//! | `GET /api/cases` | department | the queue: `state`, `kind`, `department`, `region`, `overdue`, `open`, `from`, `to`, `limit`; a department user sees its own department's only |
//! | `GET /api/cases/export.csv` | department | the same, as CSV (no contact details) |
//! | `GET /api/cases/summary` | wall | counts for the wall's 民生诉求 board: open, overdue, answered today, satisfaction — no texts, no handles |
//! | `GET /api/cases/{id}` | department | one case with its standing, its replies' delivery, and (operators and its department) the contacts |
//! | `POST /api/cases` | operator or `ingest` token | a request from a web form, a hotline system or an operator |
//! | `POST /api/cases/{id}/accept`, `assign`, `close`, `reopen`, `rate`, `approve` | operator | 受理, 转办, close, reopen, a rating taken by phone, approve the pending answer |
//! | `POST /api/cases/{id}/start`, `return`, `answer` | department (its own) or operator | start, 退回, 反馈 |
//! | `GET /api/departments` | department | the departments (id, names) |
//!
//! Bodies are JSON; every change may carry `"version"` (the case's version read): a case that
//! changed since answers 409 `changed`; `approve` requires it. Errors are
//! `{"error": code, "message": …}`: `not_found` (404), `invalid` (400, naming the field),
//! `invalid_json` (400), `forbidden` (403: another department's case, one's own answer, a
//! department user not in `[cases.members]`), `invalid_state` (409), `changed` (409),
//! `too_long` (422), `audit_unavailable` / `storage_unavailable` (503), `cases_disabled` (503).

use super::model::{Case, CaseState, Channel, Contact, Intake, Satisfaction};
use super::workflow::{Actor, CaseFilter, Cases, WorkflowError};
use crate::api::auth::{Access, Principal, Role};
use crate::api::routes::Routes;
use crate::api::ApiError;
use crate::respond::dispatch::system_now_ms;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The handlers' state: the workflow, `None` when the stage is off.
type Stage = Option<Arc<Cases>>;

type ApiResult = Result<Json<Value>, ApiError>;

/// The cases routes.
pub fn routes(stage: Stage) -> Routes {
    let dept = Access::Role(Role::Department);
    let op = Access::Role(Role::Operator);
    Routes::new()
        .route("/api/cases", dept, get(list))
        .route("/api/cases", Access::Intake, post(create))
        .route("/api/cases/export.csv", dept, get(export))
        .route("/api/cases/summary", Access::WallRead, get(summary))
        .route("/api/cases/{id}", dept, get(show))
        .route("/api/cases/{id}/accept", op, post(accept))
        .route("/api/cases/{id}/assign", op, post(assign))
        .route("/api/cases/{id}/close", op, post(close))
        .route("/api/cases/{id}/reopen", op, post(reopen))
        .route("/api/cases/{id}/rate", op, post(rate))
        .route("/api/cases/{id}/approve", op, post(approve))
        .route("/api/cases/{id}/start", dept, post(start))
        .route("/api/cases/{id}/return", dept, post(send_back))
        .route("/api/cases/{id}/answer", dept, post(answer))
        .route("/api/departments", dept, get(departments))
        .with_state(stage)
}

fn stage(s: &Stage) -> Result<Arc<Cases>, ApiError> {
    s.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cases_disabled",
            "the cases stage is off (disabled, or no valid rules/routing and rules/cases); 诉求办理未启用",
        )
    })
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        use super::model::CaseError;
        let (status, code) = match &e {
            WorkflowError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            WorkflowError::Case(CaseError::InvalidState { .. }) => {
                (StatusCode::CONFLICT, "invalid_state")
            }
            WorkflowError::Case(CaseError::Invalid(_)) | WorkflowError::Invalid { .. } => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            WorkflowError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            WorkflowError::Changed { .. } => (StatusCode::CONFLICT, "changed"),
            WorkflowError::TooLong { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_long"),
            WorkflowError::Audit(_) => return crate::api::audit_unavailable(e),
            WorkflowError::Store(_) | WorkflowError::Outbox(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn bad_json(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
}

/// The actor a principal is: operators and admins act for the office; a department user for
/// the department `[cases.members]` names (deny by default: not listed, nothing).
struct Who {
    name: String,
    department: Option<String>,
}

impl Who {
    fn of(p: &Principal, c: &Cases) -> Result<Who, ApiError> {
        match p.role {
            Role::Department => c
                .config()
                .members
                .iter()
                .find(|(_, names)| names.contains(&p.name))
                .map(|(d, _)| Who {
                    name: p.name.clone(),
                    department: Some(d.clone()),
                })
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!(
                            "{} is not a member of any department in [cases.members]; 未配置所属部门",
                            p.name
                        ),
                    )
                }),
            _ => Ok(Who {
                name: p.name.clone(),
                department: None,
            }),
        }
    }

    fn actor(&self) -> Actor<'_> {
        Actor {
            name: &self.name,
            department: self.department.as_deref(),
        }
    }
}

/// Run blocking case work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    kind: Option<String>,
    department: Option<String>,
    region: Option<String>,
    overdue: Option<bool>,
    open: Option<bool>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

fn filter(q: ListParams, who: &Who) -> Result<(CaseFilter, usize), ApiError> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            CaseState::ALL
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!(
                            "state: unknown {s:?} ({})",
                            CaseState::ALL.map(|s| s.as_str()).join(", ")
                        ),
                    )
                })?,
        ),
    };
    let department = match (&who.department, q.department.filter(|d| !d.is_empty())) {
        // A department user sees its own; asking for another's finds nothing.
        (Some(own), Some(asked)) if *own != asked => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{} sees {own}'s cases only", who.name),
            ))
        }
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    Ok((
        CaseFilter {
            state,
            kind: q.kind.filter(|k| !k.is_empty()),
            department,
            region: q.region.filter(|r| !r.is_empty()),
            overdue: q.overdue.unwrap_or(false),
            open: q.open.unwrap_or(false),
            from: q.from,
            to: q.to,
        },
        q.limit.unwrap_or(500).clamp(1, 5_000),
    ))
}

/// A case as the API shows it: the case, whether it is overdue now, the department's and the
/// region's names.
fn view(c: &Cases, case: &Case, now: i64) -> Value {
    let mut v = serde_json::to_value(case).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("overdue".into(), json!(c.overdue(case, now)));
        let d = case
            .department
            .as_deref()
            .and_then(|d| c.router().departments.get(d));
        o.insert(
            "department_name".into(),
            json!(d.map(|d| json!({"zh": d.name_zh, "en": d.name_en}))),
        );
        let gaz = c.router().gazetteer();
        let region = case.region.as_deref().and_then(|r| gaz.by_code(r));
        o.insert(
            "region_name".into(),
            json!(region.map(|i| gaz.get(i).name.clone())),
        );
        o.insert(
            "region_name_en".into(),
            json!(region
                .map(|i| gaz.english_name(i))
                .filter(|n| !n.is_empty())),
        );
    }
    v
}

async fn list(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListParams>,
) -> ApiResult {
    let c = stage(&s)?;
    let who = Who::of(&p, &c)?;
    let (f, limit) = filter(q, &who)?;
    blocking(move || {
        let now = system_now_ms();
        let all = c.list(&f, now)?;
        let total = all.len();
        let cases: Vec<Value> = all.iter().take(limit).map(|x| view(&c, x, now)).collect();
        Ok(Json(json!({"total": total, "cases": cases})))
    })
    .await
}

async fn show(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let c = stage(&s)?;
    let who = Who::of(&p, &c)?;
    blocking(move || {
        let case = c.get(&id)?;
        if let Some(d) = &who.department {
            if case.department.as_ref() != Some(d) {
                return Err(WorkflowError::NotFound(id).into());
            }
        }
        let now = system_now_ms();
        let mut v = view(&c, &case, now);
        let contacts = c.store().contacts(&case.id).map_err(WorkflowError::from)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("contacts".into(), serde_json::to_value(contacts)?);
            o.insert("replies".into(), json!(c.replies_of(&case)?));
        }
        Ok(Json(v))
    })
    .await
}

/// `POST /api/cases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// The caller's reference for this request (idempotency: the same reference is one case).
    #[serde(default)]
    reference: Option<String>,
    text: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    handle: Option<String>,
    #[serde(default)]
    contact: Option<Contact>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    long: Option<f64>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    media: Vec<String>,
    #[serde(default)]
    ts: Option<i64>,
}

async fn create(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let c = stage(&s)?;
    let b: CreateBody = serde_json::from_slice(&body).map_err(bad_json)?;
    if b.lat.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "lat: between -90 and 90",
        ));
    }
    if b.long.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "long: between -180 and 180",
        ));
    }
    if let Some(m) = b
        .media
        .iter()
        .find(|m| !(m.starts_with("https://") || m.starts_with("http://")))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("media: {m:?} is not an http(s) link"),
        ));
    }
    let now = system_now_ms();
    let reference = b
        .reference
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let intake = Intake {
        source_id: format!("api:{}:{reference}", p.name),
        at: b.ts.unwrap_or(now).min(now),
        text: b.text,
        title: b.title,
        handle: b
            .handle
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| format!("{}:{reference}", p.name)),
        contact: b
            .contact
            .filter(|k| k.name.is_some() || k.email.is_some() || k.phone.is_some()),
        region: b.region,
        address: b.address,
        lat: b.lat,
        long: b.long,
        kind: b.kind,
        department: b.department,
        channel: Channel::Api,
        media: b.media,
        reply_target: None,
    };
    let actor = p.name.clone();
    let (out, v) = blocking(move || {
        let out = c.intake(intake, &actor, now)?;
        let v = view(&c, &out.case, now);
        Ok((out, v))
    })
    .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"case": v, "created": out.created, "joined": out.joined})),
    )
        .into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    rating: Option<String>,
}

fn parse_body(body: &[u8]) -> Result<ActionBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(body).map_err(bad_json)
}

fn need<'a>(v: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("{field}: required"),
            )
        })
}

/// One change by an actor, off the async threads: the changed case as JSON.
async fn act(
    s: Stage,
    p: Principal,
    body: axum::body::Bytes,
    f: impl FnOnce(&Cases, Actor<'_>, ActionBody, i64) -> Result<Case, ApiError> + Send + 'static,
) -> ApiResult {
    let c = stage(&s)?;
    let who = Who::of(&p, &c)?;
    let b = parse_body(&body)?;
    blocking(move || {
        let now = system_now_ms();
        let case = f(&c, who.actor(), b, now)?;
        Ok(Json(view(&c, &case, now)))
    })
    .await
}

macro_rules! handler {
    ($name:ident, |$c:ident, $a:ident, $b:ident, $id:ident, $now:ident| $e:expr) => {
        async fn $name(
            State(s): State<Stage>,
            Extension(p): Extension<Principal>,
            Path($id): Path<String>,
            body: axum::body::Bytes,
        ) -> ApiResult {
            act(s, p, body, move |$c, $a, $b, $now| Ok($e?)).await
        }
    };
}

handler!(accept, |c, a, b, id, now| c.accept(&id, &a, b.version, now));
handler!(assign, |c, a, b, id, now| {
    let d = need(&b.department, "department")?.to_string();
    c.assign(&id, &d, &a, b.version, now)
});
handler!(close, |c, a, b, id, now| c.close(&id, &a, b.version, now));
handler!(reopen, |c, a, b, id, now| {
    let r = need(&b.reason, "reason")?.to_string();
    c.reopen(&id, &r, &a, b.version, now)
});
handler!(rate, |c, a, b, id, now| {
    let s = match need(&b.rating, "rating")? {
        "satisfied" => Satisfaction::Satisfied,
        "dissatisfied" => Satisfaction::Dissatisfied,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("rating: {other:?} (satisfied, dissatisfied)"),
            ))
        }
    };
    c.rate(&id, s, &a, b.version, now)
});
handler!(approve, |c, a, b, id, now| {
    let v = b.version.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "version: required (the case's version you read)",
        )
    })?;
    c.approve_answer(&id, &a, Some(v), now)
});
handler!(start, |c, a, b, id, now| c.start(&id, &a, b.version, now));
handler!(send_back, |c, a, b, id, now| {
    let r = need(&b.reason, "reason")?.to_string();
    c.send_back(&id, &r, &a, b.version, now)
});
handler!(answer, |c, a, b, id, now| {
    let t = need(&b.text, "text")?.to_string();
    c.answer(&id, &t, &a, b.version, now)
});

async fn departments(State(s): State<Stage>) -> ApiResult {
    let c = stage(&s)?;
    let d: Vec<Value> = c
        .router()
        .departments
        .all()
        .iter()
        .map(|d| json!({"id": d.id, "name_zh": d.name_zh, "name_en": d.name_en}))
        .collect();
    Ok(Json(json!({ "departments": d })))
}

/// The wall's board: counts only (the wall may be public: no texts, handles or contacts).
async fn summary(State(s): State<Stage>) -> ApiResult {
    let c = stage(&s)?;
    blocking(move || {
        let now = system_now_ms();
        Ok(Json(c.summary(now)?))
    })
    .await
}

/// A CSV field, quoted when needed; a leading `=`, `+`, `-`, `@` is defused (a spreadsheet
/// would run it as a formula).
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn export(
    State(s): State<Stage>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListParams>,
) -> Result<Response, ApiError> {
    let c = stage(&s)?;
    let who = Who::of(&p, &c)?;
    let (f, limit) = filter(q, &who)?;
    let body = blocking(move || {
        let now = system_now_ms();
        let mut out = String::from("\u{feff}id,created_at,state,kinds,department,region,requesters,overdue,accept_due,answer_due,satisfaction,reopened,title,text,answer\n");
        for x in c.list(&f, now)?.iter().take(limit.max(5_000)) {
            let t = |ms: Option<i64>| ms.map(|m| c.calendar().local_text(m)).unwrap_or_default();
            let row = [
                x.id.clone(),
                c.calendar().local_text(x.created_at),
                x.state.as_str().to_string(),
                x.kinds.join(" "),
                x.department.clone().unwrap_or_default(),
                x.region.clone().unwrap_or_default(),
                x.requesters.len().to_string(),
                c.overdue(x, now).to_string(),
                t(x.accept_due),
                t(x.answer_due),
                match x.satisfaction {
                    Some(Satisfaction::Satisfied) => "satisfied".into(),
                    Some(Satisfaction::Dissatisfied) => "dissatisfied".into(),
                    None => String::new(),
                },
                x.reopened.to_string(),
                x.title.clone().unwrap_or_default(),
                x.text.clone(),
                x.answer.clone().unwrap_or_default(),
            ];
            let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        Ok(out)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cases.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("停水"), "停水");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
