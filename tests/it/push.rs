//! The push of each new notice to a portal (signed webhook) and a WebSub hub, across a kill -9:
//! the engine runs as a child process (`huiying run`), the portal answers slowly so a push is
//! in flight when the process is killed, and a restart on the same data finishes every push
//! with none lost and no notice pushed under two keys. A notice published before the push was
//! configured reaches the subscribers through the look over recent notices (the backfill).

use crate::crash::{rules, start};
use crate::fake_platform::FakePlatform;
use crate::respond::call;
use crate::util::{self, get_json, now_ms, within};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "portal-shared-secret";
const BASE: &str = "https://portal.example/hy";

/// One request the portal got.
#[derive(Debug, Clone)]
struct Hook {
    key: String,
    body: String,
    signed: bool,
}

/// A portal's receiver and a WebSub hub. The receiver is slow (every answer takes 300 ms), so a
/// kill finds a push received but not answered; it keeps every request.
#[derive(Default)]
struct Portal {
    hooks: Mutex<Vec<Hook>>,
    pings: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
}

async fn hook(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let signed = huiying::respond::publish::webhook::verify_signature(
        SECRET.as_bytes(),
        &h("X-Huiying-Timestamp"),
        &body,
        &h("X-Huiying-Signature"),
    );
    let key = h("Idempotency-Key");
    p.hooks.lock().expect("hooks").push(Hook {
        key: key.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        signed,
    });
    p.in_flight.fetch_add(1, Ordering::SeqCst);
    // The receiver's own work (a CMS storing the notice): the window a kill falls into.
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.in_flight.fetch_sub(1, Ordering::SeqCst);
    if !signed {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"bad signature"}"#.into(),
        );
    }
    (
        StatusCode::OK,
        json!({ "id": format!("cms-{key}") }).to_string(),
    )
}

async fn hub(State(p): State<Arc<Portal>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return StatusCode::BAD_REQUEST;
    }
    p.pings
        .lock()
        .expect("pings")
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::NO_CONTENT
}

fn config(dir: &Path, port: u16, portal: &str, push: bool) -> String {
    let mut c = crate::crash::engine_config(dir, port, "HY_PUSH");
    c.push_str(&format!("\n[linkage]\nbase_url = \"{BASE}\"\n"));
    if push {
        c.push_str(&format!(
            r#"
[[linkage.push]]
id = "portal"
protocol = "webhook"
url = "{portal}/hook"
secret_env = "HY_PUSH_SECRET"
per_hour = 36000

[[linkage.push]]
id = "hub"
protocol = "websub"
url = "{portal}/hub"
per_hour = 36000
"#
        ));
    }
    c
}

