//! wall tests: headless Chromium (through chromedriver, spoken to over HTTP) loads `/wall` from
//! an engine on port 0 with the respond stage on the fake platform; a flood in 海淀区 is posted,
//! and the page must show it — ranked card, map tile, flash — then the notice's fan-out as the
//! operators approve it (a Weibo post with its link, a failed account), in Chinese and English,
//! and turn red when the engine goes away. Screenshots land in `target/screenshots/`.

use crate::fake_platform::FakePlatform;
use crate::util::{self, get_json, http, now_ms, start_service, stop, within};
use crate::webdriver::{Chromedriver, CHROMIUM, CHROMIUM_ARGS};
use huiying::api::auth::{token_hash, Role, TokenEntry};
use huiying::config::Config;
use huiying::respond::RespondConfig;
use huiying::store::MemoryStore;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A fire in 杭州市西湖区.
const FIRE: &str = "杭州西湖区一小区发生火灾，浓烟滚滚，消防车已经到了";
/// A known debunked claim (rules/claims.toml: iodized-salt-radiation).
const SALT: &str = "吃碘盐能防辐射，赶紧去超市抢盐，速转！";
/// Flood in 海淀区 with casualty boosters.
pub(crate) const FLOOD: &str = "北京海淀区路口积水严重，车被淹了，水已经没过车顶，有人被冲走";

