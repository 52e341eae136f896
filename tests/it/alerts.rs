//! Alerting the people on duty (issue 16): a severe flood in 海淀区 and its draft left waiting
//! become messages to a WeCom, a DingTalk and a Feishu group bot — local fakes that check each
//! bot's signing scheme and limit (20 a minute) and answer as the real ones do — exactly once
//! each, with the console link; the console's `GET /api/alerts` lists them for browser
//! notifications, and a bot whose secret is wrong gets nothing through (its job fails `auth`).

use crate::util::{self, get_json, http, mention, now_ms, stop, within};
use axum::extract::{Query, State};
use axum::routing::post;
use axum::Json;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake bots received: (bot, text), and how many each refused.
#[derive(Default)]
struct Received {
    messages: Vec<(String, String)>,
    refused: HashMap<String, u32>,
    /// Accepted per bot in the current minute (the fakes' limit).
    minute: HashMap<String, (i64, u32)>,
}

#[derive(Clone)]
struct Bots {
    got: Arc<Mutex<Received>>,
    dingtalk_secret: String,
    feishu_secret: String,
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("key");
    m.update(msg);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

impl Bots {
    /// Count one accepted message against the bot's 20-a-minute limit; false when over it.
    fn within_limit(&self, bot: &str) -> bool {
        let mut g = self.got.lock().expect("lock");
        let minute = now_ms() / 60_000;
        let e = g.minute.entry(bot.to_string()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= 20
    }

    fn keep(&self, bot: &str, text: &str) {
        self.got
            .lock()
            .expect("lock")
            .messages
            .push((bot.to_string(), text.to_string()));
    }

    fn refuse(&self, bot: &str) {
        *self
            .got
            .lock()
            .expect("lock")
            .refused
            .entry(bot.to_string())
            .or_default() += 1;
    }
}

/// WeCom: `?key=` must be the bot's key; `{"msgtype":"markdown","markdown":{"content"}}`.
async fn wecom(
    State(b): State<Bots>,
    Query(q): Query<HashMap<String, String>>,
    Json(v): Json<Value>,
) -> Json<Value> {
    if q.get("key").map(String::as_str) != Some("wecom-key") {
        b.refuse("wecom");
        return Json(json!({"errcode": 93000, "errmsg": "invalid webhook url"}));
    }
    let Some(text) = v["markdown"]["content"]
        .as_str()
        .filter(|_| v["msgtype"] == "markdown")
    else {
        return Json(json!({"errcode": 40008, "errmsg": "invalid message type"}));
    };
    if !b.within_limit("wecom") {
        return Json(json!({"errcode": 45009, "errmsg": "api freq out of limit"}));
    }
    b.keep("wecom", text);
    Json(json!({"errcode": 0, "errmsg": "ok"}))
}

/// DingTalk: `timestamp` (ms, within an hour) and `sign` = Base64(HMAC-SHA256(secret,
/// "ts\nsecret")) in the query (URL-decoded by the framework).
async fn dingtalk(
    State(b): State<Bots>,
    Query(q): Query<HashMap<String, String>>,
    Json(v): Json<Value>,
) -> Json<Value> {
    let ts = q.get("timestamp").and_then(|t| t.parse::<i64>().ok());
    let ok = ts.is_some_and(|ts| {
        (now_ms() - ts).abs() < 3_600_000
            && q.get("sign").map(String::as_str)
                == Some(
                    hmac_b64(
                        b.dingtalk_secret.as_bytes(),
                        format!("{ts}\n{}", b.dingtalk_secret).as_bytes(),
                    )
                    .as_str(),
                )
    });
    if !ok || q.get("access_token").map(String::as_str) != Some("ding-token") {
        b.refuse("dingtalk");
        return Json(json!({"errcode": 310000, "errmsg": "sign not match"}));
    }
    let Some(text) = v["markdown"]["text"].as_str() else {
        return Json(json!({"errcode": 40035, "errmsg": "missing markdown"}));
    };
    assert!(
        v["markdown"]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    if !b.within_limit("dingtalk") {
        return Json(json!({"errcode": 130101, "errmsg": "send too fast"}));
    }
    b.keep("dingtalk", text);
    Json(json!({"errcode": 0, "errmsg": "ok"}))
}

/// Feishu: `timestamp` (s) and `sign` = Base64(HMAC-SHA256(key "ts\nsecret", "")) in the body.
async fn feishu(State(b): State<Bots>, Json(v): Json<Value>) -> Json<Value> {
    let ts = v["timestamp"].as_str().and_then(|t| t.parse::<i64>().ok());
    let ok = ts.is_some_and(|ts| {
        (now_ms() / 1000 - ts).abs() < 3_600
            && v["sign"].as_str()
                == Some(hmac_b64(format!("{ts}\n{}", b.feishu_secret).as_bytes(), b"").as_str())
    });
    if !ok {
        b.refuse("feishu");
        return Json(
            json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}),
        );
    }
    let Some(text) = v["content"]["text"]
        .as_str()
        .filter(|_| v["msg_type"] == "text")
    else {
        return Json(json!({"code": 9499, "msg": "Bad Request"}));
    };
    if !b.within_limit("feishu") {
        return Json(json!({"code": 11232, "msg": "frequency limited"}));
    }
    b.keep("feishu", text);
    Json(json!({"code": 0, "msg": "success", "data": {}}))
}

async fn fake_bots(b: Bots) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/cgi-bin/webhook/send", post(wecom))
        .route("/robot/send", post(dingtalk))
        .route("/open-apis/bot/v2/hook/h1", post(feishu))
        .route("/open-apis/bot/v2/hook/wrong", post(feishu))
        .with_state(b);
    util::serve_at(app).await
}

