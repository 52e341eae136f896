//! kill -9 mid-fan-out: the engine runs as a child process (`huiying run`) publishing three
//! notices through 北京发布 and twelve district accounts on the fake platform, whose answers are
//! slow, so posts are in flight when the process is killed. A restart on the same data finishes
//! every fan-out with no post lost and none duplicated, within the limits, and the audit log
//! still verifies.

use crate::fake_platform::{Accepted, FakePlatform};
use crate::respond::call;
use crate::util::{self, get_json, now_ms, within};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// District codes of Beijing whose publicity accounts amplify 北京发布.
pub(crate) const DISTRICTS: [&str; 12] = [
    "110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111", "110112",
    "110113", "110114", "110115",
];

const NOTICES: usize = 3;

fn account(id: &str, region: &str, level: &str, var: &str, base: &str) -> String {
    format!(
        r#"
[[account]]
id = "{id}"
name = "{id}"
platform = "mastodon"
handle = "{id}"
region = "{region}"
level = "{level}"
function = "publicity"
profile = "fast"
token_env = "{var}"
endpoint = "{base}"
"#
    )
}

/// The shipped rules with a matrix of 北京发布 and the twelve districts on the fake platform;
/// returns (account id, token variable) pairs.
pub(crate) fn rules(dir: &Path, base: &str, tag: &str) -> Vec<(String, String)> {
    util::copy_dir(&util::rules_dir(), dir);
    std::fs::remove_dir_all(dir.join("matrix")).expect("remove matrix");
    std::fs::create_dir_all(dir.join("matrix")).expect("mkdir matrix");
    let mut m = String::from(
        r#"
[matrix]
default_region = "110000"

[[profile]]
id = "fast"
platform = "mastodon"
posts_per_hour = 36000
comments_per_hour = 36000
reposts_per_hour = 36000

[[link]]
category = "*"
functions = []
"#,
    );
    let mut accounts = vec![("bj".to_string(), format!("HY_CRASH_BJ_{tag}"))];
    m.push_str(&account("bj", "110000", "province", &accounts[0].1, base));
    for d in DISTRICTS {
        let (id, var) = (format!("d{d}"), format!("HY_CRASH_{d}_{tag}"));
        m.push_str(&account(&id, d, "district", &var, base));
        accounts.push((id, var));
    }
    std::fs::write(dir.join("matrix/matrix.toml"), m).expect("write matrix");
    accounts
}

/// The engine's config for a child process on `port`: its store, rules (`dir/rules`) and data
/// (`dir/data`) under `dir`, the suite's token as a viewer, and the operators alice and bob with
/// their tokens in `{ops}_ALICE` and `{ops}_BOB`.
pub(crate) fn engine_config(dir: &Path, port: u16, ops: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
store = "{store}"
rules = "{rules}"
watch_rules = false

[respond]
data_dir = "{data}"
policy = {{ draft_threshold = 5 }}

[[auth.tokens]]
name = "test-suite"
role = "viewer"
sha256 = "{suite}"

[[respond.operators]]
name = "alice"
token_env = "{ops}_ALICE"

[[respond.operators]]
name = "bob"
token_env = "{ops}_BOB"
"#,
        suite = huiying::api::auth::token_hash(util::TEST_TOKEN),
        store = dir.join("store.redb").display(),
        rules = dir.join("rules").display(),
        data = dir.join("data").display(),
    )
}

/// The rules ([`rules`], under `dir/rules`) with their accounts on `fake`, and the engine's
/// environment: each account's token, and alice's and bob's in `{ops}_ALICE` and `{ops}_BOB`.
/// Returns (environment, alice's token, bob's token).
pub(crate) fn engine_env(
    dir: &Path,
    fake: &crate::fake_platform::FakeHandle,
    tag: &str,
    ops: &str,
) -> (Vec<(String, String)>, String, String) {
    let mut env: Vec<(String, String)> = Vec::new();
    for (id, var) in rules(&dir.join("rules"), &fake.base_url(), tag) {
        let token = format!("tok-{var}");
        fake.add_account(&token, &id);
        env.push((var, token));
    }
    let (alice, bob) = (format!("op-alice-{tag}"), format!("op-bob-{tag}"));
    env.push((format!("{ops}_ALICE"), alice.clone()));
    env.push((format!("{ops}_BOB"), bob.clone()));
    (env, alice, bob)
}

pub(crate) struct Engine {
    pub(crate) child: Child,
    pub(crate) addr: std::net::SocketAddr,
}

