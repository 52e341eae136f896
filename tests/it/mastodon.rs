//! Mastodon feed tests: a fake Mastodon on 127.0.0.1:0 (axum) with the streaming websocket
//! (`/api/v1/streaming`: bearer token checked at the handshake, subscribe messages recorded, a
//! script of frames per connection) and the REST timelines (`since_id`/`max_id`/`limit`, token
//! checked, every request recorded). Statuses have Mastodon's documented JSON shape and real
//! status HTML. Every wait is on the actual event, bounded by [`util::WAIT`].

use crate::util::{
    self, get_json, get_metrics, metric, next_event, now_ms, stop, stream, wait_assigned, within,
    Ws,
};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use huiying::app::{start, Service, ServiceOptions};
use huiying::config::Config;
use huiying::feeds::{FeedConfig, FeedKind};
use huiying::store::{EmbeddedStore, MemoryStore, Store};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};

const RAINSTORM: &str = "rainstorm";
const HAIDIAN: &str = "110108";
/// Status ids: Mastodon's are snowflake-like decimal strings.
const ID_BASE: u64 = 113_528_000_000_000_000;

// ---------------------------------------------------------------------------------------------
// The fake Mastodon

/// How a streaming connection ends after its frames.
enum End {
    /// Stay open until the client goes.
    Stay,
    /// Drop the connection (no close frame) right after the frames.
    Drop,
    /// Drop it when the test says so.
    DropOn(oneshot::Receiver<()>),
}

/// What one streaming connection does: once the client subscribed (and the gate opened), send
/// the frames, then end as told.
struct Conn {
    gate: Option<oneshot::Receiver<()>>,
    frames: Vec<String>,
    end: End,
}

/// One REST request.
#[derive(Debug, Clone)]
struct RestReq {
    path: String,
    query: Vec<(String, String)>,
    authorized: bool,
}

impl RestReq {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
struct Seen {
    /// Accepted streaming connections.
    connections: usize,
    /// Streaming handshakes refused (bad or missing token).
    refused: usize,
    /// (connection number from 1, subscribe message).
    subscribes: Vec<(usize, Value)>,
    rest: Vec<RestReq>,
}

struct Fake {
    token: String,
    /// Subscribe messages a connection waits for before streaming.
    subscriptions: usize,
    conns: Mutex<VecDeque<Conn>>,
    /// The statuses the REST timelines serve (any order).
    timeline: Mutex<Vec<Value>>,
    /// Answer REST requests with HTTP 429.
    rate_limited: bool,
    /// REST timelines answer only while this is true (a test holds them until it listens).
    rest_open: watch::Sender<bool>,
    seen: watch::Sender<Seen>,
}

impl Fake {
    fn authorized(&self, h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {}", self.token).as_str())
    }

    /// Wait until what the fake saw satisfies `pred`.
    async fn wait(&self, what: &str, pred: impl FnMut(&Seen) -> bool) {
        let mut rx = self.seen.subscribe();
        let seen = within(what, rx.wait_for(pred)).await;
        drop(seen.expect("the fake server is alive"));
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.borrow())
    }

