//! service tests: the running service over real sockets (port 0) — a websocket feed in, HTTP
//! and the event stream out, reconnects, persistence across restarts, slow stream clients,
//! health and the metrics exposition. Every wait is on the actual event, bounded by
//! [`util::WAIT`].

use crate::util::{
    self, get_json, get_metrics, http, json_body, mention, metric, next_event, now_ms,
    start_service, stop, stream, within, Ws,
};
use futures::{SinkExt, StreamExt};
use huiying::config::Config;
use huiying::feeds::{FeedConfig, FeedKind};
use huiying::incidents::Incident;
use huiying::store::{EmbeddedStore, MemoryStore, Store, StoreError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Rainstorm (and flood: 积水) in 海淀区.
const RAIN_FLOOD: &str = "北京海淀区暴雨，路口积水严重";
/// Rainstorm only, in 海淀区.
const RAIN: &str = "北京海淀区暴雨，雨太大了";
const RAINSTORM: &str = "rainstorm";
const HAIDIAN: &str = "110108";

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules: util::rules_dir(),
        // The respond stage has its own test (respond.rs).
        respond: huiying::respond::RespondConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `n` mentions `{prefix}-{i}` by authors `{prefix}-author-{i}`, all with `text`, stamped now.
pub(crate) fn burst(prefix: &str, n: usize, text: &str) -> Vec<Value> {
    let ts = now_ms();
    (0..n)
        .map(|i| {
            mention(
                &format!("{prefix}-{i}"),
                &format!("{prefix}-author-{i}"),
                text,
                ts + i as i64,
            )
        })
        .collect()
}

/// The mentions with their authors marked verified by the platform.
fn verified(ms: Vec<Value>) -> Vec<Value> {
    ms.into_iter()
        .map(|mut m| {
            let id = m["author"].clone();
            m["author"] = serde_json::json!({"id": id, "verified": true});
            m
        })
        .collect()
}

fn ids_of(ms: &[Value]) -> BTreeSet<String> {
    ms.iter()
        .map(|m| m["id"].as_str().expect("mention id").to_string())
        .collect()
}

fn is_opened(v: &Value, category: &str, region: &str) -> bool {
    v["event"] == "incident.opened"
        && has_category(&v["incident"], category)
        && v["incident"]["region"]["code"] == region
}

/// Whether an incident is of `category`: its primary category or one of the related ones it
/// lists (暴雨 and 积水 posts are one incident, flood and rainstorm).
fn has_category(i: &Value, category: &str) -> bool {
    i["category"] == category
        || i["categories"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == category))
}

/// Wait on an `assignments=true` stream for the `incident.opened` of (`category`, `region`),
/// then for a `mention.assigned` to it of every id in `ids`; any other mention assigned to it
/// fails the test. Returns the incident as the opened event carried it.
async fn wait_incident_with(
    ws: &mut Ws,
    category: &str,
    region: &str,
    ids: &BTreeSet<String>,
) -> Value {
    let opened = next_event(ws, &format!("incident.opened {category}/{region}"), |v| {
        is_opened(v, category, region)
    })
    .await;
    let incident = opened["incident"].clone();
    let id = incident["id"].as_str().expect("incident id").to_string();
    assert_eq!(incident["state"], "open", "{opened}");
    assert_eq!(incident["kind"], "emergency", "{opened}");
    let mut seen = BTreeSet::new();
    while seen.len() < ids.len() {
        let v = next_event(
            ws,
            &format!(
                "the assignment of {} more mentions to {id}",
                ids.len() - seen.len()
            ),
            |v| v["event"] == "mention.assigned" && v["incident_id"] == id.as_str(),
        )
        .await;
        let mid = v["mention_id"].as_str().expect("mention_id").to_string();
        assert!(ids.contains(&mid), "unexpected mention assigned: {v}");
        seen.insert(mid);
    }
    incident
}

async fn post(addr: std::net::SocketAddr, body: &[u8]) -> (u16, Value) {
    let (status, text) = http(addr, "POST", "/api/mentions", body).await;
    (status, json_body("POST /api/mentions", &text))
}

