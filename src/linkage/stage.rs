//! The linkage stage: public routes for portals, alerting systems and newsrooms (notices are
//! public once published, so no token is needed; drafts, held and rejected notices never show).
//!
//! - `GET /cap/{id}.xml`: a published emergency notice as a CAP 1.2 alert (`application/cap+xml`);
//!   404 for anything else.
//! - `GET /feeds/notices.atom` and `/feeds/notices.rss` (`?region=CODE&category=ID&kind=
//!   emergency|rumor`): the newest 50 published notices and rebuttals.
//! - `GET /archive?q=&region=&category=&kind=&from=&to=`: the searchable archive page
//!   ([`archive`]; no JavaScript); a bad field is a 400 page naming it.
//!
//! Every answer carries an `ETag` (a hash of its body) and `Cache-Control: public, max-age=60`;
//! a request naming the current tag in `If-None-Match` is answered `304` with no body.

use super::{archive, cap, feed};
use crate::api::auth::Access;
use crate::api::routes::Routes;
use crate::api::ApiError;
use crate::incidents::IncidentKind;
use crate::respond::notices::Notice;
use crate::respond::stage::Respond;
use crate::respond::templates::Lang;
use crate::stage::{Context, Handle};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// Entries in a feed at most.
pub const FEED_ENTRIES: usize = 50;

/// `[linkage]` in `huiying.toml`: who the office is in its CAP alerts and feeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkageConfig {
    /// CAP `sender`: an id unique to the office, no spaces or commas (`bjhd@gov.example`).
    pub sender: String,
    /// The office's name in Chinese and English (CAP `senderName`, the feeds' titles).
    pub name_zh: String,
    pub name_en: String,
    /// This instance publishes drills: CAP `status` is `Exercise`, not `Actual`.
    pub exercise: bool,
    /// The public base URL of this service (`https://portal.example/huiying`) the feeds' links
    /// are made from; none: `http://` and the request's `Host`.
    pub base_url: Option<String>,
}

impl Default for LinkageConfig {
    fn default() -> Self {
        LinkageConfig {
            sender: "huiying@localhost".into(),
            name_zh: "政务新媒体".into(),
            name_en: "Government social media".into(),
            exercise: false,
            base_url: None,
        }
    }
}

#[derive(Clone)]
struct Linkage {
    cfg: Arc<LinkageConfig>,
    respond: Option<Arc<Respond>>,
}

/// Start: register the public routes (no task of its own).
pub fn start(cfg: &LinkageConfig, cx: &mut Context, respond: Option<Arc<Respond>>) -> Handle {
    let st = Linkage {
        cfg: Arc::new(cfg.clone()),
        respond,
    };
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(
        Routes::new()
            .route("/cap/{file}", Access::Public, get(cap_alert))
            .route("/feeds/notices.atom", Access::Public, get(atom))
            .route("/feeds/notices.rss", Access::Public, get(rss))
            .route("/archive", Access::Public, get(archive_page))
            .route("/archive/archive.css", Access::Public, get(archive_css))
            .with_state(st),
    );
    Handle::new("linkage", Vec::new())
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "respond_off",
        "the respond stage is not running: no notices".to_string(),
    )
}

async fn notices(st: &Linkage) -> Result<Vec<Notice>, ApiError> {
    let r = st.respond.clone().ok_or_else(unavailable)?;
    tokio::task::spawn_blocking(move || r.notices.list(&Default::default()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()))
}

/// `body` with its type, ETag and cache headers; 304 when the client holds it already.
fn cached(headers: &HeaderMap, content_type: &'static str, body: String) -> Response {
    let tag = format!("\"{:016x}\"", crate::stable_hash(body.as_bytes()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (h, body).into_response()
}

async fn cap_alert(
    State(st): State<Linkage>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{file}: no published emergency notice has this CAP alert"),
        )
    };
    let id = file.strip_suffix(".xml").ok_or_else(not_found)?;
    let all = notices(&st).await?;
    let n = all
        .iter()
        .find(|n| n.id == id && cap::published(n) && n.kind == IncidentKind::Emergency)
        .ok_or_else(not_found)?;
    // The alerts it follows: its incident's notices published before it.
    let at = cap::sent_at(n);
    let earlier: Vec<&Notice> = all
        .iter()
        .filter(|e| {
            e.id != n.id
                && e.incident_id == n.incident_id
                && cap::published(e)
                && e.kind == IncidentKind::Emergency
                && cap::sent_at(e) <= at
        })
        .collect();
    let sender = cap::Sender {
        id: st.cfg.sender.clone(),
        name_zh: st.cfg.name_zh.clone(),
        name_en: st.cfg.name_en.clone(),
        status: if st.cfg.exercise {
            "Exercise"
        } else {
            "Actual"
        },
    };
    let event = |lang: Lang| category_name(&st, &n.category, Some(lang));
    let xml = cap::alert(n, &earlier, &sender, event)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cap", e.to_string()))?;
    Ok(cached(&headers, "application/cap+xml; charset=utf-8", xml))
}

