//! The operator console and the API's authentication: a real Chromium (through chromedriver's
//! WebDriver) logs in as an operator, approves a notice and watches the fan-out board reach
//! `done` while the file sink really receives the posts; roles (a viewer token cannot approve),
//! wrong passwords (401, counted), the login limits, CSRF, session expiry on an injected clock,
//! operator close of an incident through the engine, the separate metrics address and the
//! `user add` / `token create` commands.

use crate::util::{self, metric, request, within, Answer};
use crate::webdriver::{Chromedriver, CHROMIUM, CHROMIUM_ARGS};
use huiying::api::auth::AuthConfig;
use huiying::api::auth::{Role, UsersFile};
use huiying::app::{Service, ServiceOptions};
use huiying::clock::ManualClock;
use huiying::config::Config;
use huiying::respond::notices::ApprovalPolicy;
use huiying::respond::RespondConfig;
use huiying::store::MemoryStore;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const ALICE_PW: &str = "alice-correct-horse";
const BOB_PW: &str = "bob-battery-staple";
const WENDY_PW: &str = "wendy-water-duty-pw";

/// The shipped rules with a matrix of two file-sink accounts: 海淀发布 leads a 海淀区 notice,
/// 北京发布 amplifies it (a repost of the lead's post).
fn rules_with_file_matrix(dir: &Path, sink: &Path) {
    util::copy_dir(&util::rules_dir(), dir);
    std::fs::remove_dir_all(dir.join("matrix")).expect("remove matrix");
    std::fs::create_dir_all(dir.join("matrix")).expect("mkdir matrix");
    let account = |id: &str, name: &str, region: &str, level: &str| {
        format!(
            "[[account]]\nid = \"{id}\"\nname = \"{name}\"\nplatform = \"file\"\nhandle = \"{id}\"\n\
             region = \"{region}\"\nlevel = \"{level}\"\nfunction = \"publicity\"\nprofile = \"f\"\n\
             endpoint = \"{}\"\n\n",
            sink.join(format!("{id}.jsonl")).display()
        )
    };
    let m = format!(
        "[matrix]\ndefault_region = \"110000\"\n\n[[profile]]\nid = \"f\"\nplatform = \"file\"\n\
         posts_per_hour = 1000\ncomments_per_hour = 1000\nreposts_per_hour = 1000\n\n\
         [[link]]\ncategory = \"*\"\nfunctions = []\n\n{}{}",
        account("hd-publicity", "海淀发布", "110108", "district"),
        account("bj-publicity", "北京发布", "110000", "province"),
    );
    std::fs::write(dir.join("matrix/matrix.toml"), m).expect("write matrix");
}

/// A service with a users file (alice and bob: operators; vera: viewer), a bob token, a viewer
/// token and an ingest token, small login limits and a hand-moved clock.
struct Secured {
    svc: Service,
    clock: Arc<ManualClock>,
    bob_token: String,
    viewer_token: String,
    ingest_token: String,
    admin_token: String,
    /// A legacy `[respond] operators` token (name `legacy-ops`).
    legacy_token: String,
    users: PathBuf,
    sink: PathBuf,
    _dir: tempfile::TempDir,
}

async fn secured(metrics_listen: bool) -> Secured {
    secured_with(metrics_listen, |_| {}).await
}

/// [`secured`], with `change` applied to the config before the service starts.
async fn secured_with(metrics_listen: bool, change: impl FnOnce(&mut Config)) -> Secured {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = dir.path().join("sink");
    std::fs::create_dir_all(&sink).expect("mkdir sink");
    let rules = dir.path().join("rules");
    rules_with_file_matrix(&rules, &sink);
    let users = dir.path().join("users.toml");
    let (bob_token, viewer_token, ingest_token, admin_token) = tokio::task::spawn_blocking({
        let users = users.clone();
        move || {
            let mut f = UsersFile::default();
            f.set_user("alice", Role::Operator, ALICE_PW)
                .expect("alice");
            f.set_user("bob", Role::Operator, BOB_PW).expect("bob");
            f.set_user("vera", Role::Viewer, "vera-viewer-pw")
                .expect("vera");
            // A department user: what she may see is set by `[cases] members` (none here).
            f.set_user("wendy", Role::Department, WENDY_PW)
                .expect("wendy");
            let t = (
                f.add_token("bob-cli", Role::Operator, Some("bob"))
                    .expect("bob token"),
                f.add_token("wall-screen", Role::Viewer, None)
                    .expect("viewer token"),
                f.add_token("feeder", Role::Ingest, None)
                    .expect("ingest token"),
                f.add_token("root-cli", Role::Admin, Some("root"))
                    .expect("admin token"),
            );
            f.save(&users).expect("save users");
            t
        }
    })
    .await
    .expect("users file");
    let clock = Arc::new(ManualClock::new(util::now_ms()));
    let legacy_token = huiying::api::auth::new_secret("hy_");
    let legacy_file = dir.path().join("legacy.token");
    std::fs::write(&legacy_file, &legacy_token).expect("legacy token file");
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules,
        metrics_listen: metrics_listen.then(|| "127.0.0.1:0".to_string()),
        respond: RespondConfig {
            data_dir: dir.path().join("data"),
            operators: vec![huiying::respond::config::Operator {
                name: "legacy-ops".into(),
                token_env: None,
                token_file: Some(legacy_file),
            }],
            policy: ApprovalPolicy {
                // Only the notices this test drafts by hand.
                draft_threshold: 6,
                ..Default::default()
            },
            ..Default::default()
        },
        auth: AuthConfig {
            users_file: Some(users.clone()),
            session_secs: 600,
            login_max_failures_per_user: 3,
            login_max_failures_per_ip: 6,
            login_window_secs: 60,
            ..Default::default()
        },
        ..Default::default()
    };
    change(&mut config);
    let svc = within(
        "the service to start",
        huiying::app::start(ServiceOptions {
            config,
            store: Arc::new(MemoryStore::default()),
            demo: false,
            auth_clock: Some(clock.clone()),
        }),
    )
    .await
    .expect("the service starts");
    Secured {
        svc,
        clock,
        bob_token,
        viewer_token,
        ingest_token,
        admin_token,
        legacy_token,
        users,
        sink,
        _dir: dir,
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: &Value) -> Answer {
    let auth = format!("Bearer {token}");
    let body = serde_json::to_vec(body).expect("json");
    request(addr, method, path, &[("Authorization", &auth)], &body).await
}

fn json_of(a: &Answer) -> Value {
    util::json_body("answer", &a.body)
}

/// bob drafts a fire notice for 海淀区 by hand: one operator other than bob must approve.
async fn draft_by_bob(s: &Secured) -> String {
    let draft = json!({
        "kind": "emergency", "category": "fire", "severity": 3, "region": "110108",
        "text": "海淀区某小区火情已得到控制，请市民不要靠近。"
    });
    let a = call(s.svc.addr, "POST", "/api/notices", &s.bob_token, &draft).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let n = json_of(&a);
    assert_eq!(n["created_by"], "bob", "{n}");
    assert_eq!(n["required_approvals"], 1, "{n}");
    n["id"].as_str().expect("notice id").to_string()
}

async fn login(addr: SocketAddr, user: &str, password: &str) -> Answer {
    let body = serde_json::to_vec(&json!({"user": user, "password": password})).expect("json");
    request(addr, "POST", "/api/login", &[], &body).await
}

fn login_failures(exposition: &str, reason: &str) -> f64 {
    metric(
        exposition,
        &format!("huiying_login_failures_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no huiying_login_failures_total{{reason={reason}}}"))
}

async fn metrics_text(addr: SocketAddr) -> String {
    let a = request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

// ---------------------------------------------------------------------------------------------
// WebDriver over HTTP (chromedriver), just what the test needs.

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: Chromedriver,
}