const DUTY_PW: &str = "duty-officer-pw-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_severe_incident_and_a_waiting_draft_alert_the_duty_bots_once_each() {
    let bots = Bots {
        got: Arc::default(),
        dingtalk_secret: "SECd1ng".into(),
        feishu_secret: "fs-secret".into(),
    };
    let baddr = fake_bots(bots.clone()).await;
    let tag = format!("{}_{}", std::process::id(), now_ms());
    let var = |k: &str| format!("HUIYING_TEST_ALERT_{k}_{tag}");
    let vars = [
        (
            var("WECOM"),
            format!("http://{baddr}/cgi-bin/webhook/send?key=wecom-key"),
        ),
        (
            var("DING"),
            format!("http://{baddr}/robot/send?access_token=ding-token"),
        ),
        (var("DING_SECRET"), "SECd1ng".to_string()),
        (
            var("FS"),
            format!("http://{baddr}/open-apis/bot/v2/hook/h1"),
        ),
        (var("FS_SECRET"), "fs-secret".to_string()),
        (
            var("BAD"),
            format!("http://{baddr}/open-apis/bot/v2/hook/wrong"),
        ),
        (var("BAD_SECRET"), "not-the-secret".to_string()),
    ];
    for (k, v) in &vars {
        std::env::set_var(k, v);
    }
    let bots_toml = format!(
        r#"
[[bots]]
id = "duty-wecom"
kind = "wecom"
url_env = "{w}"

[[bots]]
id = "duty-ding"
kind = "dingtalk"
url_env = "{d}"
secret_env = "{ds}"

[[bots]]
id = "duty-feishu"
kind = "feishu"
url_env = "{f}"
secret_env = "{fs}"

[[bots]]
id = "wrong-secret"
kind = "feishu"
url_env = "{b}"
secret_env = "{bs}"
"#,
        w = vars[0].0,
        d = vars[1].0,
        ds = vars[2].0,
        f = vars[3].0,
        fs = vars[4].0,
        b = vars[5].0,
        bs = vars[6].0,
    );
    #[derive(serde::Deserialize)]
    struct B {
        bots: Vec<huiying::respond::BotConfig>,
    }
    let parsed: B = toml::from_str(&bots_toml).expect("bots parse");
    let alerts: huiying::alerts::AlertsConfig = toml::from_str(
        r#"
console_url = "https://duty.example.gov.cn/"
notice_wait_minutes = 0

[[rule]]
min_severity = 3
regions = ["110000"]
kinds = ["emergency"]
to = ["duty-wecom", "duty-ding", "duty-feishu", "wrong-secret", "mail:duty@office.example"]

[[rule]]
min_severity = 5
regions = ["330000"]
to = ["duty-wecom"]
"#,
    )
    .expect("alerts parse");
    // A duty officer with the console open (browser notifications allowed).
    let users_dir = tempfile::tempdir().expect("tempdir");
    let users = users_dir.path().join("users.toml");
    let mut f = huiying::api::auth::UsersFile::default();
    f.set_user("duty", huiying::api::auth::Role::Operator, DUTY_PW)
        .expect("user");
    f.save(&users).expect("save users");
    let smtp = crate::email::Receiver::start().await;
    let smtp_port = smtp.port;
    let (_env, _fake, _dir, svc) = crate::respond::started_with(move |c| {
        c.respond.smtp = Some(huiying::respond::SmtpConfig {
            url: format!("smtp://127.0.0.1:{smtp_port}"),
            from: "huiying@office.example".into(),
            credentials_env: None,
            per_hour: 600,
            timeout_secs: 5,
        });
        c.respond.bots = parsed.bots;
        c.alerts = alerts;
        c.auth.users_file = Some(users);
    })
    .await;
    let addr = svc.addr;
    huiying::install_tls();
    let wd = crate::console::Driver::start().await;
    wd.log_in(addr, "duty", DUTY_PW, "operator").await;
    wd.cmd(
        reqwest::Method::POST,
        "/execute/sync",
        Some(json!({"script": r#"window.__notes = [];
            window.Notification = function (title, o) { window.__notes.push([title, o.body, o.tag]); };
            window.Notification.permission = "granted";
            window.Notification.requestPermission = () => Promise.resolve("granted");
            return true;"#, "args": []})),
    )
    .await;

    let ts = now_ms();
    let ms: Vec<Value> = (0..8)
        .map(|i| {
            mention(
                &format!("al-{i}"),
                &format!("al-author-{i}"),
                crate::respond::FLOOD_TEXT,
                ts,
            )
        })
        .collect();
    let (status, body) = http(
        addr,
        "POST",
        "/api/mentions",
        &serde_json::to_vec(&ms).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    // Each bot gets the incident alert and the waiting-draft alert, once each.
    let got = within("the alerts at the three bots", async {
        loop {
            let g = bots.got.lock().expect("lock").messages.clone();
            let per = |bot: &str| g.iter().filter(|(b, _)| b == bot).count();
            if ["wecom", "dingtalk", "feishu"].iter().all(|b| per(b) >= 2) {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for bot in ["wecom", "dingtalk", "feishu"] {
        let mine: Vec<&String> = got
            .iter()
            .filter(|(b, _)| b == bot)
            .map(|(_, t)| t)
            .collect();
        let incident = mine.iter().filter(|t| t.contains("#incident=")).count();
        let waiting = mine.iter().filter(|t| t.contains("#notice=")).count();
        assert_eq!((incident, waiting), (1, 1), "{bot}: {mine:#?}");
        let inc = mine
            .iter()
            .find(|t| t.contains("#incident="))
            .expect("incident alert");
        assert!(inc.starts_with("【回应提醒】"), "{inc}");
        assert!(
            inc.contains("海淀区") && inc.contains("Haidian District, Beijing"),
            "{inc}"
        );
        assert!(
            inc.contains("https://duty.example.gov.cn/console#incident="),
            "{inc}"
        );
        let wait = mine
            .iter()
            .find(|t| t.contains("#notice="))
            .expect("waiting alert");
        assert!(
            wait.contains("通告待审批") && wait.contains("waiting"),
            "{wait}"
        );
    }
    // The console: a banner with the link, a browser notification and a tone, once per alert.
    let banner = wd
        .wait_for("the alert banner", "#alert-banner", |t| {
            t.contains("值班提醒")
        })
        .await;
    assert!(!wd.text(&banner).await.is_empty());
    let notes = within("the browser notifications", async {
        loop {
            let v = wd
                .cmd(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({"script": "return [window.__notes, Number(document.body.dataset.beeps || 0)];", "args": []})),
                )
                .await;
            if v[0].as_array().is_some_and(|a| a.len() >= 2) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let list = notes[0].as_array().cloned().unwrap_or_default();
    let tags: std::collections::HashSet<&str> = list.iter().filter_map(|n| n[2].as_str()).collect();
    assert_eq!(
        tags.len(),
        list.len(),
        "one notification per alert: {notes}"
    );
    assert!(
        list.iter()
            .any(|n| n[1].as_str().unwrap_or("").contains("海淀区")),
        "{notes}"
    );
    assert!(notes[1].as_u64() >= Some(1), "a tone: {notes}");
    let shot = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots/console-alert.png");
    wd.screenshot(&shot).await;
    wd.quit().await;
    // And by e-mail, once per alert, the first line the subject.
    let mails = within("the alert e-mails", async {
        loop {
            let m = smtp.received();
            if m.len() >= 2 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        mails
            .iter()
            .all(|m| m.to.len() == 1 && m.to[0].contains("duty@office.example")),
        "{mails:#?}"
    );
    assert!(
        mails.iter().any(|m| m.data.contains("console#incident"))
            && mails.iter().any(|m| m.data.contains("console#notice")),
        "{mails:#?}"
    );
    // The bot with the wrong secret was refused, and nothing reached it.
    assert!(
        bots.got
            .lock()
            .expect("lock")
            .refused
            .get("feishu")
            .copied()
            .unwrap_or(0)
            >= 1,
        "the wrong signature was refused"
    );
    // Only a signed-in viewer and up reads the alerts (they name incidents before any notice).
    let anon = reqwest::get(format!("http://{addr}/api/alerts"))
        .await
        .expect("GET");
    assert_eq!(anon.status().as_u16(), 401);
    // The console's list has both alerts; `since` narrows it.
    let v = get_json(addr, "/api/alerts").await;
    let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
    let triggers: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["trigger"].as_str())
        .collect();
    assert!(
        triggers.contains(&"incident") && triggers.contains(&"waiting"),
        "{v}"
    );
    let last = alerts
        .iter()
        .filter_map(|a| a["at"].as_i64())
        .max()
        .unwrap_or(0);
    let v = get_json(addr, &format!("/api/alerts?since={last}")).await;
    assert_eq!(v["alerts"].as_array().map(Vec::len), Some(0), "{v}");
    stop(svc).await;
    for (k, _) in &vars {
        std::env::remove_var(k);
    }
}

/// A rule naming a bot that is not configured stops the service at start, saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_rule_naming_an_unknown_bot_is_refused_at_start() {
    let alerts: huiying::alerts::AlertsConfig =
        toml::from_str("[[rule]]\nto = [\"nobody\"]\n").expect("parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = util::respond_config(util::rules_dir(), dir.path().join("data"), &[]);
    config.respond.drill_sink = Some(dir.path().join("sink.jsonl"));
    config.alerts = alerts;
    let err = huiying::app::start(huiying::app::ServiceOptions {
        config: util::with_test_auth(config),
        store: Arc::new(huiying::store::MemoryStore::default()),
        demo: false,
        auth_clock: None,
    })
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(
        err.contains("[[alerts.rule]] 1: to: unknown bot \"nobody\""),
        "{err}"
    );
}