/// A category's name from the live rules: in `lang`, or both ("洪涝 Flood"); its id when the
/// rules do not know it (a rumor's category, a removed one).
fn category_name(st: &Linkage, id: &str, lang: Option<Lang>) -> String {
    let rules = st.respond.as_ref().map(|r| r.rules.load_full());
    let c = rules
        .as_ref()
        .and_then(|r| r.categories.iter().find(|c| *c.id == *id));
    match (c, lang) {
        (Some(c), Some(Lang::Zh)) => c.name_zh.clone(),
        (Some(c), Some(Lang::En)) => c.name_en.clone(),
        (Some(c), None) => format!("{} {}", c.name_zh, c.name_en),
        (None, _) => id.to_string(),
    }
}

async fn archive_css(headers: HeaderMap) -> Response {
    cached(
        &headers,
        "text/css; charset=utf-8",
        archive::CSS.to_string(),
    )
}

async fn archive_page(
    State(st): State<Linkage>,
    Query(q): Query<archive::ArchiveQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let published: Vec<Notice> = notices(&st)
        .await?
        .into_iter()
        .filter(cap::published)
        .collect();
    let name = |c: &str| category_name(&st, c, None);
    Ok(match q.check() {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            archive::page(&[], 0, &q, name, Some(&e)),
        )
            .into_response(),
        Ok(f) => {
            let (hits, total) = archive::select(&published, &f, archive::ARCHIVE_RESULTS);
            cached(
                &headers,
                "text/html; charset=utf-8",
                archive::page(&hits, total, &q, name, None),
            )
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    region: Option<String>,
    category: Option<String>,
    kind: Option<String>,
}

/// Which feed.
#[derive(Clone, Copy)]
enum Format {
    Atom,
    Rss,
}

/// A feed: the published notices the query selects (checked as the archive checks it), newest
/// first, at most [`FEED_ENTRIES`].
async fn feed_answer(
    st: &Linkage,
    q: FeedQuery,
    headers: &HeaderMap,
    format: Format,
) -> Result<Response, ApiError> {
    let ask = archive::ArchiveQuery {
        region: q.region,
        category: q.category,
        kind: q.kind,
        ..Default::default()
    };
    let f = ask
        .check()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid", m))?;
    let published: Vec<Notice> = notices(st)
        .await?
        .into_iter()
        .filter(cap::published)
        .collect();
    let (hits, _) = archive::select(&published, &f, FEED_ENTRIES);
    let base = match &st.cfg.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
        ),
    };
    let path = match format {
        Format::Atom => "/feeds/notices.atom",
        Format::Rss => "/feeds/notices.rss",
    };
    let mut query = Vec::new();
    for (k, v) in [
        ("region", &ask.region),
        ("category", &ask.category),
        ("kind", &ask.kind),
    ] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            // Checked above: digits, a category id, a kind; nothing to escape.
            query.push(format!("{k}={v}"));
        }
    }
    let self_path = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let meta = feed::FeedMeta {
        base,
        self_path,
        name: format!("{} {}", st.cfg.name_zh, st.cfg.name_en),
    };
    Ok(match format {
        Format::Atom => cached(
            headers,
            "application/atom+xml; charset=utf-8",
            feed::atom(&hits, &meta, 0),
        ),
        Format::Rss => cached(
            headers,
            "application/rss+xml; charset=utf-8",
            feed::rss(&hits, &meta, 0),
        ),
    })
}

async fn atom(
    State(st): State<Linkage>,
    Query(q): Query<FeedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    feed_answer(&st, q, &headers, Format::Atom).await
}

async fn rss(
    State(st): State<Linkage>,
    Query(q): Query<FeedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    feed_answer(&st, q, &headers, Format::Rss).await
}