/// The open incident `id` as `GET /api/incidents` lists it.
async fn listed(addr: std::net::SocketAddr, id: &str) -> Value {
    let list = get_json(addr, "/api/incidents").await;
    let all = list["incidents"].as_array().expect("incidents array");
    all.iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("incident {id} is not listed: {list}"))
        .clone()
}

/// A memory store that announces every write, so a test can wait for the store writer
/// (which batches for up to 100 ms) instead of guessing how long it takes.
struct WatchedStore {
    inner: MemoryStore,
    writes: tokio::sync::watch::Sender<u64>,
}

impl WatchedStore {
    fn new() -> Arc<Self> {
        Arc::new(WatchedStore {
            inner: MemoryStore::default(),
            writes: tokio::sync::watch::Sender::new(0),
        })
    }

    fn wrote(&self) {
        self.writes.send_modify(|n| *n += 1);
    }

    /// Wait until the store holds at least `n` mention ids for incident `id`.
    async fn wait_mentions(&self, id: &str, n: usize) {
        let mut rx = self.writes.subscribe();
        within(&format!("{n} mention ids of {id} in the store"), async {
            loop {
                let have = self.inner.incident_mentions(id, 1_000).expect("read").len();
                if have >= n {
                    return;
                }
                rx.changed().await.expect("the store is alive");
            }
        })
        .await
    }
}

impl Store for WatchedStore {
    fn put_incidents(&self, incidents: &[Arc<Incident>]) -> Result<(), StoreError> {
        let r = self.inner.put_incidents(incidents);
        self.wrote();
        r
    }
    fn put_assignments(&self, pairs: &[(Arc<str>, String)]) -> Result<(), StoreError> {
        let r = self.inner.put_assignments(pairs);
        self.wrote();
        r
    }
    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.inner.get_incident(id)
    }
    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.inner.open_incidents()
    }
    fn incident_mentions(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.incident_mentions(id, limit)
    }
    fn incidents_between(&self, from: i64, to: i64) -> Result<Vec<Incident>, StoreError> {
        self.inner.incidents_between(from, to)
    }
    fn add_hour(&self, hour: &huiying::incidents::HourStats) -> Result<(), StoreError> {
        self.inner.add_hour(hour)
    }
    fn hours(&self, from: i64, to: i64) -> Result<Vec<huiying::incidents::HourStats>, StoreError> {
        self.inner.hours(from, to)
    }
    fn get_cursor(&self, feed: &str) -> Result<Option<i64>, StoreError> {
        self.inner.get_cursor(feed)
    }
    fn put_cursor(&self, feed: &str, cursor: i64) -> Result<(), StoreError> {
        self.inner.put_cursor(feed, cursor)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// What a fake feed does on one connection.
pub(crate) struct Script {
    /// Wait for this before sending (lets the test subscribe to the stream first).
    pub gate: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Frames to send.
    pub frames: Vec<Message>,
    /// Close the connection after the frames (else keep it open until the client closes).
    pub close: bool,
}

/// A fake upstream websocket server: connection `n` plays `scripts[n]` (later connections get
/// nothing and stay open). Returns the accept task and the number of connections so far.
pub(crate) fn fake_feed(
    listener: TcpListener,
    scripts: Vec<Script>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        let mut scripts = scripts.into_iter();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let script = scripts.next().unwrap_or(Script {
                gate: None,
                frames: Vec::new(),
                close: false,
            });
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp)
                    .await
                    .expect("feed handshake");
                if let Some(g) = script.gate {
                    let _ = g.await;
                }
                for f in script.frames {
                    ws.send(f).await.expect("feed send");
                }
                if script.close {
                    let _ = ws.close(None).await;
                }
                // Answer pings and the client's close until the connection ends.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (task, count)
}

pub(crate) fn feed(name: &str, addr: std::net::SocketAddr) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        kind: FeedKind::Generic,
        url: format!("ws://{addr}/"),
        token_env: None,
        token_file: None,
        ..Default::default()
    }
}

