//! Linkage beyond the platforms. CAP 1.2 alerts of emergency notices, validated by `xmllint`
//! against the schema written from the standard (`tests/data/cap/CAP-v1.2.xsd`): a first
//! notice, its update and its all-clear (references to the earlier alerts), and the notices
//! that are no alert. The Atom and RSS feeds of notices, read by a real feed parser (PyPI's
//! feedparser, in a virtual environment under the target directory).

use huiying::linkage::cap::{self, CapError, Sender};
use huiying::linkage::feed::{self, FeedMeta};
use huiying::respond::notices::Notice;
use huiying::respond::templates::Lang;
use serde_json::json;
use std::path::Path;

/// 2026-12-03 00:00 Beijing time.
const DAY: i64 = 1_796_227_200_000;

fn notice(id: &str, kind: &str, state: &str, purpose: &str, at: i64) -> Notice {
    serde_json::from_value(json!({
        "id": id, "incident_id": "em-hd-flood", "kind": kind, "category": "flood",
        "severity": 4,
        "region": {"code": "110108", "name": "海淀区", "name_en": "Haidian District, Beijing"},
        "texts": {
            "bjhd": {"platform": "weibo", "lang": "zh",
                     "text": "【暴雨积水提醒】海淀区多处路段积水<30cm>，请绕行。市民注意安全 & 减少外出。"},
            "bjhd_en": {"platform": "mastodon", "lang": "en",
                        "text": "Flooding in Haidian District: several roads under water. Avoid them."}
        },
        "plan": {"lead": "bjhd", "co_publishers": ["bjhd_en"], "amplifiers": []},
        "state": state, "approvals": [], "required_approvals": 2, "created_by": "system",
        "created_at": at, "updated_at": at + 60_000, "rejection": null, "jobs": [],
        "purpose": purpose,
        "history": [
            {"at": at, "actor": "system", "action": "draft", "detail": ""},
            {"at": at + 30_000, "actor": "system", "action": "enqueue", "detail": "2 job(s)"}
        ],
    }))
    .expect("a notice")
}

fn sender() -> Sender {
    Sender {
        id: "huiying@bjhd.gov.example".into(),
        name_zh: "北京海淀".into(),
        name_en: "Beijing Haidian".into(),
        status: "Actual",
    }
}

fn event(l: Lang) -> String {
    match l {
        Lang::Zh => "洪涝".into(),
        Lang::En => "Flood".into(),
    }
}

fn schema() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cap/CAP-v1.2.xsd")
}

