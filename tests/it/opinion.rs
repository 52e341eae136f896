//! Public-opinion reports: the engine's hourly figures of a fixture whose figures are known,
//! stored in a redb file (and again, as after a restart), the incidents and notices of the
//! period, and the report's figures, CSV and HTML from them; the API route's access and
//! refusals.

use super::util::analyzer_and_rules;
use huiying::incidents::hours::HOUR_MS;
use huiying::incidents::{Engine, Event, HourStats, Incident};
use huiying::normalize::parse_mention;
use huiying::opinion::{compute, report, Ask, CST_OFFSET_SECS};
use huiying::respond::notices::Notice;
use huiying::store::{EmbeddedStore, Store};
use serde_json::json;
use std::sync::Arc;

/// 2026-12-03 00:00 Beijing time (16:00 UTC the day before): an hour boundary.
const DAY: i64 = 1_796_227_200_000;

/// Everyday posts (no rule, no emergency): what the volume, terms and regions count.
fn fixture() -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    let mut n = 0;
    let mut post = |ts: i64, author: &str, text: &str, repost_of: Option<&str>| {
        n += 1;
        let mut m = json!({"id": format!("op-{n}"), "ts": ts, "author": author, "text": text});
        if let Some(p) = repost_of {
            m["repost_of"] = json!(p);
        }
        v.push(m);
    };
    // Hour 0: 20 posts naming 海淀区 about its new library, one original post reposted 12
    // times, 8 posts naming 成都.
    for i in 0..20 {
        post(
            DAY + i * 60_000,
            &format!("a{i}"),
            "海淀区新图书馆开放了，周末去看看",
            None,
        );
    }
    post(
        DAY + 1_500_000,
        "lib",
        "海淀区图书馆：周六起延长开放时间",
        None,
    );
    for i in 0..12 {
        post(
            DAY + 1_600_000 + i * 1_000,
            &format!("r{i}"),
            "转发微博//@lib:海淀区图书馆：周六起延长开放时间",
            Some("op-21"),
        );
    }
    for i in 0..8 {
        post(
            DAY + 2_000_000 + i * 1_000,
            &format!("c{i}"),
            "成都的火锅真好吃",
            None,
        );
    }
    // Hour 2 (hour 1 has nothing): 5 posts naming 成都.
    for i in 0..5 {
        post(
            DAY + 2 * HOUR_MS + i * 1_000,
            &format!("d{i}"),
            "成都的火锅真好吃",
            None,
        );
    }
    v
}

fn run(lines: &[serde_json::Value]) -> Vec<HourStats> {
    let (analyzer, rules) = analyzer_and_rules();
    let mut engine = Engine::new().emitting_hours();
    let mut events = Vec::new();
    for l in lines {
        let m = parse_mention(l.to_string().as_bytes()).expect("mention");
        let a = analyzer.analyze(rules, &m);
        engine.process(rules, &m, &a, &mut events);
    }
    engine.end_hour(&mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Hour(h) => Some((*h).clone()),
            _ => None,
        })
        .collect()
}

fn incident(v: serde_json::Value) -> Arc<Incident> {
    let base = json!({
        "first_seen": DAY, "updated_at": DAY, "mentions": 6, "authors": 5,
        "rate_per_min": 1.0, "baseline_per_min": 0.1, "severity": 3, "top_terms": [],
        "sample_mention_ids": [], "root_mention_id": null, "rebuttal": null, "state": "closed",
        "category": "rainstorm", "region": null,
    });
    let mut o = base.as_object().cloned().expect("object");
    for (k, x) in v.as_object().expect("object") {
        o.insert(k.clone(), x.clone());
    }
    Arc::new(serde_json::from_value(json!(o)).expect("an incident"))
}