    async fn serve(self: Arc<Self>, mut ws: WebSocket) {
        let mut n = 0;
        self.seen.send_modify(|s| {
            s.connections += 1;
            n = s.connections;
        });
        let conn = self.conns.lock().unwrap().pop_front().unwrap_or(Conn {
            gate: None,
            frames: Vec::new(),
            end: End::Stay,
        });
        let mut subs = 0;
        while subs < self.subscriptions {
            match ws.recv().await {
                Some(Ok(WsMessage::Text(t))) => {
                    self.record_subscribe(n, t.as_str());
                    subs += 1;
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
        if let Some(g) = conn.gate {
            let _ = g.await;
        }
        for f in conn.frames {
            if ws.send(WsMessage::Text(f.into())).await.is_err() {
                return;
            }
        }
        let mut stop = match conn.end {
            End::Drop => return,
            End::DropOn(rx) => Some(rx),
            End::Stay => None,
        };
        loop {
            let msg = match stop.as_mut() {
                Some(rx) => tokio::select! {
                    _ = rx => return,
                    m = ws.recv() => m,
                },
                None => ws.recv().await,
            };
            match msg {
                Some(Ok(WsMessage::Text(t))) => self.record_subscribe(n, t.as_str()),
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }

    fn record_subscribe(&self, conn: usize, text: &str) {
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("the client sent a non-JSON frame ({e}): {text}"));
        self.seen.send_modify(|s| s.subscribes.push((conn, v)));
    }

    /// Mastodon's `since_id`/`max_id`/`limit` over the statuses `keep` accepts, newest first.
    fn page(&self, req: &RestReq, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let num = |v: Option<&str>| v.and_then(|s| s.parse::<u64>().ok());
        let since = num(req.param("since_id")).unwrap_or(0);
        let max = num(req.param("max_id")).unwrap_or(u64::MAX);
        let limit = num(req.param("limit")).unwrap_or(20).min(40) as usize;
        let mut all: Vec<(u64, Value)> = self
            .timeline
            .lock()
            .unwrap()
            .iter()
            .filter(|s| keep(s))
            .map(|s| (s["id"].as_str().unwrap().parse::<u64>().unwrap(), s.clone()))
            .filter(|(id, _)| *id > since && *id < max)
            .collect();
        all.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        all.into_iter().take(limit).map(|(_, s)| s).collect()
    }

    /// Record a REST request; the refusal to send, if any.
    fn rest(
        &self,
        path: String,
        headers: &HeaderMap,
        query: Vec<(String, String)>,
    ) -> (RestReq, Option<Response>) {
        let req = RestReq {
            path,
            query,
            authorized: self.authorized(headers),
        };
        self.seen.send_modify(|s| s.rest.push(req.clone()));
        let refusal = if !req.authorized {
            Some(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "The access token is invalid"})),
                )
                    .into_response(),
            )
        } else if self.rate_limited {
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("x-ratelimit-reset", "2026-07-21T09:05:00.000Z")],
                    Json(json!({"error": "Too many requests"})),
                )
                    .into_response(),
            )
        } else {
            None
        };
        (req, refusal)
    }
}

async fn streaming(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !f.authorized(&headers) {
        f.seen.send_modify(|s| s.refused += 1);
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Error while verifying token"})),
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| f.serve(socket))
}

async fn public_timeline(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let _ = f.rest_open.subscribe().wait_for(|open| *open).await;
    let (req, refusal) = f.rest("/api/v1/timelines/public".into(), &headers, q);
    if let Some(r) = refusal {
        return r;
    }
    Json(f.page(&req, |_| true)).into_response()
}

