//! Jetstream feed tests: a fake Jetstream on 127.0.0.1:0 that reads `cursor` and
//! `wantedCollections` from the request and serves events of an in-memory log (time_us
//! increasing) from the first one after the cursor, or live only without a cursor. Every wait
//! is on the actual event, bounded.

use crate::util::{
    self, get_json, http, metric, next_event, now_ms, start_service, stop, stream, wait_assigned,
    Ws,
};
use futures::{SinkExt, StreamExt};
use huiying::config::Config;
use huiying::feeds::{FeedConfig, FeedKind};
use huiying::store::{EmbeddedStore, MemoryStore, Store};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Rainstorm (only) in 海淀区.
const RAIN: &str = "北京海淀区暴雨，雨太大了，路上车都开不动";
const RAINSTORM: &str = "rainstorm";
const HAIDIAN: &str = "110108";
const POST: &str = "app.bsky.feed.post";

// ---------------------------------------------------------------------------------------------
// The fake Jetstream.

/// How one connection behaves.
enum Conn {
    /// Send these frames, then serve the log.
    Serve(Vec<Message>),
    /// Complete the handshake, then never read, write or answer a ping (the socket stays open).
    Stall,
}

/// One connection as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    uri: String,
    cursor: Option<i64>,
    wanted: Vec<String>,
}

/// One event of the log.
#[derive(Debug, Clone)]
struct Event {
    time_us: i64,
    collection: Option<String>,
    json: String,
}