fn notice(id: &str, incident_id: &str, state: &str, done_at: Option<i64>) -> Notice {
    let mut history = vec![json!({"at": DAY, "actor": "system", "action": "draft", "detail": ""})];
    if let Some(t) = done_at {
        history.push(
            json!({"at": t, "actor": "system", "action": "done", "detail": "1 job(s) finished"}),
        );
    }
    serde_json::from_value(json!({
        "id": id, "incident_id": incident_id, "kind": "rumor", "category": "other",
        "severity": 3, "region": {"code": "110108", "name": "海淀区"},
        "texts": {"hd": {"platform": "weibo", "lang": "zh", "text": "【辟谣】网传海淀区图书馆关闭不实"}},
        "plan": {"lead": "hd", "co_publishers": [], "amplifiers": []},
        "state": state, "approvals": [], "required_approvals": 2, "created_by": "system",
        "created_at": DAY, "updated_at": DAY, "rejection": null, "jobs": [], "history": history,
    }))
    .expect("a notice")
}

#[test]
fn the_report_of_a_fixture_has_the_fixtures_figures_and_survives_a_restart() {
    let (_, rules) = analyzer_and_rules();
    let lines = fixture();
    let hours = run(&lines);
    // Two hours with posts; the hour between has none and is not emitted.
    assert_eq!(
        hours
            .iter()
            .map(|h| (h.hour, h.mentions))
            .collect::<Vec<_>>(),
        [(DAY, 41), (DAY + 2 * HOUR_MS, 5)]
    );
    assert_eq!(hours[0].reposts, 12);
    assert_eq!(hours[0].spread[0].id, "op-21");
    assert_eq!(hours[0].spread[0].reposts, 12);
    assert_eq!(hours[0].spread[0].text, "海淀区图书馆：周六起延长开放时间");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    {
        let store = EmbeddedStore::open(&path).expect("redb");
        // The first hour stored in two parts, as when the service restarts within it.
        let (first, rest) = lines.split_at(30);
        for h in run(first).iter().chain(run(rest).iter()) {
            store.add_hour(h).expect("hour");
        }
        store
            .put_incidents(&[
                incident(
                    json!({"id": "em-hd", "kind": "emergency", "opened_at": DAY + 60_000,
                    "severity": 4, "region": {"code": "110108", "name": "海淀区"}}),
                ),
                incident(json!({"id": "ru-lib", "kind": "rumor", "category": "other",
                    "opened_at": DAY + 120_000, "authors": 30, "headline": "网传海淀区图书馆关闭",
                    "region": {"code": "110108", "name": "海淀区"}})),
                incident(
                    json!({"id": "ru-hotpot", "kind": "rumor", "category": "food_safety",
                    "opened_at": DAY + 180_000, "authors": 9, "headline": "网传火锅底料有毒",
                    "region": {"code": "510107", "name": "武侯区"}}),
                ),
                incident(
                    json!({"id": "em-merged", "kind": "emergency", "opened_at": DAY + 60_000,
                    "merged_into": "em-hd"}),
                ),
                // The day after: outside the period.
                incident(
                    json!({"id": "em-later", "kind": "emergency", "opened_at": DAY + 86_400_000}),
                ),
            ])
            .expect("incidents");
    }
    // Reopened: the figures come from the file.
    let store = EmbeddedStore::open(&path).expect("reopen");
    let notices = [
        notice("n-1", "ru-lib", "done", Some(DAY + 120_000 + 900_000)),
        notice("n-2", "ru-hotpot", "draft", None),
    ];
    let ask = |region: Option<&str>| Ask {
        from: DAY,
        to: DAY + 86_400_000,
        region: region.map(str::to_string),
        offset_secs: CST_OFFSET_SECS,
        generated_at: DAY + 86_400_000,
    };
    let o = compute(&store, &notices, &rules.gazetteer, &ask(None)).expect("report");
    assert_eq!(o.mentions, 46);
    assert_eq!(o.reposts, 12);
    assert_eq!((o.hours_covered, o.hours_total), (2, 24));
    assert_eq!(o.hourly[0], (DAY, 41));
    assert_eq!(o.hourly[1], (DAY + HOUR_MS, 0));
    assert_eq!(o.hourly[2], (DAY + 2 * HOUR_MS, 5));
    assert_eq!(o.daily, [("2026-12-03".to_string(), 46)]);
    assert_eq!(o.previous_mentions, 0);
    // Terms: 海淀 in 33 posts (20 + the original + 12 reposts), 火锅 in 13.
    let count = |t: &str| o.terms.iter().find(|r| r.term.contains(t)).map(|r| r.count);
    assert_eq!(count("海淀"), Some(33), "{:?}", o.terms);
    assert_eq!(count("火锅"), Some(13), "{:?}", o.terms);
    assert!(o
        .terms
        .iter()
        .all(|t| t.previous == 0 && t.change.is_none()));
    // Incidents: the merged one is its host, the later one is outside.
    assert_eq!(o.incidents.total, 3);
    assert_eq!(o.incidents.by_kind["emergency"], 1);
    assert_eq!(o.incidents.by_kind["rumor"], 2);
    assert_eq!(o.incidents.by_severity, [0, 0, 2, 1, 0]);
    // Rumors: most authors first, the rebutted one with its time to rebuttal.
    assert_eq!(o.rumors[0].id, "ru-lib");
    assert_eq!(o.rumors[0].rebuttal, "published");
    assert_eq!(o.rumors[0].time_to_rebuttal_secs, Some(900));
    assert_eq!(o.rumors[1].rebuttal, "drafted");
    assert_eq!(o.rumors[1].time_to_rebuttal_secs, None);
    // Regions, by province: 北京 (33 mentions, 2 incidents), 四川 (13, 1).
    let regions: Vec<(&str, u64, u64)> = o
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.mentions, r.incidents))
        .collect();
    assert_eq!(regions, [("北京市", 33, 2), ("四川省", 13, 1)]);
    assert_eq!(o.posts[0].id, "op-21");
    assert_eq!(o.notices.len(), 1);
    assert_eq!(o.notices[0].id, "n-1");

    // A region narrows volume, regions and incidents.
    let hd = compute(&store, &notices, &rules.gazetteer, &ask(Some("110000"))).expect("report");
    assert_eq!(hd.mentions, 33);
    assert_eq!(hd.incidents.total, 2);
    assert_eq!(hd.regions[0].name, "海淀区", "a municipality's districts");
    let cd = compute(&store, &notices, &rules.gazetteer, &ask(Some("510100"))).expect("report");
    assert_eq!(cd.mentions, 13);
    assert_eq!(cd.incidents.total, 1);
    assert_eq!(cd.regions[0].name, "武侯区");
    assert!(cd.notices.is_empty());

    // The next day compares with this one.
    let next = Ask {
        from: DAY + 86_400_000,
        to: DAY + 2 * 86_400_000,
        ..ask(None)
    };
    let o2 = compute(&store, &notices, &rules.gazetteer, &next).expect("report");
    assert_eq!((o2.mentions, o2.previous_mentions), (0, 46));

    let html = report::html(&o);
    for s in [
        "舆情报告",
        "Public-opinion report",
        "<svg",
        "网传海淀区图书馆关闭",
        "15 min",
        "北京市",
    ] {
        assert!(html.contains(s), "{s} missing from the HTML");
    }
    assert!(!html.contains("<script"), "no script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    let csv = report::csv(&o);
    assert!(csv.starts_with(report::CSV_HEADER));
    assert!(csv.contains("\ntotal,mentions,46,0\n"), "{csv}");
    assert!(csv.contains("\nday,2026-12-03,46,\n"), "{csv}");
}