async fn tag_timeline(
    State(f): State<Arc<Fake>>,
    Path(tag): Path<String>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let (req, refusal) = f.rest(format!("/api/v1/timelines/tag/{tag}"), &headers, q);
    if let Some(r) = refusal {
        return r;
    }
    let page = f.page(&req, |s| {
        s["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == tag.as_str()))
    });
    Json(page).into_response()
}

struct FakeOptions {
    token: String,
    subscriptions: usize,
    conns: Vec<Conn>,
    timeline: Vec<Value>,
    rate_limited: bool,
}

/// Start a fake Mastodon; returns it, its address and the server task.
async fn fake_mastodon(o: FakeOptions) -> (Arc<Fake>, SocketAddr, tokio::task::JoinHandle<()>) {
    let fake = Arc::new(Fake {
        token: o.token,
        subscriptions: o.subscriptions,
        conns: Mutex::new(o.conns.into()),
        timeline: Mutex::new(o.timeline),
        rate_limited: o.rate_limited,
        rest_open: watch::Sender::new(true),
        seen: watch::Sender::new(Seen::default()),
    });
    let app = Router::new()
        .route("/api/v1/streaming", get(streaming))
        .route("/api/v1/timelines/public", get(public_timeline))
        .route("/api/v1/timelines/tag/{tag}", get(tag_timeline))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Mastodon");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, addr, task)
}

// ---------------------------------------------------------------------------------------------
// Statuses and frames

/// Status HTML as Mastodon renders it: paragraphs, a hashtag link, entities.
fn rain_html(host: SocketAddr, n: u64) -> String {
    format!(
        "<p>北京海淀区暴雨，路口积水严重 <a href=\"http://{host}/tags/%E6%9A%B4%E9%9B%A8\" class=\"mention hashtag\" rel=\"tag\">#<span>暴雨</span></a></p><p>&lt;第{n}报&gt; 请绕行 &amp; 注意安全&#33;&#x1F327;</p>"
    )
}

/// The plain text of [`rain_html`].
fn rain_text(n: u64) -> String {
    format!("北京海淀区暴雨，路口积水严重 #暴雨\n<第{n}报> 请绕行 & 注意安全!🌧")
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Status `ID_BASE + n` by local account `user`, in Mastodon's documented JSON shape.
fn status(host: SocketAddr, n: u64, user: &str, content: &str) -> Value {
    let id = (ID_BASE + n).to_string();
    let account = json!({
        "id": format!("10{n}"),
        "username": user,
        "acct": user,
        "display_name": format!("海淀居民{n}"),
        "locked": false,
        "bot": false,
        "discoverable": true,
        "group": false,
        "created_at": "2024-03-01T00:00:00.000Z",
        "note": "<p>住在海淀</p>",
        "url": format!("http://{host}/@{user}"),
        "avatar": format!("http://{host}/avatars/original/missing.png"),
        "avatar_static": format!("http://{host}/avatars/original/missing.png"),
        "header": format!("http://{host}/headers/original/missing.png"),
        "header_static": format!("http://{host}/headers/original/missing.png"),
        "followers_count": 20 + n,
        "following_count": 31,
        "statuses_count": 112,
        "last_status_at": "2026-07-21",
        "emojis": [],
        "fields": []
    });
    json!({
        "id": id,
        "created_at": rfc3339(now_ms()),
        "in_reply_to_id": null,
        "in_reply_to_account_id": null,
        "sensitive": false,
        "spoiler_text": "",
        "visibility": "public",
        "language": "zh",
        "uri": format!("http://{host}/users/{user}/statuses/{id}"),
        "url": format!("http://{host}/@{user}/{id}"),
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "edited_at": null,
        "favourited": false,
        "reblogged": false,
        "muted": false,
        "bookmarked": false,
        "content": content,
        "filtered": [],
        "reblog": null,
        "application": {"name": "Web", "website": null},
        "account": account,
        "media_attachments": [],
        "mentions": [],
        "tags": [{"name": "暴雨", "url": format!("http://{host}/tags/%E6%9A%B4%E9%9B%A8")}],
        "emojis": [],
        "card": null,
        "poll": null
    })
}

/// A rainstorm status `n` by `user{n}`.
fn rain(host: SocketAddr, n: u64) -> Value {
    status(host, n, &format!("user{n}"), &rain_html(host, n))
}

/// A streaming frame: `payload` is a JSON string, as Mastodon sends it.
fn frame(stream: &[&str], event: &str, payload: &Value) -> String {
    json!({"stream": stream, "event": event, "payload": payload.to_string()}).to_string()
}

fn update(s: &Value) -> String {
    frame(&["public:local"], "update", s)
}

/// The mention id of status `n` on `host`.
fn mid(host: SocketAddr, n: u64) -> String {
    format!("mastodon:{host}:{}", ID_BASE + n)
}

fn ids(host: SocketAddr, ns: impl IntoIterator<Item = u64>) -> BTreeSet<String> {
    ns.into_iter().map(|n| mid(host, n)).collect()
}

// ---------------------------------------------------------------------------------------------
// The service

fn feed(name: &str, fake: SocketAddr, token_env: &str, streams: &[&str]) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        kind: FeedKind::Mastodon,
        url: format!("ws://{fake}/api/v1/streaming"),
        token_env: Some(token_env.into()),
        streams: streams.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn start_service(feeds: Vec<FeedConfig>) -> Service {
    start_service_on(feeds, Arc::new(MemoryStore::default())).await
}

async fn start_service_on(feeds: Vec<FeedConfig>, store: Arc<dyn Store>) -> Service {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules: util::rules_dir(),
        feeds,
        // The respond stage has its own test (respond.rs).
        respond: huiying::respond::RespondConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    within(
        "the service to start",
        start(ServiceOptions {
            config: util::with_test_auth(config),
            store,
            demo: false,
            auth_clock: None,
        }),
    )
    .await
    .expect("the service starts")
}

/// The feed `name` as `GET /api/feeds` lists it.
async fn feed_status(addr: SocketAddr, name: &str) -> Value {
    let v = get_json(addr, "/api/feeds").await;
    v["feeds"]
        .as_array()
        .unwrap_or_else(|| panic!("no feeds array: {v}"))
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("feed {name} is not listed: {v}"))
        .clone()
}

/// Wait for the rainstorm/海淀区 `incident.opened` (the statuses also name standing water: one
/// incident listing rainstorm and flood), then for a `mention.assigned` to it of every id in
/// `ids`; any other mention assigned to it fails the test. Returns the incident id.
async fn wait_incident(ws: &mut Ws, ids: &BTreeSet<String>) -> String {
    let opened = next_event(ws, "incident.opened rainstorm/110108", |v| {
        v["event"] == "incident.opened"
            && v["incident"]["categories"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == RAINSTORM))
            && v["incident"]["region"]["code"] == HAIDIAN
    })
    .await;
    let id = opened["incident"]["id"]
        .as_str()
        .expect("incident id")
        .to_string();
    wait_assigned(ws, &id, ids).await;
    id
}