impl Driver {
    /// Start chromedriver on a free port and open a headless Chromium session. Fails (never
    /// skips) when either binary is missing: `.ci/run` installs them.
    pub(crate) async fn start() -> Driver {
        let driver = Chromedriver::start().await;
        let (http, base) = (driver.http.clone(), driver.base.clone());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ([CHROMIUM_ARGS.as_slice(), &["--window-size=1400,1100", "--lang=zh-CN"]].concat())
            }
        }}});
        let v = within("a Chromium session", async {
            http.post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
                .expect("new session")
                .json::<Value>()
                .await
                .expect("session JSON")
        })
        .await;
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            http,
            base,
            session,
            _driver: driver,
        }
    }

    pub(crate) async fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let what = format!("WebDriver {method} {path}");
        within(&what, async {
            let mut r = self.http.request(method.clone(), &url);
            if let Some(b) = &body {
                r = r.json(b);
            }
            let v: Value = r
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            v["value"].clone()
        })
        .await
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Elements matching `css` now (possibly none).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let Some(a) = v.as_array() else {
            panic!("WebDriver find {css}: {v}")
        };
        a.iter()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
            .collect()
    }

    /// Poll until `css` matches at least `n` elements that `ok` accepts (by text).
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        css: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        within(what, async {
            loop {
                for e in self.find_all(css).await {
                    let text = self.text(&e).await;
                    if ok(&text) {
                        return e;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }

    pub(crate) async fn text(&self, el: &str) -> String {
        let v = self
            .cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    pub(crate) async fn click(&self, el: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub(crate) async fn type_into(&self, el: &str, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(crate) async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot base64"))
            .expect("screenshot decodes");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir screenshots");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Open the console and log in as alice (an operator).
    pub(crate) async fn log_in_as_alice(&self, addr: SocketAddr) {
        self.log_in(addr, "alice", ALICE_PW, "operator").await;
    }

    /// Open the console and log in as `user` (whose role is `role`).
    pub(crate) async fn log_in(&self, addr: SocketAddr, user: &str, password: &str, role: &str) {
        self.goto(&format!("http://{addr}/console")).await;
        let field = self
            .wait_for("the login form", "#login-user", |_| true)
            .await;
        self.type_into(&field, user).await;
        let pass = self
            .find_all("#login-pass")
            .await
            .pop()
            .expect("password box");
        self.type_into(&pass, password).await;
        let submit = self.find_all("#login-submit").await.pop().expect("submit");
        self.click(&submit).await;
        // Logged in, or the form says why not. The role is shown by its name (值班员 …).
        let shown = match role {
            "viewer" => "只读",
            "operator" => "值班员",
            "admin" => "管理员",
            "department" => "承办部门",
            other => other,
        };
        let e = self
            .wait_for(
                &format!("{user} to be logged in"),
                "#whoami, #login-error",
                |t| (t.contains(user) && t.contains(shown)) || t.contains("登录失败"),
            )
            .await;
        let text = self.text(&e).await;
        assert!(!text.contains("登录失败"), "{user}: {text}");
    }

    /// Log out and wait until the engine has ended the session (the login form is back).
    pub(crate) async fn log_out(&self) {
        self.click_on("the logout button", "#logout").await;
        within("the login form after logging out", async {
            while !self.displayed("#login").await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }

    /// Click the first element matching `css` once it is there.
    pub(crate) async fn click_on(&self, what: &str, css: &str) {
        let e = self.wait_for(what, css, |_| true).await;
        self.click(&e).await;
    }

    /// Whether the element matching `css` is displayed.
    pub(crate) async fn displayed(&self, css: &str) -> bool {
        match self.find_all(css).await.pop() {
            None => false,
            Some(e) => self
                .cmd(
                    reqwest::Method::GET,
                    &format!("/element/{e}/displayed"),
                    None,
                )
                .await
                .as_bool()
                .unwrap_or(false),
        }
    }

    /// Size the window so that the page's viewport is `width` × `height` (the window's own
    /// frame is measured, not guessed).
    pub(crate) async fn set_viewport(&self, width: i64, height: i64) {
        let (mut w, mut h) = (width, height);
        for _ in 0..2 {
            self.cmd(
                reqwest::Method::POST,
                "/window/rect",
                Some(json!({"width": w, "height": h})),
            )
            .await;
            let inner = self
                .cmd(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({"script": "return [window.innerWidth, window.innerHeight];", "args": []})),
                )
                .await;
            let (iw, ih) = (
                inner[0].as_i64().unwrap_or(width),
                inner[1].as_i64().unwrap_or(height),
            );
            if (iw, ih) == (width, height) {
                return;
            }
            w += width - iw;
            h += height - ih;
        }
    }

    pub(crate) async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_logs_in_approves_a_notice_and_sees_the_fan_out_in_chromium() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let id = draft_by_bob(&s).await;
    let wd = Driver::start().await;
    wd.log_in_as_alice(addr).await;
    // The wall's link to a waiting notice opens that notice.
    wd.goto(&format!("http://{addr}/console#notice={id}")).await;
    wd.wait_for("the linked notice", "#nd-id", |t| t == id)
        .await;

    let tab = wd
        .find_all("#tab-notices")
        .await
        .pop()
        .expect("notices tab");
    wd.click(&tab).await;
    let open = wd
        .wait_for(
            "bob's draft in the list",
            &format!("tr[data-notice=\"{id}\"] button.open-notice"),
            |_| true,
        )
        .await;
    wd.click(&open).await;
    wd.wait_for("the one-operator rule", "#nd-rule", |t| {
        t.contains("一名值班员")
    })
    .await;
    wd.wait_for(
        "the previews",
        "#nd-previews [data-account=\"hd-publicity\"]",
        |t| t.contains("火情"),
    )
    .await;
    // Nothing is on the fan-out board before approval.
    assert!(wd.find_all("#fanout tr").await.is_empty());
    let approve = wd.find_all("#approve").await.pop().expect("approve button");
    wd.click(&approve).await;

    // The board shows every job, then every job posted.
    let done = within("every job on the board to be posted", async {
        loop {
            let rows = wd.find_all("#fanout tr").await;
            let posted = wd.find_all("#fanout tr[data-state=\"done\"]").await;
            if rows.len() == 2 && posted.len() == 2 {
                return rows.len();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(done, 2);
    wd.wait_for("the notice to be done", "#nd-state", |t| {
        t.contains("已完成")
    })
    .await;
    // Labels, not codes: the accounts by their names, the actions and the category in Chinese.
    let rows: Vec<String> = {
        let mut v = Vec::new();
        for e in wd.find_all("#fanout tr").await {
            v.push(wd.text(&e).await);
        }
        v
    };
    assert!(
        rows.iter()
            .any(|r| r.contains("海淀发布") && r.contains("发布")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("北京发布") && r.contains("转发")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| !r.contains("hd-publicity") && !r.contains("repost")),
        "{rows:?}"
    );
    wd.wait_for("the category's name", "#nd-meta", |t| t.contains("火灾"))
        .await;
    // Issue 16, item 4: the notices list filters by category (id or name) and region.
    let cat = wd
        .find_all("#fn-category")
        .await
        .pop()
        .expect("category filter");
    wd.type_into(&cat, "flood").await;
    wd.click_on("filter", "#notice-filter button[type=submit]")
        .await;
    within("the list filtered to nothing", async {
        while !wd.find_all("#notices tr").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    wd.cmd(
        reqwest::Method::POST,
        "/execute/sync",
        Some(json!({"script": "document.getElementById('fn-category').value = '火灾'; document.getElementById('fn-region').value = '110000'; return true;", "args": []})),
    )
    .await;
    wd.click_on("filter", "#notice-filter button[type=submit]")
        .await;
    wd.wait_for(
        "the fire notice by its name and province",
        &format!("tr[data-notice=\"{id}\"]"),
        |_| true,
    )
    .await;
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console.png");
    wd.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
    // English too.
    let lang = wd.find_all("#lang").await.pop().expect("language button");
    wd.click(&lang).await;
    wd.wait_for("the English rule", "#nd-rule", |t| {
        t == "Needs one operator"
    })
    .await;
    wd.wait_for("the English tab", "#tab-notices", |t| t == "Notices")
        .await;
    // Issue 16, item 3: the notice says what it is for (a first notice, an update, an
    // all-clear) and names its incident (a hand-drafted one has no page to link to).
    wd.wait_for("the purpose and incident", "#nd-meta", |t| {
        t.starts_with("First notice") && t.contains("Incident manual-")
    })
    .await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    wd.screenshot(&dir.join("console-en.png")).await;
    wd.set_viewport(3840, 2160).await;
    wd.screenshot(&dir.join("console-en-4k.png")).await;
    wd.click(&lang).await;
    wd.wait_for("Chinese again", "#nd-rule", |t| t.contains("一名值班员"))
        .await;
    wd.screenshot(&dir.join("console-4k.png")).await;
    wd.quit().await;

    // The posts really happened: the lead's post and the amplifier's repost of it.
    let lead = std::fs::read_to_string(s.sink.join("hd-publicity.jsonl")).expect("lead sink");
    let amp = std::fs::read_to_string(s.sink.join("bj-publicity.jsonl")).expect("amp sink");
    assert_eq!(lead.lines().count(), 1, "{lead}");
    assert!(lead.contains("火情已得到控制"), "{lead}");
    assert_eq!(amp.lines().count(), 1, "{amp}");
    assert!(amp.contains("\"repost\""), "{amp}");

    // The audit log has alice's login and approval under her name.
    let a = call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let records = json_of(&a)["records"].as_array().expect("records").clone();
    let by_alice: Vec<&str> = records
        .iter()
        .filter(|r| r["actor"] == "alice")
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(by_alice.contains(&"login"), "{records:#?}");
    assert!(by_alice.contains(&"approve"), "{records:#?}");
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_csrf_wrong_passwords_login_limits_and_session_expiry() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let id = draft_by_bob(&s).await;
    let approve = format!("/api/notices/{id}/approve");

    // Public: health, metrics, the console page (with the security headers). Not public: data.
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").await.status, 200);
    let page = request(addr, "GET", "/console", &[], b"").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(!page.body.contains("<script>"), "no inline script");
    for path in [
        "/api/incidents",
        "/api/notices",
        "/api/stream",
        "/api/wall/labels",
    ] {
        let a = request(addr, "GET", path, &[], b"").await;
        assert_eq!(a.status, 401, "{path}: {}", a.body);
        assert_eq!(json_of(&a)["error"], "unauthorized");
    }

    // A viewer token reads but cannot approve; an ingest token only ingests.
    let a = call(addr, "GET", "/api/notices", &s.viewer_token, &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(addr, "POST", &approve, &s.viewer_token, &json!({})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "forbidden");
    let a = call(addr, "GET", "/api/incidents", &s.ingest_token, &json!({})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let m = json!([{"id": "c-1", "ts": util::now_ms(), "author": "a", "text": "你好"}]);
    let a = call(addr, "POST", "/api/mentions", &s.ingest_token, &m).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let a = call(addr, "POST", "/api/mentions", &s.viewer_token, &m).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = call(addr, "GET", "/api/admin/users", &s.bob_token, &json!({})).await;
    assert_eq!(a.status, 403, "operators are not admins: {}", a.body);

    // A wrong password: 401 and counted; an unknown user: the same answer, its own reason.
    let before = metrics_text(addr).await;
    let a = login(addr, "alice", "not-her-password").await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "invalid_credentials");
    let a = login(addr, "mallory", "whatever").await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "invalid_credentials");
    let after = metrics_text(addr).await;
    for reason in ["wrong_password", "unknown_user"] {
        assert!(
            login_failures(&after, reason) >= login_failures(&before, reason) + 1.0,
            "{reason} not counted"
        );
    }

    // alice logs in: an HttpOnly, SameSite=Strict cookie and a CSRF token, in an answer no
    // cache keeps.
    let a = login(addr, "alice", ALICE_PW).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let set = a.header("set-cookie").expect("cookie").to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let cookie = set.split(';').next().expect("cookie pair").to_string();
    let csrf = json_of(&a)["csrf"].as_str().expect("csrf").to_string();
    assert!(!a
        .body
        .contains(cookie.trim_start_matches("huiying_session=")));
    let me = request(addr, "GET", "/api/me", &[("Cookie", &cookie)], b"").await;
    assert_eq!(json_of(&me)["user"], "alice", "{}", me.body);
    // A second session of alice's, ended by logout: its cookie is dead afterwards.
    let other = login(addr, "alice", ALICE_PW).await;
    let other_cookie = other
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let other_csrf = json_of(&other)["csrf"].as_str().expect("csrf").to_string();
    let h = [
        ("Cookie", other_cookie.as_str()),
        ("X-CSRF-Token", other_csrf.as_str()),
    ];
    assert_eq!(
        request(addr, "POST", "/api/logout", &h, b"{}").await.status,
        200
    );
    let gone = request(addr, "GET", "/api/me", &[("Cookie", &other_cookie)], b"").await;
    assert_eq!(gone.status, 401, "{}", gone.body);

    // A cookie request that changes state needs the CSRF token.
    let a = request(
        addr,
        "POST",
        "/api/publishing/pause",
        &[("Cookie", &cookie)],
        b"{}",
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "csrf");
    let bad = [("Cookie", cookie.as_str()), ("X-CSRF-Token", "forged")];
    let a = request(addr, "POST", "/api/publishing/pause", &bad, b"{}").await;
    assert_eq!(a.status, 403, "{}", a.body);
    let good = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let a = request(addr, "POST", "/api/publishing/pause", &good, b"{}").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = request(addr, "POST", "/api/publishing/resume", &good, b"{}").await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Per-user limit: three failures for bob, then even his right password waits.
    let limited_before = login_failures(&metrics_text(addr).await, "rate_limited");
    for _ in 0..3 {
        assert_eq!(login(addr, "bob", "wrong-guess").await.status, 401);
    }
    let a = login(addr, "bob", BOB_PW).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "too_many_attempts");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    // Per-address limit: six failures from this address in the window (alice, mallory, 3×bob,
    // and one more) stop every user here, alice included.
    assert_eq!(login(addr, "nobody", "x").await.status, 401);
    let a = login(addr, "alice", ALICE_PW).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(login_failures(&metrics_text(addr).await, "rate_limited") >= limited_before + 2.0);
    // A minute later the window is clear.
    s.clock.advance(Duration::from_secs(61));
    let a = login(addr, "bob", BOB_PW).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Sessions expire (600 s): alice's session was opened before the 61 s jump.
    s.clock.advance(Duration::from_secs(538));
    let me = request(addr, "GET", "/api/me", &[("Cookie", &cookie)], b"").await;
    assert_eq!(me.status, 200, "still valid at 599 s: {}", me.body);
    s.clock.advance(Duration::from_secs(1));
    let me = request(addr, "GET", "/api/me", &[("Cookie", &cookie)], b"").await;
    assert_eq!(me.status, 401, "expired at 600 s: {}", me.body);
    let a = request(addr, "POST", &approve, &good, b"{}").await;
    assert_eq!(a.status, 401, "{}", a.body);
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_closes_an_incident_through_the_engine_and_metrics_get_their_own_address() {
    let s = secured(true).await;
    let addr = s.svc.addr;
    let maddr = s.svc.metrics_addr.expect("metrics address");
    assert_eq!(request(addr, "GET", "/metrics", &[], b"").await.status, 401);
    let text = metrics_text(maddr).await;
    assert!(text.contains("huiying_login_failures_total"), "registered");

    let mut ws = viewer_stream(&s).await;
    // A token that can change things is not taken in a URL (it would end up in logs).
    for token in [&s.bob_token, &s.admin_token] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{addr}/api/stream?access_token={token}");
        let r = within(
            "the refused stream",
            tokio_tungstenite::connect_async(url.into_client_request().expect("request")),
        )
        .await;
        let err = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("401"),
            "an operator/admin token in the URL: {err:?}"
        );
    }
    // A flood and a fire in 海淀区: two emergency incidents an operator sees as one event.
    let (id, fire) = flood_and_fire(&s, &mut ws).await;

    // Merge the fire into the flood: the fire closes, the flood carries its mentions.
    let merge = json!({"into": id, "from": fire});
    let a = call(
        addr,
        "POST",
        "/api/incidents/merge",
        &s.viewer_token,
        &merge,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let same = json!({"into": id, "from": id});
    let a = call(addr, "POST", "/api/incidents/merge", &s.bob_token, &same).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = call(addr, "POST", "/api/incidents/merge", &s.bob_token, &merge).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let mut merged_closed = false;
    let updated = util::next_event(&mut ws, "the merged flood incident", |v| {
        if v["event"] == "incident.closed" && v["incident"]["id"] == fire {
            merged_closed = true;
        }
        v["event"] == "incident.updated" && v["incident"]["id"] == id
    })
    .await;
    assert!(merged_closed, "the fire closes before the flood's update");
    assert_eq!(updated["incident"]["mentions"], 16, "{updated}");

    let close = format!("/api/incidents/{id}/close");
    let a = call(addr, "POST", &close, &s.viewer_token, &json!({})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = call(
        addr,
        "POST",
        "/api/incidents/nope/close",
        &s.bob_token,
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = call(addr, "POST", &close, &s.bob_token, &json!({})).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let closed = util::next_event(&mut ws, "incident.closed", |v| {
        v["event"] == "incident.closed" && v["incident"]["id"] == id
    })
    .await;
    assert_eq!(closed["incident"]["state"], "closed", "{closed}");
    let a = call(addr, "GET", "/api/incidents", &s.viewer_token, &json!({})).await;
    assert!(!a.body.contains(&id), "{}", a.body);
    let a = call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await;
    let rec = json_of(&a)["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["action"] == "incident_close").cloned())
        .expect("close audited");
    assert_eq!(rec["actor"], "bob", "{rec}");
    let a = call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await;
    assert!(a.body.contains("incident_merge"), "{}", a.body);
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_uses_and_revokes_a_token_and_the_users_file_keeps_only_its_hash() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let new = json!({"name": "feeder-2", "role": "ingest"});
    let a = call(addr, "POST", "/api/admin/tokens", &s.bob_token, &new).await;
    assert_eq!(a.status, 403, "operators cannot: {}", a.body);
    let a = call(addr, "POST", "/api/admin/tokens", &s.admin_token, &new).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = json_of(&a)["token"].as_str().expect("token").to_string();
    let file = std::fs::read_to_string(&s.users).expect("users file");
    assert!(file.contains(&huiying::api::auth::token_hash(&token)) && !file.contains(&token));
    let m = json!({"id": "t-1", "ts": util::now_ms(), "author": "a", "text": "你好"});
    assert_eq!(
        call(addr, "POST", "/api/mentions", &token, &m).await.status,
        202
    );
    let listing = call(addr, "GET", "/api/admin/users", &s.admin_token, &json!({})).await;
    assert!(
        listing.body.contains("feeder-2") && !listing.body.contains("argon2"),
        "{}",
        listing.body
    );
    let a = call(
        addr,
        "POST",
        "/api/admin/tokens/feeder-2/revoke",
        &s.admin_token,
        &json!({}),
    )
    .await;
    assert_eq!(json_of(&a)["revoked"], 1, "{}", a.body);
    assert_eq!(
        call(addr, "POST", "/api/mentions", &token, &m).await.status,
        401
    );
    let a = call(addr, "GET", "/api/audit", &s.admin_token, &json!({})).await;
    let actions: Vec<String> = json_of(&a)["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["actor"] == "root")
        .filter_map(|r| r["action"].as_str().map(str::to_string))
        .collect();
    assert!(actions.contains(&"token_create".to_string()), "{actions:?}");
    assert!(actions.contains(&"token_revoke".to_string()), "{actions:?}");
    // A bad role is a clear 400 naming the field.
    let a = call(
        addr,
        "POST",
        "/api/admin/tokens",
        &s.admin_token,
        &json!({"name": "x", "role": "boss"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("boss"), "{}", a.body);
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_password_guesses_are_limited_like_sequential_ones() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    // Ten guesses at once for one user (3 failures allowed per user): the attempts in flight
    // count, so no more than 3 are checked; the others are refused at once.
    let guesses = (0..10).map(|i| async move { login(addr, "vera", &format!("guess-{i}")).await });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|a| a.status == 401).count();
    let limited = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(checked + limited, 10, "{answers:?}");
    assert!(checked <= 3, "{checked} guesses checked in parallel");
    // Only JSON logs in: a cross-site text/plain form cannot.
    let form = reqwest::Client::new()
        .post(format!("http://{addr}/api/login"))
        .header("Content-Type", "text/plain")
        .body(format!(r#"{{"user":"alice","password":"{ALICE_PW}"}}"#))
        .send()
        .await
        .expect("login request");
    assert_eq!(form.status().as_u16(), 415);
    assert!(form.headers().get("set-cookie").is_none());
    // A name no user can have (10 KB) is refused without becoming a limiter key, and the
    // right password still works for another user.
    let long = "x".repeat(10_000);
    assert_eq!(login(addr, &long, "whatever").await.status, 401);
    assert_eq!(login(addr, "alice", ALICE_PW).await.status, 200);
    util::stop(s.svc).await;
}

/// The session cookie of a successful login of `user`.
async fn session_of(addr: SocketAddr, user: &str, password: &str) -> String {
    let a = login(addr, user, password).await;
    assert_eq!(a.status, 200, "{user}: {}", a.body);
    a.header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie pair")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_file_reload_ends_the_access_of_removed_and_demoted_users_and_keeps_legacy_tokens()
{
    let s = secured(false).await;
    let addr = s.svc.addr;
    let me = |cookie: String| async move {
        request(addr, "GET", "/api/me", &[("Cookie", cookie.as_str())], b"").await
    };
    let (alice, bob) = (
        session_of(addr, "alice", ALICE_PW).await,
        session_of(addr, "bob", BOB_PW).await,
    );
    let vera = session_of(addr, "vera", "vera-viewer-pw").await;
    // alice leaves; bob becomes a viewer (same password); vera is unchanged.
    let users = s.users.clone();
    tokio::task::spawn_blocking(move || {
        let mut f = UsersFile::load(&users).expect("users file");
        f.users.retain(|u| u.name != "alice");
        for u in f.users.iter_mut().filter(|u| u.name == "bob") {
            u.role = Role::Viewer;
        }
        f.save(&users).expect("save");
    })
    .await
    .expect("edit users file");
    let a = call(
        addr,
        "POST",
        "/api/admin/users/reload",
        &s.admin_token,
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(me(alice).await.status, 401, "a removed user's session ends");
    assert_eq!(login(addr, "alice", ALICE_PW).await.status, 401);
    assert_eq!(me(bob).await.status, 401, "a demoted user's session ends");
    let bob = session_of(addr, "bob", BOB_PW).await;
    assert_eq!(json_of(&me(bob).await)["role"], "viewer");
    assert_eq!(me(vera).await.status, 200, "an unchanged user stays");
    // The legacy [respond] operators token survives the reload.
    let a = call(addr, "GET", "/api/notices", &s.legacy_token, &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admin_minting_two_tokens_is_still_one_approver() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let admin = s.admin_token.clone();
    let mint = |name: &'static str| {
        let (body, admin) = (json!({"name": name, "role": "operator"}), admin.clone());
        async move { call(addr, "POST", "/api/admin/tokens", &admin, &body).await }
    };
    // Reserved names and users' names are refused for tokens.
    for name in ["system", "policy", "dispatcher", "alice", "bob"] {
        let a = mint(name).await;
        assert_eq!(a.status, 422, "{name}: {}", a.body);
        assert_eq!(json_of(&a)["error"], "token_refused", "{}", a.body);
    }
    // Two operator tokens minted by root both act for root.
    let mut tokens = Vec::new();
    for name in ["op-1", "op-2"] {
        let a = mint(name).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(json_of(&a)["owner"], "root", "{}", a.body);
        tokens.push(json_of(&a)["token"].as_str().expect("token").to_string());
    }
    // A severity-4 notice needs two different people.
    let draft = json!({
        "kind": "emergency", "category": "fire", "severity": 4, "region": "110108",
        "text": "海淀区某工厂火灾，请附近居民关闭门窗，听从现场指挥。"
    });
    let a = call(addr, "POST", "/api/notices", &s.bob_token, &draft).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = json_of(&a)["id"].as_str().expect("id").to_string();
    assert_eq!(json_of(&a)["required_approvals"], 2, "{}", a.body);
    let approve = format!("/api/notices/{id}/approve");
    let a = call(addr, "POST", &approve, &tokens[0], &json!({"version": 0})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // The second token is the same person: refused by name, and the notice keeps one approval.
    let a = call(addr, "POST", &approve, &tokens[1], &json!({"version": 0})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "already_approved", "{}", a.body);
    let n = json_of(
        &call(
            addr,
            "GET",
            &format!("/api/notices/{id}"),
            &admin,
            &json!({}),
        )
        .await,
    );
    assert_eq!(n["state"], "draft", "one person, one approval: {n}");
    assert_eq!(n["approvals"].as_array().map(Vec::len), Some(1), "{n}");
    assert_eq!(n["approvals"][0]["actor"], "root", "{n}");
    util::stop(s.svc).await;
}

/// `huiying ARGS… --users USERS` with `stdin`; its output.
fn huiying(args: &[&str], users: &Path, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(args)
        .arg("--users")
        .arg(users)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("huiying {args:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("huiying ends")
}

/// A command that must have succeeded (its stderr otherwise).
fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn user_add_reads_the_password_from_stdin_and_token_create_prints_the_token_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    let out = huiying(
        &["user", "add", "carol", "--role", "operator"],
        &users,
        b"carol-secret-pw\n",
    );
    succeeded(&out);
    let text = std::fs::read_to_string(&users).expect("users file");
    assert!(!text.contains("carol-secret-pw"), "{text}");
    let f = UsersFile::load(&users).expect("valid users file");
    assert_eq!(f.users[0].name, "carol");
    assert_eq!(f.users[0].role, Role::Operator);
    assert!(huiying::api::auth::verify_password(
        &f.users[0].password,
        "carol-secret-pw"
    ));

    // A user's name, a reserved name, an operator token without an owner: refused, named.
    for (args, why) in [
        (
            &["token", "create", "carol", "--role", "viewer"][..],
            "user's name",
        ),
        (
            &["token", "create", "system", "--role", "viewer"][..],
            "reserved",
        ),
        (
            &["token", "create", "ci", "--role", "operator"][..],
            "owner",
        ),
    ] {
        let out = huiying(args, &users, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{args:?}: {err}"
        );
    }
    let out = huiying(
        &[
            "token", "create", "ci", "--role", "operator", "--owner", "carol",
        ],
        &users,
        b"",
    );
    succeeded(&out);
    let f = UsersFile::load(&users).expect("valid users file");
    assert_eq!(f.tokens[0].actor(), "carol");
    let out = huiying(
        &["token", "create", "wall", "--role", "viewer"],
        &users,
        b"",
    );
    succeeded(&out);
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(token.starts_with("hy_") && token.len() == 67, "{token}");
    let text = std::fs::read_to_string(&users).expect("users file");
    assert!(!text.contains(&token), "only the hash is stored");
    let f = UsersFile::load(&users).expect("valid users file");
    assert_eq!(f.users.len(), 1, "carol kept");
    assert_eq!(f.tokens[1].name, "wall");
    assert_eq!(f.tokens[1].sha256, huiying::api::auth::token_hash(&token));

    // A short password is refused with a clear message.
    let out = huiying(
        &["user", "add", "dave", "--role", "viewer"],
        &users,
        b"short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
}

/// Open one emergency incident in 海淀区 per (tag, text, category) and wait for each on `ws`;
/// their ids.
async fn open_incidents(
    s: &Secured,
    ws: &mut util::Ws,
    which: &[(&str, &str, &str)],
) -> Vec<String> {
    let ts = util::now_ms();
    let mut opened = Vec::new();
    for (tag, text, category) in which {
        let ms: Vec<Value> = (0..8)
            .map(|i| {
                util::mention(
                    &format!("{tag}-{i}"),
                    &format!("{tag}-author-{i}"),
                    text,
                    ts,
                )
            })
            .collect();
        let a = call(
            s.svc.addr,
            "POST",
            "/api/mentions",
            &s.ingest_token,
            &Value::Array(ms),
        )
        .await;
        assert_eq!(a.status, 202, "{}", a.body);
        let v = util::next_event(ws, &format!("the {category} incident"), |v| {
            v["event"] == "incident.opened"
                && v["incident"]["category"] == *category
                && v["incident"]["region"]["code"] == "110108"
        })
        .await;
        opened.push(v["incident"]["id"].as_str().expect("id").to_string());
    }
    opened
}

/// A flood and a fire in 海淀区 (two emergency incidents an operator sees as one event).
async fn flood_and_fire(s: &Secured, ws: &mut util::Ws) -> (String, String) {
    let v = open_incidents(
        s,
        ws,
        &[
            (
                "fl",
                "北京海淀区路口积水严重，车被淹了，水已经没过车顶",
                "flood",
            ),
            ("fi", "北京海淀区小区着火了，火势很大，消防车来了", "fire"),
        ],
    )
    .await;
    (v[0].clone(), v[1].clone())
}

/// The event stream with the viewer token in the URL.
async fn viewer_stream(s: &Secured) -> util::Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "ws://{}/api/stream?access_token={}",
        s.svc.addr, s.viewer_token
    );
    let (ws, _) = within(
        "the stream",
        tokio_tungstenite::connect_async(url.into_client_request().expect("request")),
    )
    .await
    .expect("stream with access_token");
    ws
}

fn assert_audit_refused(what: &str, a: &Answer) {
    assert_eq!(a.status, 503, "{what}: {}", a.body);
    assert_eq!(
        json_of(a)["error"],
        "audit_unavailable",
        "{what}: {}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_action_happens_while_its_audit_record_cannot_be_written() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let mut ws = viewer_stream(&s).await;
    let (flood, fire) = flood_and_fire(&s, &mut ws).await;
    let a = login(addr, "alice", ALICE_PW).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    let csrf = json_of(&a)["csrf"].as_str().expect("csrf").to_string();
    let records_before = json_of(&call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await)
        ["total"]
        .as_u64()
        .expect("total");

    let status = s
        .svc
        .audit
        .as_ref()
        .expect("the respond stage keeps an audit log")
        .lock()
        .expect("audit log")
        .status();
    status.inject_failure(true);

    // Login: the password is right, but no session is made.
    let a = login(addr, "bob", BOB_PW).await;
    assert_audit_refused("login", &a);
    assert!(a.header("set-cookie").is_none(), "no session cookie");
    // Logout: the session stays valid.
    let session_headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let a = request(addr, "POST", "/api/logout", &session_headers, b"").await;
    assert_audit_refused("logout", &a);
    assert_eq!(
        request(addr, "GET", "/api/me", &session_headers, b"")
            .await
            .status,
        200,
        "still logged in"
    );
    // Tokens: none created, none revoked.
    let new = json!({"name": "feeder-2", "role": "ingest"});
    let a = call(addr, "POST", "/api/admin/tokens", &s.admin_token, &new).await;
    assert_audit_refused("token create", &a);
    let listing = call(addr, "GET", "/api/admin/users", &s.admin_token, &json!({})).await;
    assert!(!listing.body.contains("feeder-2"), "{}", listing.body);
    assert!(!std::fs::read_to_string(&s.users)
        .expect("users file")
        .contains("feeder-2"));
    let revoke = "/api/admin/tokens/bob-cli/revoke";
    let a = call(addr, "POST", revoke, &s.admin_token, &json!({})).await;
    assert_audit_refused("token revoke", &a);
    assert_eq!(
        call(addr, "GET", "/api/me", &s.bob_token, &json!({}))
            .await
            .status,
        200,
        "bob's token still works"
    );
    // Users reload: the viewer token removed from the file keeps working.
    tokio::task::spawn_blocking({
        let users = s.users.clone();
        move || {
            let mut f = UsersFile::load(&users).expect("users file");
            f.tokens.retain(|t| t.name != "wall-screen");
            f.save(&users).expect("save");
        }
    })
    .await
    .expect("edit the users file");
    let reload = "/api/admin/users/reload";
    let a = call(addr, "POST", reload, &s.admin_token, &json!({})).await;
    assert_audit_refused("users reload", &a);
    let me = call(addr, "GET", "/api/me", &s.viewer_token, &json!({})).await;
    assert_eq!(me.status, 200, "not reloaded: {}", me.body);
    // Rules reload.
    let rules = "/api/admin/rules/reload";
    let a = call(addr, "POST", rules, &s.admin_token, &json!({})).await;
    assert_audit_refused("rules reload", &a);
    // Close and merge: both incidents stay open.
    let close = format!("/api/incidents/{flood}/close");
    let a = call(addr, "POST", &close, &s.bob_token, &json!({})).await;
    assert_audit_refused("close", &a);
    let merge = json!({"into": flood, "from": fire});
    let a = call(addr, "POST", "/api/incidents/merge", &s.bob_token, &merge).await;
    assert_audit_refused("merge", &a);
    // A notice and the publishing switch.
    let draft = json!({
        "kind": "emergency", "category": "fire", "severity": 3, "region": "110108",
        "text": "海淀区某小区火情已得到控制，请市民不要靠近。"
    });
    let a = call(addr, "POST", "/api/notices", &s.bob_token, &draft).await;
    assert_audit_refused("draft", &a);
    let a = call(
        addr,
        "POST",
        "/api/publishing/pause",
        &s.bob_token,
        &json!({}),
    )
    .await;
    assert_audit_refused("pause", &a);

    let h = util::get_json(addr, "/healthz").await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["audit"]["writable"], false, "{h}");
    let m = metrics_text(addr).await;
    assert!(
        m.contains("huiying_dispatcher_paused{reason=\"audit\"}"),
        "exported"
    );
    assert_eq!(metric(&m, "huiying_audit_writable"), Some(0.0));
    assert!(login_failures(&m, "audit_unavailable") >= 1.0);
    // Nothing happened, and nothing was written.
    let a = call(addr, "GET", "/api/incidents", &s.viewer_token, &json!({})).await;
    assert!(
        a.body.contains(&flood) && a.body.contains(&fire),
        "{}",
        a.body
    );
    let a = call(addr, "GET", "/api/notices", &s.bob_token, &json!({})).await;
    assert_eq!(json_of(&a)["notices"], json!([]), "{}", a.body);
    let a = call(addr, "GET", "/api/accounts", &s.bob_token, &json!({})).await;
    assert_eq!(json_of(&a)["paused"], false, "{}", a.body);
    let a = call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await;
    assert_eq!(json_of(&a)["total"], records_before, "{}", a.body);

    // Writable again: the same actions go through.
    status.inject_failure(false);
    let a = call(addr, "POST", "/api/admin/tokens", &s.admin_token, &new).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(addr, "POST", reload, &s.admin_token, &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let me = call(addr, "GET", "/api/me", &s.viewer_token, &json!({})).await;
    assert_eq!(me.status, 401, "reloaded: {}", me.body);
    assert_eq!(login(addr, "bob", BOB_PW).await.status, 200);
    let h = util::get_json(addr, "/healthz").await;
    assert_eq!(h["audit"]["writable"], true, "{h}");
    assert_eq!(h["audit"]["dispatcher_paused"], false, "{h}");
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_api_reads_only_the_records_appended_since_its_last_call() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    for _ in 0..3 {
        assert_eq!(login(addr, "alice", ALICE_PW).await.status, 200);
    }
    let a = call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await;
    let v = json_of(&a);
    assert_eq!(
        (v["total"].as_u64(), v["checked"].as_u64()),
        (Some(3), Some(3)),
        "{v}"
    );
    let a = call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await;
    let v = json_of(&a);
    assert_eq!(
        (v["total"].as_u64(), v["checked"].as_u64()),
        (Some(3), Some(0)),
        "{v}"
    );
    assert_eq!(login(addr, "bob", BOB_PW).await.status, 200);
    let a = call(addr, "GET", "/api/audit?limit=1", &s.bob_token, &json!({})).await;
    let v = json_of(&a);
    assert_eq!(
        (v["total"].as_u64(), v["checked"].as_u64()),
        (Some(4), Some(1)),
        "{v}"
    );
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["records"][0]["actor"], "bob", "newest first: {v}");
    util::stop(s.svc).await;
}

/// An office that opted in to automatic approval of rainstorm notices: a burst that an official
/// feed reports is drafted, approved by the policy and **held**. The console says why and until
/// when, and an operator cancels it before it goes out; the wall shows the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_notice_shows_its_hold_and_an_operator_cancels_it_in_chromium() {
    use crate::service::{burst, fake_feed, feed, Script};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind feed");
    let feed_addr = listener.local_addr().expect("feed addr");
    let frames = burst(
        "held",
        8,
        "海淀区暴雨，路口积水已经没过膝盖了，气象台发布暴雨预警",
    )
    .into_iter()
    .map(|m| Message::text(m.to_string()))
    .collect();
    let (_server, _) = fake_feed(
        listener,
        vec![Script {
            gate: None,
            frames,
            close: false,
        }],
    );
    let s = secured_with(false, |c| {
        c.respond.policy = ApprovalPolicy {
            draft_threshold: 1,
            pre_approved: vec!["rainstorm".into(), "flood".into()],
            pre_approved_max_severity: 5,
            ..Default::default()
        };
        c.feeds = vec![huiying::feeds::FeedConfig {
            official: true,
            ..feed("weather-bureau", feed_addr)
        }];
    })
    .await;
    let addr = s.svc.addr;
    let held = within("the held notice", async {
        loop {
            let a = call(
                addr,
                "GET",
                "/api/notices?state=held",
                &s.bob_token,
                &json!({}),
            )
            .await;
            if let Some(n) = json_of(&a)["notices"]
                .as_array()
                .and_then(|v| v.first().cloned())
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let id = held["id"].as_str().expect("id").to_string();
    assert_eq!(held["approvals"][0]["actor"], "policy", "{held}");
    let until = held["hold_until"].as_i64().expect("hold_until");
    assert!(
        until >= held["created_at"].as_i64().unwrap_or(0) + 300_000,
        "{held}"
    );

    let wd = Driver::start().await;
    wd.log_in_as_alice(addr).await;
    // The wall (same session) shows the hold and when it ends.
    wd.goto(&format!("http://{addr}/wall")).await;
    wd.wait_for(
        "the hold on the wall",
        &format!(".notice[data-id=\"{id}\"] .approvals.held"),
        |t| t.contains("可取消"),
    )
    .await;
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/wall-held.png");
    wd.screenshot(&shot).await;
    wd.goto(&format!("http://{addr}/console")).await;
    let tab = wd
        .wait_for("the notices tab", "#tab-notices", |_| true)
        .await;
    wd.click(&tab).await;
    let open = wd
        .wait_for(
            "the held notice in the list",
            &format!("tr[data-notice=\"{id}\"] button.open-notice"),
            |_| true,
        )
        .await;
    wd.click(&open).await;
    wd.wait_for("the hold explained", "#nd-rule", |t| {
        t.contains("自动发布") && t.contains("官方数据源")
    })
    .await;
    wd.wait_for("the publish-now button", "#approve", |t| t == "立即发布")
        .await;
    let shot =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console-held.png");
    wd.screenshot(&shot).await;
    let cancel = wd
        .wait_for("the cancel button", "#reject", |t| t == "取消发布")
        .await;
    let reason = wd
        .find_all("#reject-reason")
        .await
        .pop()
        .expect("reason box");
    wd.type_into(&reason, "气象台未发布预警").await;
    wd.click(&cancel).await;
    wd.wait_for("the notice rejected", "#nd-state", |t| t.contains("已驳回"))
        .await;

    wd.quit().await;
    let a = call(
        addr,
        "GET",
        &format!("/api/notices/{id}"),
        &s.bob_token,
        &json!({}),
    )
    .await;
    let n = json_of(&a);
    assert_eq!(n["state"], "rejected", "{n}");
    assert!(n.get("hold_until").is_none(), "{n}");
    // Nothing was posted (the sink files exist from the start, empty).
    for f in ["hd-publicity.jsonl", "bj-publicity.jsonl"] {
        let posted = std::fs::read_to_string(s.sink.join(f)).unwrap_or_default();
        assert!(posted.is_empty(), "{f}: {posted}");
    }
    util::stop(s.svc).await;
}

async fn login_via(addr: SocketAddr, user: &str, password: &str, forwarded_for: &str) -> Answer {
    let body = serde_json::to_vec(&json!({"user": user, "password": password})).expect("json");
    request(
        addr,
        "POST",
        "/api/login",
        &[("X-Forwarded-For", forwarded_for)],
        &body,
    )
    .await
}

/// Behind a reverse proxy named in `[auth] trusted_proxies`, the per-address login limit
/// counts the client `X-Forwarded-For` names, so one guesser does not lock everyone out; where
/// the peer is not a trusted proxy the header is ignored, so a guesser cannot dodge the limit
/// by writing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_limit_counts_the_client_a_trusted_proxy_names_and_only_then() {
    let guesser = "203.0.113.5";
    // Six failures per address (three per user name): six names, one guess each.
    let guess = |addr| async move {
        for i in 0..6 {
            let a = login_via(addr, &format!("nobody{i}"), "guess", guesser).await;
            assert_eq!(a.status, 401, "{}", a.body);
        }
        assert_eq!(
            login_via(addr, "alice", ALICE_PW, guesser).await.status,
            429
        );
    };

    let s = secured_with(false, |c| {
        c.auth.trusted_proxies = vec!["127.0.0.0/8".into()]
    })
    .await;
    guess(s.svc.addr).await;
    // Another client behind the same proxy still logs in.
    let a = login_via(s.svc.addr, "alice", ALICE_PW, "198.51.100.7").await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A forged left-most entry does not help the guesser: the proxy appended the real one.
    let a = login_via(
        s.svc.addr,
        "bob",
        BOB_PW,
        &format!("198.51.100.7, {guesser}"),
    )
    .await;
    assert_eq!(a.status, 429, "{}", a.body);
    util::stop(s.svc).await;

    // No trusted proxy: the header is the client's own words and changes nothing.
    let s = secured(false).await;
    guess(s.svc.addr).await;
    let a = login_via(s.svc.addr, "alice", ALICE_PW, "198.51.100.7").await;
    assert_eq!(a.status, 429, "{}", a.body);
    util::stop(s.svc).await;
}

/// `[auth]` settings that cannot be used stop the start with the setting named.
#[test]
fn bad_trusted_proxies_and_config_tokens_named_after_users_or_the_system_are_refused() {
    use huiying::api::auth::{token_hash, TokenEntry};
    let users = tempfile::NamedTempFile::new().expect("users file");
    let mut f = UsersFile::default();
    f.set_user("alice", Role::Operator, ALICE_PW)
        .expect("alice");
    f.save(users.path()).expect("save");
    let cases: Vec<(AuthConfig, &str)> = vec![
        (
            AuthConfig {
                trusted_proxies: vec!["127.0.0.1".into(), "proxy.internal".into()],
                ..Default::default()
            },
            "[auth] trusted_proxies[1]",
        ),
        (
            AuthConfig {
                users_file: Some(users.path().to_path_buf()),
                tokens: vec![TokenEntry {
                    name: "alice".into(),
                    role: Role::Viewer,
                    sha256: token_hash("x"),
                    owner: None,
                }],
                ..Default::default()
            },
            "[auth] tokens[0]: the name \"alice\" is a user's name",
        ),
        (
            AuthConfig {
                tokens: vec![TokenEntry {
                    name: "policy".into(),
                    role: Role::Operator,
                    sha256: token_hash("x"),
                    owner: None,
                }],
                ..Default::default()
            },
            "[auth] tokens[0]: the name \"policy\" is reserved",
        ),
    ];
    for (auth, want) in cases {
        let clock = Arc::new(ManualClock::new(0));
        match huiying::api::auth::Auth::new(auth, Vec::new(), false, clock) {
            Ok(_) => panic!("accepted despite {want}"),
            Err(e) => assert!(e.to_string().contains(want), "{e}"),
        }
    }
}

/// `huiying run` with an `[auth]` setting it cannot use exits with the setting named, after
/// stopping the stages it had started (it used to wait on them forever).
#[test]
fn a_run_with_a_bad_auth_setting_exits_with_the_setting_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("huiying.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nrules = \"{}\"\nwatch_rules = false\n\n[respond]\n\
             data_dir = \"{}\"\n\n[auth]\ntrusted_proxies = [\"proxy.internal\"]\n",
            util::rules_dir().display(),
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("huiying run");
    // Bounded wait for the exit (a start takes well under a second here).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("huiying run did not exit after a failed start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success(), "{err}");
    assert!(err.contains("[auth] trusted_proxies[0]"), "{err}");
}

/// Open `/api/stream` with a session cookie and, if given, an `Origin`: the handshake's status.
async fn stream_with_cookie(addr: SocketAddr, cookie: &str, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/api/stream")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("cookie header"));
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin header"));
    }
    match within("the handshake", tokio_tungstenite::connect_async(req)).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake: {e}"),
    }
}

/// The browser-facing edges: a page of another site cannot open the stream with the browser's
/// cookie (Origin check); with `secure_cookie` the session cookie is `__Host-` prefixed and
/// `Secure`, and a plain-named cookie (planted over HTTP or by a subdomain) is not read; a
/// viewer does not see where the accounts' credentials come from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origin_host_prefixed_cookie_and_credential_sources_for_operators_only() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let cookie = session_of(addr, "alice", ALICE_PW).await;
    assert_eq!(
        stream_with_cookie(addr, &cookie, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        stream_with_cookie(addr, &cookie, Some(&format!("http://{addr}"))).await,
        101
    );
    // Credential sources are for operators.
    let a = call(addr, "GET", "/api/accounts", &s.viewer_token, &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.contains("token_source"), "{}", a.body);
    let a = call(addr, "GET", "/api/accounts", &s.bob_token, &json!({})).await;
    assert!(a.body.contains("token_source"), "{}", a.body);
    util::stop(s.svc).await;

    let s = secured_with(false, |c| c.auth.secure_cookie = true).await;
    let addr = s.svc.addr;
    let a = login(addr, "alice", ALICE_PW).await;
    let set = a.header("set-cookie").expect("set-cookie").to_string();
    assert!(set.starts_with("__Host-huiying_session="), "{set}");
    assert!(set.contains("; Secure") && set.contains("Path=/"), "{set}");
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
    let pair = set.split(';').next().expect("pair").to_string();
    let me =
        |c: String| async move { request(addr, "GET", "/api/me", &[("Cookie", &c)], b"").await };
    assert_eq!(me(pair.clone()).await.status, 200);
    let planted = pair.replacen("__Host-", "", 1);
    assert_eq!(me(planted).await.status, 401);
    util::stop(s.svc).await;
}

/// `huiying token create` waits for the users file's lock (held here as the service holds it
/// during a create, revoke or reload), then writes on top of what the holder wrote: neither
/// change is lost.
#[test]
fn the_cli_waits_for_the_users_file_lock_and_loses_no_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    UsersFile::default().save(&users).expect("save");
    let held = UsersFile::lock(&users).expect("lock");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["token", "create", "screen", "--role", "viewer", "--users"])
        .arg(&users)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("huiying token create");
    // While the lock is held the command must not finish (it would write back a copy that
    // misses the change below). Bounded: two seconds is twenty times its usual run.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        if let Some(s) = child.try_wait().expect("wait") {
            panic!("token create finished ({s}) while the users file was locked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut f = UsersFile::load(&users).expect("load");
    f.set_user("carol", Role::Operator, "carol-long-password")
        .expect("carol");
    f.save(&users).expect("save");
    drop(held);
    let out = child.wait_with_output().expect("token create ends");
    succeeded(&out);
    let f = UsersFile::load(&users).expect("load");
    assert!(f.users.iter().any(|u| u.name == "carol"), "{f:?}");
    assert!(f.tokens.iter().any(|t| t.name == "screen"), "{f:?}");
}

/// Citizens' requests in Chromium: an operator finds a form request in the 诉求 queue and
/// transfers it to the water department; the department's user sees only that department's
/// cases (no other tab), starts one and writes the answer; she cannot approve it, the operator
/// does; the wall's 民生诉求 board counts what is open and overdue by department.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_transferred_answered_and_approved_in_chromium_and_counted_on_the_wall() {
    let s = secured_with(false, |c| {
        c.cases.members.insert("water".into(), vec!["wendy".into()]);
    })
    .await;
    let addr = s.svc.addr;
    let mut ids = Vec::new();
    for (reference, text, kind, department) in [
        (
            "web-1",
            "海淀区学院路小区停水两天了，自来水一直没来，什么时候恢复供水？",
            "complaint",
            Some("water"),
        ),
        (
            "web-2",
            "建议在朝阳区望京西园增设公交站，早高峰等车太久。",
            "suggestion",
            Some("transport"),
        ),
        (
            "web-3",
            "西城区金融街附近井盖松动，下雨天有积水，请派人看看。",
            "report",
            None,
        ),
    ] {
        let mut body = json!({"reference": reference, "text": text, "kind": kind,
            "handle": format!("市民-{reference}"),
            "contact": {"name": "张先生", "phone": "13800000000"}});
        if let Some(d) = department {
            body["department"] = json!(d);
        }
        let a = call(addr, "POST", "/api/cases", &s.ingest_token, &body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        ids.push(json_of(&a)["case"]["id"].as_str().expect("id").to_string());
    }
    let (water, transport, unrouted) = (&ids[0], &ids[1], &ids[2]);

    let wd = Driver::start().await;
    wd.log_in_as_alice(addr).await;
    wd.click_on("the requests tab", "#tab-cases").await;
    for id in &ids {
        wd.wait_for(
            &format!("case {id} in the queue"),
            &format!("tr[data-case=\"{id}\"]"),
            |_| true,
        )
        .await;
    }
    // The operator transfers the third (whatever the router said) to the water department.
    wd.click_on(
        "the third case's open button",
        &format!("tr[data-case=\"{unrouted}\"] button.open-case"),
    )
    .await;
    wd.wait_for("the case text", "#cd-text", |t| t.contains("井盖松动"))
        .await;
    wd.wait_for("contacts shown to staff", "#cd-contacts", |t| {
        t.contains("13800000000")
    })
    .await;
    wd.click_on("the water department", "#case-dept option[value=\"water\"]")
        .await;
    wd.click_on("transfer", "#case-assign").await;
    wd.wait_for("the transfer", "#cd-meta", |t| t.contains("水务"))
        .await;
    wd.wait_for("the history", "#cd-history", |t| t.contains("转办"))
        .await;
    wd.log_out().await;

    // The department's user: only the requests tab, only the water department's cases.
    wd.log_in(addr, "wendy", WENDY_PW, "department").await;
    wd.wait_for(
        "the water case",
        &format!("tr[data-case=\"{water}\"]"),
        |_| true,
    )
    .await;
    wd.wait_for(
        "the transferred case",
        &format!("tr[data-case=\"{unrouted}\"]"),
        |_| true,
    )
    .await;
    assert!(
        wd.find_all(&format!("tr[data-case=\"{transport}\"]"))
            .await
            .is_empty(),
        "another department's case is not listed"
    );
    for tab in [
        "#tab-incidents",
        "#tab-notices",
        "#tab-accounts",
        "#tab-audit",
    ] {
        assert!(!wd.displayed(tab).await, "{tab} shown to a department user");
    }
    wd.click_on(
        "the water case's open button",
        &format!("tr[data-case=\"{water}\"] button.open-case"),
    )
    .await;
    wd.click_on("start", "#case-start").await;
    wd.wait_for("in progress", "#case-detail h2", |t| t.contains("办理中"))
        .await;
    let answer = wd
        .wait_for("the answer box", "#case-answer", |_| true)
        .await;
    wd.type_into(&answer, "学院路小区因管网抢修停水，今晚 20 时前恢复供水。")
        .await;
    wd.click_on("submit the answer", "#case-submit-answer")
        .await;
    wd.wait_for("the answer waiting for approval", "#cd-pending", |t| {
        t.contains("20 时前恢复供水") && t.contains("wendy")
    })
    .await;
    // Neither an approve button for her, nor any operator action.
    assert!(wd.find_all("#case-approve").await.is_empty());
    assert!(wd.find_all("#case-assign").await.is_empty());
    let shot =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console-case.png");
    wd.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
    // The engine refuses her approval too (the button is not the check).
    let c = call(
        addr,
        "GET",
        &format!("/api/cases/{water}"),
        &s.admin_token,
        &json!({}),
    )
    .await;
    let version = json_of(&c)["version"].clone();
    let a = login(addr, "wendy", WENDY_PW).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie pair")
        .to_string();
    let csrf = json_of(&a)["csrf"].as_str().expect("csrf").to_string();
    let a = request(
        addr,
        "POST",
        &format!("/api/cases/{water}/approve"),
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Content-Type", "application/json"),
        ],
        json!({ "version": version }).to_string().as_bytes(),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    wd.log_out().await;

    // The operator approves it: the case is answered.
    wd.log_in_as_alice(addr).await;
    wd.click_on("the requests tab", "#tab-cases").await;
    wd.click_on(
        "the water case's open button",
        &format!("tr[data-case=\"{water}\"] button.open-case"),
    )
    .await;
    wd.click_on("approve the answer", "#case-approve").await;
    wd.wait_for("answered", "#case-detail h2", |t| t.contains("已答复"))
        .await;
    wd.wait_for("the answer on the case", "#cd-answer", |t| {
        t.contains("20 时前恢复供水")
    })
    .await;

    // 绩效: the water department received two (one answered on time), transport one; the
    // drill-down shows the figures by name.
    wd.click_on("the evaluation tab", "#tab-evaluation").await;
    let row = wd
        .wait_for(
            "the water department's row",
            "#evaluation-departments tr[data-unit=\"water\"]",
            |t| t.contains("水务局") && t.contains("50%"),
        )
        .await;
    assert!(
        wd.text(&row).await.contains("70.0"),
        "{}",
        wd.text(&row).await
    );
    wd.click_on(
        "the drill-down",
        "#evaluation-departments tr[data-unit=\"water\"] button.open-unit",
    )
    .await;
    wd.wait_for("the figures", "#unit-figures", |t| {
        t.contains("收到") && t.contains("70.0")
    })
    .await;
    let shot =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console-evaluation.png");
    wd.screenshot(&shot).await;

    // The wall's board: two open (transport, and the transferred one), by department.
    wd.set_viewport(1920, 1080).await;
    wd.goto(&format!("http://{addr}/wall")).await;
    wd.wait_for(
        "the open count",
        "#cases-kpis [data-kpi=\"open\"] .v",
        |t| t == "2",
    )
    .await;
    wd.wait_for("the departments", "#cases-depts", |t| {
        t.contains("水务") && t.contains("交通")
    })
    .await;
    wd.wait_for("the week's best", "#cases-week", |t| {
        t.contains("本周最佳") && t.contains("水务局 70")
    })
    .await;
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/wall-cases.png");
    wd.screenshot(&shot).await;
    wd.quit().await;

    // Every step is in the audit log under its actor.
    let a = call(addr, "GET", "/api/audit", &s.admin_token, &json!({})).await;
    let records = json_of(&a)["records"].as_array().expect("records").clone();
    let by = |actor: &str, action: &str| {
        records
            .iter()
            .any(|r| r["actor"] == actor && r["action"] == action)
    };
    assert!(by("alice", "case.assign"), "{records:#?}");
    assert!(by("wendy", "case.start"), "{records:#?}");
    assert!(by("alice", "case.approve_answer"), "{records:#?}");
    util::stop(s.svc).await;
}

/// The API's rough edges, each answered with a named JSON error: the same operator approving
/// twice (409 `already_approved`), a draft rejected without a reason or without a body (400,
/// the field named), an unknown `state` (400, the valid values listed), a method a path does not
/// take (405 with a JSON body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_names_each_refusal() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    let draft = json!({
        "kind": "emergency", "category": "fire", "severity": 5, "region": "110108",
        "text": "海淀区某化工厂爆炸起火，请周边居民关闭门窗。"
    });
    let a = call(addr, "POST", "/api/notices", &s.bob_token, &draft).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let n = json_of(&a);
    assert_eq!(n["required_approvals"], 2, "{n}");
    let id = n["id"].as_str().expect("id").to_string();
    let approve = format!("/api/notices/{id}/approve");
    let v = json!({"version": n["version"]});
    let notice = |id: &str| {
        let (path, token) = (format!("/api/notices/{id}"), s.admin_token.clone());
        async move { json_of(&call(addr, "GET", &path, &token, &json!({})).await) }
    };
    let first = call(addr, "POST", &approve, &s.admin_token, &v).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = call(addr, "POST", &approve, &s.admin_token, &v).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(
        json_of(&again)["error"],
        "already_approved",
        "{}",
        again.body
    );
    let n = notice(&id).await;
    assert_eq!(n["approvals"].as_array().map(Vec::len), Some(1), "{n}");

    let reject = format!("/api/notices/{id}/reject");
    for body in [&b""[..], &b"{}"[..], &br#"{"reason": "   "}"#[..]] {
        let auth = format!("Bearer {}", s.admin_token);
        let a = request(addr, "POST", &reject, &[("Authorization", &auth)], body).await;
        assert_eq!(
            a.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            a.body
        );
        let e = json_of(&a);
        assert_eq!(e["error"], "invalid", "{e}");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains("reason")),
            "{e}"
        );
    }
    let n = notice(&id).await;
    assert_eq!(n["state"], "draft", "nothing rejected: {n}");

    let a = call(
        addr,
        "GET",
        "/api/notices?state=pending",
        &s.admin_token,
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body
            .contains("draft, held, approved, rejected, publishing, done"),
        "{}",
        a.body
    );

    let a = call(addr, "GET", &approve, &s.admin_token, &json!({})).await;
    assert_eq!(a.status, 405, "{}", a.body);
    assert_eq!(json_of(&a)["error"], "method_not_allowed", "{}", a.body);
    util::stop(s.svc).await;
}

/// The top-level keys of the `zh: {…}` / `en: {…}` dictionaries in a script: a key written
/// twice silently replaces the first (it once turned the wall's 数据中断 into a notice's label).
fn dictionary_keys(script: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for lang in ["zh", "en"] {
        let Some(start) = script.find(&format!("\n  {lang}: {{")) else {
            continue;
        };
        let body = &script[start + lang.len() + 6..];
        let (mut depth, mut keys, mut word, mut quote) = (1usize, Vec::new(), String::new(), None);
        for c in body.chars() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '"' | '`' | '\'' => quote = Some(c),
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ':' if depth == 1 && !word.is_empty() => keys.push(std::mem::take(&mut word)),
                c if c.is_alphanumeric() || c == '_' => word.push(c),
                _ => word.clear(),
            }
        }
        out.push((lang.to_string(), keys));
    }
    out
}

#[test]
fn no_label_is_defined_twice_in_the_console_or_the_wall() {
    for (name, script) in [
        ("console", include_str!("../../src/api/console/app.js")),
        ("wall", include_str!("../../src/api/wall/wall.js")),
    ] {
        let dicts = dictionary_keys(script);
        assert_eq!(dicts.len(), 2, "{name}: both dictionaries found");
        for (lang, keys) in &dicts {
            assert!(keys.len() > 50, "{name} {lang}: {} keys", keys.len());
            let mut seen = std::collections::HashSet::new();
            let twice: Vec<&String> = keys.iter().filter(|k| !seen.insert(*k)).collect();
            assert!(twice.is_empty(), "{name} {lang}: defined twice: {twice:?}");
        }
        // The same labels in both languages.
        let (zh, en): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) =
            (dicts[0].1.iter().collect(), dicts[1].1.iter().collect());
        let only: Vec<_> = zh.symmetric_difference(&en).collect();
        assert!(
            only.is_empty(),
            "{name}: labels in one language only: {only:?}"
        );
    }
}

/// POST `ms` as the feeder.
async fn feed(s: &Secured, ms: Vec<Value>) {
    for chunk in ms.chunks(200) {
        let a = call(
            s.svc.addr,
            "POST",
            "/api/mentions",
            &s.ingest_token,
            &Value::Array(chunk.to_vec()),
        )
        .await;
        assert_eq!(a.status, 202, "{}", a.body);
    }
}

/// 16 posts of `text(i)` by distinct authors over the last minute: an emerging incident on the
/// stream (the service's rules learn no baseline first: `warmup_secs = 0`).
async fn emerging_burst(
    s: &Secured,
    ws: &mut util::Ws,
    tag: &str,
    text: impl Fn(usize) -> String,
) -> Value {
    let now = util::now_ms();
    let ms = (0..16)
        .map(|i| {
            util::mention(
                &format!("{tag}-{i}"),
                &format!("{tag}-author-{i}"),
                &text(i),
                now - 60_000 + i as i64 * 3_000,
            )
        })
        .collect();
    feed(s, ms).await;
    util::next_event(ws, &format!("the emerging incident {tag}"), |v| {
        v["event"] == "incident.opened" && v["incident"]["kind"] == "emerging"
    })
    .await["incident"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_dismisses_or_promotes_an_emerging_incident_and_both_are_audited() {
    // A live service learns baselines for `warmup_secs` from its first tick before anything
    // opens (feeds cannot post ahead of the clock): here it opens at once.
    let s = secured_with(false, |c| {
        let f = c.rules.join("detection.toml");
        let t = std::fs::read_to_string(&f).expect("detection.toml");
        assert!(t.contains("warmup_secs = 1800"));
        std::fs::write(&f, t.replace("warmup_secs = 1800", "warmup_secs = 0")).expect("write");
        // Every incident drafts (no emerging one may).
        c.respond.policy.draft_threshold = 1;
    })
    .await;
    let addr = s.svc.addr;
    let rules = s._dir.path().join("rules");
    let mut ws = viewer_stream(&s).await;
    let inc = emerging_burst(&s, &mut ws, "meteor", |i| {
        format!("天上划过一颗陨石，亮得吓人，编号{i}")
    })
    .await;
    let id = inc["id"].as_str().expect("id").to_string();
    let first = id.clone();
    assert_eq!(inc["category"], "emerging");
    assert!(inc["top_terms"].to_string().contains("陨石"), "{inc}");
    let listed = call(
        addr,
        "GET",
        "/api/incidents?kind=emerging",
        &s.viewer_token,
        &json!({}),
    )
    .await;
    assert!(listed.body.contains(&id), "{}", listed.body);

    // Dismiss: operators only, a sane mute, emerging incidents only.
    let dismiss = format!("/api/incidents/{id}/dismiss");
    let a = call(addr, "POST", &dismiss, &s.viewer_token, &json!({})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = call(
        addr,
        "POST",
        &dismiss,
        &s.bob_token,
        &json!({"mute_hours": 0}),
    )
    .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = call(addr, "POST", &dismiss, &s.bob_token, &json!({"mute": 3})).await;
    assert_eq!(a.status, 400, "unknown field: {}", a.body);
    let a = call(
        addr,
        "POST",
        &dismiss,
        &s.bob_token,
        &json!({"mute_hours": 12, "reason": "天文现象，已有气象台说明"}),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    util::next_event(&mut ws, "the dismissed incident closes", |v| {
        v["event"] == "incident.closed" && v["incident"]["id"] == id
    })
    .await;
    let audit = json_of(&call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await);
    let rec = audit["records"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["action"] == "incident_dismiss")
                .cloned()
        })
        .expect("dismissal audited");
    assert_eq!(rec["actor"], "bob");
    assert_eq!(rec["detail"]["mute_hours"], 12, "{rec}");

    // Promote another one into a category: checked, written, audited, in force.
    let inc = emerging_burst(&s, &mut ws, "sink", |i| {
        format!("河边步道出现天坑，深不见底，第{i}个")
    })
    .await;
    let id = inc["id"].as_str().expect("id").to_string();
    let promote = format!("/api/incidents/{id}/promote");
    let before = std::fs::read_to_string(rules.join("categories.toml")).expect("categories");
    let claims_before = std::fs::read_to_string(rules.join("claims.toml")).expect("claims");
    let a = call(
        addr,
        "POST",
        &promote,
        &s.viewer_token,
        &json!({"category": "collapse"}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let claim = json!({"id": "sinkhole-hoax", "category": "no-such-category", "rebuttal_zh": "不实",
                       "rebuttal_en": "false", "link": "https://www.piyao.org.cn/"});
    for (body, why) in [
        (json!({"category": "collapse", "claim": claim}), "both"),
        (json!({}), "neither"),
        (
            json!({"category": "meteor", "terms": ["天坑"]}),
            "unknown category",
        ),
        (
            json!({"claim": claim, "terms": ["天坑"]}),
            "a claim of an unknown category does not load",
        ),
        (
            json!({"category": "collapse", "terms": ["\u{7}"]}),
            "a control character",
        ),
    ] {
        let a = call(addr, "POST", &promote, &s.bob_token, &body).await;
        assert_eq!(a.status, 422, "{why}: {}", a.body);
    }
    assert_eq!(
        std::fs::read_to_string(rules.join("categories.toml")).expect("c"),
        before
    );
    assert_eq!(
        std::fs::read_to_string(rules.join("claims.toml")).expect("c"),
        claims_before
    );
    let a = call(
        addr,
        "POST",
        &promote,
        &s.bob_token,
        &json!({"category": "collapse", "terms": ["天坑", "Ground Swallowed", "sinkhole"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(json_of(&a)["added"], json!(["天坑", "ground swallowed"]));
    let after = std::fs::read_to_string(rules.join("categories.toml")).expect("categories");
    let collapse = &after[after.find("id = \"collapse\"").expect("collapse")..];
    assert!(collapse.contains(&format!("promoted from emerging incident {id} by bob")));
    assert!(
        collapse.contains("\"天坑\", \"ground swallowed\","),
        "{}",
        &collapse[..400]
    );
    let audit = json_of(&call(addr, "GET", "/api/audit", &s.bob_token, &json!({})).await);
    let rec = audit["records"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["action"] == "incident_promote")
                .cloned()
        })
        .expect("promotion audited");
    assert_eq!(
        rec["detail"]["terms"],
        json!(["天坑", "ground swallowed"]),
        "{rec}"
    );
    // In force: the next sinkhole posts in 海淀区 count for the collapse category.
    let now = util::now_ms();
    let ms: Vec<Value> = (0..8)
        .map(|i| {
            util::mention(
                &format!("after-{i}"),
                &format!("after-author-{i}"),
                "北京海淀区路口出现天坑",
                now,
            )
        })
        .collect();
    feed(&s, ms).await;
    util::next_event(
        &mut ws,
        "a collapse incident from the promoted keyword",
        |v| v["event"] == "incident.opened" && v["incident"]["category"] == "collapse",
    )
    .await;
    // A flood with casualty words is drafted for; the emerging incidents, before it in the
    // drafter's queue, were not (no category, no template: an operator judges them first).
    let ms: Vec<Value> = (0..8)
        .map(|i| {
            util::mention(
                &format!("fl-{i}"),
                &format!("fl-author-{i}"),
                crate::respond::FLOOD_TEXT,
                now,
            )
        })
        .collect();
    feed(&s, ms).await;
    let flood = util::next_event(&mut ws, "the flood incident", |v| {
        v["event"] == "incident.opened" && v["incident"]["category"] == "flood"
    })
    .await;
    let cid = flood["incident"]["id"].as_str().expect("id").to_string();
    let notices = util::within("the flood incident's draft", async {
        loop {
            let a = call(addr, "GET", "/api/notices", &s.viewer_token, &json!({})).await;
            if a.body.contains(&cid) {
                break json_of(&a);
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let drafted_for: Vec<&str> = notices["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter_map(|n| n["incident_id"].as_str())
        .collect();
    for em in [&first, &id] {
        assert!(!drafted_for.contains(&em.as_str()), "{em} drafted for");
    }
    // Promoting the same terms again adds nothing: refused.
    let a = call(
        addr,
        "POST",
        &promote,
        &s.bob_token,
        &json!({"category": "collapse", "terms": ["天坑"]}),
    )
    .await;
    assert!(a.status == 422 || a.status == 404, "{}", a.body);
    util::stop(s.svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opinion_report_counts_what_the_service_took_in_for_viewers_only() {
    let s = secured(false).await;
    let addr = s.svc.addr;
    // Posts of an hour two hours back, then one now: event time leaves that hour, whose
    // figures the opinion stage stores.
    let now = util::now_ms();
    let hour = (now - 2 * 3_600_000) / 3_600_000 * 3_600_000;
    let mut ms: Vec<Value> = (0..12)
        .map(|i| {
            util::mention(
                &format!("op-{i}"),
                &format!("op-author-{i}"),
                "海淀区新图书馆开放了，周末去看看",
                hour + 60_000 + i as i64,
            )
        })
        .collect();
    ms.push(util::mention("op-now", "op-late", "今天天气不错", now));
    feed(&s, ms).await;
    let from = hour.to_string();
    let path = format!("/api/reports/opinion?from={from}&to={}", hour + 3_600_000);
    let o = util::within("the hour's figures in the report", async {
        loop {
            let a = call(addr, "GET", &path, &s.viewer_token, &json!({})).await;
            assert_eq!(a.status, 200, "{}", a.body);
            let o = json_of(&a);
            if o["mentions"] == 12 {
                break o;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(o["hours_covered"], 1);
    assert!(o["terms"].to_string().contains("海淀"), "{o}");
    assert_eq!(o["regions"][0]["name"], "北京市");
    let html = call(
        addr,
        "GET",
        &format!("{path}&format=html"),
        &s.viewer_token,
        &json!({}),
    )
    .await;
    assert_eq!(html.status, 200);
    assert!(html
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(html.body.contains("舆情报告") && html.body.contains("<svg"));
    let csv = call(
        addr,
        "GET",
        &format!("{path}&format=csv&region=110108"),
        &s.viewer_token,
        &json!({}),
    )
    .await;
    assert!(csv.body.contains("total,mentions,12,"), "{}", csv.body);

    // Viewers and up; an ingest token reads nothing; bad parameters are named.
    let a = call(addr, "GET", &path, &s.ingest_token, &json!({})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = request(addr, "GET", &path, &[], b"").await;
    assert_eq!(a.status, 401, "{}", a.body);
    for (q, what) in [
        ("format=pdf", "format"),
        ("region=abc", "region"),
        ("from=2026-12-05&to=2026-12-01", "before"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
    ] {
        let a = call(
            addr,
            "GET",
            &format!("/api/reports/opinion?{q}"),
            &s.viewer_token,
            &json!({}),
        )
        .await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
        assert!(a.body.contains(what), "{q}: {}", a.body);
    }
    util::stop(s.svc).await;
}