fn huiying(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(args)
        .output()
        .expect("run huiying")
}

#[test]
fn a_replayed_archive_is_reported_on_from_the_command_line_and_bad_asks_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("day.jsonl");
    let text: String = fixture().iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).expect("write");
    let store = dir.path().join("r.redb");
    let (f, s) = (
        file.to_string_lossy().into_owned(),
        store.to_string_lossy().into_owned(),
    );
    let rules = super::util::rules_dir().to_string_lossy().into_owned();
    let out = huiying(&["replay", &f, "--rules", &rules, "--store", &s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (from, to) = (DAY.to_string(), (DAY + 86_400_000).to_string());
    let ask = |extra: &[&str]| {
        let mut a = vec![
            "report", "opinion", "--store", &s, "--rules", &rules, "--from", &from, "--to", &to,
        ];
        a.extend_from_slice(extra);
        huiying(&a)
    };
    let out = ask(&["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(o["mentions"], 46);
    assert_eq!(o["hours_covered"], 2);
    let out = ask(&["--format", "html", "--out", &dir.path().to_string_lossy()]);
    assert!(out.status.success());
    let written = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(written.ends_with(".html"), "{written}");
    assert!(std::fs::read_to_string(&written)
        .expect("the report")
        .contains("舆情报告"));

    for (extra, says) in [
        (&["--region", "abc"][..], "6-digit"),
        (&["--region", "999999"][..], "no such division"),
        (&["--format", "pdf"][..], "json, csv or html"),
    ] {
        let out = ask(extra);
        assert!(!out.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    // A mistyped store is named, not created.
    let typo = dir.path().join("typo.redb");
    let out = huiying(&[
        "report",
        "opinion",
        "--store",
        &typo.to_string_lossy(),
        "--rules",
        &rules,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at"));
    assert!(!typo.exists());
}

/// A webhook that refuses its first post (500) and takes the rest, keeping their bodies.
async fn webhook() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::routing::post;
    let got: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, c) = (got.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                g.lock().expect("lock").push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    (format!("{}/hook", super::util::serve(app).await), got)
}

#[tokio::test]
async fn the_daily_and_weekly_reports_are_written_once_and_posted_once_each() {
    use huiying::opinion::stage::{post_pending, scheduled, OpinionConfig, Reporter};
    let (_, rules) = analyzer_and_rules();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("s.redb")).expect("redb");
    for h in run(&fixture()) {
        store.add_hour(&h).expect("hour");
    }
    let shared: huiying::detect::reload::SharedRules =
        Arc::new(arc_swap::ArcSwap::new(rules.clone()));
    let rep = Reporter::new(Arc::new(store), shared, None);
    let out = dir.path().join("reports");
    let cfg = OpinionConfig::default();
    let hour = 3_600_000;
    // 2026-12-04 01:00 Beijing (a Friday): yesterday, 12-03, has the fixture's 46 posts; the
    // week before (11-23 to 11-30) has nothing stored, so no weekly report.
    let friday = DAY + 86_400_000 + hour;
    assert_eq!(
        scheduled(&rep, &out, friday, &cfg).expect("scheduled"),
        ["20261203"]
    );
    // Looked for again (every 5 minutes): written once.
    assert!(scheduled(&rep, &out, friday + 300_000, &cfg)
        .expect("again")
        .is_empty());
    // 2026-12-07 01:00 (a Monday): the week 11-30 to 12-07 holds 12-03; 12-06 had nothing.
    let monday = DAY + 4 * 86_400_000 + hour;
    assert_eq!(
        scheduled(&rep, &out, monday, &cfg).expect("monday"),
        ["week-20261130"]
    );
    let week: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("opinion-week-20261130.json")).expect("week json"),
    )
    .expect("json");
    assert_eq!(week["mentions"], 46);
    assert_eq!(
        week["to"].as_i64().unwrap_or(0) - week["from"].as_i64().unwrap_or(0),
        7 * 86_400_000
    );
    assert!(out.join("opinion-week-20261130.html").is_file());
    assert!(out.join("opinion-week-20261130.csv").is_file());
    // Switched off: nothing, not even on a Monday.
    let off = OpinionConfig {
        daily: false,
        weekly: false,
        ..OpinionConfig::default()
    };
    let other = dir.path().join("off");
    assert!(scheduled(&rep, &other, monday, &off)
        .expect("off")
        .is_empty());
    assert!(!other.exists());

    // Posted: the webhook refuses the first post, so the day waits for the next look.
    let (url, got) = webhook().await;
    let client =
        huiying::respond::publish::http_client(std::time::Duration::from_secs(5)).expect("client");
    assert_eq!(post_pending(&client, &url, &out).await, ["week-20261130"]);
    assert_eq!(post_pending(&client, &url, &out).await, ["20261203"]);
    assert!(post_pending(&client, &url, &out).await.is_empty());
    let bodies = got.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["period"], "week");
    assert!(bodies[0]["title"]
        .as_str()
        .is_some_and(|t| t.contains("舆情周报") && t.contains("20261130")));
    assert_eq!(bodies[1]["period"], "day");
    assert!(bodies[1]["title"]
        .as_str()
        .is_some_and(|t| t.contains("舆情日报")));
    for b in &bodies {
        assert_eq!(b["mentions"], 46);
        assert!(b["html"].as_str().is_some_and(|h| h.contains("<svg")));
    }
}