/// One browser session on its own chromedriver (which ends Chromium when dropped).
struct Browser {
    base: String,
    session: String,
    http: reqwest::Client,
    _driver: Chromedriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver on a free port and open a 1920×1080 headless Chromium session.
    async fn start() -> Browser {
        // Without a CJK font the screenshots are boxes: a test of a Chinese wall must not pass.
        let fonts = std::process::Command::new("fc-list")
            .arg(":lang=zh")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(
            !fonts.trim().is_empty(),
            "no Chinese font (fc-list :lang=zh is empty): apt-get install -y fonts-noto-cjk; .ci/run installs it"
        );
        let driver = Chromedriver::start().await;
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ([CHROMIUM_ARGS.as_slice(), &[
                    "--disable-dev-shm-usage", "--window-size=1920,1080",
                    "--force-device-scale-factor=1", "--hide-scrollbars", "--lang=zh-CN",
                    &format!("--user-data-dir={}", profile.path().display()),
                ]].concat())
            }
        }}});
        let mut b = Browser {
            base: driver.base.clone(),
            session: String::new(),
            http: driver.http.clone(),
            _driver: driver,
            _profile: profile,
        };
        let v = b.call("POST", "/session", caps).await;
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b.viewport(1920, 1080).await;
        b
    }

    /// Pin the viewport (the window size would include the invisible browser frame).
    async fn viewport(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}}),
        )
        .await;
    }

    /// One WebDriver command; returns its `value`, failing the test on a WebDriver error.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let what = format!("WebDriver {method} {path}");
        let v: Value = within(&what, async {
            let r = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
            r.json().await.unwrap_or_else(|e| panic!("{what}: {e}"))
        })
        .await;
        if v["value"]["error"].is_string() {
            panic!("{what}: {}", v["value"]);
        }
        v.get("sessionId").map_or(v["value"].clone(), |_| v.clone())
    }

    async fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        let p = format!("/session/{}{path}", self.session);
        self.call(method, &p, body).await
    }

    async fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }))
            .await;
    }

    /// Run `script` (a function body; `return` a JSON value) in the page.
    async fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Evaluate `script` until it returns something other than `null`/`false`.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        within(what, async {
            loop {
                let v = self.eval(script).await;
                if !(v.is_null() || v == false) {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }

    /// Save a PNG of the viewport under `target/screenshots/`, print its path and check its
    /// size.
    async fn screenshot(&self, name: &str, size: (u32, u32)) -> PathBuf {
        use base64::Engine as _;
        let v = self.session_call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("screenshot decodes");
        assert_eq!(&png[1..4], b"PNG", "not a PNG");
        let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert_eq!((w, h), size, "{name}: screenshot size");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, &png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Errors the page logged (script errors, refused requests, content-policy violations).
    async fn console_errors(&self) -> Vec<Value> {
        let v = self
            .session_call("POST", "/se/log", json!({"type": "browser"}))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn quit(self) {
        self.session_call("DELETE", "", Value::Null).await;
    }
}

/// The shipped rules (linked, not copied) with a two-account matrix on the fake platform:
/// 海淀发布 (Weibo, registered) leads, 北京发布 (Weibo, a token the platform does not know)
/// amplifies and fails.
fn rules_with_matrix(dir: &Path, base: &str, hd_env: &str, bj_env: &str) {
    let shipped = util::rules_dir();
    std::fs::create_dir_all(dir.join("matrix")).expect("mkdir matrix");
    for e in std::fs::read_dir(&shipped).expect("rules dir") {
        let name = e.expect("dir entry").file_name();
        if name != "matrix" {
            std::os::unix::fs::symlink(shipped.join(&name), dir.join(&name)).expect("symlink");
        }
    }
    let account = |id: &str, name: &str, handle: &str, region: &str, level: &str, env: &str| {
        format!(
            "[[account]]\nid = \"{id}\"\nname = \"{name}\"\nplatform = \"weibo\"\nhandle = \"{handle}\"\nregion = \"{region}\"\nlevel = \"{level}\"\nfunction = \"publicity\"\nprofile = \"w-test\"\ntoken_env = \"{env}\"\nendpoint = \"{base}\"\n\n"
        )
    };
    let m = format!(
        "[matrix]\ndefault_region = \"110000\"\n\n[[profile]]\nid = \"w-test\"\nplatform = \"weibo\"\nposts_per_hour = 1000\ncomments_per_hour = 1000\nreposts_per_hour = 1000\n\n[[link]]\ncategory = \"*\"\nfunctions = []\n\n{}{}",
        account("hd-publicity", "海淀发布", "hd_release", "110108", "district", hd_env),
        account("bj-publicity", "北京发布", "bj_release", "110000", "province", bj_env),
    );
    std::fs::write(dir.join("matrix/matrix.toml"), m).expect("write matrix");
}

/// An engine on port 0 with the respond stage on: the matrix of [`rules_with_matrix`] on a fake
/// platform, drafts from severity 1, operators alice and bob.
pub(crate) struct RespondEngine {
    pub svc: huiying::app::Service,
    pub fake: crate::fake_platform::FakeHandle,
    /// alice's and bob's bearer tokens.
    pub operators: [String; 2],
    /// A `viewer` token (what a wall screen is given).
    pub viewer: String,
    _dir: tempfile::TempDir,
}

impl RespondEngine {
    /// Start it, with `feeds` configured.
    pub async fn start(feeds: Vec<huiying::feeds::FeedConfig>) -> RespondEngine {
        let tag = format!("{}_{}", std::process::id(), now_ms());
        let env: Vec<String> = ["HD", "BJ", "ALICE", "BOB"]
            .iter()
            .map(|k| format!("HUIYING_TEST_WALL_{k}_{tag}"))
            .collect();
        for v in &env {
            std::env::set_var(v, format!("tok-{v}"));
        }
        let tok = |i: usize| format!("tok-{}", env[i]);
        let (_, fake) = FakePlatform::start().await;
        // Only the lead's token is known to the platform: the amplifier's posts are refused.
        fake.add_account(&tok(0), "hd_release");
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules");
        rules_with_matrix(&rules, &fake.base_url(), &env[0], &env[1]);
        let mut config = Config {
            feeds,
            ..util::respond_config(
                rules,
                dir.path().join("data"),
                &[("alice", &env[2]), ("bob", &env[3])],
            )
        };
        let viewer = format!("hy_wall_viewer_{tag}");
        config.auth.tokens.push(TokenEntry {
            name: "wall-screen".into(),
            role: Role::Viewer,
            sha256: token_hash(&viewer),
            owner: None,
        });
        let svc = start_service(config, Arc::new(MemoryStore::default())).await;
        RespondEngine {
            svc,
            fake,
            operators: [tok(2), tok(3)],
            viewer,
            _dir: dir,
        }
    }

    /// Both operators approve notice `id` (the second one is refused with 409 when one
    /// approval was enough).
    pub async fn approve(&self, id: &str) {
        for t in &self.operators {
            let (status, v) =
                post_as(self.svc.addr, &format!("/api/notices/{id}/approve"), t).await;
            assert!(status == 200 || status == 409, "{status}: {v}");
        }
    }
}

/// POST `n` mentions of `text` by distinct authors (ids `{prefix}-{i}`), stamped now.
pub(crate) async fn post_burst(addr: std::net::SocketAddr, prefix: &str, n: usize, text: &str) {
    let body = serde_json::to_vec(&crate::service::burst(prefix, n, text)).expect("mentions JSON");
    let (status, reply) = http(addr, "POST", "/api/mentions", &body).await;
    assert_eq!(status, 202, "{reply}");
}

/// The shipped rules, respond stage off.
fn plain_config() -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules: util::rules_dir(),
        respond: RespondConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// POST with a bearer token.
async fn post_as(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let r = within(
        path,
        reqwest::Client::new()
            .post(format!("http://{addr}{path}"))
            .bearer_auth(token)
            .json(&serde_json::json!({"version": 0}))
            .send(),
    )
    .await
    .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wall_shows_a_flood_its_province_and_its_fan_out_live() {
    // A connected upstream feed (it sends nothing) for the feeds panel.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("feed listener");
    let upstream = crate::service::feed("weibo-mentions", listener.local_addr().expect("addr"));
    let (upstream_task, _) = crate::service::fake_feed(listener, Vec::new());
    let eng = RespondEngine::start(vec![upstream]).await;
    let addr = eng.svc.addr;
    let browser = Browser::start().await;

    // Without a credential the page loads (it holds no data) and says that a login is needed.
    browser.open(&format!("http://{addr}/wall")).await;
    browser
        .wait_for(
            "the login-needed badge",
            "return document.body.dataset.auth === 'refused' && getComputedStyle(document.getElementById('auth')).display !== 'none'",
        )
        .await;
    let refused = browser.console_errors().await;
    assert!(
        refused.iter().all(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("401") || m.contains("Authentication failed"))),
        "only the refused reads: {refused:#?}"
    );

    // With a viewer token in the fragment: kept for the tab, out of the address bar, and the
    // page is up and live (a `stats` message arrived) before anything happens.
    browser
        .open(&format!("http://{addr}/wall#token={}", eng.viewer))
        .await;
    browser
        .wait_for(
            "the wall to go live",
            "return document.body.dataset.stream === 'live' && Number(document.body.dataset.stats) >= 1",
        )
        .await;
    // The refused page's retries may still be logged after it was replaced: only what the page
    // logs from now on counts against it.
    let live_at = browser
        .eval("return Date.now()")
        .await
        .as_f64()
        .expect("the page's clock");
    let empty = browser
        .eval("return document.querySelectorAll('#incidents li.inc').length")
        .await;
    assert_eq!(empty, 0, "no incident before the flood");
    let kept = browser
        .eval("return [sessionStorage.getItem('huiying.token'), location.hash, document.body.dataset.auth || '']")
        .await;
    assert_eq!(kept, json!([eng.viewer, "", ""]));
    let heading = browser
        .eval("return document.querySelector('#incidents-panel h2').textContent")
        .await;
    assert!(
        heading.as_str().is_some_and(|h| h.contains("活跃事件")),
        "Chinese by default: {heading}"
    );

    // The flood arrives over HTTP; the page learns of it over the stream.
    // When the card appears, by the page's own clock (the same machine's as ours).
    browser
        .eval(
            r#"window.floodSeenAt = null;
               new MutationObserver(() => {
                 if (!window.floodSeenAt && document.querySelector('#incidents li.inc[data-category="flood"]'))
                   window.floodSeenAt = Date.now();
               }).observe(document.getElementById('incidents'), {childList: true});
               return true;"#,
        )
        .await;
    let posted_at = now_ms();
    post_burst(addr, "wall", 8, FLOOD).await;
    post_burst(addr, "fire", 7, FIRE).await;
    post_burst(addr, "salt", 5, SALT).await;
    let card = browser
        .wait_for(
            "the flood card on the wall",
            r#"const li = document.querySelector('#incidents li.inc[data-category="flood"][data-region="110108"]');
               return li && {id: li.dataset.id, text: li.innerText, flash: li.classList.contains('new'),
                             severity: li.dataset.severity, authors: li.querySelector('.authors').textContent};"#,
        )
        .await;
    let seen_at = browser.eval("return window.floodSeenAt").await;
    println!(
        "flood on the wall {} ms after the POST",
        seen_at.as_i64().unwrap_or_default() - posted_at
    );
    let incidents = get_json(addr, "/api/incidents?category=flood").await;
    let inc = incidents["incidents"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["region"]["code"] == "110108"))
        .unwrap_or_else(|| panic!("the API has the flood: {incidents}"))
        .clone();
    assert_eq!(card["id"], inc["id"], "{card}");
    let text = card["text"].as_str().unwrap_or_default();
    assert!(text.contains("洪涝") && text.contains("海淀区"), "{card}");
    assert_eq!(card["flash"], true, "a new incident flashes: {card}");
    assert_eq!(card["severity"], inc["severity"].to_string(), "{card}");
    assert!(
        card["authors"].as_str().and_then(|a| a.parse::<u64>().ok()) >= Some(1),
        "{card}"
    );
    let tile = browser
        .eval(r#"const t = document.querySelector('#map .tile[data-code="110000"]');
                 return {cls: t.className, count: t.dataset.count, others: document.querySelectorAll('#map .tile.active').length,
                         tiles: document.querySelectorAll('#map .tile').length};"#)
        .await;
    assert_eq!(tile["tiles"], 34, "{tile}");
    assert!(
        tile["cls"].as_str().unwrap_or_default().contains("active"),
        "{tile}"
    );
    assert!(
        tile["count"].as_str().and_then(|c| c.parse::<u32>().ok()) >= Some(1),
        "{tile}"
    );

    // The draft shows on the fan-out board; two operators approve it.
    let notice = browser
        .wait_for(
            "the flood's draft on the fan-out board",
            &format!(
                r#"const n = document.querySelector('#fanout .notice[data-incident="{}"][data-state="draft"]');
                   return n && {{id: n.dataset.id, accounts: [...n.querySelectorAll('.job')].map(j => j.dataset.account)}};"#,
                inc["id"].as_str().expect("incident id")
            ),
        )
        .await;
    assert_eq!(
        notice["accounts"],
        json!(["hd-publicity", "bj-publicity"]),
        "{notice}"
    );
    let id = notice["id"].as_str().expect("notice id").to_string();
    eng.approve(&id).await;
    let board = browser
        .wait_for(
            "the fan-out: lead posted, amplifier failed",
            &format!(
                r#"const n = document.querySelector('#fanout .notice[data-id="{id}"]');
                   if (!n) return null;
                   const row = (a) => n.querySelector(`.job[data-account="${{a}}"]`);
                   const hd = row('hd-publicity'), bj = row('bj-publicity');
                   if (!hd || !bj || hd.dataset.state !== 'done' || bj.dataset.state !== 'failed') return null;
                   const a = hd.querySelector('a');
                   return {{link: a && a.href, hd: hd.innerText, bj: bj.innerText}};"#
            ),
        )
        .await;
    let posts = eng.fake.posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(
        board["link"],
        format!("https://m.weibo.cn/detail/{}", posts[0].id),
        "{board}"
    );
    assert!(
        board["hd"].as_str().unwrap_or_default().contains("已发布"),
        "{board}"
    );
    assert!(
        board["bj"].as_str().unwrap_or_default().contains("失败"),
        "{board}"
    );
    // Wait for the sparkline of the incident (a `stats` step after the flood) for the picture.
    browser
        .wait_for(
            "the incident's sparkline",
            "return document.querySelector('#incidents li.inc .spark polyline') !== null",
        )
        .await;
    let rumor = browser
        .wait_for(
            "the salt rumor in the rumor watch",
            r#"const r = [...document.querySelectorAll('#rumors .rumor')].find(r => r.innerText.includes('碘盐'));
               return r && {text: r.innerText, badge: r.querySelector('.badge').className};"#,
        )
        .await;
    let badge = rumor["badge"].as_str().unwrap_or_default();
    // Its rebuttal is known; a rebuttal notice is drafted for it (two operators needed).
    assert!(badge.contains("known") || badge.contains("wait"), "{rumor}");
    // Issue 16, item 5: the claim as people wrote it (not a string of keywords) and why it was
    // flagged, with its spread over time.
    let card = browser
        .wait_for(
            "the rumor card's claim, reasons and sparkline",
            r#"const r = [...document.querySelectorAll('#rumors .rumor')].find(r => r.innerText.includes('碘盐'));
               const why = r && r.querySelector('.why');
               return r && why && r.querySelector('.rumor-spark polyline') &&
                 {claim: r.querySelector('.claim').textContent, why: why.textContent};"#,
        )
        .await;
    assert!(
        card["claim"]
            .as_str()
            .unwrap_or_default()
            .starts_with("「吃碘盐能防辐射"),
        "{card}"
    );
    // Issue 16, item 4: the rumor card says who must act, for how long it has spread, and
    // links to the console page where they act.
    let act = browser
        .wait_for(
            "the rumor card's call to action",
            r#"const r = [...document.querySelectorAll('#rumors .rumor')].find(r => r.innerText.includes('碘盐'));
               const a = r && r.querySelector('.act-line a.act');
               return a && {line: r.querySelector('.act-line').textContent, href: a.getAttribute('href')};"#,
        )
        .await;
    assert!(
        act["line"].as_str().unwrap_or_default().contains("值班员"),
        "{act}"
    );
    let href = act["href"].as_str().unwrap_or_default();
    assert!(
        href.starts_with("/console#notice=n-") || href.starts_with("/console#incident="),
        "{act}"
    );
    let why = card["why"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("为何标记") && why.contains("与已辟谣说法相同"),
        "{card}"
    );
    // Issue 16, item 6: a card's counts are the ones that came with its rates, and its
    // posts-in-the-last-minute never exceed its posts.
    let snap = browser
        .wait_for(
            "a stats snapshot with the flood's counts",
            r#"const li = document.querySelector('#incidents li.inc[data-category="flood"]');
               const t = li && window.wallState && window.wallState.totals[li.dataset.id];
               return t && {totals: t, authors: Number(li.querySelector('.authors').textContent),
                            mentions: Number(li.querySelector('.mentions').textContent)};"#,
        )
        .await;
    assert_eq!(snap["totals"][1], snap["authors"], "{snap}");
    assert_eq!(snap["totals"][0], snap["mentions"], "{snap}");
    let rates = browser
        .eval(
            r#"return [...document.querySelectorAll('#rumors .rumor .counts')].map(c => c.textContent.match(/(\d+) 条 · (\d+) 条\/近1分钟/)).filter(Boolean).map(m => [Number(m[1]), Number(m[2])]);"#,
        )
        .await;
    for pair in rates.as_array().into_iter().flatten() {
        assert!(pair[1].as_u64() <= pair[0].as_u64(), "{rates}");
    }
    // Issue 16, item 10: the top incident's timeline strip, from detection on.
    let strip = browser
        .wait_for(
            "the timeline strip",
            r#"const t = document.getElementById('timeline');
               return t && !t.hidden && t.querySelector('.step[data-step="opened"].reached') &&
                 t.querySelector('.step[data-step="drafted"].reached') && t.innerText;"#,
        )
        .await;
    assert!(
        strip.as_str().unwrap_or_default().contains("首要事件进程"),
        "{strip}"
    );
    let feeds = browser
        .wait_for(
            "the upstream feed shown connected",
            r#"const f = document.querySelector('#feeds li[data-feed="weibo-mentions"]');
               return f && f.dataset.connected === 'true' && f.innerText;"#,
        )
        .await;
    assert!(
        feeds.as_str().unwrap_or_default().contains("已连接"),
        "{feeds}"
    );
    let ranked = browser
        .eval("return [...document.querySelectorAll('#incidents li.inc')].map(li => Number(li.dataset.severity))")
        .await;
    let sev: Vec<u64> = ranked
        .as_array()
        .expect("severities")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(sev.len() >= 3, "three incidents listed: {sev:?}");
    assert!(
        sev.windows(2).all(|w| w[0] >= w[1]),
        "ranked by severity: {sev:?}"
    );
    browser.screenshot("wall.png", (1920, 1080)).await;
    let errors: Vec<Value> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| e["timestamp"].as_f64().is_none_or(|t| t >= live_at))
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // English, by the address alone (the token stays with the tab).
    browser.open(&format!("http://{addr}/wall?lang=en")).await;
    let en = browser
        .wait_for(
            "the English wall with the flood",
            r#"const li = document.querySelector('#incidents li.inc[data-category="flood"]');
               return li && document.body.dataset.stream === 'live' &&
                 {lang: document.documentElement.lang, text: li.innerText,
                  heading: document.querySelector('#incidents-panel h2').textContent};"#,
        )
        .await;
    assert_eq!(en["lang"], "en", "{en}");
    assert!(
        en["heading"]
            .as_str()
            .unwrap_or_default()
            .contains("Active incidents"),
        "{en}"
    );
    assert!(
        en["text"].as_str().unwrap_or_default().contains("Flood"),
        "{en}"
    );
    // Issue 16, items 7 and 10: English names in English (Haidian District, Beijing — no
    // Chinese), the title not cut off, and province tiles whole (no "Heilong-jiang"), each
    // name inside its tile.
    let text = en["text"].as_str().unwrap_or_default();
    assert!(text.contains("Haidian District, Beijing"), "{en}");
    assert!(!text.contains("海淀"), "{en}");
    let tiles = browser
        .eval(
            r#"const names = [...document.querySelectorAll('#map .tile .name')];
               return {n: names.length,
                       hyphen: names.filter(n => n.textContent.includes('\u00ad')).map(n => n.textContent),
                       overflow: names.filter(n => n.scrollWidth > n.clientWidth + 1).map(n => n.textContent),
                       title: (() => { const t = document.querySelector('#incidents li.inc[data-category="flood"] .title');
                                       return t.scrollHeight <= t.clientHeight + 4 || [t.innerText, t.scrollHeight, t.clientHeight]; })()};"#,
        )
        .await;
    assert_eq!(tiles["n"], 34, "{tiles}");
    assert_eq!(tiles["hyphen"], json!([]), "{tiles}");
    assert_eq!(tiles["overflow"], json!([]), "{tiles}");
    assert_eq!(tiles["title"], true, "the English title fits: {tiles}");
    browser.screenshot("wall-en.png", (1920, 1080)).await;

    // A 4K screen: the same layout, everything twice as large.
    browser.viewport(3840, 2160).await;
    browser.open(&format!("http://{addr}/wall")).await;
    let rem = browser
        .wait_for(
            "the 4K wall with the flood",
            r#"return document.querySelector('#incidents li.inc[data-category="flood"]') &&
                 parseFloat(getComputedStyle(document.documentElement).fontSize);"#,
        )
        .await;
    assert!(
        rem.as_f64() > Some(30.0),
        "type scales with the screen: {rem}px"
    );
    browser.screenshot("wall-4k.png", (3840, 2160)).await;
    browser.open(&format!("http://{addr}/wall?lang=en")).await;
    browser
        .wait_for(
            "the English 4K wall with the flood",
            r#"return document.documentElement.lang === 'en' &&
                 document.querySelector('#incidents li.inc[data-category="flood"]') !== null;"#,
        )
        .await;
    browser.screenshot("wall-en-4k.png", (3840, 2160)).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // The engine goes away: the header turns red.
    stop(eng.svc).await;
    browser
        .wait_for(
            "the stale marker",
            "return document.body.dataset.stream === 'stale' && getComputedStyle(document.getElementById('stale')).display !== 'none' && document.getElementById('stale').textContent === 'STALE'",
        )
        .await;
    browser.screenshot("wall-stale.png", (3840, 2160)).await;
    browser.quit().await;
    upstream_task.abort();
}

#[tokio::test]
async fn the_wall_assets_are_served_from_the_binary() {
    let svc = start_service(plain_config(), Arc::new(MemoryStore::default())).await;
    for (path, needle) in [
        ("/wall", "<html lang=\"zh-CN\">"),
        ("/wall/wall.js", "/api/stream?stats=true"),
        ("/wall/wall.css", "--sev5"),
    ] {
        // No credential: the page and its assets hold no data.
        let a = util::request(svc.addr, "GET", path, &[], b"").await;
        let body = a.body.as_str();
        assert_eq!(a.status, 200, "{path}");
        assert!(body.contains(needle), "{path}: {needle} not in the body");
        assert!(
            a.header("content-security-policy")
                .is_some_and(|c| c.contains("connect-src 'self'")),
            "{path}: {:?}",
            a.headers
        );
        // Offline: nothing is loaded from another origin.
        for bad in ["http://", "https://cdn", "//cdn", "googleapis", "unpkg"] {
            assert!(
                !body.contains(&format!("src=\"{bad}")) && !body.contains(&format!("href=\"{bad}")),
                "{path} loads {bad}"
            );
        }
    }
    // The data is not public unless the wall is configured so.
    let a = util::request(svc.addr, "GET", "/api/wall/summary", &[], b"").await;
    assert_eq!(a.status, 401, "{}", a.body);
    let labels = get_json(svc.addr, "/api/wall/summary").await["labels"].clone();
    assert_eq!(labels["categories"]["flood"]["zh"], "洪涝", "{labels}");
    assert_eq!(labels["categories"]["flood"]["en"], "Flood", "{labels}");
    // The cartogram covers exactly the province-level regions of the shipped gazetteer.
    let tiles = get_json(svc.addr, "/wall/china-tiles.json").await;
    let mut codes: Vec<String> = tiles["tiles"]
        .as_array()
        .expect("tiles")
        .iter()
        .map(|t| t["code"].as_str().expect("code").to_string())
        .collect();
    codes.sort();
    let regions = std::fs::read_to_string(util::rules_dir().join("regions.toml")).expect("regions");
    let parsed: toml::Value = toml::from_str(&regions).expect("regions.toml parses");
    let mut provinces: Vec<String> = parsed
        .as_table()
        .and_then(|t| t.values().find_map(|v| v.as_array()))
        .expect("a region array")
        .iter()
        .filter(|r| r["level"].as_str() == Some("province"))
        .map(|r| r["code"].as_str().expect("code").to_string())
        .collect();
    provinces.sort();
    assert_eq!(codes, provinces);
    stop(svc).await;

    // `[auth] public_wall`: the wall's summary is open, nothing else is.
    let mut config = plain_config();
    config.auth.public_wall = true;
    let svc = start_service(config, Arc::new(MemoryStore::default())).await;
    for (path, want) in [
        ("/api/wall/summary", 200),
        ("/api/incidents", 401),
        ("/api/feeds", 401),
        ("/api/notices", 401),
        ("/api/accounts", 401),
        ("/api/audit", 401),
    ] {
        let a = util::request(svc.addr, "GET", path, &[], b"").await;
        assert_eq!(a.status, want, "{path}: {}", a.body);
    }
    stop(svc).await;
}

/// `?stats=true` clients get the latest `stats` message at once, and nothing else changes for
/// the others.
#[tokio::test]
async fn the_stream_sends_stats_only_to_clients_that_ask() {
    let svc = start_service(plain_config(), Arc::new(MemoryStore::default())).await;
    let mut ws = util::stream_with(svc.addr, "?stats=true").await;
    let v = util::next_event(&mut ws, "the first stats message", |v| {
        v["event"] == "stats"
    })
    .await;
    assert_eq!(v["step_ms"], huiying::api::wall::STEP_MS, "{v}");
    assert!(
        v["mentions_per_min"].is_array() && v["incidents"].is_object(),
        "{v}"
    );
    let mut plain = util::stream(svc.addr, false).await;
    post_burst(svc.addr, "ws", 6, FLOOD).await;
    // The plain client's first line is the incident, not a stats message.
    let first = util::next_event(&mut plain, "the first event", |_| true).await;
    assert_eq!(first["event"], "incident.opened", "{first}");
    // Within a step or two, the stats carry the flood's rate (its assignments, per minute) and
    // the accepted mentions.
    let id = first["incident"]["id"]
        .as_str()
        .expect("incident id")
        .to_string();
    let v = util::next_event(&mut ws, "stats with the flood's rate", |v| {
        v["event"] == "stats"
            && v["incidents"][&id]
                .as_array()
                .is_some_and(|h| h.iter().filter_map(Value::as_f64).sum::<f64>() > 0.0)
    })
    .await;
    let total: f64 = v["mentions_per_min"]
        .as_array()
        .expect("global history")
        .iter()
        .filter_map(Value::as_f64)
        .sum();
    assert!(total > 0.0, "{v}");
    stop(svc).await;
}

/// The fan-out panel never drops a notice silently: with more waiting notices than the wall
/// shows, the summary says how many there are and the panel says "+N more".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fan_out_panel_says_how_many_notices_it_does_not_show() {
    let eng = RespondEngine::start(Vec::new()).await;
    let addr = eng.svc.addr;
    for i in 0..6 {
        let draft = serde_json::json!({
            "kind": "emergency", "category": "fire", "severity": 3, "region": "110108",
            "text": format!("海淀区第{i}处火情已得到控制，请市民不要靠近。"),
        });
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/api/notices"))
            .bearer_auth(&eng.operators[0])
            .json(&draft)
            .send()
            .await
            .expect("draft");
        assert_eq!(r.status().as_u16(), 200);
    }
    let v: Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/wall/summary"))
        .bearer_auth(&eng.viewer)
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(v["notices"]["total"], 6, "{v}");
    assert_eq!(
        v["notices"]["current"].as_array().map(Vec::len),
        Some(4),
        "{v}"
    );
    huiying::install_tls();
    let wd = crate::console::Driver::start().await;
    wd.set_viewport(1920, 1080).await;
    wd.goto(&format!("http://{addr}/wall#token={}", eng.viewer))
        .await;
    let more = wd
        .wait_for("the +N more line", "#fanout-more", |t| t.contains("另有"))
        .await;
    let text = wd.text(&more).await;
    let n: usize = text
        .trim_start_matches("另有 ")
        .split(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let shown = wd.find_all("#fanout .notice").await.len();
    assert_eq!(n + shown, 6, "{text}, {shown} shown");
    // Each waiting draft says who must act, how long it has waited, and links to its page.
    let line = wd
        .wait_for(
            "a draft's call to action",
            "#fanout .notice .approvals",
            |t| t.contains("审批 0/1") && t.contains("刚提交") && t.contains("值班员审批"),
        )
        .await;
    assert!(!line.is_empty());
    let links = wd.find_all("#fanout .notice a.act").await;
    assert_eq!(links.len(), shown);
    let href = wd
        .cmd(
            reqwest::Method::GET,
            &format!("/element/{}/attribute/href", links[0]),
            None,
        )
        .await;
    let href = href.as_str().expect("href").to_string();
    // (`console::an_operator_logs_in_approves…` follows such a link into the console.)
    assert!(href.contains("/console#notice=n-"), "{href}");
    wd.quit().await;
    stop(eng.svc).await;
}
