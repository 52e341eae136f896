//! The HTTP API (axum): open incidents, one incident with its sample mentions, the live event
//! stream over a websocket, mention ingestion by POST, health and Prometheus metrics, the
//! operator console. Every route but `/healthz`, `/metrics`, the console's login page and
//! `POST /api/login` passes [`auth::require`] (token or session, role, CSRF); every answer gets
//! the security headers of [`auth::security_headers`].

use crate::api::auth::{Access, Role};
use crate::api::routes::Routes;
use crate::detect::reload::SharedRules;
use crate::feeds::parse_payload;
use crate::incidents::Incident;
use crate::ingest::Ingest;
use crate::live::{LiveIncidents, StreamMsg};
use crate::store::Store;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast;

pub mod auth;
pub mod console;
pub mod routes;
pub mod serve;
pub mod wall;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// Open incidents.
    pub live: LiveIncidents,
    /// Persistent store.
    pub store: Arc<dyn Store>,
    /// Event bus.
    pub events: broadcast::Sender<StreamMsg>,
    /// Where POSTed mentions go.
    pub ingest: Ingest,
    /// Current rules.
    pub rules: SharedRules,
    /// Largest accepted POST body.
    pub max_body_bytes: usize,
    /// `/api/stream` clients at once: one permit each; the next one is refused (503).
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    /// Fires on shutdown (stream clients close).
    pub cancel: tokio_util::sync::CancellationToken,
    /// Feed health.
    pub feeds: Arc<crate::feeds::health::FeedRegistry>,
    /// The respond stage (`None`: off), for the account names the wall shows.
    pub respond: Option<Arc<crate::respond::stage::Respond>>,
    /// The audit log (`None` while the respond stage that keeps it is off).
    pub audit: Option<crate::respond::audit::SharedAudit>,
    /// Whether the audit log takes writes and the dispatcher waits for it (read without the
    /// log's lock).
    pub audit_status: Option<Arc<crate::respond::audit::AuditStatus>>,
    /// The shared Redis, when `store` is a Redis URL (its health is in `/healthz`).
    pub redis: Option<crate::store::redis::Redis>,
    /// Users, tokens and sessions.
    pub auth: Arc<auth::Auth>,
    /// The rules directory (admin reload).
    pub rules_dir: std::path::PathBuf,
    /// The pipeline's input, for operator changes to incidents (close, merge).
    pub control: tokio::sync::mpsc::Sender<crate::ingest::Item>,
}

/// Append an action of `who` to the audit log (the context's, when the respond stage that keeps
/// it is on), off the async threads. Audit first: call it *before* the action takes effect; an
/// `Err` (503 `audit_unavailable`) means the action must not happen.
pub(crate) async fn audit(
    s: &ApiState,
    who: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let log = s.audit.clone();
    let (who, action) = (who.to_string(), action.to_string());
    tokio::task::spawn_blocking(move || audit_blocking(log.as_ref(), &who, &action, detail)).await?
}

/// [`audit`] from a blocking thread (inside an action that holds its own locks).
pub(crate) fn audit_blocking(
    log: Option<&crate::respond::audit::SharedAudit>,
    who: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    append_action(log, who, action, detail).map_err(audit_unavailable)
}

fn append_action(
    log: Option<&crate::respond::audit::SharedAudit>,
    who: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), crate::respond::audit::AuditError> {
    let Some(log) = log else { return Ok(()) };
    let now = crate::respond::dispatch::system_now_ms();
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .append(
            now,
            who,
            crate::respond::audit::AuditAction::Other(action.to_string()),
            None,
            detail,
        )
        .map(|_| ())
}

/// An [`auth::AuditFirst`] that writes `action` by `who` to the audit log.
pub(crate) fn audit_gate(
    s: &ApiState,
    who: &str,
    action: &'static str,
) -> impl Fn(serde_json::Value) -> Result<(), String> + Send + Sync + 'static {
    let log = s.audit.clone();
    let who = who.to_string();
    move |detail| append_action(log.as_ref(), &who, action, detail).map_err(|e| e.to_string())
}

/// The audit log refused a record: 503 `audit_unavailable`, nothing was done.
pub(crate) fn audit_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!(
            "审计日志无法写入，操作未执行；the audit log cannot be written, so nothing was done: {e}"
        ),
    )
}

/// An API error: logged with its cause, answered as `{ "error": code, "message": … }`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

/// A task that panicked or was cancelled: an internal error.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

/// Serialising an answer failed: an internal error (bad input JSON is answered as
/// `invalid_json` where it is parsed, never through this).
impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

