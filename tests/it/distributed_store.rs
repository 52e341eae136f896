//! distributed store tests: the `Store` contract on Redis (the same checks as the embedded and
//! memory stores), and several engine instances in one process (port 0) sharing one Redis
//! namespace: one incident per burst whichever instances see it, a burst split across
//! instances detected once, incidents of one instance on the others' streams, and detection
//! going on while Redis is down. They fail, never skip, without Redis.

use crate::redis_server::{namespace, require_shared, OwnRedis};
use crate::util::{self, get_json, http, mention, next_event, now_ms, stop, stream, within, Ws};
use huiying::app::Service;
use huiying::config::Config;
use huiying::incidents::hours::HOUR_MS;
use huiying::incidents::{HourStats, Incident};
use huiying::store::redis::RedisConfig;
use huiying::store::{EmbeddedStore, MemoryStore, Store};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Rainstorm in 海淀区 (rainstorm: min_authors 5).
const RAIN: &str = "北京海淀区暴雨，雨太大了";
/// Rainstorm in 朝阳区 (北京).
const RAIN_CHAOYANG: &str = "北京朝阳区暴雨，雨太大了";
/// Rainstorm in 东城区 (北京).
const RAIN_DONGCHENG: &str = "北京东城区暴雨，雨太大了";
const HAIDIAN: &str = "110108";
const CHAOYANG: &str = "110105";
const DONGCHENG: &str = "110101";

