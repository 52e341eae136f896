//! Rebuttal replies: a known claim (碘盐防辐射) spreads from citizens' posts on Mastodon and
//! Weibo (the fake platform); once two operators approve the rebuttal, the lead answers the
//! most-spread Mastodon statuses and the Weibo co-publisher comments on the most-spread weibo,
//! capped, once per post, within the limits.

use crate::fake_platform::FakePlatform;
use crate::respond::call;
use crate::util::{self, get_json, http, now_ms, start_service, stop, within};
use huiying::config::Config;
use huiying::respond::notices::ApprovalPolicy;
use huiying::respond::publish::{
    http_client, Action, MastodonPublisher, PostRequest, Publisher, WeiboPublisher,
};
use huiying::respond::replies::ReplyPolicy;
use huiying::respond::{Operator, RespondConfig};
use huiying::store::MemoryStore;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CLAIM: &str = "吃碘盐能防辐射，大家赶紧去超市买盐";

fn rules_with_matrix(dir: &Path, base: &str, lead_env: &str, weibo_env: &str) {
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
functions = ["health"]

[[account]]
id = "bj-publicity"
name = "北京发布"
platform = "mastodon"
handle = "bj_release"
region = "110000"
level = "province"
function = "publicity"
profile = "m-test"
token_env = "{lead_env}"
endpoint = "{base}"

[[account]]
id = "bj-health"
name = "健康北京"
platform = "weibo"
handle = "bj_health"
region = "110000"
level = "province"
function = "health"
profile = "w-test"
token_env = "{weibo_env}"
endpoint = "{base}"
"#
    );
    std::fs::write(dir.join("matrix/matrix.toml"), m).expect("write matrix");
    // Updates every second (not every minute): the replies follow the spread as the incident's
    // updates report it, and the test should not wait a minute for one.
    let det = std::fs::read_to_string(dir.join("detection.toml")).expect("detection.toml");
    let det = det
        .replace("\nbucket_secs = 10\n", "\nbucket_secs = 1\n")
        .replace("update_interval_secs = 60", "update_interval_secs = 1");
    assert!(det.contains("\nbucket_secs = 1\n") && det.contains("update_interval_secs = 1"));
    std::fs::write(dir.join("detection.toml"), det).expect("write detection.toml");
}