/// A generic websocket feed (single objects, an array frame, a malformed and a binary frame in
/// between) opens an incident that the stream announces and the API then serves with its
/// samples and mention ids; bad frames are counted and do not cost the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_feed_end_to_end() {
    const FEED: &str = "ws_e2e";
    let ms = verified(burst("wsf", 10, RAIN_FLOOD));
    let ids = ids_of(&ms);
    let authors: BTreeSet<String> = ms
        .iter()
        .map(|m| m["author"]["id"].as_str().unwrap().to_string())
        .collect();
    let mut frames = vec![
        Message::text(ms[0].to_string()),
        Message::text("{oops"),
        Message::binary(vec![0xde, 0xad, 0xbe, 0xef]),
        Message::text(Value::Array(ms[1..6].to_vec()).to_string()),
    ];
    frames.extend(ms[6..].iter().map(|m| Message::text(m.to_string())));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind feed");
    let feed_addr = listener.local_addr().unwrap();
    let (go, gate) = tokio::sync::oneshot::channel();
    let (server, connections) = fake_feed(
        listener,
        vec![Script {
            gate: Some(gate),
            frames,
            close: false,
        }],
    );

    let store = WatchedStore::new();
    let mut cfg = config();
    cfg.feeds = vec![FeedConfig {
        official: true,
        ..feed(FEED, feed_addr)
    }];
    let svc = start_service(cfg, store.clone()).await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the feed server waits");

    let incident = wait_incident_with(&mut ws, RAINSTORM, HAIDIAN, &ids).await;
    let id = incident["id"].as_str().unwrap().to_string();
    assert_eq!(incident["region"]["name"], "海淀区", "{incident}");
    assert!(incident["authors"].as_u64().unwrap() >= 5, "{incident}");
    // A feed configured `official` is a trusted source; its authors' verification counts.
    assert_eq!(incident["official"], true, "{incident}");
    assert!(
        incident["verified_authors"].as_u64().unwrap_or(0) >= 5,
        "{incident}"
    );

    let l = listed(svc.addr, &id).await;
    assert!(has_category(&l, RAINSTORM), "{l}");
    assert_eq!(l["region"]["code"], HAIDIAN, "{l}");
    assert_eq!(l["state"], "open", "{l}");

    store.wait_mentions(&id, ids.len()).await;
    let d = get_json(svc.addr, &format!("/api/incidents/{id}")).await;
    assert_eq!(d["id"], id.as_str(), "{d}");
    let mention_ids: BTreeSet<String> = d["mention_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no mention_ids: {d}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(mention_ids, ids, "{d}");
    let samples = d["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no samples: {d}"));
    assert!(!samples.is_empty(), "{d}");
    for s in samples {
        assert!(ids.contains(s["id"].as_str().unwrap_or("")), "{s}");
        assert_eq!(s["text"], RAIN_FLOOD, "{s}");
        assert!(
            authors.contains(s["author"]["id"].as_str().unwrap_or("")),
            "{s}"
        );
    }

    // Every mention came over the first connection, after the bad frames: they were skipped
    // without a reconnect.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let m = get_metrics(svc.addr).await;
    let series = |s: &str| metric(&m, s);
    assert_eq!(
        series(&format!(
            r#"huiying_ingest_mentions_total{{feed="{FEED}",result="accepted"}}"#
        )),
        Some(ids.len() as f64),
        "{m}"
    );
    assert_eq!(
        series(&format!(
            r#"huiying_ingest_mentions_total{{feed="{FEED}",result="rejected"}}"#
        )),
        Some(2.0),
        "{m}"
    );
    assert!(
        series(r#"huiying_rejected_mentions_total{reason="invalid_json"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        series(r#"huiying_rejected_mentions_total{reason="binary_frame"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(
        series(&format!(r#"huiying_feed_connected{{feed="{FEED}"}}"#)),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(&format!(
            r#"huiying_feed_reconnects_total{{feed="{FEED}"}}"#
        ))
        .unwrap_or(0.0),
        0.0,
        "{m}"
    );

    stop(svc).await;
    server.abort();
}