/// `xmllint --schema` on `xml`: its verdict and what it said.
fn validate(xml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("alert.xml");
    std::fs::write(&f, xml).expect("write");
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(&f)
        .output()
        .expect("xmllint (Debian libxml2-utils; .ci/run installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_notice_its_update_and_its_all_clear_are_valid_cap_alerts() {
    let first = notice("n-0000000000000001", "emergency", "done", "notice", DAY);
    let update = notice(
        "n-0000000000000002",
        "emergency",
        "done",
        "update",
        DAY + 3_600_000,
    );
    let clear = notice(
        "n-0000000000000003",
        "emergency",
        "publishing",
        "all_clear",
        DAY + 7_200_000,
    );
    let a = cap::alert(&first, &[], &sender(), event).expect("alert");
    let (ok, why) = validate(&a);
    assert!(ok, "{why}\n{a}");
    assert!(a.contains("<msgType>Alert</msgType>"));
    assert!(a.contains("<sent>2026-12-03T00:00:30+08:00</sent>"), "{a}");
    assert!(a.contains("<language>zh-CN</language>") && a.contains("<language>en-US</language>"));
    assert!(a.find("zh-CN") < a.find("en-US"), "Chinese first");
    assert!(a.contains("<category>Met</category>"));
    assert!(
        a.contains("<urgency>Immediate</urgency>") && a.contains("<severity>Severe</severity>")
    );
    assert!(
        a.contains("<value>110108</value>")
            && a.contains("<areaDesc>Haidian District, Beijing</areaDesc>")
    );
    // The text's markup characters are escaped, not markup.
    assert!(
        a.contains("积水&lt;30cm&gt;") && a.contains("&amp; 减少外出"),
        "{a}"
    );
    assert!(!a.contains("<references>"));

    let u = cap::alert(&update, &[&first], &sender(), event).expect("update");
    let (ok, why) = validate(&u);
    assert!(ok, "{why}\n{u}");
    assert!(u.contains("<msgType>Update</msgType>"));
    assert!(u.contains(
        "<references>huiying@bjhd.gov.example,huiying-n-0000000000000001,2026-12-03T00:00:30+08:00</references>"
    ), "{u}");

    let c = cap::alert(&clear, &[&first, &update], &sender(), event).expect("all-clear");
    let (ok, why) = validate(&c);
    assert!(ok, "{why}\n{c}");
    assert!(
        c.contains("<msgType>Cancel</msgType>")
            && c.contains("<responseType>AllClear</responseType>")
    );
    assert!(c.contains("<urgency>Past</urgency>"));
    assert!(c.contains("huiying-n-0000000000000001,") && c.contains("huiying-n-0000000000000002,"));
}

#[test]
fn the_schema_check_is_real_and_some_notices_are_no_alert() {
    let first = notice("n-0000000000000001", "emergency", "done", "notice", DAY);
    let a = cap::alert(&first, &[], &sender(), event).expect("alert");
    // What the schema refuses (so a pass above means something): a status outside the list,
    // a time in UTC "Z", a missing event.
    for bad in [
        a.replace("<status>Actual</status>", "<status>Real</status>"),
        a.replace("+08:00</sent>", "Z</sent>"),
        a.replace("<event>Flood</event>", ""),
    ] {
        assert!(!validate(&bad).0, "{bad}");
    }
    let rebuttal = notice("n-r", "rumor", "done", "notice", DAY);
    assert_eq!(
        cap::alert(&rebuttal, &[], &sender(), event),
        Err(CapError::NotAnAlert("n-r".into()))
    );
    let draft = notice("n-d", "emergency", "draft", "notice", DAY);
    assert!(matches!(
        cap::alert(&draft, &[], &sender(), event),
        Err(CapError::NotPublished(_, "draft"))
    ));
    let mut s = sender();
    s.id = "duty office".into();
    assert!(matches!(
        cap::alert(&first, &[], &s, event),
        Err(CapError::BadSender(_))
    ));
}

#[test]
fn the_feeds_of_notices_read_in_a_real_feed_parser() {
    let first = notice("n-0000000000000001", "emergency", "done", "notice", DAY);
    let rebuttal = notice(
        "n-0000000000000009",
        "rumor",
        "done",
        "notice",
        DAY + 3_600_000,
    );
    // Newest first, as the route sorts them.
    let list = [&rebuttal, &first];
    let meta = FeedMeta {
        base: "https://portal.example/huiying".into(),
        self_path: "/feeds/notices.atom?region=110108".into(),
        name: "北京海淀 Beijing Haidian".into(),
        hubs: vec!["https://hub.example/".into()],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f.atom"), feed::atom(&list, &meta, DAY)).expect("atom");
    std::fs::write(dir.path().join("f.rss"), feed::rss(&list, &meta, DAY)).expect("rss");
    let py = super::util::python_venv("feeds-venv", "import feedparser", "feedparser==6.0.11");
    let script = r#"
import feedparser, json, sys
out = {}
for name in ("f.atom", "f.rss"):
    d = feedparser.parse(sys.argv[1] + "/" + name)
    out[name] = {
        "bozo": int(d.bozo), "version": d.version, "title": d.feed.get("title"),
        "feed_links": sorted([l.get("rel"), l.get("href")] for l in d.feed.get("links", [])),
        "entries": [{"id": e.get("id"), "title": e.get("title"),
                     "links": [[l.get("rel"), l.get("type"), l.get("href")] for l in e.get("links", [])],
                     "published": e.get("published_parsed") is not None,
                     "summary": e.get("summary", "")}
                    for e in d.entries],
    }
print(json.dumps(out, ensure_ascii=False))
"#;
    let out = std::process::Command::new(&py)
        .args(["-c", script])
        .arg(dir.path())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let atom = &v["f.atom"];
    assert_eq!(atom["bozo"], 0, "{atom}");
    assert_eq!(atom["version"], "atom10");
    let entries = atom["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], "urn:huiying:notice:n-0000000000000009");
    assert!(entries.iter().all(|e| e["published"] == true));
    // The emergency notice links its CAP alert; the rebuttal has none.
    let cap_links = |e: &serde_json::Value| {
        e["links"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .filter(|l| l[1] == "application/cap+xml")
                    .map(|l| l[2].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(cap_links(&entries[0]).is_empty());
    assert_eq!(
        cap_links(&entries[1]),
        ["https://portal.example/huiying/cap/n-0000000000000001.xml"]
    );
    // Chinese title first, markup in the text kept as text.
    assert!(entries[1]["title"]
        .as_str()
        .is_some_and(|t| t.starts_with("【暴雨积水提醒】")));
    assert!(entries[1]["summary"]
        .as_str()
        .is_some_and(|t| t.contains("<30cm>") && t.contains("Flooding in Haidian")));
    let rss = &v["f.rss"];
    assert_eq!(rss["bozo"], 0, "{rss}");
    assert_eq!(rss["version"], "rss20");
    // WebSub discovery: each feed names its hub and itself.
    // (Both were made with the Atom feed's meta here.)
    for f in [atom, rss] {
        let links = f["feed_links"].as_array().expect("feed links");
        let has = |rel: &str, href: &str| links.iter().any(|l| l[0] == rel && l[1] == href);
        assert!(has("hub", "https://hub.example/"), "{f}");
        assert!(
            has(
                "self",
                "https://portal.example/huiying/feeds/notices.atom?region=110108"
            ),
            "{f}"
        );
    }
    assert_eq!(rss["entries"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_cap_and_feeds_to_anyone_only_for_published_notices_with_etags() {
    use super::util::{self, request};
    let dir = tempfile::tempdir().expect("tempdir");
    let first = notice("n-00000000000000a1", "emergency", "done", "notice", DAY);
    let mut rebuttal = notice(
        "n-00000000000000a2",
        "rumor",
        "done",
        "notice",
        DAY + 60_000,
    );
    rebuttal.texts.retain(|k, _| k == "bjhd");
    if let Some(t) = rebuttal.texts.get_mut("bjhd") {
        t.text = "【辟谣】网传海淀区明天全区停水，不实。".into();
    }
    let draft = notice(
        "n-00000000000000a3",
        "emergency",
        "draft",
        "notice",
        DAY + 120_000,
    );
    {
        let store = huiying::respond::notices::NoticeStore::open(&dir.path().join("notices.redb"))
            .expect("notices");
        for n in [&first, &rebuttal, &draft] {
            store.put(n).expect("put");
        }
    }
    let cfg = util::respond_config(util::rules_dir(), dir.path().to_path_buf(), &[]);
    let svc = util::start_service(
        cfg,
        std::sync::Arc::new(huiying::store::MemoryStore::default()),
    )
    .await;
    let get = |path: String, headers: Vec<(&'static str, String)>| {
        let addr = svc.addr;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(addr, "GET", &path, &h, b"").await
        }
    };
    // Anonymous: notices are public once published; the draft never shows.
    let a = get("/feeds/notices.atom".into(), vec![]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/atom+xml")));
    assert!(a.body.contains(&first.id) && a.body.contains(&rebuttal.id));
    assert!(!a.body.contains(&draft.id));
    assert!(
        a.body.find(&rebuttal.id) < a.body.find(&first.id),
        "newest first"
    );
    let tag = a.header("etag").expect("etag").to_string();
    assert_eq!(a.header("cache-control"), Some("public, max-age=60"));
    let again = get(
        "/feeds/notices.atom".into(),
        vec![("If-None-Match", tag.clone())],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // Filters.
    let rumors = get("/feeds/notices.rss?kind=rumor".into(), vec![]).await;
    assert_eq!(rumors.status, 200);
    assert!(rumors.body.contains(&rebuttal.id) && !rumors.body.contains(&first.id));
    let beijing = get("/feeds/notices.atom?region=110000".into(), vec![]).await;
    assert!(beijing.body.contains(&first.id));
    let sichuan = get("/feeds/notices.atom?region=510000".into(), vec![]).await;
    assert!(!sichuan.body.contains("<entry>"), "{}", sichuan.body);
    assert_ne!(sichuan.header("etag"), Some(tag.as_str()));
    for bad in ["?kind=bogus", "?category=Bad!", "?region=11"] {
        let r = get(format!("/feeds/notices.atom{bad}"), vec![]).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    // The CAP alert of the published emergency notice, named by the rules' category names.
    let c = get(format!("/cap/{}.xml", first.id), vec![]).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/cap+xml")));
    let (ok, why) = validate(&c.body);
    assert!(ok, "{why}\n{}", c.body);
    assert!(c.body.contains("<event>洪涝</event>"), "{}", c.body);
    for id in [&draft.id, &rebuttal.id, &"n-nothing".to_string()] {
        assert_eq!(
            get(format!("/cap/{id}.xml"), vec![]).await.status,
            404,
            "{id}"
        );
    }
    assert_eq!(get(format!("/cap/{}", first.id), vec![]).await.status, 404);

    // The archive: a page, no script; searchable; the draft never shows.
    let page = get("/archive".into(), vec![]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(!page.body.to_lowercase().contains("<script"));
    // Its style is a file (the content security policy allows no inline style).
    assert!(!page.body.contains("<style") && page.body.contains("/archive/archive.css"));
    let css = get("/archive/archive.css".into(), vec![]).await;
    assert_eq!(css.status, 200);
    assert!(css
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/css")));
    let shows = |body: &str, n: &Notice| body.contains(&format!("<article id=\"{}\">", n.id));
    assert!(shows(&page.body, &first) && shows(&page.body, &rebuttal));
    assert!(!shows(&page.body, &draft));
    assert!(page.body.contains("积水&lt;30cm&gt;"), "escaped");
    assert!(page.body.contains("洪涝 Flood"), "the category by name");
    for (query, want_first, want_rebuttal) in [
        ("q=停水", false, true),
        ("q=FLOODING", true, false),
        ("q=%E7%A7%AF%E6%B0%B4", true, false),
        ("kind=rumor", false, true),
        ("region=110000&kind=emergency", true, false),
        ("from=2026-12-03&to=2026-12-03", true, true),
        ("from=2026-12-04", false, false),
        ("to=2026-12-02", false, false),
    ] {
        let r = get(format!("/archive?{query}"), vec![]).await;
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert_eq!(
            (shows(&r.body, &first), shows(&r.body, &rebuttal)),
            (want_first, want_rebuttal),
            "{query}"
        );
    }
    for (query, field) in [
        ("from=2026-13-01", "from"),
        ("kind=all", "kind"),
        ("region=abc", "region"),
        ("from=2026-12-05&to=2026-12-01", "from"),
    ] {
        let r = get(format!("/archive?{query}"), vec![]).await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.body.contains(field), "{query}: {}", r.body);
    }
    util::stop(svc).await;
}

#[test]
fn the_linkage_table_is_read_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huiying.toml");
    std::fs::write(
        &path,
        "[linkage]\nsender = \"bjhd@gov.example\"\nname_zh = \"北京海淀\"\nname_en = \"Beijing Haidian\"\nexercise = true\nbase_url = \"https://portal.example/huiying\"\n",
    )
    .expect("write");
    let c = huiying::config::Config::load(&path).expect("config loads");
    assert_eq!(c.linkage.sender, "bjhd@gov.example");
    assert!(c.linkage.exercise);
    assert_eq!(
        c.linkage.base_url.as_deref(),
        Some("https://portal.example/huiying")
    );
    std::fs::write(&path, "[linkage]\nsendr = \"x\"\n").expect("write");
    let e = huiying::config::Config::load(&path).expect_err("unknown key refused");
    assert!(e.to_string().contains("sendr"), "{e}");
}

fn push_cfg(toml_text: &str) -> Vec<huiying::linkage::push::PushConfig> {
    #[derive(serde::Deserialize)]
    struct T {
        push: Vec<huiying::linkage::push::PushConfig>,
    }
    toml::from_str::<T>(toml_text).expect("toml").push
}

#[test]
fn push_subscribers_are_checked_and_each_error_names_the_field() {
    use huiying::linkage::push::check;
    let env = |v: &str| match v {
        "HY_T_SECRET" => Some("s3cret".to_string()),
        "HY_T_URL" => Some("https://cms.example/in?token=abc".to_string()),
        _ => None,
    };
    let base = Some("https://portal.example/hy");
    let ok = push_cfg(
        r#"
[[push]]
id = "cms"
protocol = "webhook"
url_env = "HY_T_URL"
secret_env = "HY_T_SECRET"
region = "110100"
kind = "emergency"

[[push]]
id = "hub"
protocol = "websub"
url = "https://hub.example/"
"#,
    );
    let subs = check(&ok, base, env).expect("valid");
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].account, "push:cms");
    assert_eq!(subs[0].url, "https://cms.example/in?token=abc");
    assert_eq!(subs[0].secret.as_deref(), Some("s3cret"));
    // The secret and the URL's token stay out of logs.
    assert!(!format!("{:?}", subs[0]).contains("s3cret"));
    assert!(!format!("{:?}", subs[0]).contains("token=abc"));

    let bad = |text: &str, base: Option<&str>, want: &str| {
        let e = check(&push_cfg(text), base, env).expect_err(text);
        assert!(e.contains(want), "{e} (wanted {want:?})");
    };
    let hub = "[[push]]\nid = \"hub\"\nprotocol = \"websub\"\nurl = \"https://hub.example/\"\n";
    bad(hub, None, "base_url");
    bad(
        &hub.replace("\"hub\"\nprotocol", "\"Hub!\"\nprotocol"),
        base,
        "id",
    );
    bad(&format!("{hub}\n{hub}"), base, "used twice");
    bad(
        &hub.replace("https://hub.example/", "ftp://hub.example/"),
        base,
        "url",
    );
    bad(
        &hub.replace("https://hub.example/", "not a url"),
        base,
        "url",
    );
    bad(
        &format!("{hub}secret_env = \"HY_T_SECRET\"\n"),
        base,
        "secret_env",
    );
    bad(&format!("{hub}region = \"11\"\n"), base, "region");
    bad(&format!("{hub}kind = \"all\"\n"), base, "kind");
    bad(&format!("{hub}per_hour = 0\n"), base, "per_hour");
    bad(&format!("{hub}url_env = \"HY_T_URL\"\n"), base, "url");
    let hook = "[[push]]\nid = \"cms\"\nprotocol = \"webhook\"\nurl = \"https://cms.example/\"\n";
    bad(hook, base, "secret_env");
    bad(
        &format!("{hook}secret_env = \"HY_T_UNSET\"\n"),
        base,
        "HY_T_UNSET is not set",
    );
    bad(
        "[[push]]\nid = \"cms\"\nprotocol = \"webhook\"\nurl_env = \"HY_T_NONE\"\nsecret_env = \"HY_T_SECRET\"\n",
        base,
        "HY_T_NONE is not set",
    );
}

#[test]
fn a_published_notice_makes_one_push_per_subscriber_it_matches_once() {
    use huiying::linkage::push::{check, Origin, Pusher};
    use huiying::respond::outbox::{MemoryOutbox, OutboxStore};
    let env = |_: &str| Some("s3cret".to_string());
    let subs = check(
        &push_cfg(
            r#"
[[push]]
id = "haidian"
protocol = "webhook"
url = "https://cms.example/in"
secret_env = "S"
region = "110108"

[[push]]
id = "rumors"
protocol = "webhook"
url = "https://desk.example/in"
secret_env = "S"
kind = "rumor"

[[push]]
id = "hub"
protocol = "websub"
url = "https://hub.example/"
"#,
        ),
        Some("https://portal.example/hy"),
        env,
    )
    .expect("valid");
    let outbox: std::sync::Arc<dyn OutboxStore> = std::sync::Arc::new(MemoryOutbox::new());
    let p = Pusher::new(
        &subs,
        outbox.clone(),
        Origin {
            base: "https://portal.example/hy".into(),
            status: "Exercise",
        },
    );
    let n = notice(
        "n-0000000000000001",
        "emergency",
        "publishing",
        "notice",
        DAY,
    );
    let jobs = p.jobs(&n, "洪涝 Flood");
    let accounts: Vec<&str> = jobs.iter().map(|j| j.account_id.as_str()).collect();
    assert_eq!(
        accounts,
        ["push:haidian", "push:hub"],
        "the rumor desk takes rebuttals only"
    );
    let body: serde_json::Value = serde_json::from_str(&jobs[0].body).expect("payload");
    assert_eq!(body["id"], "n-0000000000000001");
    assert_eq!(body["status"], "Exercise");
    assert_eq!(body["category_name"], "洪涝 Flood");
    assert_eq!(body["sent"], "2026-12-03T00:00:30+08:00");
    assert_eq!(body["texts"][0]["lang"], "zh");
    assert_eq!(body["texts"][1]["lang"], "en");
    assert_eq!(
        body["links"]["cap"],
        "https://portal.example/hy/cap/n-0000000000000001.xml"
    );
    assert_eq!(
        jobs[1].body,
        "hub.mode=publish&hub.url=https%3A%2F%2Fportal.example%2Fhy%2Ffeeds%2Fnotices.atom\
         &hub.url=https%3A%2F%2Fportal.example%2Fhy%2Ffeeds%2Fnotices.rss"
    );
    // Enqueued twice (the hand-over and the look over recent notices): one job each.
    assert_eq!(p.enqueue(&n, "洪涝 Flood", DAY).expect("enqueue"), 2);
    assert_eq!(p.enqueue(&n, "洪涝 Flood", DAY + 1).expect("again"), 0);
    assert_eq!(outbox.jobs_for_notice(&n.id).expect("jobs").len(), 2);
    // A draft, a held or rejected notice is not pushed.
    for state in ["draft", "held", "approved", "rejected"] {
        let d = notice("n-0000000000000002", "emergency", state, "notice", DAY);
        assert!(p.jobs(&d, "洪涝 Flood").is_empty(), "{state}");
    }
    // A rebuttal in another district: the rumor desk and the hub.
    let mut r = notice("n-0000000000000003", "rumor", "done", "notice", DAY);
    r.region = None;
    let accounts: Vec<String> = p
        .jobs(&r, "谣言 Rumor")
        .into_iter()
        .map(|j| j.account_id)
        .collect();
    assert_eq!(accounts, ["push:rumors", "push:hub"]);
}
