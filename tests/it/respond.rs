//! The respond stage wired into the service: a flood burst in 海淀区 becomes a draft, operators
//! approve it through the API, and the dispatcher posts it on the fake platform (the lead, then
//! one repost of the lead's post per amplifier), exactly once, within the limits.

use crate::fake_platform::{FakeHandle, FakePlatform};
use crate::util::{self, get_json, http, json_body, mention, now_ms, start_service, stop, within};
use huiying::config::Config;
use huiying::respond::RespondConfig;
use huiying::store::MemoryStore;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Flood in 海淀区, with severity boosters (车被淹, 没过车顶, 冲走).
pub(crate) const FLOOD_TEXT: &str = FLOOD;
const FLOOD: &str = "北京海淀区路口积水严重，车被淹了，水已经没过车顶，有人被冲走";

/// The shipped rules with a small matrix on the fake platform: 海淀发布 (Mastodon) leads a
/// 海淀区 incident, 北京发布 and Beijing Release amplify it. All three are on the Mastodon shape:
/// a repost must target a post of the same platform (the fake rejects a Weibo repost of a
/// Mastodon post id with 20101, as Weibo would), so a Weibo amplifier of a Mastodon lead fails.
fn rules_with_matrix(dir: &Path, base: &str, env: &Env) {
    util::copy_dir(&util::rules_dir(), dir);
    std::fs::remove_dir_all(dir.join("matrix")).expect("remove matrix");
    std::fs::create_dir_all(dir.join("matrix")).expect("mkdir matrix");
    let m = format!(
        r#"
[matrix]
default_region = "110000"

[[profile]]
id = "m-test"
platform = "mastodon"
posts_per_hour = 1000
comments_per_hour = 1000
reposts_per_hour = 1000

[[profile]]
id = "w-test"
platform = "weibo"
posts_per_hour = 1000
comments_per_hour = 1000
reposts_per_hour = 1000

[[link]]
category = "*"
functions = []

[[account]]
id = "hd-publicity"
name = "海淀发布"
platform = "mastodon"
handle = "hd_release"
region = "110108"
level = "district"
function = "publicity"
profile = "m-test"
token_env = "{hd}"
endpoint = "{base}"

[[account]]
id = "bj-publicity"
name = "北京发布"
platform = "mastodon"
handle = "bj_release"
region = "110000"
level = "province"
function = "publicity"
profile = "m-test"
token_env = "{bj}"
endpoint = "{base}"

[[account]]
id = "bj-publicity-en"
name = "Beijing Release"
platform = "mastodon"
handle = "bj_release_en"
region = "110000"
level = "province"
function = "publicity"
lang = "en"
profile = "m-test"
token_env = "{en}"
endpoint = "{base}"
"#,
        hd = env.hd,
        bj = env.bj,
        en = env.en,
    );
    std::fs::write(dir.join("matrix/matrix.toml"), m).expect("write matrix");
}

/// Unique environment variable names (and their values) for this test run.
pub(crate) struct Env {
    hd: String,
    bj: String,
    en: String,
    alice: String,
    bob: String,
}

impl Env {
    fn new() -> Env {
        let tag = format!("{}_{}", std::process::id(), now_ms());
        let e = Env {
            hd: format!("HUIYING_TEST_RESP_HD_{tag}"),
            bj: format!("HUIYING_TEST_RESP_BJ_{tag}"),
            en: format!("HUIYING_TEST_RESP_EN_{tag}"),
            alice: format!("HUIYING_TEST_RESP_ALICE_{tag}"),
            bob: format!("HUIYING_TEST_RESP_BOB_{tag}"),
        };
        for v in [&e.hd, &e.bj, &e.en, &e.alice, &e.bob] {
            std::env::set_var(v, format!("tok-{v}"));
        }
        e
    }

    fn token(var: &str) -> String {
        format!("tok-{var}")
    }
}

/// `POST /api/notices` with `draft` as `token`: the draft (answered 200).
pub(crate) async fn draft(
    addr: std::net::SocketAddr,
    token: &str,
    draft: &serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::to_vec(draft).expect("json");
    let (status, text) = call(addr, "POST", "/api/notices", Some(token), &body).await;
    assert_eq!(status, 200, "{text}");
    util::json_body("draft", &text)
}

