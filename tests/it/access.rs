//! Who may call what, over the real router: every route of every stage, anonymously and with a
//! token of each role, with the wall closed and public. Each route's access is declared beside
//! it (`Routes::route(path, Access, handler)`); removing or weakening one fails this table.

use crate::util::{self, request};
use huiying::api::auth::{token_hash, Role, TokenEntry};
use huiying::config::Config;
use huiying::store::MemoryStore;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

const ROLES: [(Role, &str); 5] = [
    (Role::Viewer, "hy_access_viewer"),
    (Role::Operator, "hy_access_operator"),
    (Role::Admin, "hy_access_admin"),
    (Role::Ingest, "hy_access_ingest"),
    (Role::Department, "hy_access_department"),
];

/// Routes an `ingest` token may also call (besides the least role of the table).
const INGEST_TOO: &[(&str, &str)] = &[("POST", "/api/cases")];

/// Routes a `department` user may also call: who am I, and log out (the console's own calls).
const DEPARTMENT_TOO: &[(&str, &str)] = &[("GET", "/api/me"), ("POST", "/api/logout")];

/// (method, path, least role with the wall closed, least role with `public_wall`); `None`:
/// anyone. The paths use ids that do not exist: passing the guard answers 2xx, 4xx other than
/// 401/403 (not found, bad request), or 503 (the respond stage off) — never 401/403.
const TABLE: &[(&str, &str, Option<Role>, Option<Role>)] = &[
    ("GET", "/healthz", None, None),
    ("GET", "/console", None, None),
    ("GET", "/console/app.js", None, None),
    ("GET", "/wall", None, None),
    ("GET", "/wall/wall.js", None, None),
    ("POST", "/api/login", None, None),
    (
        "POST",
        "/api/logout",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    ("GET", "/api/me", Some(Role::Viewer), Some(Role::Viewer)),
    ("GET", "/api/wall/summary", Some(Role::Viewer), None),
    (
        "GET",
        "/api/incidents",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    (
        "GET",
        "/api/incidents/i-none",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    ("GET", "/api/feeds", Some(Role::Viewer), Some(Role::Viewer)),
    (
        "GET",
        "/api/notices",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    (
        "GET",
        "/api/notices/n-none",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    (
        "GET",
        "/api/accounts",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    (
        "GET",
        "/api/audit",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/notices",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/notices/n-none/approve",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/notices/n-none/reject",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/notices/n-none/edit",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/publishing/pause",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/publishing/resume",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/incidents/i-none/close",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/incidents/merge",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/mentions",
        Some(Role::Ingest),
        Some(Role::Ingest),
    ),
    (
        "GET",
        "/api/admin/users",
        Some(Role::Admin),
        Some(Role::Admin),
    ),
    (
        "POST",
        "/api/admin/users/reload",
        Some(Role::Admin),
        Some(Role::Admin),
    ),
    (
        "POST",
        "/api/admin/tokens",
        Some(Role::Admin),
        Some(Role::Admin),
    ),
    (
        "POST",
        "/api/admin/tokens/none/revoke",
        Some(Role::Admin),
        Some(Role::Admin),
    ),
    (
        "POST",
        "/api/admin/rules/reload",
        Some(Role::Admin),
        Some(Role::Admin),
    ),
    // Deny by default: a path no stage declared needs a viewer before it says "not found".
    (
        "GET",
        "/api/cases",
        Some(Role::Department),
        Some(Role::Department),
    ),
    (
        "POST",
        "/api/cases",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "GET",
        "/api/cases/export.csv",
        Some(Role::Department),
        Some(Role::Department),
    ),
    ("GET", "/api/cases/summary", Some(Role::Viewer), None),
    (
        "GET",
        "/api/cases/c-none",
        Some(Role::Department),
        Some(Role::Department),
    ),
    (
        "POST",
        "/api/cases/c-none/accept",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/cases/c-none/assign",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/cases/c-none/close",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/cases/c-none/reopen",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/cases/c-none/rate",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/cases/c-none/approve",
        Some(Role::Operator),
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/cases/c-none/start",
        Some(Role::Department),
        Some(Role::Department),
    ),
    (
        "POST",
        "/api/cases/c-none/return",
        Some(Role::Department),
        Some(Role::Department),
    ),
    (
        "POST",
        "/api/cases/c-none/answer",
        Some(Role::Department),
        Some(Role::Department),
    ),
    (
        "GET",
        "/api/departments",
        Some(Role::Department),
        Some(Role::Department),
    ),
    (
        "GET",
        "/api/evaluation",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    ("GET", "/api/evaluation/summary", Some(Role::Viewer), None),
    ("GET", "/api/alerts", Some(Role::Viewer), Some(Role::Viewer)),
    (
        "GET",
        "/api/reports/opinion",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    ("GET", "/cap/n-none.xml", None, None),
    ("GET", "/feeds/notices.atom", None, None),
    ("GET", "/feeds/notices.rss", None, None),
    ("GET", "/archive", None, None),
    ("GET", "/archive/archive.css", None, None),
    ("GET", "/api/push", Some(Role::Viewer), Some(Role::Viewer)),
    ("GET", "/open311/v2/discovery.json", None, None),
    ("GET", "/open311/v2/services.xml", None, None),
    (
        "GET",
        "/open311/v2/services/complaint.water.json",
        None,
        None,
    ),
    ("GET", "/open311/v2/requests.json", None, None),
    ("GET", "/open311/v2/requests/c-none.xml", None, None),
    (
        "GET",
        "/api/nothing-here",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
    (
        "POST",
        "/api/nothing-here",
        Some(Role::Viewer),
        Some(Role::Viewer),
    ),
];

async fn start(public_wall: bool, data: &std::path::Path) -> huiying::app::Service {
    let mut cfg: Config = util::respond_config(util::rules_dir(), data.to_path_buf(), &[]);
    cfg.auth.public_wall = public_wall;
    // The department token is a member of one department (else every case route refuses it).
    cfg.cases
        .members
        .insert("water".into(), vec!["access-department".into()]);
    for (role, token) in ROLES {
        cfg.auth.tokens.push(TokenEntry {
            name: format!("access-{role}"),
            role,
            sha256: token_hash(token),
            owner: None,
        });
    }
    util::start_service(cfg, Arc::new(MemoryStore::default())).await
}

/// The status of `method path` with `token` (none: anonymous). The stream needs a websocket
/// upgrade: a plain GET that passed the guard is refused by the upgrade (400/426), not 401/403.
async fn status(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(addr, method, path, &headers, b"{}").await.status
}

async fn check(public_wall: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = start(public_wall, dir.path()).await;
    let mut wrong = Vec::new();
    let mut paths: Vec<(&str, &str, Option<Role>)> = TABLE
        .iter()
        .map(|(m, p, closed, open)| (*m, *p, if public_wall { *open } else { *closed }))
        .collect();
    paths.push(("GET", "/api/stream", Some(Role::Viewer)));
    for (method, path, need) in paths {
        let anon = status(svc.addr, method, path, None).await;
        let want_anon_refused = need.is_some();
        if (anon == 401) != want_anon_refused {
            wrong.push(format!("{method} {path} anonymous: {anon}"));
        }
        for (role, token) in ROLES {
            let got = status(svc.addr, method, path, Some(token)).await;
            let allowed = need.is_none_or(|n| role.allows(n))
                || (role == Role::Ingest && INGEST_TOO.contains(&(method, path)))
                || (role == Role::Department && DEPARTMENT_TOO.contains(&(method, path)));
            let refused = got == 401 || got == 403;
            if allowed == refused {
                wrong.push(format!("{method} {path} as {role}: {got}"));
            }
        }
    }
    util::stop(svc).await;
    assert!(
        wrong.is_empty(),
        "public_wall={public_wall}: {} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_only_the_roles_it_declares() {
    check(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_wall_opens_only_what_the_wall_reads() {
    check(true).await;
}

/// What the public wall's one endpoint gives away: open incidents without sample posts, notices
/// without texts, operators or errors, and no drafts; a signed-in viewer also sees the drafts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_summary_carries_no_drafts_texts_operators_or_authors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = start(true, dir.path()).await;
    let ts = util::now_ms();
    let burst: Vec<Value> = (0..8)
        .map(|i| {
            util::mention(
                &format!("pub-{i}"),
                &format!("secret-author-{i}"),
                "海淀区暴雨，路口积水很深，大家注意安全",
                ts + i,
            )
        })
        .collect();
    let a = util::request(
        svc.addr,
        "POST",
        "/api/mentions",
        &[("Authorization", "Bearer hy_access_ingest")],
        Value::Array(burst).to_string().as_bytes(),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let draft = serde_json::json!({
        "kind": "emergency", "category": "fire", "severity": 3, "region": "110108",
        "text": "海淀区某小区火情已得到控制，草稿内容不应公开。"
    });
    let a = util::request(
        svc.addr,
        "POST",
        "/api/notices",
        &[("Authorization", "Bearer hy_access_operator")],
        draft.to_string().as_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let public = util::within("the incident on the public summary", async {
        loop {
            let a = util::request(svc.addr, "GET", "/api/wall/summary", &[], b"").await;
            assert_eq!(a.status, 200, "{}", a.body);
            let v: Value = serde_json::from_str(&a.body).expect("json");
            if v["incidents"].as_array().is_some_and(|i| !i.is_empty()) {
                return a.body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    for secret in [
        "secret-author",
        "草稿内容",
        "access-operator",
        "\"texts\"",
        "created_by",
        "last_error",
    ] {
        assert!(!public.contains(secret), "{secret} in {public}");
    }
    let v: Value = serde_json::from_str(&public).expect("json");
    assert_eq!(v["notices"]["current"], serde_json::json!([]), "{v}");
    assert!(v["labels"]["categories"]["fire"]["zh"].is_string(), "{v}");
    // A viewer's wall shows the draft (its state and approvals counted, still no text).
    let a = util::request(
        svc.addr,
        "GET",
        "/api/wall/summary",
        &[("Authorization", "Bearer hy_access_viewer")],
        b"",
    )
    .await;
    let v: Value = serde_json::from_str(&a.body).expect("json");
    let current = v["notices"]["current"].as_array().expect("current");
    assert!(!current.is_empty(), "{v}");
    for n in current {
        assert_eq!(n["state"], "draft", "{v}");
        assert_eq!(n["approvals"], 0, "{v}");
    }
    assert!(current.iter().any(|n| n["category"] == "fire"), "{v}");
    assert!(!a.body.contains("草稿内容"), "{}", a.body);
    util::stop(svc).await;
}
