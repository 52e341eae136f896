//! Open311 GeoReport v2 over the cases (<http://wiki.open311.org/GeoReport_v2>), JSON and XML:
//!
//! | route | what |
//! |---|---|
//! | `GET /open311/v2/discovery.{json,xml}` | the endpoint, its formats and specification |
//! | `GET /open311/v2/services.{json,xml}` | one service per request kind × department: `service_code` `complaint.water` |
//! | `GET /open311/v2/services/{code}.{json,xml}` | its definition (no extra attributes) |
//! | `POST /open311/v2/requests.{json,xml}` | a new request (form fields; `api_key` = an `ingest` or operator token) |
//! | `GET /open311/v2/requests.{json,xml}` | requests: `service_request_id`, `service_code`, `start_date`, `end_date`, `status` (open, closed); default the last 90 days, at most 1,000 |
//! | `GET /open311/v2/requests/{id}.{json,xml}` | one request |
//!
//! Public at the HTTP layer (Open311 clients send the key in the body); a POST without a valid
//! key is refused (403). Errors are the spec's list: `[{"code": 400, "description": …}]`
//! (`<errors><error>…`). Requests never carry the requester's contact details or handle.

use super::model::{Case, CaseState, Channel, Contact, Intake};
use super::workflow::{CaseFilter, Cases, WorkflowError};
use crate::api::auth::{Access, Auth, Role};
use crate::api::routes::Routes;
use crate::respond::dispatch::system_now_ms;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The handlers' state: the workflow, `None` when the stage is off.
type Stage = Option<Arc<Cases>>;

/// Requests listed at most.
const MAX_LIST: usize = 1_000;
/// The default window of a listing (the spec's 90 days).
const WINDOW_MS: i64 = 90 * 86_400_000;

/// The Open311 routes.
pub fn routes(stage: Stage) -> Routes {
    let public = Access::Public;
    let mut r = Routes::new();
    for fmt in ["json", "xml"] {
        r = r
            .route(
                &format!("/open311/v2/discovery.{fmt}"),
                public,
                get(discovery),
            )
            .route(
                &format!("/open311/v2/services.{fmt}"),
                public,
                get(services),
            )
            .route(
                &format!("/open311/v2/requests.{fmt}"),
                public,
                get(list).post(create),
            );
    }
    r.route("/open311/v2/services/{file}", public, get(service))
        .route("/open311/v2/requests/{file}", public, get(one))
        .with_state(stage)
}

/// JSON or XML, from the path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

fn format_of(path: &str) -> Format {
    if path.ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    }
}

/// `name.json` / `name.xml` → (name, format); anything else is not found.
fn split_file(file: &str) -> Option<(&str, Format)> {
    if let Some(n) = file.strip_suffix(".json") {
        Some((n, Format::Json))
    } else {
        file.strip_suffix(".xml").map(|n| (n, Format::Xml))
    }
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

/// An object's fields as XML elements (arrays of scalars repeat the element).
fn xml_fields(o: &serde_json::Map<String, Value>, out: &mut String) {
    for (k, v) in o {
        match v {
            Value::Null => out.push_str(&format!("<{k}/>")),
            Value::Array(items) => {
                for i in items {
                    xml_value(k, i, out);
                }
            }
            other => xml_value(k, other, out),
        }
    }
}

fn xml_value(k: &str, v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            out.push_str(&format!("<{k}>"));
            xml_fields(o, out);
            out.push_str(&format!("</{k}>"));
        }
        Value::String(s) => out.push_str(&format!("<{k}>{}</{k}>", xml_escape(s))),
        Value::Null => out.push_str(&format!("<{k}/>")),
        other => out.push_str(&format!("<{k}>{other}</{k}>")),
    }
}

/// `items` (a list of objects) as JSON, or as XML `<root><item>…</item>…</root>`.
fn answer(status: StatusCode, fmt: Format, root: &str, item: &str, items: Vec<Value>) -> Response {
    match fmt {
        Format::Json => (status, axum::Json(Value::Array(items))).into_response(),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            out.push_str(&format!("<{root}>"));
            for i in &items {
                xml_value(item, i, &mut out);
            }
            out.push_str(&format!("</{root}>"));
            (
                status,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                out,
            )
                .into_response()
        }
    }
}

/// The spec's error answer.
fn error(fmt: Format, status: StatusCode, description: impl Into<String>) -> Response {
    let e = json!({"code": status.as_u16(), "description": description.into()});
    answer(status, fmt, "errors", "error", vec![e])
}

fn off(fmt: Format) -> Response {
    error(
        fmt,
        StatusCode::SERVICE_UNAVAILABLE,
        "the cases stage is off; 诉求办理未启用",
    )
}