/// Draft and approve (two people) an emergency notice `i`; its id.
async fn publish(addr: std::net::SocketAddr, alice: &str, bob: &str, i: usize) -> String {
    let draft = json!({
        "kind": "emergency", "category": "fire", "severity": 3, "region": "110000",
        "text": format!("北京市消防救援总队提示：第{i}号火情通报，请市民远离现场，听从指挥。")
    });
    let id = crate::respond::draft(addr, alice, &draft).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, body) = call(
        addr,
        "POST",
        &format!("/api/notices/{id}/approve"),
        Some(bob),
        br#"{"version":0}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_reach_portal_and_hub_exactly_once_across_a_kill_9() {
    let tag = format!("{}_{}", std::process::id(), now_ms());
    let (_, fake) = FakePlatform::start().await;
    let portal = Arc::new(Portal::default());
    let portal_url = util::serve(
        axum::Router::new()
            .route("/hook", post(hook))
            .route("/hub", post(hub))
            .with_state(portal.clone()),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut env, alice, bob) = crate::crash::engine_env(dir.path(), &fake, &tag, "HY_PUSH");
    env.push(("HY_PUSH_SECRET".into(), SECRET.into()));
    let cfg = dir.path().join("huiying.toml");
    let port = crate::redis_server::free_port();
    let log = dir.path().join("engine.log");

    // 1. No push yet: notice 0 is published to the accounts only.
    std::fs::write(&cfg, config(dir.path(), port, &portal_url, false)).expect("config");
    let mut eng = start(&cfg, &env, &log).await;
    let mut ids = vec![publish(eng.addr, &alice, &bob, 0).await];
    eng.child.kill().expect("kill");
    eng.child.wait().expect("wait");
    assert!(portal.hooks.lock().expect("hooks").is_empty());

    // 2. The portal and the hub subscribe; four more notices; kill -9 while a push is in flight.
    std::fs::write(&cfg, config(dir.path(), port, &portal_url, true)).expect("config");
    let mut eng = start(&cfg, &env, &log).await;
    for i in 1..5 {
        ids.push(publish(eng.addr, &alice, &bob, i).await);
    }
    within("a push in flight after two received", async {
        loop {
            let got = portal.hooks.lock().expect("hooks").len();
            if got >= 2 && portal.in_flight.load(Ordering::SeqCst) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    eng.child.kill().expect("kill -9");
    eng.child.wait().expect("wait");
    let at_kill = portal.hooks.lock().expect("hooks").len();
    // The kill hit the window: a request received, its answer never read by the engine.
    assert!(at_kill < ids.len(), "every push went out before the kill");

    // 3. Restart on the same data: the push finishes.
    let mut eng = start(&cfg, &env, &log).await;
    let addr = eng.addr;
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let v = get_json(addr, "/api/push").await;
            let subs = v["subscribers"].as_array().cloned().unwrap_or_default();
            let all_done = subs.len() == 2
                && subs.iter().all(|s| {
                    let p = s["pushes"].as_array().cloned().unwrap_or_default();
                    p.len() == ids.len() && p.iter().all(|j| j["state"] == "done")
                });
            if all_done {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the pushes did not finish: {:#}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    eng.child.kill().expect("kill");
    eng.child.wait().expect("wait");

    // Every request signed; one key per notice, the same body under a key each time it came.
    let hooks = portal.hooks.lock().expect("hooks").clone();
    assert!(hooks.iter().all(|h| h.signed), "{hooks:#?}");
    let mut by_key: HashMap<&str, Vec<&Hook>> = HashMap::new();
    for h in &hooks {
        by_key.entry(h.key.as_str()).or_default().push(h);
    }
    assert_eq!(by_key.len(), ids.len(), "one key per notice: {hooks:#?}");
    let mut pushed: Vec<String> = Vec::new();
    for (key, hs) in &by_key {
        assert!(hs.iter().all(|h| h.body == hs[0].body), "{key}: {hs:#?}");
        let v: Value = serde_json::from_str(&hs[0].body).expect("payload JSON");
        assert_eq!(v["event"], "notice.published");
        assert_eq!(v["kind"], "emergency");
        assert_eq!(v["status"], "Actual");
        assert_eq!(v["region"]["code"], "110000");
        let id = v["id"].as_str().expect("id").to_string();
        assert_eq!(v["links"]["cap"], format!("{BASE}/cap/{id}.xml"), "{v:#}");
        assert_eq!(v["texts"][0]["lang"], "zh", "{v:#}");
        assert!(v["headline"]
            .as_str()
            .is_some_and(|t| t.starts_with("北京市消防救援总队提示")));
        pushed.push(id);
    }
    pushed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(pushed, want, "every notice pushed, each once");
    // Only the request the kill left unanswered came twice (same key, same body).
    let repeats = hooks.len() - by_key.len();
    assert!(repeats <= 1, "{repeats} repeated deliveries: {hooks:#?}");
    // The hub was told of the feeds once per notice at least (a second ping is harmless).
    let pings = portal.pings.lock().expect("pings").clone();
    assert!(pings.len() >= ids.len(), "{pings:#?}");
    for p in &pings {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(p).expect("form");
        assert_eq!(
            pairs,
            [
                ("hub.mode".to_string(), "publish".to_string()),
                ("hub.url".to_string(), format!("{BASE}/feeds/notices.atom")),
                ("hub.url".to_string(), format!("{BASE}/feeds/notices.rss")),
            ]
        );
    }
    assert!(status["subscribers"][0]["pushes"][0]["attempts"].as_u64() >= Some(1));
    eprintln!(
        "push crash test: {at_kill} of {} webhook pushes received at the kill, {repeats} repeated; {} pings",
        ids.len(),
        pings.len()
    );
}

/// Two instances of a fleet on one Redis namespace, both pushing to the same portal: notices
/// approved on either reach the portal once each (both instances enqueue each push, at the
/// hand-over and in their looks over the notices; the shared push outbox sends it once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_pushes_each_notice_once() {
    use crate::redis_server::{namespace, require_shared};
    let url = require_shared();
    let ns = namespace("push-fleet");
    let tag = ns.replace(':', "_");
    let (_, fake) = FakePlatform::start().await;
    let portal = Arc::new(Portal::default());
    let portal_url = util::serve(
        axum::Router::new()
            .route("/hook", post(hook))
            .with_state(portal.clone()),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    for (id, var) in rules(&rules_dir, &fake.base_url(), &tag) {
        let token = format!("tok-{var}");
        std::env::set_var(&var, &token);
        fake.add_account(&token, &id);
    }
    let secret_var = format!("HY_PUSH_FLEET_SECRET_{tag}");
    std::env::set_var(&secret_var, SECRET);
    let ops: Vec<(String, String)> = ["alice", "bob"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                format!("HY_PUSH_FLEET_{}_{tag}", n.to_uppercase()),
            )
        })
        .collect();
    for (n, v) in &ops {
        std::env::set_var(v, format!("op-{n}-{tag}"));
    }
    let op_refs: Vec<(&str, &str)> = ops.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut fleet = Vec::new();
    for name in ["a", "b"] {
        let mut cfg = crate::distributed_publish::respond_config_on_redis(
            url,
            &ns,
            name,
            &rules_dir,
            &dir.path().join(name),
            &op_refs,
        );
        cfg.linkage.base_url = Some(BASE.into());
        cfg.linkage.push = vec![huiying::linkage::push::PushConfig {
            id: "portal".into(),
            protocol: huiying::linkage::push::Protocol::Webhook,
            url: Some(format!("{portal_url}/hook")),
            url_env: None,
            secret_env: Some(secret_var.clone()),
            region: None,
            category: None,
            kind: None,
            per_hour: 36000,
        }];
        fleet.push(crate::distributed_publish::respond_instance(cfg).await);
    }
    let (alice, bob) = (format!("op-alice-{tag}"), format!("op-bob-{tag}"));
    let mut ids = Vec::new();
    for i in 0..4 {
        // Drafted and approved on alternate instances.
        ids.push(publish(fleet[i % 2].addr, &alice, &bob, i).await);
    }
    within(
        "every notice pushed and recorded done on both instances",
        async {
            loop {
                let mut done = 0;
                for s in &fleet {
                    let v = get_json(s.addr, "/api/push").await;
                    let p = v["subscribers"][0]["pushes"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    if p.len() == ids.len() && p.iter().all(|j| j["state"] == "done") {
                        done += 1;
                    }
                }
                if done == fleet.len() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    for s in fleet {
        util::stop(s).await;
    }
    let hooks = portal.hooks.lock().expect("hooks").clone();
    let mut got: Vec<String> = hooks
        .iter()
        .map(|h| {
            assert!(h.signed);
            let v: Value = serde_json::from_str(&h.body).expect("payload");
            v["id"].as_str().expect("id").to_string()
        })
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "each notice once: {hooks:#?}");
}