fn config(url: &str, ns: &str, instance: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        store: url.into(),
        watch_rules: false,
        rules: util::rules_dir(),
        redis: RedisConfig {
            namespace: ns.into(),
            instance: Some(instance.into()),
            ..RedisConfig::default()
        },
        respond: huiying::respond::RespondConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn instance(url: &str, ns: &str, name: &str) -> Service {
    let cfg = config(url, ns, name);
    let store = within("the Redis store to open", huiying::app::open_store(&cfg))
        .await
        .expect("open the Redis store");
    util::start_service(cfg, store).await
}

/// Instances `a` and `b` on one namespace of `url`, with their streams (`assignments`).
async fn two(url: &str, test: &str, assignments: bool) -> (Service, Service, Ws, Ws) {
    let ns = namespace(test);
    let a = instance(url, &ns, "a").await;
    let b = instance(url, &ns, "b").await;
    let (wa, wb) = (
        stream(a.addr, assignments).await,
        stream(b.addr, assignments).await,
    );
    (a, b, wa, wb)
}

/// Mentions `{prefix}-{i}` for i in `range`, by authors `{prefix}-author-{i}`, stamped `ts`.
fn burst(prefix: &str, range: std::ops::Range<usize>, text: &str, ts: i64) -> Value {
    Value::Array(
        range
            .map(|i| {
                mention(
                    &format!("{prefix}-{i}"),
                    &format!("{prefix}-author-{i}"),
                    text,
                    ts + i as i64,
                )
            })
            .collect(),
    )
}

async fn post(addr: SocketAddr, body: &Value) {
    let (s, text) = http(addr, "POST", "/api/mentions", body.to_string().as_bytes()).await;
    assert_eq!(s, 202, "POST /api/mentions: {text}");
}

fn opened_in(v: &Value, region: &str) -> bool {
    v["event"] == "incident.opened" && v["incident"]["region"]["code"] == region
}

async fn wait_opened(ws: &mut Ws, region: &str, who: &str) -> String {
    let v = next_event(ws, &format!("incident.opened in {region} on {who}"), |v| {
        opened_in(v, region)
    })
    .await;
    v["incident"]["id"]
        .as_str()
        .expect("incident id")
        .to_string()
}

/// Every incident event on `ws` up to and including the opening of an incident in `marker`.
async fn events_until_opened(ws: &mut Ws, marker: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    next_event(ws, &format!("incident.opened in {marker}"), |v| {
        seen.push(v.clone());
        opened_in(v, marker)
    })
    .await;
    seen
}

/// Wait on an `assignments=true` stream for the incident opened in `region` and the assignment
/// of each mention `{prefix}-{i}` (i in `range`), in whatever order they come: an instance may
/// join the incident another one opened before that one's `incident.opened` reaches its stream.
/// Every assignment must name the opened incident; its id is returned.
async fn opened_and_assigned_here(
    ws: &mut Ws,
    region: &str,
    who: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> String {
    let mut want: std::collections::BTreeSet<String> =
        range.map(|i| format!("{prefix}-{i}")).collect();
    let mut opened: Option<String> = None;
    let mut to: Vec<(String, String)> = Vec::new();
    while opened.is_none() || !want.is_empty() {
        let v = next_event(
            ws,
            &format!("incident.opened in {region} and the assignment of {want:?} on {who}"),
            |v| {
                (opened.is_none() && opened_in(v, region))
                    || (v["event"] == "mention.assigned"
                        && v["mention_id"].as_str().is_some_and(|m| want.contains(m)))
            },
        )
        .await;
        if v["event"] == "mention.assigned" {
            let m = v["mention_id"].as_str().unwrap_or_default().to_string();
            want.remove(&m);
            to.push((m, v["incident_id"].as_str().unwrap_or_default().to_string()));
        } else {
            opened = v["incident"]["id"].as_str().map(str::to_string);
        }
    }
    let id = opened.unwrap_or_default();
    for (m, i) in &to {
        assert_eq!(i, &id, "{m} on {who} assigned to another incident");
    }
    id
}

/// Wait on an `assignments=true` stream until each mention `{prefix}-{i}` (i in `range`) is
/// assigned; they must all go to `id`. Assignments are never relayed between instances, so
/// this proves the instance itself opened (or joined) the incident under that id.
async fn assigned_here(ws: &mut Ws, prefix: &str, range: std::ops::Range<usize>, id: &str) {
    let mut want: std::collections::BTreeSet<String> =
        range.map(|i| format!("{prefix}-{i}")).collect();
    while !want.is_empty() {
        let v = next_event(ws, &format!("the assignment of {want:?}"), |v| {
            v["event"] == "mention.assigned"
                && v["mention_id"].as_str().is_some_and(|m| want.contains(m))
        })
        .await;
        assert_eq!(v["incident_id"], id, "assigned to another incident: {v}");
        want.remove(v["mention_id"].as_str().unwrap_or_default());
    }
}

/// Each instance's stream announced `id` as opened only once: a marker incident opened on
/// the other instance arrives after everything that instance published before it.
async fn announced_once(a: (&Service, &mut Ws), b: (&Service, &mut Ws), id: &str) {
    let ts = now_ms();
    post(b.0.addr, &burst("marker-b", 0..6, RAIN_CHAOYANG, ts)).await;
    post(a.0.addr, &burst("marker-a", 0..6, RAIN_DONGCHENG, ts)).await;
    for (ws, marker, who) in [(a.1, CHAOYANG, "a"), (b.1, DONGCHENG, "b")] {
        let seen = events_until_opened(ws, marker).await;
        let again: Vec<&Value> = seen
            .iter()
            .filter(|v| v["event"] == "incident.opened" && opened_in(v, HAIDIAN))
            .collect();
        assert!(again.is_empty(), "{who} announced {id} twice: {again:?}");
    }
    for svc in [a.0, b.0] {
        let ids = listed_ids(svc.addr).await;
        assert!(ids.iter().any(|i| i == id), "{ids:?}");
        assert_eq!(ids.len(), 3, "one shared incident and two markers: {ids:?}");
    }
}

async fn listed_ids(addr: SocketAddr) -> Vec<String> {
    let list = get_json(addr, "/api/incidents").await;
    list["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("no incidents array: {list}"))
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

fn incident(id: &str, open: bool, ts: i64) -> Arc<Incident> {
    let v = json!({
        "id": id, "kind": "emergency", "category": "rainstorm",
        "region": {"code": HAIDIAN, "name": "海淀区"},
        "first_seen": ts, "opened_at": ts, "updated_at": ts + 1,
        "mentions": 6, "authors": 5, "rate_per_min": 1.2, "baseline_per_min": 0.01,
        "severity": 3, "top_terms": ["暴雨"], "sample_mention_ids": ["m1"],
        "root_mention_id": null, "rebuttal": null,
        "state": if open { "open" } else { "closed" },
    });
    let mut i: Incident = serde_json::from_value(v).expect("an incident");
    let m = huiying::normalize::parse_mention(
        mention("m1", "someone", RAIN, ts).to_string().as_bytes(),
    )
    .expect("a mention");
    i.samples.push(m);
    Arc::new(i)
}

/// The contract every store keeps (run on all three below).
fn check_store_contract(s: &dyn Store) {
    let ts = 1_700_000_000_000;
    assert!(s.get_incident("em-1").expect("get").is_none());
    assert!(s.open_incidents().expect("open").is_empty());
    s.put_incidents(&[incident("em-1", true, ts), incident("em-2", true, ts)])
        .expect("put");
    let got = s.get_incident("em-1").expect("get").expect("stored");
    assert_eq!(got, *incident("em-1", true, ts), "round trip with samples");
    assert_eq!(got.samples.len(), 1);
    let open_ids = || -> Vec<String> {
        let open = s.open_incidents().expect("open");
        open.into_iter().map(|i| i.id).collect()
    };
    assert_eq!(open_ids(), ["em-1", "em-2"]);
    // Closing takes it out of the open index; it stays readable.
    s.put_incidents(&[incident("em-2", false, ts)])
        .expect("close");
    assert_eq!(open_ids(), ["em-1"]);
    assert_eq!(
        s.get_incident("em-2").expect("get").map(|i| i.state),
        Some(huiying::incidents::IncidentState::Closed)
    );
    // The mention index: id order, limited, idempotent.
    let a: Arc<str> = Arc::from("em-1");
    let pairs: Vec<(Arc<str>, String)> = ["m3", "m1", "m2", "m1"]
        .iter()
        .map(|m| (a.clone(), m.to_string()))
        .collect();
    s.put_assignments(&pairs).expect("assign");
    assert_eq!(
        s.incident_mentions("em-1", 10).expect("mentions"),
        ["m1", "m2", "m3"]
    );
    assert_eq!(
        s.incident_mentions("em-1", 2).expect("mentions"),
        ["m1", "m2"]
    );
    assert!(s.incident_mentions("em-9", 10).expect("none").is_empty());
    // Feed cursors and state.
    assert_eq!(s.get_cursor("js").expect("cursor"), None);
    s.put_cursor("js", 42).expect("put cursor");
    s.put_cursor("js", 43).expect("put cursor");
    assert_eq!(s.get_cursor("js").expect("cursor"), Some(43));
    s.put_feed_state("js", &[0, 159, 146, 150]).expect("state");
    assert_eq!(
        s.get_feed_state("js").expect("state"),
        Some(vec![0, 159, 146, 150])
    );
    // Incidents by the time they opened, open or closed.
    let between = |from: i64, to: i64| -> Vec<String> {
        let v = s.incidents_between(from, to).expect("between");
        v.into_iter().map(|i| i.id).collect()
    };
    assert_eq!(between(ts, ts + 1), ["em-1", "em-2"]);
    assert!(between(ts - 10, ts).is_empty());
    assert!(between(ts + 1, ts + 10).is_empty());
    // An hour's figures added twice (a restart mid-hour) are summed.
    let hour = |n: u64| HourStats {
        hour: HOUR,
        mentions: n,
        terms: vec![("暴雨".into(), n)],
        regions: [(110108, n)].into_iter().collect(),
        ..Default::default()
    };
    assert!(s.hours(HOUR, HOUR + HOUR_MS).expect("hours").is_empty());
    s.add_hour(&hour(3)).expect("hour");
    s.add_hour(&hour(4)).expect("hour");
    let got = s.hours(HOUR - HOUR_MS, HOUR + 2 * HOUR_MS).expect("hours");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mentions, 7);
    assert_eq!(got[0].terms, [("暴雨".to_string(), 7)]);
    assert_eq!(got[0].regions[&110108], 7);
    assert!(s
        .hours(HOUR + HOUR_MS, HOUR + 2 * HOUR_MS)
        .expect("hours")
        .is_empty());
    s.flush().expect("flush");
}

/// An hour of the contract's figures.
const HOUR: i64 = 1_700_002_800_000;

#[test]
fn the_redis_store_keeps_the_store_contract_with_ttls_on_closed_incidents() {
    let url = require_shared();
    let dir = tempfile::tempdir().expect("tempdir");
    check_store_contract(&MemoryStore::default());
    check_store_contract(&EmbeddedStore::open(&dir.path().join("s.redb")).expect("redb"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ns = namespace("contract");
    let mut cfg = config(url, &ns, "contract");
    cfg.redis.closed_retention_days = 2;
    let store = rt
        .block_on(huiying::app::open_store(&cfg))
        .expect("open the Redis store");
    assert_eq!(store.kind(), "redis");
    let bad = config(url, &ns, "two words");
    let e = rt
        .block_on(huiying::app::open_store(&bad))
        .err()
        .expect("an instance id with a space is refused");
    assert!(format!("{e:#}").contains("[redis] instance"), "{e:#}");
    // Called from a plain thread (as `spawn_blocking` does).
    check_store_contract(&*store);
    // Called from an async task on the runtime too (the thread is handed over, not blocked).
    let s2 = store.clone();
    let ids = rt.block_on(async move {
        tokio::spawn(async move { s2.incident_mentions("em-1", 10) })
            .await
            .expect("task")
    });
    assert_eq!(ids.expect("mentions"), ["m1", "m2", "m3"]);
    // Another instance's share of the hour adds to this one's.
    let other = rt
        .block_on(huiying::app::open_store(&config(url, &ns, "other")))
        .expect("open the Redis store");
    other
        .add_hour(&HourStats {
            hour: HOUR,
            mentions: 5,
            terms: vec![("暴雨".into(), 1), ("地铁".into(), 9)],
            ..Default::default()
        })
        .expect("hour");
    let got = store.hours(HOUR, HOUR + HOUR_MS).expect("hours");
    assert_eq!(got[0].mentions, 12);
    assert_eq!(
        got[0].terms,
        [("地铁".to_string(), 9), ("暴雨".to_string(), 8)]
    );

    // Every key is in the namespace; a closed incident expires after the retention, an open
    // one does not.
    let client = redis::Client::open(url).expect("client");
    let mut c = client.get_connection().expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query(&mut c)
        .expect("KEYS");
    assert!(keys.len() >= 5, "{keys:?}");
    let mut ttl = |k: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(format!("{ns}:{k}"))
            .query(&mut c)
            .expect("PTTL")
    };
    let closed = ttl("inc:em-2");
    assert!(
        closed > 86_400_000 && closed <= 2 * 86_400_000,
        "closed incident TTL {closed}"
    );
    assert_eq!(ttl("inc:em-1"), -1, "an open incident does not expire");
    assert_eq!(ttl("im:em-1"), -1);
    rt.block_on(async move {
        // The other stores in this process stay untouched.
        drop(store);
    });
}

/// Two instances fed the same burst at the same moment open one incident: the same id on
/// both streams, announced once on each, listed by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_burst_on_two_instances_opens_one_incident() {
    let (a, b, mut wa, mut wb) = two(require_shared(), "same-burst", true).await;
    let ms = burst("same", 0..6, RAIN, now_ms());
    // The same posts, in another order on b: each instance reaches `min_authors` at another
    // event time, so each proposes another id; the claim makes them one.
    let mut reversed = ms.as_array().expect("array").clone();
    reversed.reverse();
    let reversed = Value::Array(reversed);
    tokio::join!(post(a.addr, &ms), post(b.addr, &reversed));
    let id = wait_opened(&mut wa, HAIDIAN, "a").await;
    assert_eq!(wait_opened(&mut wb, HAIDIAN, "b").await, id);
    assigned_here(&mut wa, "same", 0..6, &id).await;
    assigned_here(&mut wb, "same", 0..6, &id).await;
    announced_once((&a, &mut wa), (&b, &mut wb), &id).await;
    stop(a).await;
    stop(b).await;
}

/// Three authors on one instance and three on the other: below `min_authors` (5) on each,
/// six over the cluster. The merged window opens it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_split_across_two_instances_is_detected_once() {
    let (a, b, mut wa, mut wb) = two(require_shared(), "split", true).await;
    let ts = now_ms();
    post(a.addr, &burst("split", 0..3, RAIN, ts)).await;
    post(b.addr, &burst("split", 3..6, RAIN, ts)).await;
    // Each instance has it, on the merged count, under the one id, with its own mentions.
    let id = opened_and_assigned_here(&mut wa, HAIDIAN, "a", "split", 0..3).await;
    assert_eq!(
        opened_and_assigned_here(&mut wb, HAIDIAN, "b", "split", 3..6).await,
        id
    );
    // The incident carries the cluster's authors, not one instance's half.
    for svc in [&a, &b] {
        let d = get_json(svc.addr, &format!("/api/incidents/{id}")).await;
        assert!(d["authors"].as_u64() >= Some(6), "{d}");
    }
    announced_once((&a, &mut wa), (&b, &mut wb), &id).await;
    stop(a).await;
    stop(b).await;
}

/// An incident opened on one instance appears on the others' streams and incident lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_opened_on_one_instance_appears_on_the_others() {
    let url = require_shared();
    let ns = namespace("fanout");
    let a = instance(url, &ns, "a").await;
    let b = instance(url, &ns, "b").await;
    let c = instance(url, &ns, "c").await;
    let (mut wb, mut wc) = (stream(b.addr, false).await, stream(c.addr, false).await);
    let mut wa = stream(a.addr, false).await;
    post(a.addr, &burst("only-a", 0..6, RAIN, now_ms())).await;
    let id = wait_opened(&mut wa, HAIDIAN, "a").await;
    assert_eq!(wait_opened(&mut wb, HAIDIAN, "b").await, id);
    assert_eq!(wait_opened(&mut wc, HAIDIAN, "c").await, id);
    for svc in [&b, &c] {
        assert_eq!(listed_ids(svc.addr).await, std::slice::from_ref(&id));
        // The detail (with samples) comes from the shared store.
        let d = within("the shared store to have the incident", async {
            loop {
                let (s, t) = http(svc.addr, "GET", &format!("/api/incidents/{id}"), b"").await;
                let d = if s == 200 {
                    util::json_body("incident detail", &t)
                } else {
                    Value::Null
                };
                if d["samples"].as_array().is_some_and(|s| !s.is_empty()) {
                    return d;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(d.to_string().contains(&id), "{d}");
    }
    stop(a).await;
    stop(b).await;
    stop(c).await;
}

async fn healthz_redis(addr: SocketAddr) -> Value {
    get_json(addr, "/healthz").await
}

/// Redis killed: ingest and detection go on locally, `/healthz` says Redis is down; after a
/// restart the window merging resumes (a split burst is detected again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_goes_on_while_redis_is_down_and_merging_resumes_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut own = OwnRedis::start(dir.path(), false);
    let (a, b, mut wa, mut wb) = two(&own.url(), "down", false).await;
    assert_eq!(healthz_redis(a.addr).await["redis"], "up");

    own.kill();
    // A burst on a alone: detected locally (the merge fails, the claim falls back).
    post(a.addr, &burst("down", 0..6, RAIN, now_ms())).await;
    wait_opened(&mut wa, HAIDIAN, "a").await;
    // Redis down in /healthz, and the failed window merges counted.
    let h = within("/healthz to report Redis down", async {
        loop {
            let h = healthz_redis(a.addr).await;
            let m = util::get_metrics(a.addr).await;
            let failed = util::metric(&m, "huiying_redis_errors_total{op=\"sync\"}");
            if h["redis"] == "down" && failed >= Some(1.0) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(h["status"], "degraded", "{h}");
    let m = util::get_metrics(a.addr).await;
    assert!(
        util::metric(&m, "huiying_cluster_claims_total{result=\"local\"}") >= Some(1.0),
        "the opening without Redis used the local id"
    );

    own.restart();
    within("/healthz to report Redis up again", async {
        loop {
            if healthz_redis(a.addr).await["redis"] == "up"
                && healthz_redis(b.addr).await["redis"] == "up"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Merging again: three and three authors in 朝阳区 open one incident on both.
    let ts = now_ms();
    post(a.addr, &burst("back", 0..3, RAIN_CHAOYANG, ts)).await;
    post(b.addr, &burst("back", 3..6, RAIN_CHAOYANG, ts)).await;
    let ia = wait_opened(&mut wa, CHAOYANG, "a").await;
    let ib = wait_opened(&mut wb, CHAOYANG, "b").await;
    assert_eq!(ia, ib);
    stop(a).await;
    stop(b).await;
}

/// `replay --store redis://…` has written every incident it reported (and the mention index)
/// when it returns, and counts its round trips.
#[test]
fn a_replay_into_redis_leaves_its_incidents_in_the_store() {
    let url = require_shared();
    let ns = namespace("replay");
    let out = util::SharedBuf::default();
    let mut diag: Vec<u8> = Vec::new();
    let summary = huiying::app::replay_into(
        &util::data("flood_haidian.jsonl"),
        &util::rules_dir(),
        huiying::feeds::jsonl::Speed::Max,
        huiying::app::Emit::Incidents,
        Some(2),
        Some(huiying::app::ReplayStore {
            spec: url.into(),
            redis: RedisConfig {
                namespace: ns.clone(),
                ..RedisConfig::default()
            },
        }),
        out.clone(),
        &mut diag,
    )
    .expect("replay runs");
    let opened: Vec<String> = util::json_lines(&out.text())
        .iter()
        .filter(|v| v["event"] == "incident.opened")
        .map(|v| v["incident"]["id"].as_str().expect("id").to_string())
        .collect();
    assert!(opened.len() >= 2, "{opened:?}");
    let trips = summary.redis_round_trips.expect("counted");
    assert!(trips >= 2, "at least a claim per opening: {trips}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(huiying::app::open_store(&config(url, &ns, "reader")))
        .expect("open the Redis store");
    for id in &opened {
        let i = store.get_incident(id).expect("read").expect("stored");
        assert!(!i.samples.is_empty(), "{id} has its samples");
        assert!(
            !store.incident_mentions(id, 100).expect("index").is_empty(),
            "{id} has its mention index"
        );
    }
}

/// The distinct authors of a term the emerging detectors follow (`eg|…`, 60-s buckets) are
/// merged in Redis beside an emergency window (10-s buckets, so another bucket index): two
/// instances' authors of the term come back as one count over both, each window read at its
/// own head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emerging_term_windows_are_merged_over_the_fleet_beside_emergency_windows() {
    use huiying::incidents::coord::{Coordinator, Hit};
    use huiying::ingest::Item;
    use huiying::store::redis::{shared::RedisCoordinator, Redis};
    let url = require_shared();
    let ns = namespace("eg-merge");
    let cfg = |i: &str| RedisConfig {
        namespace: ns.clone(),
        instance: Some(i.into()),
        ..RedisConfig::default()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(256);
    let mut coords = Vec::new();
    for name in ["a", "b"] {
        let r = Redis::connect(url, &cfg(name)).await.expect("connect");
        let (c, sync) = RedisCoordinator::new(r, tokio::runtime::Handle::current());
        tokio::spawn(sync.run(tx.clone(), cancel.clone()));
        coords.push(c);
    }
    // Authors 1-4 on a, 4-7 on b (4 on both): 7 distinct. Event time ~ 2026-12-05.
    let now: i64 = 1_796_464_800_000;
    let (eg_ms, em_ms) = (60_000, 10_000);
    for (c, authors) in coords.iter_mut().zip([1..5u64, 4..8u64]) {
        c.record(Hit {
            key: "em|rainstorm|110108",
            bucket: now / em_ms,
            head: now / em_ms,
            buckets: 30,
            bucket_ms: em_ms,
            author: 99,
        });
        for a in authors {
            c.record(Hit {
                key: "eg|陨石",
                bucket: now / eg_ms - 2,
                head: now / eg_ms,
                buckets: 10,
                bucket_ms: eg_ms,
                author: a,
            });
        }
    }
    let got = within("the fleet's count of the term", async {
        loop {
            let counts = match rx.recv().await {
                Some(Item::Fleet(counts)) => counts,
                Some(_) => continue,
                None => panic!("the sync tasks stopped"),
            };
            if let Some(c) = counts.iter().find(|c| c.key == "eg|陨石" && c.authors == 7) {
                return c.clone();
            }
        }
    })
    .await;
    assert_eq!(got.head, now / eg_ms, "read at the term's own head");
    cancel.cancel();
}