fn w3c(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn parse_w3c(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// The services: one per request kind × department.
fn service_list(c: &Cases) -> Vec<Value> {
    let kinds = c.kinds();
    let mut out = Vec::new();
    for d in c.router().departments.all() {
        for (kind, zh, en) in &kinds {
            out.push(json!({
                "service_code": format!("{kind}.{}", d.id),
                "service_name": format!("{zh} · {} / {en} · {}", d.name_zh, d.name_en),
                "description": format!("{zh}（{}）/ {en} for {}", d.name_zh, d.name_en),
                "metadata": false,
                "type": "realtime",
                "keywords": format!("{kind}, {}", d.id),
                "group": format!("{} / {}", d.name_zh, d.name_en),
            }));
        }
    }
    out
}

fn parse_code<'a>(c: &Cases, code: &'a str) -> Option<(&'a str, &'a str)> {
    let (kind, dept) = code.split_once('.')?;
    (super::KINDS.contains(&kind) && c.router().departments.get(dept).is_some())
        .then_some((kind, dept))
}

/// A case as an Open311 request (no handles, no contacts).
fn request_of(c: &Cases, case: &Case) -> Value {
    let kind = case
        .kinds
        .first()
        .cloned()
        .unwrap_or_else(|| "complaint".into());
    let dept = case
        .department
        .as_deref()
        .and_then(|d| c.router().departments.get(d));
    let service_code = case.department.as_ref().map(|d| format!("{kind}.{d}"));
    let service_name = dept.map(|d| format!("{kind} · {}", d.name_en));
    let status = if case.state.is_open() {
        "open"
    } else {
        "closed"
    };
    let notes = match (&case.answer, case.state) {
        (Some(a), CaseState::Answered | CaseState::Closed) => a.clone(),
        (_, s) => match s {
            CaseState::Received => "已收到 received",
            CaseState::Accepted => "已受理 accepted",
            CaseState::Assigned => "已转办 transferred to the department",
            CaseState::InProgress => "办理中 in progress",
            CaseState::Answered => "已答复 answered",
            CaseState::Closed => "已办结 closed",
        }
        .to_string(),
    };
    json!({
        "service_request_id": case.id,
        "status": status,
        "status_notes": notes,
        "service_name": service_name,
        "service_code": service_code,
        "description": case.text,
        "agency_responsible": dept.map(|d| format!("{} / {}", d.name_zh, d.name_en)),
        "service_notice": Value::Null,
        "requested_datetime": w3c(case.created_at),
        "updated_datetime": w3c(case.updated_at),
        "expected_datetime": case.answer_due.and_then(w3c),
        "address": case.address,
        "address_id": Value::Null,
        "zipcode": Value::Null,
        "lat": case.lat,
        "long": case.long,
        "media_url": case.media.first(),
    })
}

async fn discovery(State(s): State<Stage>, uri: axum::http::Uri) -> Response {
    let fmt = format_of(uri.path());
    if s.is_none() {
        return off(fmt);
    }
    let d = json!({
        "changeset": "2026-12-04T00:00:00Z",
        "contact": "huiying — the office running this endpoint",
        "key_service": "an API key is an ingest token issued by the office (huiying token create NAME --role ingest)",
        "endpoints": [{
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": "/open311/v2",
            "changeset": "2026-12-04T00:00:00Z",
            "type": "production",
            "formats": ["application/json", "text/xml"],
        }],
    });
    match fmt {
        Format::Json => axum::Json(d).into_response(),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><discovery>");
            if let Value::Object(o) = &d {
                for (k, v) in o {
                    if k == "endpoints" {
                        out.push_str("<endpoints>");
                        for e in v.as_array().into_iter().flatten() {
                            let mut inner = String::new();
                            if let Value::Object(eo) = e {
                                for (ek, ev) in eo {
                                    if ek == "formats" {
                                        inner.push_str("<formats>");
                                        for f in ev.as_array().into_iter().flatten() {
                                            xml_value("format", f, &mut inner);
                                        }
                                        inner.push_str("</formats>");
                                    } else {
                                        xml_value(ek, ev, &mut inner);
                                    }
                                }
                            }
                            out.push_str(&format!("<endpoint>{inner}</endpoint>"));
                        }
                        out.push_str("</endpoints>");
                    } else {
                        xml_value(k, v, &mut out);
                    }
                }
            }
            out.push_str("</discovery>");
            ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
        }
    }
}

async fn services(State(s): State<Stage>, uri: axum::http::Uri) -> Response {
    let fmt = format_of(uri.path());
    let Some(c) = s else { return off(fmt) };
    answer(StatusCode::OK, fmt, "services", "service", service_list(&c))
}