/// The store cannot be read: 503, the caller may retry.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "API error.");
        }
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// The router. Also starts the wall's sampler (it stops with `state.cancel`) and creates the
/// inputs' metric series at zero.
pub fn router(
    state: ApiState,
    wall_events: crate::bus::Subscription,
    stage_routes: Routes,
) -> Router {
    let limit = state.max_body_bytes;
    let m = crate::metrics::global();
    m.init_input(&state.ingest.feed);
    for f in state.feeds.snapshot() {
        m.init_feed(&f.name);
    }
    let wall = wall::Wall::start(&state, wall_events);
    let not_found =
        || async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") };
    let viewer = Access::Role(Role::Viewer);
    let ingest = post(post_mentions)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(json_413));
    Routes::new()
        .route("/healthz", Access::Public, get(healthz))
        .route("/metrics", Access::Metrics, get(metrics))
        .route("/api/incidents", viewer, get(list_incidents))
        .route("/api/feeds", viewer, get(list_feeds))
        .route("/api/incidents/{id}", viewer, get(get_incident))
        .route("/api/stream", viewer, get(stream))
        .route("/api/mentions", Access::Role(Role::Ingest), ingest)
        .merge(wall::routes())
        .merge(auth::routes())
        .merge(console::routes())
        .into_router()
        .layer(axum::Extension(wall))
        .with_state(state.clone())
        .merge(stage_routes.into_router())
        // A known path with a method it does not take: the API's JSON error, not an empty 405.
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        // Deny by default: an unknown path answers 404 to a viewer, 401 to nobody.
        .fallback(
            get(not_found)
                .post(not_found)
                .route_layer(axum::middleware::from_fn(|req, next| {
                    auth::guard(Access::Role(Role::Viewer), req, next)
                })),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::map_response(auth::security_headers))
}

/// The router of the separate metrics address (`metrics_listen`): `/metrics` only, public.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(auth::security_headers))
}

/// axum answers an over-limit body with plain text; keep the API's JSON error shape.
async fn json_413(r: Response) -> Response {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        crate::metrics::global().rejected("http", "too_large");
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body over the configured limit",
        )
        .into_response();
    }
    r
}

/// The order incidents are listed in: most severe first, then the most recently opened.
pub(crate) fn most_severe_first(a: &Incident, b: &Incident) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then(b.opened_at.cmp(&a.opened_at))
}

async fn list_feeds(State(s): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({ "feeds": s.feeds.snapshot() }))
}