/// Start `huiying run --config cfg` with the tokens in its environment; wait for `/healthz`.
pub(crate) async fn start(cfg: &Path, env: &[(String, String)], log: &Path) -> Engine {
    let text = std::fs::read_to_string(cfg).expect("config");
    let port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|r| r.trim_end_matches('"').parse().ok())
        .expect("listen port in the config");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["run", "--config"])
        .arg(cfg)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("spawn huiying");
    within("the engine to answer /healthz", async {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let req =
                    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                if s.write_all(req.as_bytes()).await.is_ok() {
                    let mut buf = Vec::new();
                    if s.read_to_end(&mut buf).await.is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    Engine { child, addr }
}

/// Every notice, once all are `done`.
async fn all_done(addr: std::net::SocketAddr, ids: &[String]) -> Vec<Value> {
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut v = Vec::new();
            for id in ids {
                v.push(get_json(addr, &format!("/api/notices/{id}")).await);
            }
            if v.iter().all(|n| n["state"] == "done") {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match r {
        Ok(v) => v,
        Err(_) => {
            let mut v = Vec::new();
            for id in ids {
                v.push(get_json(addr, &format!("/api/notices/{id}")).await);
            }
            panic!("the fan-outs did not finish after the restart: {v:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_mid_fan_out_then_a_restart_loses_and_duplicates_no_post() {
    let tag = format!("{}_{}", std::process::id(), now_ms());
    let (_, fake) = FakePlatform::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (env, alice, bob) = engine_env(dir.path(), &fake, &tag, "HY_CRASH");
    let cfg = dir.path().join("huiying.toml");
    std::fs::write(
        &cfg,
        engine_config(dir.path(), crate::redis_server::free_port(), "HY_CRASH"),
    )
    .expect("write config");
    let log = dir.path().join("engine.log");

    // Every answer is slow, so the kill finds posts accepted but not yet answered.
    let per_notice = 1 + DISTRICTS.len();
    fake.delay_next(NOTICES * per_notice * 2, Duration::from_millis(150));

    let mut eng = start(&cfg, &env, &log).await;
    let addr = eng.addr;
    let mut ids = Vec::new();
    for i in 0..NOTICES {
        let draft = json!({
            "kind": "emergency", "category": "fire", "severity": 3, "region": "110000",
            "text": format!("北京市消防救援总队提示：第{i}号火情通报，请市民远离现场，听从指挥。")
        });
        let n = crate::respond::draft(addr, &alice, &draft).await;
        assert_eq!(
            n["plan"]["amplifiers"].as_array().map(Vec::len),
            Some(DISTRICTS.len()),
            "{n}"
        );
        ids.push(n["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let (status, body) = call(
            addr,
            "POST",
            &format!("/api/notices/{id}/approve"),
            Some(&bob),
            br#"{"version":0}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    // kill -9 once a third of the posts are on the platform.
    let total = NOTICES * per_notice;
    within("a third of the fan-out", async {
        while fake.posts().len() < total / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    eng.child.kill().expect("kill -9");
    let status = eng.child.wait().expect("wait");
    let at_kill = fake.posts().len();
    assert!(
        at_kill < total,
        "the fan-out finished before the kill: {status:?}"
    );
    // The kill hit the window that matters: posts the platform accepted but the engine had not
    // recorded as done (their answers were still on the way).
    let audit = std::fs::read_to_string(dir.path().join("data/audit.jsonl")).expect("audit log");
    let recorded = audit.matches("\"publish_ok\"").count();
    assert!(
        recorded < at_kill,
        "{recorded} posts recorded done, {at_kill} accepted: nothing was in flight at the kill"
    );

    // Restart on the same data: recovery resolves what was in flight, the rest goes out.
    let mut eng = start(&cfg, &env, &log).await;
    let notices = all_done(eng.addr, &ids).await;
    for n in &notices {
        assert_eq!(n["all_done"], true, "{n:#}");
        let jobs = n["jobs_status"].as_array().expect("jobs");
        assert_eq!(jobs.len(), per_notice, "{n:#}");
        assert!(jobs.iter().all(|j| j["state"] == "done"), "{n:#}");
    }

    // Exactly one post per (notice, account): the leads' texts and one repost of each lead's
    // post per district.
    let posts: Vec<Accepted> = fake.posts();
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for p in &posts {
        let what = if p.action == "repost" {
            p.target.clone().unwrap_or_default()
        } else {
            p.text.clone()
        };
        *seen
            .entry((p.account.clone(), p.action.to_string(), what))
            .or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:#?}");
    assert_eq!(posts.len(), total, "{posts:#?}");
    let leads: Vec<&Accepted> = posts.iter().filter(|p| p.account == "bj").collect();
    assert_eq!(leads.len(), NOTICES);
    for l in &leads {
        let reposts = posts
            .iter()
            .filter(|p| p.action == "repost" && p.target.as_deref() == Some(l.id.as_str()))
            .count();
        assert_eq!(reposts, DISTRICTS.len(), "reposts of {}", l.id);
    }
    assert_eq!(fake.violations(), 0);

    eng.child.kill().expect("kill");
    eng.child.wait().expect("wait");
    // The audit log survived the kill (a torn last line is cut away on open) and verifies.
    let out = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["audit", "verify"])
        .arg(dir.path().join("data/audit.jsonl"))
        .output()
        .expect("audit verify");
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "crash test: {at_kill}/{total} posts on the platform at the kill, {recorded} recorded done"
    );
}