/// The feed reconnects after the server closes the connection: mentions of both connections
/// count towards one incident (neither connection alone has enough authors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_feed_reconnects() {
    const FEED: &str = "ws_reconnect";
    let ms = burst("wsr", 6, RAIN);
    let ids = ids_of(&ms);
    let frames = |ms: &[Value]| ms.iter().map(|m| Message::text(m.to_string())).collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind feed");
    let feed_addr = listener.local_addr().unwrap();
    let (go, gate) = tokio::sync::oneshot::channel();
    let (server, connections) = fake_feed(
        listener,
        vec![
            Script {
                gate: Some(gate),
                frames: frames(&ms[..3]),
                close: true,
            },
            Script {
                gate: None,
                frames: frames(&ms[3..]),
                close: false,
            },
        ],
    );

    let mut cfg = config();
    cfg.feeds = vec![feed(FEED, feed_addr)];
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    go.send(()).expect("the feed server waits");

    let incident = wait_incident_with(&mut ws, RAINSTORM, HAIDIAN, &ids).await;
    assert!(incident["authors"].as_u64().unwrap() >= 5, "{incident}");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let m = get_metrics(svc.addr).await;
    assert!(
        metric(
            &m,
            &format!(r#"huiying_feed_reconnects_total{{feed="{FEED}"}}"#)
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!(r#"huiying_ingest_mentions_total{{feed="{FEED}",result="accepted"}}"#)
        ),
        Some(ids.len() as f64),
        "{m}"
    );

    stop(svc).await;
    server.abort();
}

/// `POST /api/mentions`: accepted arrays, rejected objects with the reason and field, invalid
/// JSON, bodies over the limit, partly bad arrays; the accepted mentions open an incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_mentions() {
    let mut cfg = config();
    cfg.max_body_bytes = 4096;
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let addr = svc.addr;
    let mut ws = stream(addr, true).await;
    let ts = now_ms();

    let (s, v) = post(addr, b"{oops").await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "invalid_json", "{v}");

    let (s, v) = post(
        addr,
        json!({"id": "no-text", "ts": ts, "author": "x"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "missing_field", "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("text"), "{v}");

    let (s, v) = post(
        addr,
        json!({"id": "bad-ts", "ts": "soon", "author": "x", "text": RAIN})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "bad_field", "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("ts"), "{v}");

    // Over the limit: refused whole. (Were it accepted, its mention would be assigned to the
    // incident below and fail the test there.)
    let big = Value::Array(vec![mention(
        "too-big",
        "big-author",
        &format!("{RAIN}{}", "！".repeat(2_000)),
        ts,
    )])
    .to_string();
    assert!(big.len() > 4096);
    let (s, text) = http(addr, "POST", "/api/mentions", big.as_bytes()).await;
    assert_eq!(s, 413, "{text}");
    let v: Value = serde_json::from_str(&text).expect("413 answers JSON");
    assert_eq!(v["error"], "too_large", "{text}");

    let (s, v) = post(
        addr,
        json!([{"id": "all-bad", "ts": ts}]).to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["accepted"], 0, "{v}");

    let ms = burst("post", 6, RAIN);
    let ids = ids_of(&ms);
    let mixed = json!([ms[0], {"id": "post-bad", "ts": ts, "author": "y"}]);
    let (s, v) = post(addr, mixed.to_string().as_bytes()).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["accepted"], 1, "{v}");
    let rejected = v["rejected"].as_array().expect("rejected array");
    assert_eq!(rejected.len(), 1, "{v}");
    assert_eq!(rejected[0]["index"], 1, "{v}");
    assert_eq!(rejected[0]["error"], "missing_field", "{v}");
    assert!(
        rejected[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("text"),
        "{v}"
    );

    let rest = Value::Array(ms[1..].to_vec()).to_string();
    assert!(rest.len() <= 4096);
    let (s, v) = post(addr, rest.as_bytes()).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["accepted"], ms.len() - 1, "{v}");
    assert_eq!(v["rejected"], json!([]), "{v}");

    // The good element of the mixed array counts with the others.
    wait_incident_with(&mut ws, RAINSTORM, HAIDIAN, &ids).await;

    stop(svc).await;
}

/// Incidents open at shutdown are open again after a restart on the same store file, with no
/// new input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_open_incidents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huiying.redb");
    // Authors claimed verified through `POST /api/mentions`: the API is not a platform, so
    // the claim is dropped (an ingest token cannot make a quorum of verified authors).
    let ms = verified(burst("restart", 6, RAIN));
    let ids = ids_of(&ms);

    let store = EmbeddedStore::open(&path).expect("open the store");
    let svc = start_service(config(), Arc::new(store)).await;
    let mut ws = stream(svc.addr, true).await;
    let (s, v) = post(svc.addr, Value::Array(ms).to_string().as_bytes()).await;
    assert_eq!(s, 202, "{v}");
    let incident = wait_incident_with(&mut ws, RAINSTORM, HAIDIAN, &ids).await;
    let id = incident["id"].as_str().unwrap().to_string();
    assert_eq!(incident["verified_authors"], 0, "{incident}");
    assert!(incident.get("official").is_none(), "{incident}");
    drop(ws);
    stop(svc).await;

    let store = EmbeddedStore::open(&path).expect("reopen the store after shutdown");
    let svc = start_service(config(), Arc::new(store)).await;
    let l = listed(svc.addr, &id).await;
    assert_eq!(l["state"], "open", "{l}");
    assert_eq!(l["category"], RAINSTORM, "{l}");
    assert_eq!(l["region"]["code"], HAIDIAN, "{l}");
    assert_eq!(l["opened_at"], incident["opened_at"], "{l}");
    let d = get_json(svc.addr, &format!("/api/incidents/{id}")).await;
    let mention_ids: BTreeSet<String> = d["mention_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no mention_ids: {d}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(mention_ids, ids, "{d}");
    let samples = d["samples"].as_array().expect("samples");
    assert!(!samples.is_empty(), "{d}");
    let h = get_json(svc.addr, "/healthz").await;
    assert_eq!(h["store"], "embedded", "{h}");
    assert!(h["open_incidents"].as_u64().unwrap_or(0) >= 1, "{h}");
    stop(svc).await;
}

/// A stream client that never reads does not hold up ingestion or other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_client_does_not_block() {
    const POSTS: usize = 8;
    const PER_POST: usize = 250;
    let svc = start_service(config(), Arc::new(MemoryStore::default())).await;
    let addr = svc.addr;

    // Never read from this one, and give it a small receive buffer so the server's sends to it
    // back up.
    let slow = {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = within("the slow client to connect", sock.connect(addr))
            .await
            .expect("connect");
        let (ws, _) = within(
            "the slow client handshake",
            tokio_tungstenite::client_async(
                util::stream_request(&format!("ws://{addr}/api/stream?assignments=true")),
                tcp,
            ),
        )
        .await
        .expect("slow client handshake");
        ws
    };

    // Long ids make every `mention.assigned` event ~2 KiB: megabytes in all, more than the
    // socket buffers between the server and the client that never reads, so its sends stall.
    let pad = "x".repeat(2048);
    let ts = now_ms();
    let ms: Vec<Value> = (0..POSTS * PER_POST)
        .map(|i| {
            mention(
                &format!("slow-{i}-{pad}"),
                &format!("slow-author-{}", i % 40),
                RAIN,
                ts + i as i64,
            )
        })
        .collect();
    let ids = ids_of(&ms);
    let mut good = stream(addr, true).await;
    let reader = tokio::spawn(async move {
        wait_incident_with(&mut good, RAINSTORM, HAIDIAN, &ids).await;
    });
    for chunk in ms.chunks(PER_POST) {
        let (s, v) = post(addr, Value::Array(chunk.to_vec()).to_string().as_bytes()).await;
        assert_eq!(s, 202, "{v}");
        assert_eq!(v["accepted"], chunk.len(), "{v}");
    }
    within("the reading client to see every assignment", reader)
        .await
        .expect("the reading client");
    drop(slow);
    stop(svc).await;
}

/// `/healthz` answers ok; unknown paths and incidents are JSON 404s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_not_found() {
    let svc = start_service(config(), Arc::new(MemoryStore::default())).await;
    let (s, text) = http(svc.addr, "GET", "/healthz", b"").await;
    assert_eq!(s, 200, "{text}");
    let h = json_body("/healthz", &text);
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["store"], "memory", "{h}");
    assert_eq!(h["open_incidents"], 0, "{h}");
    assert!(h["rule_patterns"].as_u64().unwrap_or(0) > 0, "{h}");

    for path in ["/no/such/path", "/api/incidents/em-0-00000000"] {
        let (s, text) = http(svc.addr, "GET", path, b"").await;
        assert_eq!(s, 404, "{path}: {text}");
        let v = json_body(path, &text);
        assert_eq!(v["error"], "not_found", "{path}: {v}");
    }
    stop(svc).await;
}