async fn healthz(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let open = s.live.read().map(|g| g.len()).unwrap_or(0);
    let rules = s.rules.load();
    // Redis down: detection goes on locally, so the instance is degraded, not dead.
    let redis = s
        .redis
        .as_ref()
        .map(|r| if r.is_up() { "up" } else { "down" });
    // The audit log refused a write: actions are refused and publishing waits (degraded, 200:
    // detection goes on).
    let audit = s.audit_status.as_ref().map(|a| {
        json!({
            "writable": a.writable(),
            "dispatcher_paused": a.dispatcher_paused_since().is_some(),
            "paused_since": a.dispatcher_paused_since(),
        })
    });
    let audit_down = s
        .audit_status
        .as_ref()
        .is_some_and(|a| !a.writable() || a.dispatcher_paused_since().is_some());
    Json(json!({
        "status": if redis == Some("down") || audit_down { "degraded" } else { "ok" },
        "redis": redis,
        "audit": audit,
        "store": s.store.kind(),
        "open_incidents": open,
        "rule_patterns": rules.pattern_count(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::global().render(),
    )
}

#[derive(Debug, Deserialize)]
struct Filter {
    kind: Option<String>,
    category: Option<String>,
    region: Option<String>,
}

use crate::detect::gazetteer::code_covers as region_matches;

async fn list_incidents(
    State(s): State<ApiState>,
    Query(f): Query<Filter>,
) -> Json<serde_json::Value> {
    let g = s.live.read().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<&Arc<Incident>> = g
        .values()
        .filter(|i| f.kind.as_deref().is_none_or(|k| i.kind.as_str() == k))
        .filter(|i| {
            // An incident lists the related categories it also covers (flood + rainstorm).
            f.category
                .as_deref()
                .is_none_or(|c| i.category == c || i.categories.iter().any(|x| x == c))
        })
        .filter(|i| {
            f.region.as_deref().is_none_or(|r| {
                i.region
                    .as_ref()
                    .is_some_and(|reg| region_matches(r, &reg.code) || reg.name == r)
            })
        })
        .collect();
    v.sort_by(|a, b| most_severe_first(a, b));
    Json(json!({ "incidents": v }))
}

async fn get_incident(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (live, others) = {
        let all = s.live.read().unwrap_or_else(|p| p.into_inner());
        let me = all.get(&id).cloned();
        let others: Vec<_> = match &me {
            Some(m) => all
                .values()
                .filter(|o| o.id != m.id && o.kind == m.kind)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (me, others)
    };
    let store = s.store.clone();
    let id2 = id.clone();
    let (stored, mention_ids, overlaps) = tokio::task::spawn_blocking(move || {
        let inc = store.get_incident(&id2);
        // One read serves both: the first 100 ids for the answer, all for the overlaps.
        let ids = store.incident_mentions(&id2, OVERLAP_MENTIONS);
        let overlaps = match &ids {
            Ok(mine) => overlapping(&*store, mine, &others),
            Err(_) => Vec::new(),
        };
        (
            inc,
            ids.map(|mut v| {
                v.truncate(100);
                v
            }),
            overlaps,
        )
    })
    .await?;
    let stored = stored?;
    // The live copy is newer; the stored one has the samples if the live one lost them.
    let inc = match (live, stored) {
        (Some(l), Some(st)) => {
            let mut i = (*l).clone();
            if i.samples.is_empty() {
                i.samples = st.samples;
            }
            i
        }
        (Some(l), None) => (*l).clone(),
        (None, Some(st)) => st,
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no incident {id}"),
            ))
        }
    };
    let mut v = serde_json::to_value(&inc)?;
    v["samples"] = serde_json::to_value(&inc.samples).unwrap_or_default();
    v["mention_ids"] = serde_json::to_value(mention_ids.unwrap_or_default()).unwrap_or_default();
    v["overlaps"] = serde_json::Value::Array(overlaps);
    Ok(Json(v))
}

/// How many mentions of an incident another open incident also holds, at most this many read
/// per incident.
const OVERLAP_MENTIONS: usize = 500;

/// The other open incidents of the same kind that share mentions (`mine`: an incident's
/// mention ids) — the same event seen twice (one burst read as 暴雨 and as 洪涝), which an
/// operator merges with one click: `[{id, category, region, severity, opened_at, shared}]`,
/// most shared first.
fn overlapping(
    store: &dyn crate::store::Store,
    mine: &[String],
    others: &[std::sync::Arc<crate::incidents::Incident>],
) -> Vec<serde_json::Value> {
    let mine: std::collections::HashSet<&String> = mine.iter().collect();
    if mine.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(usize, serde_json::Value)> = others
        .iter()
        .filter_map(|o| {
            let theirs = store.incident_mentions(&o.id, OVERLAP_MENTIONS).ok()?;
            let shared = theirs.iter().filter(|m| mine.contains(*m)).count();
            (shared > 0).then(|| {
                (
                    shared,
                    serde_json::json!({
                        "id": o.id,
                        "category": o.category,
                        "region": o.region,
                        "severity": o.severity,
                        "opened_at": o.opened_at,
                        "shared": shared,
                    }),
                )
            })
        })
        .collect();
    out.sort_by_key(|o| std::cmp::Reverse(o.0));
    out.into_iter().map(|(_, v)| v).collect()
}

#[derive(Debug, Deserialize)]
struct StreamParams {
    #[serde(default)]
    assignments: bool,
    /// Also the wall's periodic `stats` messages (the latest one at once).
    #[serde(default)]
    stats: bool,
}

/// The largest message a `/api/stream` client may send. Clients only ever send pings, pongs and
/// a close (at most 125 bytes of payload each); anything larger closes the connection.
pub const STREAM_CLIENT_MESSAGE_BYTES: usize = 1024;

async fn stream(
    ws: WebSocketUpgrade,
    State(s): State<ApiState>,
    axum::Extension(wall): axum::Extension<wall::Wall>,
    Query(p): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let Ok(slot) = s.stream_slots.clone().try_acquire_owned() else {
        crate::metrics::global().stream_refused.inc();
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_stream_clients",
            "实时事件流的连接数已满，请稍后再试。 Too many /api/stream clients; try again later.",
        ));
    };
    let rx = s.events.subscribe();
    let stats = p.stats.then(|| wall.stats());
    let cancel = s.cancel.clone();
    Ok(ws
        .max_message_size(STREAM_CLIENT_MESSAGE_BYTES)
        .max_frame_size(STREAM_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            stream_client(socket, rx, p.assignments, stats, cancel).await;
            drop(slot);
        }))
}

