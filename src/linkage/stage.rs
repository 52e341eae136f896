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
//! - `GET /api/push` (a viewer): each push subscriber and the state of its newest pushes.
//!
//! With `[[linkage.push]]` subscribers it also runs the push ([`push`]): its own outbox
//! (`{data_dir}/push.redb`, or the fleet's Redis under `{namespace}:push`), limits and
//! dispatcher, fed by the respond stage's [`crate::respond::notices::Notices::on_published`] and
//! a look over the published notices at start and every [`push::SCAN_SECS`]; the feeds then name
//! each WebSub hub (`rel="hub"`).
//!
//! Every answer carries an `ETag` (a hash of its body) and `Cache-Control: public, max-age=60`;
//! a request naming the current tag in `If-None-Match` is answered `304` with no body.

use super::{archive, cap, feed, push};
use crate::api::auth::{Access, Role};
use crate::api::routes::Routes;
use crate::api::ApiError;
use crate::incidents::IncidentKind;
use crate::respond::dispatch::{Dispatcher, Route};
use crate::respond::limits::{Limits, Profile};
use crate::respond::notices::Notice;
use crate::respond::outbox::{Outbox, OutboxStore, RedisOutbox, RedisOutboxConfig};
use crate::respond::publish::{http_client, AnyPublisher, WebSubPublisher, WebhookPublisher};
use crate::respond::stage::Respond;
use crate::respond::templates::Lang;
use crate::stage::{Context, Handle};
use anyhow::Context as _;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

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
    /// are made from; none: `http://` and the request's `Host` (required with `push`).
    pub base_url: Option<String>,
    /// `[[linkage.push]]`: the subscribers each new notice is pushed to ([`push`]).
    pub push: Vec<push::PushConfig>,
    /// A subscriber gets the notices sent in the last this many hours when it is added (and
    /// what a crash left unpushed is found within this window).
    pub backfill_hours: u32,
}

impl Default for LinkageConfig {
    fn default() -> Self {
        LinkageConfig {
            sender: "huiying@localhost".into(),
            name_zh: "政务新媒体".into(),
            name_en: "Government social media".into(),
            exercise: false,
            base_url: None,
            push: Vec::new(),
            backfill_hours: 24,
        }
    }
}

#[derive(Clone)]
struct Linkage {
    cfg: Arc<LinkageConfig>,
    respond: Option<Arc<Respond>>,
    /// The push, when there are subscribers.
    push: Option<Arc<push::Pusher>>,
    /// The WebSub hubs the feeds name.
    hubs: Arc<Vec<String>>,
}