/// Mentions of `feed` accepted, from a metrics exposition.
fn accepted(m: &str, feed: &str) -> f64 {
    series(
        m,
        "huiying_ingest_mentions_total",
        feed,
        "result",
        "accepted",
    )
}

fn series(m: &str, name: &str, feed: &str, label: &str, value: &str) -> f64 {
    metric(m, &format!(r#"{name}{{feed="{feed}",{label}="{value}"}}"#)).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Statuses streamed on `public:local` (≥5 local accounts, Chinese status HTML) open a
/// rainstorm incident in 海淀区; the client subscribed to each configured stream with the
/// documented messages, and the incident's samples carry plain text (no tags, entities decoded)
/// and the authors' handles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_open_an_incident() {
    const FEED: &str = "masto_e2e";
    const TOKEN_ENV: &str = "HUIYING_TEST_MASTODON_TOKEN_E2E";
    std::env::set_var(TOKEN_ENV, "e2e-token");
    let (go, gate) = oneshot::channel();
    // The frames name the server's address: start it with a placeholder script, fill it in.
    let (fake, addr, server) = fake_mastodon(FakeOptions {
        token: "e2e-token".into(),
        subscriptions: 2,
        conns: Vec::new(),
        timeline: Vec::new(),
        rate_limited: false,
    })
    .await;
    let statuses: Vec<Value> = (1..=6).map(|n| rain(addr, n)).collect();
    let mut frames: Vec<String> = statuses.iter().map(update).collect();
    // The same status again on the hashtag stream (Mastodon sends one copy per subscription).
    frames.insert(2, frame(&["hashtag", "暴雨"], "update", &statuses[1]));
    fake.conns.lock().unwrap().push_back(Conn {
        gate: Some(gate),
        frames,
        end: End::Stay,
    });
    let want = ids(addr, 1..=6);

    let svc = start_service(vec![feed(
        FEED,
        addr,
        TOKEN_ENV,
        &["public:local", "hashtag:暴雨"],
    )])
    .await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the fake server waits");
    let id = wait_incident(&mut ws, &want).await;

    let subs: Vec<Value> = fake.seen(|s| s.subscribes.iter().map(|(_, v)| v.clone()).collect());
    assert_eq!(
        subs,
        vec![
            json!({"type": "subscribe", "stream": "public:local"}),
            json!({"type": "subscribe", "stream": "hashtag", "tag": "暴雨"}),
        ]
    );

    let d = get_json(svc.addr, &format!("/api/incidents/{id}")).await;
    assert!(d["authors"].as_u64().unwrap_or(0) >= 5, "{d}");
    let samples = d["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no samples: {d}"));
    assert!(!samples.is_empty(), "{d}");
    for s in samples {
        let sid = s["id"].as_str().unwrap_or("");
        assert!(want.contains(sid), "{s}");
        let n: u64 = sid.rsplit(':').next().unwrap().parse::<u64>().unwrap() - ID_BASE;
        let text = s["text"].as_str().unwrap_or("");
        assert_eq!(text, rain_text(n), "{s}");
        assert!(
            !text.contains("<a") && !text.contains("<p") && !text.contains("&amp;"),
            "{s}"
        );
        assert_eq!(s["author"]["id"], format!("user{n}@127.0.0.1"), "{s}");
        assert_eq!(s["author"]["name"], format!("海淀居民{n}"), "{s}");
        assert_eq!(s["author"]["followers"], 20 + n, "{s}");
        assert_eq!(s["lang"], "zh", "{s}");
        assert_eq!(s["source"], "mastodon", "{s}");
    }

    let m = get_metrics(svc.addr).await;
    assert_eq!(
        series(&m, "huiying_feed_messages_total", FEED, "kind", "update"),
        7.0,
        "{m}"
    );
    // The copy on the hashtag stream was not sent again.
    assert_eq!(accepted(&m, FEED), 6.0, "{m}");
    assert_eq!(fake.seen(|s| (s.connections, s.refused)), (1, 0));

    stop(svc).await;
    server.abort();
}

/// The server streams statuses 1..3 and drops the connection; 4..90 are posted meanwhile (REST
/// only); on the reconnect the client pages the public timeline from `since_id` = status 3
/// (three pages of up to 40) while the server streams 89..95 live. Every status 1..95 reaches
/// the engine exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_backfills_exactly_once() {
    const FEED: &str = "masto_backfill";
    const K: u64 = 3;
    const N: u64 = 90;
    const M: u64 = 95;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "backfill-token\n").expect("write the token file");
    let (go, gate) = oneshot::channel();
    let (fake, addr, server) = fake_mastodon(FakeOptions {
        token: "backfill-token".into(),
        subscriptions: 1,
        conns: Vec::new(),
        timeline: Vec::new(),
        rate_limited: false,
    })
    .await;
    let all: Vec<Value> = (1..=M).map(|n| rain(addr, n)).collect();
    *fake.timeline.lock().unwrap() = all[..N as usize].to_vec();
    {
        let mut conns = fake.conns.lock().unwrap();
        conns.push_back(Conn {
            gate: Some(gate),
            frames: all[..K as usize].iter().map(update).collect(),
            end: End::Drop,
        });
        // Overlaps the backfill by two statuses.
        conns.push_back(Conn {
            gate: None,
            frames: all[N as usize - 2..].iter().map(update).collect(),
            end: End::Stay,
        });
    }
    let want = ids(addr, 1..=M);

    let mut cfg = feed(FEED, addr, "unused", &[]);
    cfg.token_env = None;
    cfg.token_file = Some(token_file);
    let svc = start_service(vec![cfg]).await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the fake server waits");
    wait_incident(&mut ws, &want).await;

    let rest = fake.seen(|s| s.rest.clone());
    let since = (ID_BASE + K).to_string();
    assert_eq!(rest.len(), 3, "{rest:#?}");
    for (i, r) in rest.iter().enumerate() {
        assert_eq!(r.path, "/api/v1/timelines/public", "{r:?}");
        assert!(r.authorized, "{r:?}");
        assert_eq!(r.param("local"), Some("true"), "{r:?}");
        assert_eq!(r.param("limit"), Some("40"), "{r:?}");
        assert_eq!(r.param("since_id"), Some(since.as_str()), "{r:?}");
        // Pages walk back from the newest: 51..90, 11..50, 4..10.
        let max = [None, Some(ID_BASE + 51), Some(ID_BASE + 11)][i].map(|x| x.to_string());
        assert_eq!(r.param("max_id"), max.as_deref(), "{r:?}");
    }
    let subs = fake.seen(|s| s.subscribes.clone());
    let public = json!({"type": "subscribe", "stream": "public:local"});
    assert_eq!(subs, vec![(1, public.clone()), (2, public)]);
    assert_eq!(fake.seen(|s| s.connections), 2);

    let m = get_metrics(svc.addr).await;
    assert_eq!(
        accepted(&m, FEED),
        M as f64,
        "every status is sent exactly once: {m}"
    );
    assert!(
        metric(
            &m,
            &format!(r#"huiying_feed_reconnects_total{{feed="{FEED}"}}"#)
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );

    stop(svc).await;
    server.abort();
}

/// Service A streams statuses 1..K and stops (its last ids go to the store); statuses
/// K+1..M are posted while nobody listens; service B on the same store backfills them on its
/// first connection (`since_id` = K). Every status reaches the pipeline exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_backfills_what_was_posted_while_down() {
    const FEED: &str = "masto_restart";
    const K: u64 = 5;
    const M: u64 = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huiying.redb");
    let (fake, addr, server) = fake_mastodon(FakeOptions {
        token: "restart-token".into(),
        subscriptions: 1,
        conns: Vec::new(),
        timeline: Vec::new(),
        rate_limited: false,
    })
    .await;
    let all: Vec<Value> = (1..=M).map(|n| rain(addr, n)).collect();
    *fake.timeline.lock().unwrap() = all[..K as usize].to_vec();
    let (go, gate) = oneshot::channel();
    fake.conns.lock().unwrap().push_back(Conn {
        gate: Some(gate),
        frames: all[..K as usize].iter().map(update).collect(),
        end: End::Stay,
    });
    let mut cfg = feed(FEED, addr, "HUIYING_TEST_MASTO_RESTART", &[]);
    cfg.token_env = None;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "restart-token\n").expect("write the token file");
    cfg.token_file = Some(token_file);

    // A: live, statuses 1..K.
    let store = Arc::new(EmbeddedStore::open(&path).expect("open the store"));
    let svc = start_service_on(vec![cfg.clone()], store).await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the fake server waits");
    let id = wait_incident(&mut ws, &ids(addr, 1..=K)).await;
    drop(ws);
    stop(svc).await;
    // A's first connection backfilled nothing (nothing was stored yet).
    assert!(fake.seen(|s| s.rest.is_empty()));

    // Posted while huiying was down. B's backfill is answered once the test listens.
    *fake.timeline.lock().unwrap() = all.clone();
    fake.rest_open.send_replace(false);
    let store = Arc::new(EmbeddedStore::open(&path).expect("reopen the store"));
    let svc = start_service_on(vec![cfg], store).await;
    let mut ws = stream(svc.addr, true).await;
    fake.rest_open.send_replace(true);
    wait_assigned(&mut ws, &id, &ids(addr, K + 1..=M)).await;
    let rest = fake.seen(|s| s.rest.clone());
    let since = (ID_BASE + K).to_string();
    assert_eq!(rest.len(), 1, "{rest:#?}");
    assert_eq!(rest[0].param("since_id"), Some(since.as_str()), "{rest:?}");
    let m = get_metrics(svc.addr).await;
    assert_eq!(
        accepted(&m, FEED),
        M as f64,
        "every status exactly once across A and B (one process, one registry): {m}"
    );
    drop(ws);
    stop(svc).await;
    server.abort();
}