/// One request with an optional bearer token.
pub(crate) async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let what = format!("{method} {path}");
    within(&what, async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        util::parse_http_response(&buf).expect("HTTP answer")
    })
    .await
}

fn register(f: &FakeHandle, env: &Env) {
    f.add_account(&Env::token(&env.hd), "hd_release");
    f.add_account(&Env::token(&env.bj), "bj_release");
    f.add_account(&Env::token(&env.en), "bj_release_en");
}

/// The service with the respond stage on the small matrix, the accounts known to the fake.
async fn started() -> (Env, FakeHandle, tempfile::TempDir, huiying::app::Service) {
    started_with(|_| {}).await
}

/// [`started`] with the config changed by `change` first.
pub(crate) async fn started_with(
    change: impl FnOnce(&mut Config),
) -> (Env, FakeHandle, tempfile::TempDir, huiying::app::Service) {
    let env = Env::new();
    let (_, fake) = FakePlatform::start().await;
    register(&fake, &env);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    rules_with_matrix(&rules, &fake.base_url(), &env);
    let mut config = util::respond_config(
        rules,
        dir.path().join("data"),
        &[("alice", &env.alice), ("bob", &env.bob)],
    );
    change(&mut config);
    let svc = start_service(config, Arc::new(MemoryStore::default())).await;
    (env, fake, dir, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_draft_is_approved_and_fanned_out_once_through_the_service() {
    let (env, fake, _dir, svc) = started().await;
    let addr = svc.addr;
    let (alice, bob) = (Env::token(&env.alice), Env::token(&env.bob));

    // The accounts and their limits.
    let acc = get_json(addr, "/api/accounts").await;
    assert_eq!(acc["accounts"].as_array().map(Vec::len), Some(3), "{acc}");

    // A flood burst in 海淀区 opens an incident.
    let mut ws = util::stream(addr, false).await;
    let ts = now_ms();
    let ms: Vec<Value> = (0..8)
        .map(|i| mention(&format!("fl-{i}"), &format!("fl-author-{i}"), FLOOD, ts))
        .collect();
    let (status, body) = http(
        addr,
        "POST",
        "/api/mentions",
        &serde_json::to_vec(&ms).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let opened = util::next_event(&mut ws, "incident.opened flood/海淀区", |v| {
        v["event"] == "incident.opened"
            && v["incident"]["category"] == "flood"
            && v["incident"]["region"]["code"] == "110108"
    })
    .await;
    let incident_id = opened["incident"]["id"].as_str().expect("id").to_string();

    // The draft appears (asynchronously: bounded polling).
    let path = format!("/api/notices?incident_id={incident_id}");
    let notice = within("the draft", async {
        loop {
            let v = get_json(addr, &path).await;
            if let Some(n) = v["notices"].as_array().and_then(|a| a.first()) {
                return n.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let id = notice["id"].as_str().expect("notice id").to_string();
    assert_eq!(notice["state"], "draft", "{notice}");
    assert_eq!(notice["created_by"], "system", "{notice}");
    assert_eq!(notice["plan"]["lead"], "hd-publicity", "{notice}");
    let required = notice["required_approvals"].as_u64().expect("required");
    assert!((1..=2).contains(&required), "{notice}");

    // Writes need an operator token.
    let approve = format!("/api/notices/{id}/approve");
    let (status, body) = call(addr, "POST", &approve, None, b"").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(json_body("approve", &body)["error"], "unauthorized");
    let (status, _) = call(addr, "POST", &approve, Some("wrong"), b"").await;
    assert_eq!(status, 401);
    let (status, body) = call(
        addr,
        "GET",
        "/api/notices/n-nope",
        Some(util::TEST_TOKEN),
        b"",
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = call(addr, "POST", &approve, Some(&alice), br#"{"version":0}"#).await;
    assert_eq!(status, 200, "{body}");
    if required == 2 {
        // Alice twice still counts once, and the second time is refused by name.
        let (status, body) = call(addr, "POST", &approve, Some(&alice), br#"{"version":0}"#).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(json_body("approve", &body)["error"], "already_approved");
        let n = get_json(addr, &format!("/api/notices/{id}")).await;
        assert_eq!(n["state"], "draft", "{n}");
        assert_eq!(n["approvals"].as_array().map(Vec::len), Some(1), "{n}");
        let (status, body) = call(addr, "POST", &approve, Some(&bob), br#"{"version":0}"#).await;
        assert_eq!(status, 200, "{body}");
    }
    let n = get_json(addr, &format!("/api/notices/{id}")).await;
    assert!(n["state"] == "publishing" || n["state"] == "done", "{n}");
    // Approving a notice that is no longer a draft: 409.
    let (status, body) = call(addr, "POST", &approve, Some(&bob), br#"{"version":0}"#).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(json_body("approve", &body)["error"], "invalid_state");

    // The fan-out: the lead's post, then one repost of it per amplifier.
    let np = format!("/api/notices/{id}");
    let done = tokio::time::timeout(util::WAIT, async {
        loop {
            if fake.posts().len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if done.is_err() {
        let n = get_json(addr, &np).await;
        panic!(
            "timed out waiting for the fan-out: {:#?}\nnotice: {n:#}",
            fake.posts()
        );
    }
    let posts = fake.posts();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    let lead = &posts[0];
    assert_eq!(lead.account, "hd_release", "{posts:#?}");
    assert_eq!(lead.action, "post");
    let mut amps: Vec<&str> = posts[1..]
        .iter()
        .map(|p| {
            assert_eq!(p.action, "repost", "{p:?}");
            assert_eq!(p.target.as_deref(), Some(lead.id.as_str()), "{p:?}");
            p.account.as_str()
        })
        .collect();
    amps.sort();
    assert_eq!(amps, ["bj_release", "bj_release_en"]);
    assert_eq!(fake.violations(), 0);

    // Every job done, and the notice with it.
    let n = within("the notice to be done", async {
        loop {
            let n = get_json(addr, &format!("/api/notices/{id}")).await;
            if n["state"] == "done" {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let jobs = n["jobs_status"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 3, "{n}");
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{n}");
    assert_eq!(n["all_done"], true);

    // Pause: an approved manual notice is not posted until resume.
    let (status, body) = call(addr, "POST", "/api/publishing/pause", None, b"").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(addr, "POST", "/api/publishing/pause", Some(&bob), b"").await;
    assert_eq!(status, 200, "{body}");
    let draft = serde_json::json!({
        "kind": "emergency", "category": "fire", "severity": 3, "region": "110108",
        "text": "海淀区某小区火情已得到控制，请市民不要靠近。"
    });
    let (status, body) = call(
        addr,
        "POST",
        "/api/notices",
        Some(&bob),
        &serde_json::to_vec(&draft).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let manual = json_body("draft", &body);
    let mid = manual["id"].as_str().expect("id").to_string();
    assert_eq!(manual["created_by"], "bob");
    // The drafter may not approve their own notice.
    let mapprove = format!("/api/notices/{mid}/approve");
    let (status, body) = call(addr, "POST", &mapprove, Some(&bob), br#"{"version":0}"#).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(json_body("approve", &body)["error"], "self_approval");
    // An approval names the version read: none is a bad request naming the field; an edit
    // after the read makes it stale (409), and the version now shown is what gets approved.
    let (status, body) = call(addr, "POST", &mapprove, Some(&alice), b"{}").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("version"), "{body}");
    let edit = serde_json::json!({"text": "海淀区某小区火情已扑灭，请市民不要靠近现场。"});
    let (status, body) = call(
        addr,
        "POST",
        &format!("/api/notices/{mid}/edit"),
        Some(&bob),
        &serde_json::to_vec(&edit).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body("edit", &body)["version"], 1, "{body}");
    let (status, body) = call(addr, "POST", &mapprove, Some(&alice), br#"{"version":0}"#).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(json_body("approve", &body)["error"], "changed");
    let (status, body) = call(addr, "POST", &mapprove, Some(&alice), br#"{"version":1}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body("approve", &body)["state"], "publishing", "{body}");
    // While paused the dispatcher attempts nothing: the jobs stay pending.
    for _ in 0..5 {
        let n = get_json(addr, &format!("/api/notices/{mid}")).await;
        let jobs = n["jobs_status"].as_array().expect("jobs").clone();
        assert!(!jobs.is_empty(), "{n}");
        assert!(jobs.iter().all(|j| j["state"] == "pending"), "{n}");
        tokio::task::yield_now().await;
    }
    assert_eq!(fake.posts().len(), 3, "nothing posted while paused");
    let (status, body) = call(addr, "POST", "/api/publishing/resume", Some(&alice), b"").await;
    assert_eq!(status, 200, "{body}");
    within("the manual notice's fan-out", async {
        loop {
            let n = get_json(addr, &format!("/api/notices/{mid}")).await;
            if n["state"] == "done" {
                assert_eq!(n["all_done"], true, "{n}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(fake.posts().len(), 6, "{:#?}", fake.posts());
    assert_eq!(fake.violations(), 0);

    let acc = get_json(addr, "/api/accounts").await;
    let hd = acc["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == "hd-publicity"))
        .expect("hd account")
        .clone();
    assert!(hd["last_post"]["post_id"].is_string(), "{hd}");
    assert!(hd["remaining"].is_array(), "{hd}");

    // The respond metrics (process-wide: other tests may add to the counters, never subtract).
    let m = util::get_metrics(addr).await;
    let ok = util::metric(
        &m,
        r#"huiying_posts_total{outcome="ok",platform="mastodon"}"#,
    );
    assert!(ok.is_some_and(|v| v >= 6.0), "posts ok: {ok:?}");
    for series in [
        r#"huiying_outbox_jobs{lane="emergency"}"#,
        "huiying_outbox_oldest_pending_age_seconds",
        r#"huiying_notices{state="done"}"#,
        r#"huiying_rate_limit_waits_total{scope="app"}"#,
        r#"huiying_publish_duration_seconds_count{platform="mastodon"}"#,
    ] {
        assert!(util::metric(&m, series).is_some(), "{series} missing");
    }

    // Issue 16, item 3, through the service: the operator closes the incident; the published
    // notice is flagged and the all-clear is drafted, following it, waiting for approval.
    let close = format!("/api/incidents/{incident_id}/close");
    let (status, body) = call(addr, "POST", &close, Some(&alice), b"{}").await;
    assert_eq!(status, 202, "{body}");
    let path = format!("/api/notices?incident_id={incident_id}");
    let clear = within("the all-clear", async {
        loop {
            let v = get_json(addr, &path).await;
            if let Some(n) = v["notices"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["purpose"] == "all_clear"))
            {
                return n.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(clear["state"], "draft", "{clear}");
    assert_eq!(clear["follows"], id.as_str(), "{clear}");
    let first = get_json(addr, &format!("/api/notices/{id}")).await;
    assert_eq!(first["superseded_by"], clear["id"], "{first}");
    assert!(
        first["stale"]
            .as_str()
            .unwrap_or("")
            .contains("incident closed"),
        "{first}"
    );

    stop(svc).await;
}

#[tokio::test]
async fn without_the_matrix_the_notice_endpoints_answer_respond_disabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    util::copy_dir(&util::rules_dir(), &rules);
    std::fs::remove_dir_all(rules.join("matrix")).expect("remove matrix");
    let config = Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules,
        respond: RespondConfig {
            data_dir: dir.path().join("data"),
            ..Default::default()
        },
        ..Default::default()
    };
    let svc = start_service(config, Arc::new(MemoryStore::default())).await;
    for (m, p) in [
        ("GET", "/api/notices"),
        ("POST", "/api/notices/x/approve"),
        ("GET", "/api/accounts"),
    ] {
        let (status, body) = call(svc.addr, m, p, Some(util::TEST_TOKEN), b"").await;
        assert_eq!(status, 503, "{m} {p}: {body}");
        assert_eq!(json_body(p, &body)["error"], "respond_disabled");
    }
    get_json(svc.addr, "/healthz").await;
    stop(svc).await;
}

#[test]
fn the_respond_table_resolves_paths_against_the_config_file_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huiying.toml");
    std::fs::write(
        &path,
        r#"
[respond]
data_dir = "resp"
policy = { draft_threshold = 4 }
operators = [{ name = "alice", token_env = "X_ALICE" }, { name = "bob", token_file = "bob.token" }]
"#,
    )
    .expect("write config");
    let c = Config::load(&path).expect("config loads");
    assert!(c.respond.enabled);
    assert_eq!(c.respond.data_dir, dir.path().join("resp"));
    assert_eq!(c.respond.policy.draft_threshold, 4);
    assert_eq!(c.respond.operators.len(), 2);
    assert_eq!(
        c.respond.operators[1].token_file.as_deref(),
        Some(dir.path().join("bob.token").as_path())
    );
    std::fs::write(&path, "[respond]\nenabeld = false\n").expect("write config");
    let e = Config::load(&path).expect_err("unknown key refused");
    assert!(e.to_string().contains("enabeld"), "{e}");
}

/// Issue 16, item 1: a flood and a fire in 海淀区 opened as two incidents, each with its draft.
/// The operator merges the fire into the flood: the fire's draft is withdrawn (rejected by
/// `system`, saying where it went), not left waiting for approvals nobody should give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_of_an_incident_merged_away_is_withdrawn() {
    const FIRE_HD: &str = "北京海淀区小区着火了，火势很大，浓烟滚滚，消防车来了，有人被困";
    let (env, _fake, _dir, svc) = started().await;
    let addr = svc.addr;
    let alice = Env::token(&env.alice);
    let mut ws = util::stream(addr, false).await;
    let ts = now_ms();
    let mut ms: Vec<Value> = (0..8)
        .map(|i| mention(&format!("fl-{i}"), &format!("fl-author-{i}"), FLOOD, ts))
        .collect();
    ms.extend((0..8).map(|i| mention(&format!("fi-{i}"), &format!("fi-author-{i}"), FIRE_HD, ts)));
    let (status, body) = http(
        addr,
        "POST",
        "/api/mentions",
        &serde_json::to_vec(&ms).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mut ids = std::collections::HashMap::new();
    util::next_event(&mut ws, "flood and fire opened", |v| {
        if v["event"] == "incident.opened" {
            if let Some(c) = v["incident"]["category"].as_str() {
                ids.insert(
                    c.to_string(),
                    v["incident"]["id"].as_str().unwrap_or("").to_string(),
                );
            }
        }
        ids.contains_key("flood") && ids.contains_key("fire")
    })
    .await;
    let (flood, fire) = (ids["flood"].clone(), ids["fire"].clone());
    let draft_of = |incident: String| async move {
        let path = format!("/api/notices?incident_id={incident}");
        within("a draft", async {
            loop {
                let v = get_json(addr, &path).await;
                if let Some(n) = v["notices"].as_array().and_then(|a| a.first()) {
                    return n.clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    };
    let fire_notice = draft_of(fire.clone()).await;
    let flood_notice = draft_of(flood.clone()).await;
    assert_eq!(fire_notice["state"], "draft", "{fire_notice}");

    let merge = serde_json::json!({"into": flood, "from": fire}).to_string();
    let (status, body) = call(
        addr,
        "POST",
        "/api/incidents/merge",
        Some(&alice),
        merge.as_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let path = format!("/api/notices/{}", fire_notice["id"].as_str().unwrap_or(""));
    let withdrawn = within("the fire's draft withdrawn", async {
        loop {
            let v = get_json(addr, &path).await;
            if v["state"] == "rejected" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        withdrawn["rejection"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("merged into {flood}")),
        "{withdrawn}"
    );
    let last = withdrawn["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["actor"], "system", "{withdrawn}");
    assert_eq!(last["action"], "withdraw", "{withdrawn}");
    // The flood's own draft is untouched.
    let path = format!("/api/notices/{}", flood_notice["id"].as_str().unwrap_or(""));
    assert_eq!(get_json(addr, &path).await["state"], "draft");
    stop(svc).await;
}
