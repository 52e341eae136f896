//! A citizen's request end to end over real sockets: an @-mention of the office's account
//! reaches the service, becomes a case, is acknowledged on the (fake) platform with its number,
//! transferred to the water department, answered by a department user, approved by an operator,
//! answered on the platform, and the citizen's reply to the answer is read as a rating.

use crate::fake_platform::FakePlatform;
use crate::util::{self, get_json, json_body, now_ms, start_service, stop, within};
use huiying::api::auth::{token_hash, Role, TokenEntry};
use huiying::store::MemoryStore;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DEPT_TOKEN: &str = "hy_case_e2e_water_duty";
const OP_TOKEN: &str = "hy_case_e2e_operator";

/// The shipped rules with one account on the fake platform: 问政北京 (@wenzheng), Mastodon.
fn rules_with_account(dir: &Path, base: &str, var: &str) {
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

[[link]]
category = "*"
functions = []

[[account]]
id = "wz-beijing"
name = "问政北京"
platform = "mastodon"
handle = "wenzheng"
region = "110000"
level = "province"
function = "publicity"
profile = "m-test"
token_env = "{var}"
endpoint = "{base}"
"#
    );
    std::fs::write(dir.join("matrix/matrix.toml"), m).expect("write matrix");
}

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let a = util::request(
        addr,
        method,
        path,
        &[("Authorization", &auth)],
        body.to_string().as_bytes(),
    )
    .await;
    let v = if a.body.is_empty() {
        Value::Null
    } else {
        json_body(&format!("{method} {path}"), &a.body)
    };
    (a.status, v)
}