/// Deletions, mention and other notifications, error frames, unknown events, garbage and a
/// payload that is not a string: each counted under its kind, none costs the connection, and
/// only statuses and mention notifications become mentions (a deleted status streamed later is
/// dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_frames_are_counted_and_skipped() {
    const FEED: &str = "masto_frames";
    const TOKEN_ENV: &str = "HUIYING_TEST_MASTODON_TOKEN_FRAMES";
    std::env::set_var(TOKEN_ENV, "frames-token");
    let (go, gate) = oneshot::channel();
    let (fake, addr, server) = fake_mastodon(FakeOptions {
        token: "frames-token".into(),
        subscriptions: 2,
        conns: Vec::new(),
        timeline: Vec::new(),
        rate_limited: false,
    })
    .await;
    let notification = |id: &str, kind: &str, s: &Value| {
        json!({
            "id": id,
            "type": kind,
            "created_at": rfc3339(now_ms()),
            "account": s["account"],
            "status": s,
        })
    };
    let mut mention_status = rain(addr, 2);
    mention_status["content"] = json!(format!(
        "<p><span class=\"h-card\"><a href=\"http://{addr}/@bjgov\" class=\"u-url mention\">@<span>bjgov</span></a></span> 北京海淀区暴雨，路口积水严重，请派人处理</p>"
    ));
    mention_status["visibility"] = json!("direct");
    let favourite = notification("801", "favourite", &rain(addr, 40));
    let frames = vec![
        update(&rain(addr, 1)),
        json!({"stream": ["public:local"], "event": "delete", "payload": (ID_BASE + 30).to_string()})
            .to_string(),
        frame(&["user:notification"], "notification", &notification("800", "mention", &mention_status)),
        frame(&["user:notification"], "notification", &favourite),
        json!({"error": "Missing access token", "status": 401}).to_string(),
        frame(
            &["user"],
            "announcement",
            &json!({"id": "7", "content": "<p>维护通知</p>", "published_at": rfc3339(now_ms())}),
        ),
        "garbage, not JSON {".to_string(),
        json!({"stream": ["public:local"], "event": "update", "payload": rain(addr, 41)}).to_string(),
        // The deleted status after all: dropped.
        update(&rain(addr, 30)),
        update(&rain(addr, 3)),
        update(&rain(addr, 4)),
        update(&rain(addr, 5)),
        update(&rain(addr, 6)),
    ];
    fake.conns.lock().unwrap().push_back(Conn {
        gate: Some(gate),
        frames,
        end: End::Stay,
    });
    let want = ids(addr, [1, 2, 3, 4, 5, 6]);

    let svc = start_service(vec![feed(
        FEED,
        addr,
        TOKEN_ENV,
        &["public:local", "user:notification"],
    )])
    .await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the fake server waits");
    let id = wait_incident(&mut ws, &want).await;

    let d = get_json(svc.addr, &format!("/api/incidents/{id}")).await;
    let samples = d["samples"].as_array().expect("samples");
    for s in samples {
        if s["id"] == mid(addr, 2) {
            assert_eq!(s["source"], "mastodon:notification", "{s}");
            assert_eq!(
                s["text"], "@bjgov 北京海淀区暴雨，路口积水严重，请派人处理",
                "{s}"
            );
        }
    }

    let m = get_metrics(svc.addr).await;
    let kind = |k: &str| series(&m, "huiying_feed_messages_total", FEED, "kind", k);
    for (k, n) in [
        ("update", 6.0),
        ("delete", 1.0),
        ("notification", 2.0),
        ("error", 1.0),
        ("unknown", 1.0),
        ("malformed", 2.0),
    ] {
        assert_eq!(kind(k), n, "kind {k}: {m}");
    }
    assert_eq!(
        series(
            &m,
            "huiying_ingest_mentions_total",
            FEED,
            "result",
            "rejected"
        ),
        2.0,
        "{m}"
    );
    // Statuses 1, 3..6 and the deleted 30 (the engine drops it); the mention notification.
    assert_eq!(accepted(&m, FEED), 7.0, "{m}");
    assert_eq!(fake.seen(|s| (s.connections, s.refused)), (1, 0));
    assert_eq!(
        metric(
            &m,
            &format!(r#"huiying_feed_reconnects_total{{feed="{FEED}"}}"#)
        )
        .unwrap_or(0.0),
        0.0,
        "{m}"
    );

    stop(svc).await;
    server.abort();
}