async fn service(State(s): State<Stage>, Path(file): Path<String>) -> Response {
    let Some((code, fmt)) = split_file(&file) else {
        return error(Format::Json, StatusCode::NOT_FOUND, "use .json or .xml");
    };
    let Some(c) = s else { return off(fmt) };
    if parse_code(&c, code).is_none() {
        return error(
            fmt,
            StatusCode::NOT_FOUND,
            format!("no service_code {code:?}"),
        );
    }
    let def = json!({"service_code": code, "attributes": []});
    match fmt {
        Format::Json => axum::Json(def).into_response(),
        Format::Xml => (
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><service_definition><service_code>{}</service_code><attributes/></service_definition>",
                xml_escape(code)
            ),
        )
            .into_response(),
    }
}

async fn one(State(s): State<Stage>, Path(file): Path<String>) -> Response {
    let Some((id, fmt)) = split_file(&file) else {
        return error(Format::Json, StatusCode::NOT_FOUND, "use .json or .xml");
    };
    let Some(c) = s else { return off(fmt) };
    let id = id.to_string();
    let c2 = c.clone();
    match tokio::task::spawn_blocking(move || c2.get(&id)).await {
        Ok(Ok(case)) => answer(
            StatusCode::OK,
            fmt,
            "service_requests",
            "request",
            vec![request_of(&c, &case)],
        ),
        Ok(Err(WorkflowError::NotFound(id))) => error(
            fmt,
            StatusCode::NOT_FOUND,
            format!("no service request {id:?}"),
        ),
        Ok(Err(e)) => error(fmt, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(fmt, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list(
    State(s): State<Stage>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let fmt = format_of(uri.path());
    let Some(c) = s else { return off(fmt) };
    let now = system_now_ms();
    let date = |k: &str| -> Result<Option<i64>, String> {
        match q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_w3c(v)
                .map(Some)
                .ok_or_else(|| format!("{k}: {v:?} is not a W3C date-time (2026-12-04T09:00:00Z)")),
        }
    };
    let (start, end) = match (date("start_date"), date("end_date")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error(fmt, StatusCode::BAD_REQUEST, e),
    };
    let end = end.unwrap_or(now + 1);
    let start = start.unwrap_or(end - WINDOW_MS);
    let mut open = None;
    if let Some(st) = q.get("status").filter(|v| !v.is_empty()) {
        let (mut o, mut c) = (false, false);
        for v in st.split(',') {
            match v.trim() {
                "open" => o = true,
                "closed" => c = true,
                other => {
                    return error(
                        fmt,
                        StatusCode::BAD_REQUEST,
                        format!("status: {other:?} (open, closed)"),
                    )
                }
            }
        }
        if o != c {
            open = Some(o);
        }
    }
    let ids: Option<Vec<String>> = q
        .get("service_request_id")
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|x| x.trim().to_string()).collect());
    let codes: Option<Vec<String>> = q
        .get("service_code")
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|x| x.trim().to_string()).collect());
    let c2 = c.clone();
    let found = tokio::task::spawn_blocking(move || {
        let f = CaseFilter {
            from: if ids.is_some() { None } else { Some(start) },
            to: if ids.is_some() { None } else { Some(end) },
            ..CaseFilter::default()
        };
        c2.list(&f, now).map(|v| {
            v.into_iter()
                .filter(|x| ids.as_ref().is_none_or(|i| i.contains(&x.id)))
                .filter(|x| {
                    codes.as_ref().is_none_or(|cs| {
                        let kind = x.kinds.first().map_or("", String::as_str);
                        x.department
                            .as_ref()
                            .is_some_and(|d| cs.contains(&format!("{kind}.{d}")))
                    })
                })
                .filter(|x| open.is_none_or(|o| x.state.is_open() == o))
                .take(MAX_LIST)
                .collect::<Vec<_>>()
        })
    })
    .await;
    match found {
        Ok(Ok(v)) => answer(
            StatusCode::OK,
            fmt,
            "service_requests",
            "request",
            v.iter().map(|x| request_of(&c, x)).collect(),
        ),
        Ok(Err(e)) => error(fmt, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(fmt, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn create(
    State(s): State<Stage>,
    Extension(auth): Extension<Arc<Auth>>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let fmt = format_of(uri.path());
    let Some(c) = s else { return off(fmt) };
    let form: HashMap<String, String> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                fmt,
                StatusCode::BAD_REQUEST,
                format!("the body must be application/x-www-form-urlencoded: {e}"),
            )
        }
    };
    let field = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    // Deny by default: a key that is an ingest (or operator) token.
    let who = match field("api_key").and_then(|k| auth.token_principal(k)) {
        Some(p) if p.role == Role::Ingest || p.role.allows(Role::Operator) => p,
        _ => {
            return error(
                fmt,
                StatusCode::FORBIDDEN,
                "api_key: missing or not valid for submitting requests",
            )
        }
    };
    let Some(code) = field("service_code") else {
        return error(fmt, StatusCode::BAD_REQUEST, "service_code: required");
    };
    let Some((kind, dept)) = parse_code(&c, code) else {
        return error(
            fmt,
            StatusCode::BAD_REQUEST,
            format!("service_code: {code:?} is not a service (see services.json)"),
        );
    };
    let num = |k: &str, range: std::ops::RangeInclusive<f64>| -> Result<Option<f64>, String> {
        match field(k) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(x) if range.contains(&x) => Ok(Some(x)),
                _ => Err(format!("{k}: {v:?} is not a WGS84 coordinate")),
            },
        }
    };
    let (lat, long) = match (num("lat", -90.0..=90.0), num("long", -180.0..=180.0)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error(fmt, StatusCode::BAD_REQUEST, e),
    };
    let address = field("address_string").map(str::to_string);
    let located =
        (lat.is_some() && long.is_some()) || address.is_some() || field("address_id").is_some();
    if !located {
        return error(
            fmt,
            StatusCode::BAD_REQUEST,
            "a location is required: lat and long, address_string or address_id",
        );
    }
    let Some(description) = field("description") else {
        return error(
            fmt,
            StatusCode::BAD_REQUEST,
            "description: required (what is the problem?)",
        );
    };
    if let Some(m) =
        field("media_url").filter(|m| !(m.starts_with("https://") || m.starts_with("http://")))
    {
        return error(
            fmt,
            StatusCode::BAD_REQUEST,
            format!("media_url: {m:?} is not an http(s) link"),
        );
    }
    let name = [field("first_name"), field("last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let contact = Contact {
        name: (!name.is_empty()).then_some(name),
        email: field("email").map(str::to_string),
        phone: field("phone").map(str::to_string),
    };
    let has_contact = contact.name.is_some() || contact.email.is_some() || contact.phone.is_some();
    let reference = field("device_id")
        .zip(field("account_id").or(Some("")))
        .map(|(d, a)| format!("{d}:{a}:{}", crate::stable_hash(body.as_ref())))
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let handle = field("account_id")
        .map(|a| format!("open311:{a}"))
        .unwrap_or_else(|| format!("open311:{}", who.name));
    let now = system_now_ms();
    let intake = Intake {
        source_id: format!("open311:{}:{reference}", who.name),
        at: now,
        text: description.to_string(),
        title: None,
        handle,
        contact: has_contact.then_some(contact),
        region: None,
        address,
        lat,
        long,
        kind: Some(kind.to_string()),
        department: Some(dept.to_string()),
        channel: Channel::Open311,
        media: field("media_url")
            .map(|m| vec![m.to_string()])
            .unwrap_or_default(),
        reply_target: None,
    };
    let actor = who.name.clone();
    match tokio::task::spawn_blocking(move || c.intake(intake, &actor, now)).await {
        Ok(Ok(out)) => {
            let notice = if out.joined {
                "已并入同一问题的诉求 joined an open request about the same problem"
            } else {
                "已收到 received"
            };
            answer(
                StatusCode::CREATED,
                fmt,
                "service_requests",
                "request",
                vec![json!({
                    "service_request_id": out.case.id,
                    "service_notice": notice,
                    "account_id": Value::Null,
                })],
            )
        }
        Ok(Err(WorkflowError::Invalid { field, message })) => {
            error(fmt, StatusCode::BAD_REQUEST, format!("{field}: {message}"))
        }
        Ok(Err(e)) => error(fmt, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(fmt, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_escaped_and_control_characters_dropped() {
        assert_eq!(xml_escape("a<b>&\"'\u{1}c"), "a&lt;b&gt;&amp;&quot;&apos;c");
        let mut out = String::new();
        xml_value(
            "request",
            &json!({"id": "1", "lat": 39.9, "n": null}),
            &mut out,
        );
        assert_eq!(out, "<request><id>1</id><lat>39.9</lat><n/></request>");
    }

    #[test]
    fn w3c_dates_both_ways() {
        assert_eq!(parse_w3c("2026-12-04T00:00:00Z"), Some(1_796_342_400_000));
        assert_eq!(parse_w3c("2026-12-04"), Some(1_796_342_400_000));
        assert_eq!(parse_w3c("04/12/2026"), None);
        assert_eq!(
            w3c(1_796_342_400_000).as_deref(),
            Some("2026-12-04T00:00:00Z")
        );
    }
}