/// Poll `f` until it returns `Some` (bounded by [`within`]).
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mention_becomes_a_case_acknowledged_routed_answered_and_rated() {
    let (base_addr, fake) = FakePlatform::start().await;
    let var = format!("HUIYING_TEST_CASE_E2E_{}_{}", std::process::id(), now_ms());
    std::env::set_var(&var, "tok-wenzheng");
    fake.add_account("tok-wenzheng", "wenzheng");
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("rules");
    rules_with_account(&rules, &fake.base_url(), &var);
    let mut cfg = util::respond_config(rules, dir.path().join("data"), &[]);
    cfg.cases.supervise_secs = 1;
    cfg.cases
        .members
        .insert("water".into(), vec!["water-duty".into()]);
    for (name, role, token) in [
        ("water-duty", Role::Department, DEPT_TOKEN),
        ("duty-li", Role::Operator, OP_TOKEN),
    ] {
        cfg.auth.tokens.push(TokenEntry {
            name: name.into(),
            role,
            sha256: token_hash(token),
            owner: None,
        });
    }
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let host = base_addr.to_string();

    // The citizen posts on the platform, and the mention reaches the service (as a feed or the
    // intake API delivers it: the platform's id names the status on the fake's host).
    fake.add_account("tok-citizen", "xueyuan-resident");
    let text = "@wenzheng 海淀区学院路小区停水两天了，自来水一直没来，什么时候恢复供水？";
    let citizen_post = |text: String, reply_to: Option<String>| {
        let url = format!("{}/api/v1/statuses", fake.base_url());
        async move {
            let mut form = vec![("status", text)];
            if let Some(r) = reply_to {
                form.push(("in_reply_to_id", r));
            }
            let v: Value = reqwest::Client::new()
                .post(url)
                .bearer_auth("tok-citizen")
                .form(&form)
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("json");
            v["id"].as_str().expect("status id").to_string()
        }
    };
    let status_id = citizen_post(text.to_string(), None).await;
    let ts = now_ms();
    let mention = json!({
        "id": format!("mastodon:{host}:{status_id}"),
        "ts": ts,
        "text": text,
        "author": "xueyuan-resident",
    });
    let (status, _) = call(
        svc.addr,
        "POST",
        "/api/mentions",
        util::TEST_TOKEN,
        &mention,
    )
    .await;
    assert_eq!(status, 202);

    // A case, accepted and transferred to the water department.
    let case = until("the case", || async {
        let v = get_json(svc.addr, "/api/cases").await;
        v["cases"].as_array().and_then(|c| c.first().cloned())
    })
    .await;
    let id = case["id"].as_str().expect("id").to_string();
    assert_eq!(case["state"], "assigned", "{case}");
    assert_eq!(case["department"], "water", "{case}");
    assert_eq!(case["region"], "110108", "{case}");

    // The acknowledgement on the platform: a reply to the citizen's status with the number.
    let ack = until("the acknowledgement", || async {
        fake.posts()
            .into_iter()
            .find(|p| p.target.as_deref() == Some(status_id.as_str()))
    })
    .await;
    assert_eq!(ack.action, "reply");
    assert!(ack.text.contains(&id), "{}", ack.text);

    // The department user sees it and answers; an operator approves.
    let (st, mine) = call(svc.addr, "GET", "/api/cases", DEPT_TOKEN, &Value::Null).await;
    assert_eq!(st, 200);
    assert_eq!(mine["total"], 1, "{mine}");
    let (st, other) = call(
        svc.addr,
        "GET",
        "/api/cases?department=housing",
        DEPT_TOKEN,
        &Value::Null,
    )
    .await;
    assert_eq!(st, 403, "{other}");
    let (st, c) = call(
        svc.addr,
        "POST",
        &format!("/api/cases/{id}/answer"),
        DEPT_TOKEN,
        &json!({"text": "学院路供水管道已抢修完毕，今晚八点前恢复供水。"}),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    assert!(c["pending_answer"].is_object(), "{c}");
    // The author cannot approve (department role: 403 by role), nor without a version.
    let (st, _) = call(
        svc.addr,
        "POST",
        &format!("/api/cases/{id}/approve"),
        DEPT_TOKEN,
        &json!({"version": c["version"]}),
    )
    .await;
    assert_eq!(st, 403);
    let (st, e) = call(
        svc.addr,
        "POST",
        &format!("/api/cases/{id}/approve"),
        OP_TOKEN,
        &json!({}),
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid")), "{e}");
    let (st, c) = call(
        svc.addr,
        "POST",
        &format!("/api/cases/{id}/approve"),
        OP_TOKEN,
        &json!({"version": c["version"]}),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["state"], "answered");

    // The answer on the platform, to the citizen's status.
    let answer = until("the answer", || async {
        fake.posts().into_iter().find(|p| {
            p.target.as_deref() == Some(status_id.as_str()) && p.text.contains("恢复供水")
        })
    })
    .await;
    assert!(answer.text.contains(&id));

    // The citizen replies to the answer on the platform: read as a rating.
    let text = "@wenzheng 水来了，满意，谢谢！";
    let reply_id = citizen_post(text.to_string(), Some(answer.id.clone())).await;
    let reply = json!({
        "id": format!("mastodon:{host}:{reply_id}"),
        "ts": now_ms(),
        "text": text,
        "author": "xueyuan-resident",
        "reply_to": format!("mastodon:{host}:{}", answer.id),
    });
    let (status, _) = call(svc.addr, "POST", "/api/mentions", util::TEST_TOKEN, &reply).await;
    assert_eq!(status, 202);
    let rated = until("the rating", || async {
        let v = get_json(svc.addr, &format!("/api/cases/{id}")).await;
        (v["satisfaction"] == "satisfied").then_some(v)
    })
    .await;
    assert_eq!(rated["state"], "answered", "{rated}");
    // The rating is not a new request.
    assert_eq!(get_json(svc.addr, "/api/cases").await["total"], 1);
    let replies = rated["replies"].as_array().expect("replies");
    assert!(replies.iter().all(|r| r["state"] == "done"), "{rated}");
    // Every transition went to the audit log.
    let audit = get_json(svc.addr, "/api/audit?limit=200").await.to_string();
    for a in [
        "case.receive",
        "case.accept",
        "case.assign",
        "case.draft_answer",
        "case.approve_answer",
        "case.answer",
        "case.rate",
    ] {
        assert!(audit.contains(a), "{a} missing from the audit log");
    }
    assert_eq!(fake.violations(), 0);
    stop(svc).await;
}

const INGEST_TOKEN: &str = "hy_case_api_ingest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_api_names_bad_input_keeps_contacts_to_the_office_and_exports_csv() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = util::respond_config(util::rules_dir(), dir.path().join("data"), &[]);
    cfg.cases
        .members
        .insert("water".into(), vec!["water-duty".into()]);
    cfg.cases
        .members
        .insert("housing".into(), vec!["housing-duty".into()]);
    for (name, role, token) in [
        ("water-duty", Role::Department, DEPT_TOKEN),
        ("housing-duty", Role::Department, "hy_case_api_housing"),
        ("unlisted", Role::Department, "hy_case_api_unlisted"),
        ("duty-li", Role::Operator, OP_TOKEN),
        ("hotline", Role::Ingest, INGEST_TOKEN),
    ] {
        cfg.auth.tokens.push(TokenEntry {
            name: name.into(),
            role,
            sha256: token_hash(token),
            owner: None,
        });
    }
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let post = |token: &'static str, body: Value| {
        let addr = svc.addr;
        async move { call(addr, "POST", "/api/cases", token, &body).await }
    };
    // Bad input: named, nothing created.
    for (body, code, needle) in [
        (json!({"title": "no text"}), "invalid_json", "text"),
        (
            json!({"text": "路灯坏了", "colour": "red"}),
            "invalid_json",
            "colour",
        ),
        (json!({"text": "  "}), "invalid", "text"),
        (
            json!({"text": "路灯坏了", "department": "ministry_of_magic"}),
            "invalid",
            "department",
        ),
        (
            json!({"text": "路灯坏了", "kind": "wish"}),
            "invalid",
            "kind",
        ),
        (json!({"text": "路灯坏了", "lat": 123.0}), "invalid", "lat"),
        (
            json!({"text": "路灯坏了", "media": ["javascript:alert(1)"]}),
            "invalid",
            "media",
        ),
        (json!({"text": "长".repeat(5_001)}), "invalid", "text"),
    ] {
        let (st, e) = post(INGEST_TOKEN, body.clone()).await;
        assert_eq!(st, 400, "{body}: {e}");
        assert_eq!(e["error"], code, "{body}: {e}");
        assert!(
            e["message"].as_str().unwrap_or("").contains(needle),
            "{body}: {e}"
        );
    }
    assert_eq!(get_json(svc.addr, "/api/cases").await["total"], 0);
    // A hotline system's request, with contact details; the same reference twice is one case.
    let body = json!({
        "reference": "12345-0001",
        "text": "朝阳区望京西园三区自来水发黄，已经三天了，请尽快处理",
        "handle": "12345热线",
        "contact": {"name": "王女士", "phone": "13800000000", "email": "wang@example.org"},
        "region": "朝阳区",
    });
    let (st, first) = post(INGEST_TOKEN, body.clone()).await;
    assert_eq!(st, 201, "{first}");
    let (st, again) = post(INGEST_TOKEN, body).await;
    assert_eq!(
        (st, again["created"].as_bool()),
        (200, Some(false)),
        "{again}"
    );
    assert_eq!(again["case"]["id"], first["case"]["id"]);
    let id = first["case"]["id"].as_str().expect("id").to_string();
    assert_eq!(first["case"]["region"], "110105", "{first}");
    assert_eq!(first["case"]["department"], "water", "{first}");
    // Contacts: on the case page for operators and the case's department only.
    let page = format!("/api/cases/{id}");
    let (_, op) = call(svc.addr, "GET", &page, OP_TOKEN, &Value::Null).await;
    assert_eq!(op["contacts"]["12345热线"]["phone"], "13800000000", "{op}");
    let (_, dept) = call(svc.addr, "GET", &page, DEPT_TOKEN, &Value::Null).await;
    assert_eq!(
        dept["contacts"]["12345热线"]["email"], "wang@example.org",
        "{dept}"
    );
    let (st, _) = call(svc.addr, "GET", &page, "hy_case_api_housing", &Value::Null).await;
    assert_eq!(st, 404, "another department's case is not shown");
    let (st, _) = call(
        svc.addr,
        "GET",
        "/api/cases",
        "hy_case_api_unlisted",
        &Value::Null,
    )
    .await;
    assert_eq!(
        st, 403,
        "a department user not in [cases.members] sees nothing"
    );
    let (_, list) = call(svc.addr, "GET", "/api/cases", OP_TOKEN, &Value::Null).await;
    assert!(!list.to_string().contains("13800000000"), "{list}");
    // Unknown case, bad state.
    let (st, e) = call(
        svc.addr,
        "POST",
        "/api/cases/20990101-0001/accept",
        OP_TOKEN,
        &json!({}),
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
    let (st, e) = call(
        svc.addr,
        "POST",
        &format!("/api/cases/{id}/close"),
        OP_TOKEN,
        &json!({}),
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (409, Some("invalid_state")),
        "{e}"
    );
    let (st, e) = call(
        svc.addr,
        "POST",
        &format!("/api/cases/{id}/assign"),
        OP_TOKEN,
        &json!({"department": "nowhere"}),
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid")), "{e}");
    let (st, e) = call(
        svc.addr,
        "GET",
        "/api/cases?state=lost",
        OP_TOKEN,
        &Value::Null,
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid")), "{e}");
    // The CSV export: one row, no contact details; formulas defused.
    let (st, _) = post(
        INGEST_TOKEN,
        json!({"text": "=HYPERLINK(\"http://x\") 路灯坏了", "reference": "f1"}),
    )
    .await;
    assert_eq!(st, 201);
    let a = util::request(
        svc.addr,
        "GET",
        "/api/cases/export.csv",
        &[("Authorization", &format!("Bearer {OP_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/csv"));
    assert_eq!(a.body.lines().count(), 3, "{}", a.body);
    assert!(
        a.body.contains(&id) && !a.body.contains("13800000000"),
        "{}",
        a.body
    );
    assert!(a.body.contains("\"'=HYPERLINK"), "{}", a.body);
    // The wall's board: counts, no texts.
    let s = get_json(svc.addr, "/api/cases/summary").await;
    assert_eq!(s["open"], 2, "{s}");
    assert!(!s.to_string().contains("望京"), "{s}");
    // The metrics pass promtool with the cases series.
    let m = util::get_metrics(svc.addr).await;
    assert!(
        m.contains("huiying_cases{kind=\"complaint\",state=\"assigned\"}")
            || m.contains("huiying_case_intake_total"),
        "{m}"
    );
    util::promtool(&["check", "metrics"], &m).await;
    stop(svc).await;
}