/// `/metrics` after some traffic passes `promtool check metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let svc = start_service(config(), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    let ms = burst("prom", 6, RAIN_FLOOD);
    let ids = ids_of(&ms);
    let (s, v) = post(svc.addr, Value::Array(ms).to_string().as_bytes()).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = post(svc.addr, b"{oops").await;
    assert_eq!(s, 400, "{v}");
    wait_incident_with(&mut ws, RAINSTORM, HAIDIAN, &ids).await;

    let m = get_metrics(svc.addr).await;
    assert!(
        metric(
            &m,
            r#"huiying_ingest_mentions_total{feed="http",result="accepted"}"#
        )
        .unwrap_or(0.0)
            >= ids.len() as f64,
        "{m}"
    );
    assert!(
        metric(&m, r#"huiying_incidents_opened_total{kind="emergency"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    stop(svc).await;

    util::promtool(&["check", "metrics"], &m).await;
}

/// `max_stream_clients` bounds `/api/stream`: the next client is refused with 503 and a
/// reason, counted in `huiying_stream_refused_total`; the clients already there keep their
/// stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_clients_beyond_the_limit_are_refused() {
    let mut cfg = config();
    cfg.max_stream_clients = 2;
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let addr = svc.addr;
    let mut first = stream(addr, false).await;
    let _second = stream(addr, false).await;
    let url = format!("ws://{addr}/api/stream");
    let third = within(
        "the third stream client to be answered",
        tokio_tungstenite::connect_async(util::stream_request(&url)),
    )
    .await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("too_many_stream_clients"), "{body}");
        }
        Err(e) => panic!("the third client failed otherwise: {e}"),
        Ok(_) => panic!("the third client was let in beyond max_stream_clients = 2"),
    }
    let m = get_metrics(addr).await;
    assert!(
        metric(&m, "huiying_stream_refused_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    // The first client is still connected.
    first
        .send(Message::Ping(b"still there".to_vec().into()))
        .await
        .expect("ping");
    within("the pong", async {
        loop {
            match first.next().await {
                Some(Ok(Message::Pong(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("the first client lost its stream: {other:?}"),
            }
        }
    })
    .await;
    stop(svc).await;
}

/// A stream client only ever sends control frames: a message over
/// `STREAM_CLIENT_MESSAGE_BYTES` closes its connection instead of being buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_stream_client_message_closes_the_connection() {
    let svc = start_service(config(), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, false).await;
    let big = "x".repeat(10 * huiying::api::STREAM_CLIENT_MESSAGE_BYTES);
    // The server may close while the message is still going out: either way is fine.
    let _ = ws.send(Message::text(big)).await;
    within("the server to close the connection", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    stop(svc).await;
}