/// Start: register the routes; with push subscribers (and the respond stage on), open the
/// push outbox and start its dispatcher and the task that enqueues the pushes. `data_dir`: the
/// respond stage's (the push outbox lives beside its outbox).
pub fn start(
    cfg: &LinkageConfig,
    cx: &mut Context,
    respond: Option<Arc<Respond>>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Handle> {
    let subs = push::check(&cfg.push, cfg.base_url.as_deref(), |v| {
        std::env::var(v).ok()
    })
    .map_err(anyhow::Error::msg)?;
    let hubs: Vec<String> = subs
        .iter()
        .filter(|s| s.protocol == push::Protocol::WebSub)
        .map(|s| s.url.clone())
        .collect();
    let mut tasks = Vec::new();
    let mut pushing = None;
    match &respond {
        Some(r) if !subs.is_empty() => {
            pushing = Some(start_push(cfg, &subs, cx, r.clone(), data_dir, &mut tasks)?);
        }
        None if !subs.is_empty() => {
            tracing::warn!("[[linkage.push]]: the respond stage is off: nothing is pushed.");
        }
        _ => {}
    }
    let st = Linkage {
        cfg: Arc::new(cfg.clone()),
        respond,
        push: pushing,
        hubs: Arc::new(hubs),
    };
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(
        Routes::new()
            .route("/cap/{file}", Access::Public, get(cap_alert))
            .route(feed::ATOM_PATH, Access::Public, get(atom))
            .route(feed::RSS_PATH, Access::Public, get(rss))
            .route("/archive", Access::Public, get(archive_page))
            .route("/archive/archive.css", Access::Public, get(archive_css))
            .route("/api/push", Access::Role(Role::Viewer), get(push_status))
            .with_state(st),
    );
    Ok(Handle::new("linkage", tasks))
}

/// The push outbox, its limits and dispatcher (one account per subscriber), and the task that
/// enqueues: fed by the respond stage as notices begin publishing, and a look over the
/// published notices at start and every [`push::SCAN_SECS`].
fn start_push(
    cfg: &LinkageConfig,
    subs: &[push::Subscriber],
    cx: &mut Context,
    respond: Arc<Respond>,
    data_dir: &std::path::Path,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<Arc<push::Pusher>> {
    let outbox: Arc<dyn OutboxStore> = match &cx.redis {
        Some(r) => {
            let settings = r.settings();
            let db = Arc::new(
                crate::respond::redis::Blocking::new(r.url(), settings)
                    .map_err(|e| anyhow::anyhow!("the Redis URL of `store`: {e}"))?,
            );
            Arc::new(
                RedisOutbox::new(
                    db,
                    RedisOutboxConfig::from_settings(
                        settings,
                        &format!("{}:push", settings.namespace),
                    ),
                )
                .context("the push outbox on Redis")?,
            )
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let path = data_dir.join("push.redb");
            Arc::new(
                Outbox::open(&path)
                    .with_context(|| format!("the push outbox {}", path.display()))?,
            )
        }
    };
    let limits = Arc::new(Limits::new(crate::clock::SystemClock));
    let client = http_client(Duration::from_secs(20)).context("http client")?;
    let mut dispatcher =
        Dispatcher::new(outbox.clone(), Arc::clone(&limits)).with_audit(respond.audit.clone());
    for s in subs {
        limits.add_account(
            &s.account,
            Profile {
                posts_per_hour: s.per_hour,
                comments_per_hour: 0,
                reposts_per_hour: 0,
                burst: 1,
            },
        );
        let publisher: AnyPublisher = match s.protocol {
            push::Protocol::Webhook => WebhookPublisher::new(
                client.clone(),
                s.url.clone(),
                s.secret.clone().unwrap_or_default().into_bytes(),
            )
            .raw_body()
            .into(),
            push::Protocol::WebSub => WebSubPublisher::new(client.clone(), s.url.clone()).into(),
        };
        dispatcher.add_account(&s.account, Route::new(publisher, &s.account));
        tracing::info!(subscriber = %s.id, protocol = s.protocol.as_str(), "Push on.");
    }
    let origin = push::Origin {
        base: cfg
            .base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string(),
        status: if cfg.exercise { "Exercise" } else { "Actual" },
    };
    let pusher = Arc::new(push::Pusher::new(subs, outbox, origin));
    let (tx, rx) = mpsc::channel::<Notice>(1024);
    respond.notices.on_published(Arc::new(move |n: &Notice| {
        // A full queue drops it: the next look over the notices enqueues it.
        let _ = tx.try_send(n.clone());
    }));
    let wake = dispatcher.notifier();
    let cancel = cx.cancel.clone();
    tasks.push(tokio::spawn(async move {
        dispatcher.run(cancel, Duration::from_secs(5)).await;
    }));
    tasks.push(tokio::spawn(enqueuer(
        pusher.clone(),
        respond,
        rx,
        wake,
        Duration::from_secs(u64::from(cfg.backfill_hours) * 3600),
        cx.cancel.clone(),
    )));
    Ok(pusher)
}

/// Enqueue the pushes of each notice the respond stage hands over, and of every published
/// notice sent within `backfill` at start and every [`push::SCAN_SECS`].
async fn enqueuer(
    pusher: Arc<push::Pusher>,
    respond: Arc<Respond>,
    mut rx: mpsc::Receiver<Notice>,
    wake: Arc<Notify>,
    backfill: Duration,
    cancel: CancellationToken,
) {
    let backfill_ms = i64::try_from(backfill.as_millis()).unwrap_or(i64::MAX);
    let mut scan = tokio::time::interval(Duration::from_secs(push::SCAN_SECS));
    loop {
        let batch: Vec<Notice> = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(n) = rx.recv() => vec![n],
            _ = scan.tick() => {
                let r = respond.clone();
                match tokio::task::spawn_blocking(move || r.notices.list(&Default::default())).await {
                    Ok(Ok(all)) => {
                        let since = crate::respond::dispatch::system_now_ms() - backfill_ms;
                        all.into_iter()
                            .filter(|n| cap::published(n) && cap::sent_at(n) >= since)
                            .collect()
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "Push: cannot read the notices; trying again later.");
                        continue;
                    }
                    Err(_) => continue,
                }
            }
        };
        if batch.is_empty() {
            continue;
        }
        let (p, r) = (pusher.clone(), respond.clone());
        let result = tokio::task::spawn_blocking(move || {
            let now = crate::respond::dispatch::system_now_ms();
            let mut created = 0;
            for n in &batch {
                let name = category_name(Some(&r), &n.category, None);
                match p.enqueue(n, &name, now) {
                    Ok(c) => created += c,
                    // Left for the next look over the notices.
                    Err(e) => tracing::warn!(notice = %n.id, error = %e, "Push: cannot enqueue."),
                }
            }
            created
        })
        .await;
        if let Ok(c) = result {
            if c > 0 {
                tracing::info!(pushes = c, "Pushes enqueued.");
                wake.notify_one();
            }
        }
    }
}