fn request(text: &str) -> PostRequest {
    PostRequest {
        idempotency_key: format!("seed-{text}"),
        account_handle: "citizen".into(),
        text: text.into(),
        action: Action::Post,
        language: None,
        visibility: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_rebuttal_answers_the_most_spread_posts_once_each_within_the_cap() {
    let tag = format!("{}_{}", std::process::id(), now_ms());
    let vars: Vec<String> = ["LEAD", "WEIBO", "ALICE", "BOB", "CITIZEN"]
        .iter()
        .map(|v| format!("HUIYING_TEST_REPLIES_{v}_{tag}"))
        .collect();
    for v in &vars {
        std::env::set_var(v, format!("tok-{v}"));
    }
    let tok = |i: usize| format!("tok-{}", vars[i]);
    let (addr, fake) = FakePlatform::start().await;
    fake.add_account(&tok(0), "bj_release");
    fake.add_account(&tok(1), "bj_health");
    fake.add_account(&tok(4), "citizen");

    // The citizens' posts the rumor spreads from: three statuses and two weibos.
    let client = http_client(Duration::from_secs(10)).expect("client");
    let masto = MastodonPublisher::new(client.clone(), &fake.base_url(), tok(4));
    let weibo = WeiboPublisher::new(client, &fake.base_url(), tok(4));
    let mut seeds = Vec::new();
    for i in 0..3 {
        let p = masto
            .publish(&request(&format!("{CLAIM} #{i}")))
            .await
            .expect("seed status");
        seeds.push(format!("mastodon:{addr}:{}", p.post_id));
    }
    for i in 0..2 {
        let p = weibo
            .publish(&request(&format!("{CLAIM} 微博{i}")))
            .await
            .expect("seed weibo");
        seeds.push(format!("weibo:{}", p.post_id));
    }
    let seeded = fake.posts().len();
    assert_eq!(seeded, 5);

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    rules_with_matrix(&rules, &fake.base_url(), &vars[0], &vars[1]);
    let operator = |name: &str, var: &str| Operator {
        name: name.into(),
        token_env: Some(var.into()),
        token_file: None,
    };
    let config = Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules,
        respond: RespondConfig {
            enabled: true,
            data_dir: dir.path().join("data"),
            policy: ApprovalPolicy {
                draft_threshold: 1,
                replies: ReplyPolicy {
                    max_per_incident: 3,
                    min_shares: 2,
                },
                ..Default::default()
            },
            operators: vec![operator("alice", &vars[2]), operator("bob", &vars[3])],
            ..Default::default()
        },
        ..Default::default()
    };
    let svc = start_service(config, Arc::new(MemoryStore::default())).await;
    let addr = svc.addr;
    let mut ws = util::stream(addr, false).await;

    // The seeds as mentions, then their spread: status 0 ×5, weibo 3 ×4, status 1 ×3,
    // status 2 ×2 (below the cap of three replies), weibo 4 ×1 (below min_shares).
    let ts = now_ms();
    let mut ms: Vec<Value> = seeds
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let source = if id.starts_with("weibo:") { "weibo" } else { "mastodon" };
            json!({"id": id, "ts": ts, "author": format!("seed-{i}"), "text": CLAIM, "source": source})
        })
        .collect();
    for (seed, shares) in [(0usize, 5), (3, 4), (1, 3), (2, 2), (4, 1)] {
        for k in 0..shares {
            let source = if seed >= 3 { "weibo" } else { "mastodon" };
            ms.push(json!({
                "id": format!("share-{seed}-{k}"), "ts": ts + 1, "author": format!("sharer-{seed}-{k}"),
                "text": "转发：吃碘盐防辐射？真的吗", "repost_of": seeds[seed], "source": source
            }));
        }
    }
    let (status, body) = http(
        addr,
        "POST",
        "/api/mentions",
        &serde_json::to_vec(&ms).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let opened = util::next_event(&mut ws, "the rumor incident", |v| {
        v["event"] == "incident.opened" && v["incident"]["kind"] == "rumor"
    })
    .await;
    let incident_id = opened["incident"]["id"].as_str().expect("id").to_string();

    // The spread the engine counted (the latest snapshot in the API).
    let inc = within("the spread to be counted", async {
        loop {
            let v = get_json(addr, &format!("/api/incidents/{incident_id}")).await;
            let inc = if v["incident"].is_object() {
                v["incident"].clone()
            } else {
                v
            };
            if inc["spread"].as_array().is_some_and(|a| a.len() == 5) {
                return inc;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let spread: Vec<(String, u64)> = inc["spread"]
        .as_array()
        .expect("spread")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or("").to_string(),
                p["shares"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        spread,
        vec![
            (seeds[0].clone(), 5),
            (seeds[3].clone(), 4),
            (seeds[1].clone(), 3),
            (seeds[2].clone(), 2),
            (seeds[4].clone(), 1)
        ],
        "{inc}"
    );

    // Nothing is answered before the rebuttal is approved by two operators.
    let notice = within("the draft", async {
        loop {
            let v = get_json(addr, &format!("/api/notices?incident_id={incident_id}")).await;
            if let Some(n) = v["notices"].as_array().and_then(|a| a.first()) {
                return n.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let id = notice["id"].as_str().expect("id").to_string();
    assert_eq!(notice["required_approvals"], 2, "{notice}");
    let approve = format!("/api/notices/{id}/approve");
    let (status, body) = call(addr, "POST", &approve, Some(&tok(2)), br#"{"version":0}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.posts().len(),
        seeded,
        "nothing posted before the second approval"
    );
    let (status, body) = call(addr, "POST", &approve, Some(&tok(3)), br#"{"version":0}"#).await;
    assert_eq!(status, 200, "{body}");

    // Lead post + co-publisher post + three answers, then done.
    let n = within("the rebuttal and its replies", async {
        loop {
            let n = get_json(addr, &format!("/api/notices/{id}")).await;
            if n["state"] == "done" && n["jobs"].as_array().is_some_and(|j| j.len() == 5) {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(n["all_done"], true, "{n}");
    let posts = fake.posts();
    let ours = &posts[seeded..];
    assert_eq!(ours.len(), 5, "{ours:#?}");
    let lead = ours
        .iter()
        .find(|p| p.account == "bj_release" && p.action == "post")
        .expect("the lead's post");
    let native = |s: &str| s.rsplit(':').next().unwrap_or("").to_string();
    let mut answers: HashMap<String, (String, String)> = HashMap::new();
    for p in ours
        .iter()
        .filter(|p| p.action == "reply" || p.action == "comment")
    {
        let target = p.target.clone().expect("an answer has a target");
        let prev = answers.insert(target.clone(), (p.account.clone(), p.action.to_string()));
        assert!(prev.is_none(), "{target} answered twice: {ours:#?}");
        assert!(p.at_ms >= lead.at_ms, "an answer before the lead's post");
    }
    let expect: HashMap<String, (String, String)> = [
        (
            native(&seeds[0]),
            ("bj_release".to_string(), "reply".to_string()),
        ),
        (
            native(&seeds[3]),
            ("bj_health".to_string(), "comment".to_string()),
        ),
        (
            native(&seeds[1]),
            ("bj_release".to_string(), "reply".to_string()),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(answers, expect, "{ours:#?}");
    assert_eq!(fake.violations(), 0);

    // More spread of status 2 after the cap: nothing more, even across reply checks.
    let more: Vec<Value> = (0..6)
        .map(|k| {
            json!({"id": format!("late-{k}"), "ts": now_ms(), "author": format!("late-{k}"),
                   "text": "转发：吃碘盐防辐射？", "repost_of": seeds[2], "source": "mastodon"})
        })
        .collect();
    let (status, body) = http(
        addr,
        "POST",
        "/api/mentions",
        &serde_json::to_vec(&more).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    within("the late spread to be counted", async {
        loop {
            let v = get_json(addr, &format!("/api/incidents/{incident_id}")).await;
            let inc = if v["incident"].is_object() {
                v["incident"].clone()
            } else {
                v
            };
            let top = inc["spread"][0].clone();
            if top["id"] == seeds[2].as_str() && top["shares"] == 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The audit log says which posts were answered; a restart-free re-plan adds none.
    let n = get_json(addr, &format!("/api/notices/{id}")).await;
    assert_eq!(n["jobs"].as_array().map(Vec::len), Some(5), "{n}");
    assert_eq!(fake.posts().len(), seeded + 5);
    stop(svc).await;
}