/// `GET /api/feeds` shows the Mastodon feed connected with messages; after the server drops the
/// connection it reconnects (the backfill is rate limited: given up, the stream goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_health_and_reconnect() {
    const FEED: &str = "masto_health";
    const TOKEN_ENV: &str = "HUIYING_TEST_MASTODON_TOKEN_HEALTH";
    std::env::set_var(TOKEN_ENV, "health-token");
    let t0 = now_ms();
    let (go, gate) = oneshot::channel();
    let (drop_it, dropped) = oneshot::channel();
    let (fake, addr, server) = fake_mastodon(FakeOptions {
        token: "health-token".into(),
        subscriptions: 1,
        conns: Vec::new(),
        timeline: Vec::new(),
        rate_limited: true,
    })
    .await;
    *fake.timeline.lock().unwrap() = (1..=7).map(|n| rain(addr, n)).collect();
    {
        let mut conns = fake.conns.lock().unwrap();
        conns.push_back(Conn {
            gate: Some(gate),
            frames: (1..=6).map(|n| update(&rain(addr, n))).collect(),
            end: End::DropOn(dropped),
        });
        conns.push_back(Conn {
            gate: None,
            frames: vec![update(&rain(addr, 8))],
            end: End::Stay,
        });
    }

    let svc = start_service(vec![feed(FEED, addr, TOKEN_ENV, &[])]).await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the fake server waits");
    let id = wait_incident(&mut ws, &ids(addr, 1..=6)).await;

    let f = feed_status(svc.addr, FEED).await;
    assert_eq!(f["kind"], "mastodon", "{f}");
    assert_eq!(f["connected"], true, "{f}");
    assert_eq!(f["messages"], 6, "{f}");
    assert!(f["last_message_at"].as_i64().unwrap_or(0) >= t0, "{f}");
    assert_eq!(f["reconnects"], 0, "{f}");

    drop_it.send(()).expect("the connection is open");
    // Status 8 only comes over the second connection, after the refused backfill.
    wait_assigned(&mut ws, &id, &ids(addr, [8])).await;
    let f = feed_status(svc.addr, FEED).await;
    assert_eq!(f["connected"], true, "{f}");
    assert!(f["reconnects"].as_u64().unwrap_or(0) >= 1, "{f}");
    assert_eq!(f["messages"], 7, "{f}");

    let rest = fake.seen(|s| s.rest.clone());
    assert_eq!(
        rest.len(),
        1,
        "one refused request, no retry in this round: {rest:#?}"
    );
    assert_eq!(
        rest[0].param("since_id"),
        Some((ID_BASE + 6).to_string().as_str())
    );
    assert_eq!(fake.seen(|s| s.connections), 2);
    let m = get_metrics(svc.addr).await;
    assert_eq!(
        accepted(&m, FEED),
        7.0,
        "status 7 was only on the refused REST timeline: {m}"
    );

    stop(svc).await;
    server.abort();
}

/// A wrong token is refused at the handshake: the feed stays disconnected and keeps retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused_and_retried() {
    const FEED: &str = "masto_badtoken";
    const TOKEN_ENV: &str = "HUIYING_TEST_MASTODON_TOKEN_BAD";
    std::env::set_var(TOKEN_ENV, "not-the-token");
    let (fake, addr, server) = fake_mastodon(FakeOptions {
        token: "the-token".into(),
        subscriptions: 1,
        conns: Vec::new(),
        timeline: Vec::new(),
        rate_limited: false,
    })
    .await;
    let svc = start_service(vec![feed(FEED, addr, TOKEN_ENV, &[])]).await;
    fake.wait("two refused handshakes", |s| s.refused >= 2)
        .await;
    let f = feed_status(svc.addr, FEED).await;
    assert_eq!(f["connected"], false, "{f}");
    assert!(f["reconnects"].as_u64().unwrap_or(0) >= 1, "{f}");
    assert_eq!(f["messages"], 0, "{f}");
    assert_eq!(fake.seen(|s| s.connections), 0);
    stop(svc).await;
    server.abort();
}