/// `GET /api/push`: each subscriber (id, protocol) and its pushes of the newest published
/// notices (state, attempts, last error).
async fn push_status(State(st): State<Linkage>) -> Result<Response, ApiError> {
    let Some(pusher) = st.push.clone() else {
        return Ok(axum::Json(serde_json::json!({"subscribers": []})).into_response());
    };
    let mut published: Vec<Notice> = notices(&st)
        .await?
        .into_iter()
        .filter(cap::published)
        .collect();
    published.sort_by_key(|n| std::cmp::Reverse(cap::sent_at(n)));
    published.truncate(FEED_ENTRIES);
    let outbox = pusher.outbox().clone();
    let jobs = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for n in &published {
            out.extend(outbox.jobs_for_notice(&n.id)?);
        }
        Ok::<_, crate::respond::outbox::OutboxError>(out)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()))?;
    let list: Vec<serde_json::Value> = pusher
        .subscribers()
        .map(|(id, protocol)| {
            let account = push::account(id);
            let pushes: Vec<serde_json::Value> = jobs
                .iter()
                .filter(|j| j.account_id == account)
                .map(|j| {
                    serde_json::json!({
                        "notice_id": j.notice_id,
                        "state": j.state.as_str(),
                        "attempts": j.attempts,
                        "last_error": j.last_error,
                        "updated_at": j.updated_at,
                    })
                })
                .collect();
            serde_json::json!({"id": id, "protocol": protocol.as_str(), "pushes": pushes})
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "subscribers": list })).into_response())
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
    let event = |lang: Lang| category_name(st.respond.as_deref(), &n.category, Some(lang));
    let xml = cap::alert(n, &earlier, &sender, event)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cap", e.to_string()))?;
    Ok(cached(&headers, "application/cap+xml; charset=utf-8", xml))
}

/// A category's name from the live rules: in `lang`, or both ("洪涝 Flood"); its id when the
/// rules do not know it (a rumor's category, a removed one).
fn category_name(respond: Option<&Respond>, id: &str, lang: Option<Lang>) -> String {
    let rules = respond.map(|r| r.rules.load_full());
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
    let name = |c: &str| category_name(st.respond.as_deref(), c, None);
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
        Format::Atom => feed::ATOM_PATH,
        Format::Rss => feed::RSS_PATH,
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
        hubs: st.hubs.as_ref().clone(),
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