/// The next `stats` message, or never (no subscription, or the sampler is gone).
async fn next_stats(rx: &mut Option<tokio::sync::watch::Receiver<Arc<str>>>) -> Arc<str> {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return r.borrow_and_update().clone();
        }
    }
    std::future::pending().await
}

/// Push events to one client. A client that falls behind the bus is disconnected, never
/// waited for.
async fn stream_client(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<StreamMsg>,
    assignments: bool,
    mut stats: Option<tokio::sync::watch::Receiver<Arc<str>>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let m = crate::metrics::global();
    m.stream_clients.inc();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                close(&mut socket).await;
                break;
            }
            json = next_stats(&mut stats) => {
                if !send_line(&mut socket, &json).await { break; }
            }
            msg = rx.recv() => match msg {
                Ok(ev) => {
                    if ev.assignment && !assignments { continue; }
                    if !send_line(&mut socket, &ev.json).await { break; }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    m.stream_slow_disconnects.inc();
                    close(&mut socket).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    close(&mut socket).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
    m.stream_clients.dec();
}

/// Send one line; false (counted as a slow disconnect) when the client does not take it within
/// 5 s.
async fn send_line(socket: &mut WebSocket, json: &str) -> bool {
    let send = socket.send(Message::Text(json.into()));
    match tokio::time::timeout(std::time::Duration::from_secs(5), send).await {
        Ok(Ok(())) => true,
        _ => {
            crate::metrics::global().stream_slow_disconnects.inc();
            false
        }
    }
}

/// Say goodbye, but never wait long for a client that does not read.
async fn close(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        socket.send(Message::Close(None)),
    )
    .await;
}

async fn post_mentions(
    State(s): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (ok, bad) = match parse_payload(&body) {
        Ok(r) => r,
        Err(reason) => {
            s.ingest.rejected(reason.as_str());
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                reason.as_str(),
                reason.to_string(),
            ));
        }
    };
    for (_, reason) in &bad {
        s.ingest.rejected(reason.as_str());
    }
    let accepted = ok.len();
    for m in ok {
        if !s.ingest.send(m).await {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the pipeline is stopping",
            ));
        }
    }
    let rejected: Vec<_> = bad
        .iter()
        .map(|(i, r)| json!({"index": i, "error": r.as_str(), "message": r.to_string()}))
        .collect();
    if accepted == 0 && !rejected.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "no_valid_mentions", "accepted": 0, "rejected": rejected})),
        )
            .into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": accepted, "rejected": rejected})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::region_matches;
    use crate::incidents::{Incident, IncidentKind};
    use crate::store::{MemoryStore, Store};
    use std::sync::Arc;

    fn incident(id: &str, category: &str) -> Arc<Incident> {
        Arc::new(Incident {
            mentions: 5,
            authors: 5,
            rate_per_min: 1.0,
            severity: 4,
            categories: vec![category.into()],
            ..Incident::new(id, IncidentKind::Emergency, category, 0)
        })
    }

    /// Issue 16, item 1: the incidents that hold the same mentions are offered for a merge,
    /// most shared first; one sharing nothing is not.
    #[test]
    fn incidents_sharing_mentions_are_found() {
        let store = MemoryStore::default();
        let (rain, flood, fire, quake) = (
            incident("i-rain", "rainstorm"),
            incident("i-flood", "flood"),
            incident("i-fire", "fire"),
            incident("i-quake", "earthquake"),
        );
        let mut pairs: Vec<(Arc<str>, String)> = Vec::new();
        for m in ["m1", "m2", "m3", "m4", "m5"] {
            pairs.push((Arc::from("i-rain"), m.to_string()));
            pairs.push((Arc::from("i-flood"), m.to_string()));
        }
        pairs.push((Arc::from("i-fire"), "m1".to_string()));
        pairs.push((Arc::from("i-quake"), "m9".to_string()));
        store.put_assignments(&pairs).expect("assign");
        let mentions = |id: &str| store.incident_mentions(id, 500).expect("mentions");
        let found = super::overlapping(&store, &mentions("i-rain"), &[fire, flood, quake]);
        let ids: Vec<(&str, u64)> = found
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap_or(""),
                    v["shared"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(ids, vec![("i-flood", 5), ("i-fire", 1)]);
        assert!(super::overlapping(&store, &mentions("i-none"), &[rain]).is_empty());
    }

    #[test]
    fn region_filter_by_level() {
        assert!(region_matches("110000", "110108"));
        assert!(region_matches("110100", "110108") == "110108".starts_with("1101"));
        assert!(region_matches("110108", "110108"));
        assert!(!region_matches("110108", "110105"));
        assert!(!region_matches("120000", "110108"));
    }
}