struct FakeJetstream {
    addr: SocketAddr,
    log: watch::Sender<Vec<Event>>,
    connections: watch::Sender<Vec<Seen>>,
    /// `time_us` of every event sent, per connection.
    sent: Arc<Mutex<Vec<Vec<i64>>>>,
    /// Connections serve nothing while this is false.
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeJetstream {
    /// Connection `n` behaves as `scripts[n]`; later ones serve the log.
    async fn start(scripts: Vec<Conn>) -> FakeJetstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = watch::Sender::new(Vec::<Event>::new());
        let connections = watch::Sender::new(Vec::<Seen>::new());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let open = watch::Sender::new(true);
        let (l, c, s, o) = (log.clone(), connections.clone(), sent.clone(), open.clone());
        let task = tokio::spawn(async move {
            let mut scripts: VecDeque<Conn> = scripts.into();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let script = scripts.pop_front().unwrap_or(Conn::Serve(Vec::new()));
                let (log, connections, sent, open) = (l.clone(), c.clone(), s.clone(), o.clone());
                tokio::spawn(async move {
                    let uri = Arc::new(Mutex::new(String::new()));
                    let u2 = uri.clone();
                    // The signature is tungstenite's `Callback`.
                    #[allow(clippy::result_large_err)]
                    let cb =
                        move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                            *u2.lock().unwrap() = req.uri().to_string();
                            Ok(resp)
                        };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                        return;
                    };
                    let uri = uri.lock().unwrap().clone();
                    let seen = parse_request(&uri);
                    // Where this connection starts, decided before the test can see it.
                    let mut log_rx = log.subscribe();
                    let mut pos = {
                        let l = log_rx.borrow_and_update();
                        match seen.cursor {
                            Some(c) => l.iter().position(|e| e.time_us > c).unwrap_or(l.len()),
                            None => l.len(),
                        }
                    };
                    let idx = {
                        let mut s = sent.lock().unwrap();
                        s.push(Vec::new());
                        s.len() - 1
                    };
                    let wanted = seen.wanted.clone();
                    connections.send_modify(|v| v.push(seen));
                    let preamble = match script {
                        Conn::Stall => {
                            // Hold the socket, never poll it: no reads, no pongs, no frames.
                            let _hold = ws;
                            std::future::pending::<()>().await;
                            return;
                        }
                        Conn::Serve(frames) => frames,
                    };
                    let mut open_rx = open.subscribe();
                    if open_rx.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    for f in preamble {
                        if ws.send(f).await.is_err() {
                            return;
                        }
                    }
                    loop {
                        let batch: Vec<Event> = {
                            let l = log_rx.borrow_and_update();
                            let b = l[pos..]
                                .iter()
                                .filter(|e| match &e.collection {
                                    Some(c) => wanted.is_empty() || wanted.contains(c),
                                    None => true,
                                })
                                .cloned()
                                .collect();
                            pos = l.len();
                            b
                        };
                        for e in batch {
                            if ws.send(Message::text(e.json)).await.is_err() {
                                return;
                            }
                            sent.lock().unwrap()[idx].push(e.time_us);
                        }
                        tokio::select! {
                            r = log_rx.changed() => if r.is_err() { return },
                            m = ws.next() => match m {
                                // Reading answers pings.
                                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                });
            }
        });
        FakeJetstream {
            addr,
            log,
            connections,
            sent,
            open,
            task,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/subscribe", self.addr)
    }

    fn append(&self, events: &[Event]) {
        self.log.send_modify(|l| {
            for e in events {
                assert!(
                    l.last().is_none_or(|p| p.time_us < e.time_us),
                    "the log's time_us must increase"
                );
                l.push(e.clone());
            }
        });
    }

    /// Wait until `n` connections were made; returns them all.
    async fn wait_connections(&self, n: usize, bound: Duration) -> Vec<Seen> {
        let mut rx = self.connections.subscribe();
        let seen = match tokio::time::timeout(bound, rx.wait_for(|c| c.len() >= n)).await {
            Ok(Ok(c)) => c.clone(),
            Ok(Err(_)) => panic!("the fake Jetstream is gone"),
            Err(_) => panic!(
                "timed out after {bound:?} waiting for connection {n}: {:?}",
                &*self.connections.borrow()
            ),
        };
        seen
    }

    fn connection_count(&self) -> usize {
        self.connections.borrow().len()
    }

    fn sent_on(&self, conn: usize) -> Vec<i64> {
        self.sent.lock().unwrap()[conn].clone()
    }
}

impl Drop for FakeJetstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection's path, `cursor` and every `wantedCollections`.
fn parse_request(uri: &str) -> Seen {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let mut cursor = None;
    let mut wanted = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "cursor" => {
                cursor = Some(
                    v.parse()
                        .unwrap_or_else(|e| panic!("bad cursor in {uri}: {e}")),
                )
            }
            "wantedCollections" => wanted.push(v.to_string()),
            _ => {}
        }
    }
    Seen {
        uri: uri.to_string(),
        cursor,
        wanted,
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn created_at(time_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(time_us)
        .expect("valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn did(n: usize) -> String {
    format!("did:plc:test{n:04}")
}

fn uri(did: &str, rkey: &str) -> String {
    format!("at://{did}/{POST}/{rkey}")
}

/// A post by `did` as Jetstream sends it.
fn post(did: &str, rkey: &str, time_us: i64, text: &str) -> Event {
    Event {
        time_us,
        collection: Some(POST.into()),
        json: json!({
            "did": did,
            "time_us": time_us,
            "kind": "commit",
            "commit": {
                "rev": format!("rev{time_us}"),
                "operation": "create",
                "collection": POST,
                "rkey": rkey,
                "cid": "bafyreidc6sydkkbchcyg62v77wbhzvb2mvytlmsychqgwf2xojjtirmzj4",
                "record": {
                    "$type": POST,
                    "createdAt": created_at(time_us),
                    "langs": ["zh"],
                    "text": text,
                },
            },
        })
        .to_string(),
    }
}

/// Rain posts `first..first+n` by distinct DIDs at `t0 + i·step_us`.
fn rain_posts(tag: &str, first: usize, n: usize, t0: i64, step_us: i64) -> Vec<Event> {
    (first..first + n)
        .map(|i| {
            post(
                &did(i),
                &format!("{tag}{i:04}"),
                t0 + (i - first) as i64 * step_us,
                RAIN,
            )
        })
        .collect()
}

fn ids_of(events: &[Event]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.json).unwrap();
            uri(
                v["did"].as_str().unwrap(),
                v["commit"]["rkey"].as_str().unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The service.

fn config(feed: FeedConfig) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules: util::rules_dir(),
        feeds: vec![feed],
        // The respond stage has its own test (respond.rs).
        respond: huiying::respond::RespondConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn feed(name: &str, fake: &FakeJetstream) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        kind: FeedKind::Jetstream,
        url: fake.url(),
        ..Default::default()
    }
}

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

/// Wait for the `incident.opened` of the rainstorm in 海淀区; returns the incident.
/// Six rain posts tagged `tag` now: they open an incident and every one is assigned to it.
async fn rain_incident(fake: &FakeJetstream, ws: &mut Ws, tag: &str) -> BTreeSet<String> {
    let posts = rain_posts(tag, 0, 6, now_us(), 1_000);
    let ids = ids_of(&posts);
    fake.append(&posts);
    let incident = wait_opened(ws).await;
    wait_assigned(ws, incident["id"].as_str().unwrap(), &ids).await;
    ids
}

async fn wait_opened(ws: &mut Ws) -> Value {
    let v = next_event(ws, "incident.opened rainstorm/110108", |v| {
        v["event"] == "incident.opened"
            && v["incident"]["category"] == RAINSTORM
            && v["incident"]["region"]["code"] == HAIDIAN
    })
    .await;
    v["incident"].clone()
}

fn messages(m: &str, feed: &str, kind: &str) -> f64 {
    metric(
        m,
        &format!(r#"huiying_feed_messages_total{{feed="{feed}",kind="{kind}"}}"#),
    )
    .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Posts from six DIDs about a rainstorm in 海淀区 open an incident there; the subscription
/// asked for posts only, live (no cursor on a fresh store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_open_an_incident() {
    const FEED: &str = "js_posts";
    let fake = FakeJetstream::start(Vec::new()).await;
    let svc = start_service(config(feed(FEED, &fake)), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    let conns = fake.wait_connections(1, util::WAIT).await;
    let c = &conns[0];
    assert!(c.uri.starts_with("/subscribe?"), "{c:?}");
    assert_eq!(c.wanted, vec![POST.to_string()], "{c:?}");
    assert_eq!(c.cursor, None, "{c:?}");

    let posts = rain_posts("p", 0, 6, now_us(), 1_000);
    let ids = ids_of(&posts);
    fake.append(&posts);
    let incident = wait_opened(&mut ws).await;
    let id = incident["id"].as_str().expect("incident id").to_string();
    assert_eq!(incident["region"]["name"], "海淀区", "{incident}");
    assert!(incident["authors"].as_u64().unwrap_or(0) >= 5, "{incident}");
    wait_assigned(&mut ws, &id, &ids).await;

    let d = get_json(svc.addr, &format!("/api/incidents/{id}")).await;
    let samples = d["samples"].as_array().expect("samples");
    assert!(!samples.is_empty(), "{d}");
    for s in samples {
        assert!(ids.contains(s["id"].as_str().unwrap_or("")), "{s}");
        assert_eq!(s["source"], "bluesky", "{s}");
        assert_eq!(s["text"], RAIN, "{s}");
        assert!(
            s["author"]["id"]
                .as_str()
                .unwrap_or("")
                .starts_with("did:plc:"),
            "{s}"
        );
    }
    assert_eq!(fake.connection_count(), 1);
    stop(svc).await;
}

/// Service A consumes events 1..20 and stops (persisting its cursor); events 21..40 arrive
/// meanwhile; service B on the same store file resumes from the stored cursor minus the
/// rewind. Every event reaches the pipeline exactly once across A and B, with no gap: the
/// rewound replay (events 11..20) is not delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_restart_without_gap_or_duplicate() {
    const FEED: &str = "js_resume";
    const REWIND_SECS: u64 = 2;
    const K: usize = 20;
    const N: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huiying.redb");
    let fake = FakeJetstream::start(Vec::new()).await;
    let mut fcfg = feed(FEED, &fake);
    fcfg.rewind_secs = Some(REWIND_SECS);

    // A: live from the start, events 1..K at 200 ms intervals ending just now.
    let store = Arc::new(EmbeddedStore::open(&path).expect("open the store"));
    let svc = start_service(config(fcfg.clone()), store.clone()).await;
    drop(store);
    let mut ws = stream(svc.addr, true).await;
    let conns = fake.wait_connections(1, util::WAIT).await;
    assert_eq!(conns[0].cursor, None, "{:?}", conns[0]);
    let first = rain_posts("r", 1, K, now_us() - 4_000_000, 200_000);
    let t = |i: usize| first[i - 1].time_us;
    let ids_a = ids_of(&first);
    fake.append(&first);
    let incident = wait_opened(&mut ws).await;
    let id = incident["id"].as_str().expect("incident id").to_string();
    wait_assigned(&mut ws, &id, &ids_a).await;
    drop(ws);
    stop(svc).await;

    // The cursor was persisted on stop.
    let store = EmbeddedStore::open(&path).expect("reopen the store");
    assert_eq!(store.get_cursor(FEED).expect("read cursor"), Some(t(K)));

    // Events K+1..N while nobody listens; B's connection serves nothing until the test
    // subscribed to B's stream.
    fake.open.send_replace(false);
    let second = rain_posts("r", K + 1, N - K, now_us(), 1_000);
    let ids_b = ids_of(&second);
    fake.append(&second);
    let svc = start_service(config(fcfg), Arc::new(store)).await;
    let mut ws = stream(svc.addr, true).await;
    let conns = fake.wait_connections(2, util::WAIT).await;
    let cursor = conns[1].cursor.expect("B resumes with a cursor");
    let rewind = REWIND_SECS as i64 * 1_000_000;
    assert!(
        cursor <= t(K) && cursor >= t(K) - rewind,
        "cursor {cursor}, time_us(k) {}",
        t(K)
    );
    assert_eq!(conns[1].wanted, vec![POST.to_string()]);
    fake.open.send_replace(true);

    // B assigns exactly the new events to the restored incident: no replayed one again.
    wait_assigned(&mut ws, &id, &ids_b).await;
    // The replay did happen (so suppressing it was tested): A's events after the cursor were
    // sent to B, the older ones were not.
    let sent = fake.sent_on(1);
    let replayed: Vec<i64> = (1..=K).map(t).filter(|x| sent.contains(x)).collect();
    let expected: Vec<i64> = (1..=K).map(t).filter(|x| *x > cursor).collect();
    assert!(!expected.is_empty() && expected.len() < K, "{expected:?}");
    assert_eq!(replayed, expected, "replayed by the server");
    for e in &second {
        assert!(sent.contains(&e.time_us), "{} not sent", e.time_us);
    }
    // Exactly once: the feed handed N mentions to the pipeline in all.
    let (status, m) = http(svc.addr, "GET", "/metrics", b"").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        metric(
            &m,
            &format!(r#"huiying_ingest_mentions_total{{feed="{FEED}",result="accepted"}}"#)
        ),
        Some(N as f64),
        "{m}"
    );
    drop(ws);
    stop(svc).await;

    // No gap: the incident holds every event 1..N.
    let store = EmbeddedStore::open(&path).expect("reopen the store");
    let stored: BTreeSet<String> = store
        .incident_mentions(&id, 1_000)
        .expect("read mentions")
        .into_iter()
        .collect();
    let all: BTreeSet<String> = ids_a.union(&ids_b).cloned().collect();
    assert_eq!(stored, all);
    assert_eq!(
        store.get_cursor(FEED).expect("read cursor"),
        Some(second[N - K - 1].time_us)
    );
}

/// A server that stops answering (the socket stays open, nothing is read, no pong, no frame)
/// is declared dead after the read timeout and the feed reconnects, then works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_detected_and_left() {
    const FEED: &str = "js_stall";
    let fake = FakeJetstream::start(vec![Conn::Stall]).await;
    let mut fcfg = feed(FEED, &fake);
    fcfg.read_timeout_secs = Some(1);
    fcfg.ping_secs = Some(1);
    let svc = start_service(config(fcfg), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    fake.wait_connections(1, util::WAIT).await;
    let t0 = Instant::now();
    fake.wait_connections(2, Duration::from_secs(10)).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "reconnected after {took:?}, before the read timeout"
    );
    let f = feed_status(svc.addr, FEED).await;
    assert!(f["reconnects"].as_u64().unwrap_or(0) >= 1, "{f}");

    // The new connection works.
    let posts = rain_posts("s", 0, 6, now_us(), 1_000);
    let ids = ids_of(&posts);
    fake.append(&posts);
    let incident = wait_opened(&mut ws).await;
    wait_assigned(&mut ws, incident["id"].as_str().unwrap(), &ids).await;
    let f = feed_status(svc.addr, FEED).await;
    assert_eq!(f["connected"], true, "{f}");
    stop(svc).await;
}

/// Garbage on one connection (non-JSON, binary, identity, account, unknown kind, a commit
/// without its record) is counted and skipped; the posts after it get through on the same
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_survived() {
    const FEED: &str = "js_garbage";
    let t = now_us();
    let d = did(9_000);
    let missing_record = json!({"did": d, "time_us": t + 4, "kind": "commit",
        "commit": {"rev": "x", "operation": "create", "collection": POST, "rkey": "norecord"}});
    let garbage = vec![
        Message::text("this is not JSON {"),
        Message::binary(vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x01]),
        Message::text(
            json!({"did": d, "time_us": t + 1, "kind": "identity",
                "identity": {"did": d, "handle": "x.bsky.social", "seq": 1, "time": created_at(t)}})
            .to_string(),
        ),
        Message::text(
            json!({"did": d, "time_us": t + 2, "kind": "account",
                "account": {"active": false, "did": d, "seq": 2, "status": "takendown", "time": created_at(t)}})
            .to_string(),
        ),
        Message::text(json!({"did": d, "time_us": t + 3, "kind": "sync"}).to_string()),
        Message::text(missing_record.to_string()),
    ];
    let fake = FakeJetstream::start(vec![Conn::Serve(garbage)]).await;
    let svc = start_service(config(feed(FEED, &fake)), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    fake.wait_connections(1, util::WAIT).await;
    let ids = rain_incident(&fake, &mut ws, "g").await;

    let (status, m) = http(svc.addr, "GET", "/metrics", b"").await;
    assert_eq!(status, 200, "{m}");
    for (kind, at_least) in [
        ("malformed", 2.0),
        ("binary", 1.0),
        ("identity", 1.0),
        ("account", 1.0),
        ("unknown", 1.0),
        ("commit", ids.len() as f64),
    ] {
        assert!(messages(&m, FEED, kind) >= at_least, "{kind}:\n{m}");
    }
    assert_eq!(
        metric(
            &m,
            &format!(r#"huiying_ingest_mentions_total{{feed="{FEED}",result="accepted"}}"#)
        ),
        Some(ids.len() as f64),
        "{m}"
    );
    assert_eq!(fake.connection_count(), 1, "the garbage cost a connection");
    let f = feed_status(svc.addr, FEED).await;
    assert_eq!(f["reconnects"], 0, "{f}");
    stop(svc).await;
}

/// A frame over `max_frame_bytes` is refused by the socket layer before it is buffered: counted
/// as `oversize`, it closes the connection and the feed reconnects (from its cursor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_not_buffered_and_the_feed_reconnects() {
    const FEED: &str = "js_oversize";
    let t = now_us();
    // Were the oversize frame read, this post would join the incident and fail the test.
    let mut oversize = post(&did(9_100), "oversize", t, RAIN).json;
    oversize = oversize.replace(RAIN, &format!("{RAIN}{}", " ".repeat(10 * 1024)));
    assert!(oversize.len() > 10 * 1024);
    let fake = FakeJetstream::start(vec![
        Conn::Serve(vec![Message::text(oversize)]),
        Conn::Serve(Vec::new()),
    ])
    .await;
    let mut fcfg = feed(FEED, &fake);
    fcfg.max_frame_bytes = Some(2048);
    let svc = start_service(config(fcfg), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    fake.wait_connections(2, util::WAIT).await;
    rain_incident(&fake, &mut ws, "o").await;
    let (status, m) = http(svc.addr, "GET", "/metrics", b"").await;
    assert_eq!(status, 200, "{m}");
    assert!(messages(&m, FEED, "oversize") >= 1.0, "{m}");
    let f = feed_status(svc.addr, FEED).await;
    assert!(f["reconnects"].as_u64().unwrap_or(0) >= 1, "{f}");
    stop(svc).await;
}

/// `GET /api/feeds` shows the Jetstream feed: kind, connected, the last message and the lag
/// behind the events' `time_us`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_health_is_listed() {
    const FEED: &str = "js_health";
    let started = now_ms();
    let fake = FakeJetstream::start(Vec::new()).await;
    let svc = start_service(config(feed(FEED, &fake)), Arc::new(MemoryStore::default())).await;
    let mut ws = stream(svc.addr, true).await;
    fake.wait_connections(1, util::WAIT).await;
    // Events stamped three seconds ago: the lag is at least that.
    let posts = rain_posts("h", 0, 6, now_us() - 3_000_000, 1_000);
    fake.append(&posts);
    let incident = wait_opened(&mut ws).await;
    wait_assigned(&mut ws, incident["id"].as_str().unwrap(), &ids_of(&posts)).await;

    let f = feed_status(svc.addr, FEED).await;
    assert_eq!(f["kind"], "jetstream", "{f}");
    assert_eq!(f["connected"], true, "{f}");
    let lag = f["lag_ms"].as_i64().unwrap_or(-1);
    assert!((2_900..120_000).contains(&lag), "{f}");
    let last = f["last_message_at"].as_i64().unwrap_or(0);
    assert!(last >= started && last <= now_ms(), "{f}");
    assert!(
        f["messages"].as_u64().unwrap_or(0) >= posts.len() as u64,
        "{f}"
    );
    assert_eq!(f["reconnects"], 0, "{f}");
    stop(svc).await;
}
