//! 绩效评估 on a fixture whose figures are worked out by hand below (Beijing time; the shipped
//! calendar: complaints to the water department are answered within 2 working days, help
//! within 2 hours, accepted within 1 hour / 15 minutes; 2026-09-25 … 27 and 10-01 … 07 are
//! holidays, Saturday 10-10 a working day), on a memory, a redb and a Redis store, through the
//! command line and the API.

use crate::util::{rules_dir, shipped_matrix};
use huiying::cases::deadlines::Calendar;
use huiying::cases::model::{Case, CaseState, Channel, Requester, Satisfaction};
use huiying::cases::store::CaseStore;
use huiying::cases::Router;
use huiying::evaluation::weights::Weights;
use huiying::evaluation::{evaluate, period, Evaluation, Inputs, Subjects, Unit};
use serde_json::json;
use std::sync::Arc;

/// Unix ms of a Beijing local time.
fn bj(m: u32, d: u32, h: u32, mi: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(2026, m, d)
        .and_then(|x| x.and_hms_opt(h, mi, 0))
        .expect("a time")
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

/// A case received at `at` with `events` (action, time, detail) after it.
#[allow(clippy::too_many_arguments)]
fn case(
    id: &str,
    kind: &str,
    department: &str,
    at: i64,
    platform: bool,
    events: &[(&str, i64, &str)],
    state: CaseState,
    rating: Option<Satisfaction>,
) -> Case {
    let mut c = Case::receive(
        id,
        Requester {
            handle: format!("citizen-{id}"),
            mention_id: format!("m-{id}"),
            at,
            target: None,
        },
        "停水了",
        vec![kind.to_string()],
        Some(department.to_string()),
        1.0,
        Some("110108".into()),
    );
    for (action, t, detail) in events {
        c.record(*t, "someone", action, *detail);
    }
    if platform {
        c.channel = Channel::Platform {
            account: "bj-publicity".into(),
        };
    }
    c.state = state;
    c.satisfaction = rating;
    c
}

fn fixture() -> Vec<Case> {
    use CaseState::*;
    vec![
        // A: Thu 09-24 10:00, accepted 10:10 (600 s; due 11:00), answered Tue 09-29 16:00:
        // due 2 working days after 09-24 skipping the holiday 25–27 = Tue 09-29 17:30, on time;
        // 453,000 s from acceptance. Rated satisfied. To @北京发布.
        case(
            "A",
            "complaint",
            "water",
            bj(9, 24, 10, 0),
            true,
            &[
                ("accept", bj(9, 24, 10, 10), ""),
                ("assign", bj(9, 24, 10, 10), "water"),
                ("answer", bj(9, 29, 16, 0), ""),
                ("rate", bj(9, 30, 9, 0), "satisfied"),
            ],
            Answered,
            Some(Satisfaction::Satisfied),
        ),
        // B: Wed 09-30 15:00, accepted 16:30 (5,400 s; due 16:00: late), due 2 working days
        // after the National Day holiday = Fri 10-09 17:30, answered Sat 10-10 10:00: late;
        // 840,600 s. Rated dissatisfied, reopened.
        case(
            "B",
            "complaint",
            "water",
            bj(9, 30, 15, 0),
            false,
            &[
                ("accept", bj(9, 30, 16, 30), ""),
                ("assign", bj(9, 30, 16, 30), "water"),
                ("answer", bj(10, 10, 10, 0), ""),
                ("rate", bj(10, 10, 11, 0), "dissatisfied"),
                ("reopen", bj(10, 10, 11, 0), "不满意"),
            ],
            Assigned,
            Some(Satisfaction::Dissatisfied),
        ),
        // C: Fri 10-09 09:00, accepted 09:05 (300 s), due Sat 10-10 (a working day) + Mon 10-12
        // 17:30: open but not overdue at the period's end (10-12 00:00). To @北京发布.
        case(
            "C",
            "complaint",
            "water",
            bj(10, 9, 9, 0),
            true,
            &[
                ("accept", bj(10, 9, 9, 5), ""),
                ("assign", bj(10, 9, 9, 5), "water"),
            ],
            Assigned,
            None,
        ),
        // D: help on Sun 10-11 08:00, accepted 08:20 (1,200 s; due 08:15: late), answer due
        // 10:20, not answered: overdue by 13 h 40 min (49,200 s) at 10-12 00:00. To @北京发布.
        case(
            "D",
            "help",
            "water",
            bj(10, 11, 8, 0),
            true,
            &[
                ("accept", bj(10, 11, 8, 20), ""),
                ("assign", bj(10, 11, 8, 20), "water"),
            ],
            Assigned,
            None,
        ),
        // E: on the holiday Fri 09-25 11:00, accepted 11:20 (1,200 s), sent to housing, which
        // returned it on Mon 09-28; then water, due 2 working days from 09-25 11:20 = Tue 09-29
        // 17:30, answered 09-29 09:00: on time, 337,200 s.
        case(
            "E",
            "complaint",
            "water",
            bj(9, 25, 11, 0),
            false,
            &[
                ("accept", bj(9, 25, 11, 20), ""),
                ("assign", bj(9, 25, 11, 30), "housing"),
                ("return", bj(9, 28, 10, 0), "不归我们管"),
                ("assign", bj(9, 28, 11, 0), "water"),
                ("answer", bj(9, 29, 9, 0), ""),
            ],
            Answered,
            None,
        ),
        // F: the previous period (08-31 … 09-20): Thu 09-10 10:00, accepted 10:05, answered Fri
        // 09-11 10:00 (due Mon 09-14 17:30): everything on time.
        case(
            "F",
            "complaint",
            "water",
            bj(9, 10, 10, 0),
            false,
            &[
                ("accept", bj(9, 10, 10, 5), ""),
                ("assign", bj(9, 10, 10, 5), "water"),
                ("answer", bj(9, 11, 10, 0), ""),
            ],
            Answered,
            None,
        ),
    ]
}

struct Rules {
    router: Router,
    calendar: Calendar,
    weights: Weights,
}

fn rules() -> Rules {
    Rules {
        router: Router::load(&rules_dir()).expect("router"),
        calendar: Calendar::load(
            &rules_dir().join("cases/calendar.toml"),
            &huiying::cases::KINDS,
        )
        .expect("calendar"),
        weights: Weights::load(&rules_dir()).expect("weights"),
    }
}

fn run(cases: &[Case]) -> Evaluation {
    let r = rules();
    let now = bj(12, 1, 0, 0);
    let p = period(Some("2026-09-21"), Some("2026-10-11"), 8 * 3600, now).expect("period");
    assert_eq!((p.from, p.to), (bj(9, 21, 0, 0), bj(10, 12, 0, 0)));
    let subjects = Subjects::of(&r.router, Some(shipped_matrix()));
    let input = Inputs {
        cases,
        ..Inputs::default()
    };
    evaluate(input, &subjects, &r.calendar, &r.weights, p, now)
}

fn unit<'a>(units: &'a [Unit], id: &str) -> &'a Unit {
    units
        .iter()
        .find(|u| u.id == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

/// Every figure of the fixture, as worked out above.
fn check(e: &Evaluation) {
    let w = unit(&e.departments, "water");
    let s = &w.service;
    assert_eq!(
        (
            s.received,
            s.accepted,
            s.accepted_on_time,
            s.answered,
            s.answered_on_time,
            s.overdue,
            s.returned,
            s.reopened
        ),
        (5, 5, 3, 3, 2, 1, 0, 1),
        "{s:#?}"
    );
    assert_eq!(
        (s.ack_secs.median, s.ack_secs.p90, s.ack_secs.n),
        (Some(1200.0), Some(5400.0), 5)
    );
    assert_eq!(
        (s.answer_secs.median, s.answer_secs.p90, s.answer_secs.n),
        (Some(453_000.0), Some(840_600.0), 3)
    );
    assert_eq!(
        (
            w.approval.rated,
            w.approval.satisfied,
            w.approval.satisfaction_rate
        ),
        (2, 1, Some(0.5))
    );
    // 0.2·3/5 + 0.25·3/5 + 0.35·2/5 + 0.1·1 + 0.1·4/5 = 0.59.
    assert_eq!(w.scores.service, Some(59.0));
    assert_eq!(w.scores.approval, Some(50.0));
    assert_eq!(w.scores.interaction, None);
    assert_eq!(w.scores.reach, None);
    // (0.35·59 + 0.2·50) / 0.55 = 55.73.
    assert_eq!(w.scores.overall, Some(55.7));
    // The previous period: F alone, everything on time.
    assert_eq!(w.previous.service, Some(100.0));
    assert_eq!(w.previous.overall, Some(100.0));
    assert_eq!(w.trend, Some(-44.3));
    assert_eq!((w.rank, w.peers), (Some(1), 1));
    assert!(!w.silent);
    assert_eq!(w.worst_overdue.len(), 1);
    assert_eq!(
        (
            w.worst_overdue[0].id.as_str(),
            w.worst_overdue[0].due,
            w.worst_overdue[0].late_secs
        ),
        ("D", bj(10, 11, 10, 20), 49_200.0)
    );
    // Answer times by the weekday the request came in: B on a Wednesday, A a Thursday, E a
    // Friday (a holiday).
    let heat = e
        .heat
        .iter()
        .find(|h| h.department == "water")
        .expect("water's heat row");
    assert_eq!(
        heat.median_answer_secs,
        [
            None,
            None,
            Some(840_600.0),
            Some(453_000.0),
            Some(337_200.0),
            None,
            None
        ]
    );
    assert_eq!(e.heat.len(), 1, "only departments with requests");
    // Week by week, each as it stood at the week's end: A and E accepted on time, nothing
    // answered yet (0.2 + 0.1 + 0.1 = 40); B accepted late, not yet answered (20); C on time, D
    // late and overdue (0.2·½ + 0.2 = 30).
    let weekly: Vec<Option<f64>> = e.series.iter().map(|s| s.overall["water"]).collect();
    assert_eq!(weekly, [Some(40.0), Some(20.0), Some(30.0)]);
    assert_eq!(e.series[0].from, bj(9, 21, 0, 0));
    assert_eq!(e.series[2].to, bj(10, 12, 0, 0));
    // Housing received nothing but sent E back once.
    let h = unit(&e.departments, "housing");
    assert_eq!((h.service.received, h.service.returned), (0, 1));
    assert_eq!((h.scores.overall, h.rank), (None, None));

    // @北京发布: A, C, D addressed to it.
    let a = unit(&e.accounts, "bj-publicity");
    let s = &a.service;
    assert_eq!(
        (
            s.received,
            s.accepted_on_time,
            s.answered,
            s.answered_on_time,
            s.overdue
        ),
        (3, 2, 1, 1, 1)
    );
    let i = a.interaction.as_ref().expect("interaction");
    assert_eq!(
        (i.addressed, i.acknowledged, i.answered),
        (3, 3, 1),
        "{i:?}"
    );
    // 0.2·2/3 + 0.25·1/3 + 0.35·1/3 + 0.1 + 0.1 = 0.5333.
    assert_eq!(a.scores.service, Some(53.3));
    // 0.4·3/3 + 0.6·1/3 = 0.6.
    assert_eq!(a.scores.interaction, Some(60.0));
    assert_eq!(a.scores.approval, Some(100.0));
    // (0.35·53.3 + 0.2·60 + 0.2·100) / 0.75 = 67.54.
    assert_eq!(a.scores.overall, Some(67.5));
    // Answered 1 of 3 < 50 %: silent (聋哑).
    assert!(a.silent, "{a:#?}");
    assert!(
        a.silent_reason
            .as_deref()
            .is_some_and(|r| r.contains("1 of 3")),
        "{:?}",
        a.silent_reason
    );
}

#[test]
fn every_figure_is_the_one_worked_out_by_hand() {
    check(&run(&fixture()));
}

fn through(store: CaseStore) -> Evaluation {
    for c in fixture() {
        store.put(&c, &[]).expect("put");
    }
    run(&store.all().expect("all"))
}

#[test]
fn redb_and_redis_stores_give_the_same_figures() {
    let dir = tempfile::tempdir().expect("tmp");
    let redb = CaseStore::open(&dir.path().join("cases.redb")).expect("redb");
    let e = through(redb);
    check(&e);
    let url = crate::redis_server::require_shared();
    let client = redis::Client::open(url).expect("redis url");
    let redis = CaseStore::redis(
        Arc::new(huiying::respond::redis::Blocking::with_client(client)),
        &crate::redis_server::namespace("evaluation"),
    );
    let r = through(redis);
    check(&r);
    assert_eq!(
        serde_json::to_value(&e.departments).expect("json"),
        serde_json::to_value(&r.departments).expect("json")
    );
}

#[test]
fn the_command_writes_the_same_figures_as_csv_and_json_and_names_bad_arguments() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("cases.redb");
    {
        let store = CaseStore::open(&path).expect("redb");
        for c in fixture() {
            store.put(&c, &[]).expect("put");
        }
    }
    let bin = env!("CARGO_BIN_EXE_huiying");
    let out = dir.path().join("reports");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(["report", "evaluation", "--rules"])
            .arg(rules_dir())
            .args(["--store"])
            .arg(&path)
            .args(args)
            .output()
            .expect("run huiying")
    };
    let o = run(&[
        "--from",
        "2026-09-21",
        "--to",
        "2026-10-11",
        "--format",
        "csv",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("evaluation-20260921-20261011.csv")).expect("csv");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let water: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("department,water,"))
        .expect("water row")
        .split(',')
        .collect();
    let col = |name: &str| water[header.iter().position(|h| *h == name).expect(name)];
    assert_eq!(
        (
            col("received"),
            col("answered_on_time"),
            col("overdue"),
            col("service"),
            col("overall"),
            col("trend"),
            col("rank")
        ),
        ("5", "2", "1", "59", "55.7", "-44.3", "1")
    );
    let o = run(&[
        "--from",
        "2026-09-21",
        "--to",
        "2026-10-11",
        "--department",
        "water",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json on stdout");
    assert_eq!(v["departments"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        v["departments"][0]["service"]["answer_secs"]["median"],
        453_000.0
    );
    assert_eq!(v["accounts"], serde_json::json!([]));
    for (args, says) in [
        (&["--department", "waterworks"][..], "no such department"),
        (&["--from", "2026-13-01"][..], "not a date"),
        (
            &["--from", "2026-10-11", "--to", "2026-09-21"][..],
            "must be before",
        ),
        (&["--format", "pdf"][..], "json, csv or html"),
    ] {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// The HTML report: one self-contained file (no address outside it), the figures in its tables,
/// rendered by Chromium (the screenshot is `docs/evaluation-report.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_is_one_printable_file_chromium_renders() {
    let e = run(&fixture());
    let html = huiying::evaluation::report::html(&e);
    for external in ["http://", "https://", "src=", "<script", "@import"] {
        assert!(!html.contains(external), "{external} in the report");
    }
    for figure in [
        "水务局",
        "Water Authority",
        "55.7",
        "-44.3",
        "聋哑 silent: answered 1 of 3",
        "<svg",
        "2026-09-21 – 2026-10-11",
    ] {
        assert!(html.contains(figure), "{figure} not in the report");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("evaluation.html");
    std::fs::write(&path, &html).expect("write");
    huiying::install_tls();
    let wd = crate::console::Driver::start().await;
    wd.set_viewport(1200, 1500).await;
    wd.goto(&format!("file://{}", path.display())).await;
    let t = wd
        .wait_for("the ranking", "h2", |t| t.contains("部门排名"))
        .await;
    assert!(!t.is_empty());
    // The chart drew a bar per ranked department, and the heat map seven cells a row.
    assert_eq!(wd.find_all("svg[aria-label=ranking] rect").await.len(), 1);
    assert_eq!(
        wd.find_all("svg[aria-label='heat map'] rect").await.len(),
        7
    );
    let shot = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots/evaluation-report.png");
    wd.screenshot(&shot).await;
    wd.quit().await;
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 20_000);
}

/// Last month's report is written once into the reports directory (JSON, CSV, HTML). (The
/// department gauges are checked in the library's tests: services of other tests running in
/// this process set them too.)
#[test]
fn the_monthly_report_is_written_once() {
    let r = rules();
    let store = CaseStore::memory();
    for c in fixture() {
        store.put(&c, &[]).expect("put");
    }
    let cases = Arc::new(huiying::cases::Cases::new(
        store,
        r.router,
        r.calendar,
        huiying::cases::texts::Texts::load(&rules_dir()).expect("texts"),
        huiying::cases::CasesConfig::default(),
        None,
        None,
        None,
    ));
    let ev = huiying::evaluation::stage::Evaluator::new(
        cases,
        r.weights,
        Some(Arc::new(shipped_matrix().clone())),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let now = bj(10, 15, 12, 0);
    let written = huiying::evaluation::stage::refresh(&ev, dir.path(), now)
        .expect("refresh")
        .expect("September's report");
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        names,
        [
            "evaluation-202609.json",
            "evaluation-202609.csv",
            "evaluation-202609.html"
        ]
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written[0]).expect("json")).expect("json");
    assert_eq!(v["period"]["from"], bj(9, 1, 0, 0));
    assert_eq!(v["period"]["to"], bj(10, 1, 0, 0));
    let water = v["departments"]
        .as_array()
        .expect("departments")
        .iter()
        .find(|d| d["id"] == "water")
        .expect("water");
    // September: F, A, E, B received; at 1 October A, E and F answered on time, B not yet due.
    assert_eq!(water["service"]["received"], 4);
    assert_eq!(water["service"]["answered_on_time"], 3);
    assert_eq!(water["service"]["overdue"], 0);
    // Once written, not again.
    assert!(
        huiying::evaluation::stage::refresh(&ev, dir.path(), now + 300_000)
            .expect("refresh")
            .is_none()
    );
}

/// An existing system's history (`huiying cases import`) gives the same figures as the same
/// requests lived through the workflow: received, accepted and transferred at once, answered,
/// one rated satisfied, one still open past its deadline.
#[test]
fn an_imported_history_gives_the_same_figures_as_live_cases() {
    use huiying::cases::workflow::{Actor, Imported};
    use huiying::cases::{Cases, CasesConfig, Intake};
    let new = || {
        let r = rules();
        Cases::new(
            CaseStore::memory(),
            r.router,
            r.calendar,
            huiying::cases::texts::Texts::load(&rules_dir()).expect("texts"),
            CasesConfig {
                answer_approvals: 0,
                ..CasesConfig::default()
            },
            None,
            None,
            None,
        )
    };
    let (live, imported) = (new(), new());
    // (received, answered, rated satisfied)
    let history = [
        (bj(9, 24, 10, 0), Some(bj(9, 29, 16, 0)), true),
        (bj(9, 30, 15, 0), Some(bj(10, 10, 10, 0)), false),
        (bj(10, 9, 9, 0), None, false),
        (bj(10, 11, 8, 0), None, false),
    ];
    let water = Actor {
        name: "water-zhang",
        department: Some("water"),
    };
    let texts = [
        "海淀区学院路小区停水两天了",
        "朝阳区望京西园自来水发黄三天了",
        "西城区金融街附近水管漏水",
        "丰台区南苑路小区水压太低",
    ];
    for (i, ((at, answered, satisfied), text)) in history.iter().zip(texts).enumerate() {
        let c = live
            .intake(
                Intake {
                    source_id: format!("api:live-{i}"),
                    at: *at,
                    text: text.into(),
                    handle: format!("citizen-{i}"),
                    kind: Some("complaint".into()),
                    department: Some("water".into()),
                    region: Some("110108".into()),
                    ..Intake::default()
                },
                "form",
                *at,
            )
            .expect("intake")
            .case;
        assert!(c.requesters.len() == 1, "not joined to another");
        if let Some(t) = answered {
            live.answer(&c.id, "已处理。", &water, None, *t)
                .expect("answer");
            if *satisfied {
                live.rate(
                    &c.id,
                    Satisfaction::Satisfied,
                    &Actor::operator("duty-li"),
                    None,
                    t + 3_600_000,
                )
                .expect("rate");
            }
        }
        assert!(imported
            .import(Imported {
                id: format!("old-{i}"),
                at: *at,
                author: Some(format!("citizen-{i}")),
                text: text.into(),
                title: None,
                department: Some("water".into()),
                reply: answered.map(|_| "已处理。".to_string()),
                reply_at: *answered,
                state: None,
                kind: Some("complaint".into()),
                region: Some("110108".into()),
                satisfaction: satisfied.then_some(Satisfaction::Satisfied),
            })
            .expect("import"));
    }
    let figures = |cases: &Cases| {
        let e = run(&cases.store().all().expect("all"));
        let w = unit(&e.departments, "water").clone();
        (
            serde_json::to_value(&w.service).expect("json"),
            serde_json::to_value(&w.approval).expect("json"),
            serde_json::to_value(&w.scores).expect("json"),
            w.worst_overdue.len(),
        )
    };
    let (a, b) = (figures(&live), figures(&imported));
    assert_eq!(a, b);
    // And they are what they should be: 4 received, 2 answered (the first on time, the second
    // after the holiday's deadline of Fri 10-09), none overdue yet at 10-12 00:00 (the open ones
    // are due Mon 10-12 and Tue 10-13 at 17:30), one rated satisfied.
    assert_eq!(
        (
            &a.0["received"],
            &a.0["answered"],
            &a.0["answered_on_time"],
            &a.0["overdue"]
        ),
        (&json!(4), &json!(2), &json!(1), &json!(0))
    );
    assert_eq!(a.1["satisfied"], 1);
}

/// 传播力 read from the accounts' own timelines on the (fake) platforms: posts, the reposts and
/// replies others made of them, what carries public-service content, how quiet an account has
/// been. (Bad timeline items are skipped by name: `timeline::tests`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_is_read_from_each_accounts_own_timeline() {
    use huiying::respond::publish::mastodon::MastodonPublisher;
    use huiying::respond::publish::weibo::WeiboPublisher;
    use huiying::respond::publish::{http_client, Action, PostRequest, Publisher};
    let (_, fake) = crate::fake_platform::FakePlatform::start().await;
    fake.add_account("tok-m", "bjfabu");
    fake.add_account("tok-w", "北京发布");
    fake.add_account("tok-c", "citizen");
    let var = |p: &str| format!("HUIYING_TEST_REACH_{p}_{}", std::process::id());
    std::env::set_var(var("M"), "tok-m");
    std::env::set_var(var("W"), "tok-w");
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("rules");
    crate::util::copy_dir(&rules_dir(), &rules);
    std::fs::remove_dir_all(rules.join("matrix")).expect("rm matrix");
    std::fs::create_dir_all(rules.join("matrix")).expect("mkdir matrix");
    let base = fake.base_url();
    std::fs::write(
        rules.join("matrix/matrix.toml"),
        format!(
            r#"
[matrix]
default_region = "110000"

[[profile]]
id = "p"
platform = "mastodon"
posts_per_hour = 100
comments_per_hour = 100
reposts_per_hour = 100

[[profile]]
id = "w"
platform = "weibo"
posts_per_hour = 100
comments_per_hour = 100
reposts_per_hour = 100

[[link]]
category = "*"
functions = []

[[account]]
id = "m-bj"
name = "北京发布 (Mastodon)"
platform = "mastodon"
handle = "bjfabu"
region = "110000"
level = "province"
function = "publicity"
profile = "p"
token_env = "{m}"
endpoint = "{base}"

[[account]]
id = "w-bj"
name = "北京发布"
platform = "weibo"
handle = "北京发布"
region = "110000"
level = "province"
function = "publicity"
profile = "w"
token_env = "{w}"
endpoint = "{base}"
"#,
            m = var("M"),
            w = var("W"),
        ),
    )
    .expect("matrix");
    let analyzer = huiying::detect::Analyzer::new();
    let rs = huiying::detect::RuleSet::load(&rules, &analyzer.normalizer).expect("rules");
    let matrix =
        huiying::respond::matrix::Matrix::load(&rules.join("matrix"), &rs).expect("matrix");
    let shared: huiying::detect::reload::SharedRules =
        Arc::new(arc_swap::ArcSwap::from_pointee(rs));

    let client = http_client(std::time::Duration::from_secs(5)).expect("client");
    let req = |key: &str, text: &str, action: Action| PostRequest {
        idempotency_key: key.into(),
        account_handle: "x".into(),
        text: text.into(),
        action,
        language: None,
        visibility: None,
    };
    let m = MastodonPublisher::new(client.clone(), &base, "tok-m");
    let w = WeiboPublisher::new(client.clone(), &base, "tok-w");
    let mc = MastodonPublisher::new(client.clone(), &base, "tok-c");
    let wc = WeiboPublisher::new(client.clone(), &base, "tok-c");
    // Mastodon: a warning (public service), a chat post; a citizen replies to the warning twice
    // and reblogs it once.
    let warn = m
        .publish(&req(
            "m1",
            "【暴雨预警】今夜有大到暴雨，请减少外出。",
            Action::Post,
        ))
        .await
        .expect("post")
        .post_id;
    m.publish(&req("m2", "周末愉快！", Action::Post))
        .await
        .expect("post");
    for (k, action) in [
        (
            "c1",
            Action::Reply {
                target: warn.clone(),
            },
        ),
        (
            "c2",
            Action::Reply {
                target: warn.clone(),
            },
        ),
        (
            "c3",
            Action::Repost {
                target: warn.clone(),
            },
        ),
    ] {
        mc.publish(&req(k, "收到", action)).await.expect("citizen");
    }
    // Weibo: one post, commented on once.
    let wpost = w
        .publish(&req("w1", "今日全市空气质量良。", Action::Post))
        .await
        .expect("share")
        .post_id;
    wc.publish(&req("c4", "好的", Action::Comment { target: wpost }))
        .await
        .expect("comment");

    let store = CaseStore::memory();
    let r = rules_for_reach(&rules);
    let read = || {
        huiying::evaluation::timeline::read_all(
            &client,
            &matrix,
            &store,
            &r.weights.reach.public_service_words,
            &analyzer,
            &shared,
            &base,
        )
    };
    let round = read().await;
    assert_eq!((round.accounts, round.failed.len()), (2, 0), "{round:?}");
    let posts = huiying::evaluation::timeline::load(&store).expect("posts");
    // Reading again keeps one record per post.
    read().await;
    assert_eq!(
        huiying::evaluation::timeline::load(&store)
            .expect("posts")
            .len(),
        posts.len()
    );
    let now = crate::util::now_ms();
    let period = huiying::evaluation::figures::Period {
        from: now - 7 * 86_400_000,
        to: now + 60_000,
    };
    let subjects = Subjects::of(&r.router, Some(&matrix));
    let input = Inputs {
        posts: &posts,
        ..Inputs::default()
    };
    let e = evaluate(
        input,
        &subjects,
        &r.calendar,
        &r.weights,
        period,
        now + 60_000,
    );
    let mb = unit(&e.accounts, "m-bj");
    let reach = mb.reach.as_ref().expect("reach");
    assert!(reach.read);
    assert_eq!(
        (reach.posts, reach.own_posts, reach.reposts, reach.replies),
        (2, 2, 1, 2),
        "{reach:?}"
    );
    // Engagement 3 reactions / 2 posts = 1.5 of 20; activity 2 posts of 7 a week.
    assert_eq!(reach.engagement_per_post, Some(1.5));
    assert_eq!(reach.public_service_share, Some(0.5));
    // 0.5·2/7 + 0.5·1.5/20 = 0.1804.
    assert_eq!(mb.scores.reach, Some(18.0));
    assert_eq!(
        mb.scores.overall,
        Some(18.0),
        "reach is the only dimension with data"
    );
    assert_eq!(reach.quiet_days, Some(0.0));
    // Replies to its posts, read for approval: three approve, one does not, one says neither.
    let replies: Vec<huiying::evaluation::replies::Reply> = [
        ("点赞，提醒很及时", "positive"),
        ("谢谢", "positive"),
        ("感谢发布", "positive"),
        ("太敷衍了", "negative"),
        ("几点开始下？", "neutral"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (text, verdict))| {
        let m = huiying::normalize::Mention {
            reply_to: Some(format!("mastodon:fake:{warn}")),
            ..huiying::normalize::Mention::new(format!("reply-{i}"), now, *text)
        };
        let index = huiying::evaluation::replies::post_index(&store).expect("index");
        let r = huiying::evaluation::replies::read(&m, &index).expect("a reply to its post");
        assert_eq!(r.verdict, *verdict, "{text}");
        huiying::evaluation::replies::keep(&store, &r).expect("keep");
        r
    })
    .collect();
    assert_eq!(
        huiying::evaluation::replies::load(&store)
            .expect("load")
            .len(),
        5
    );
    let with_replies = Inputs {
        posts: &posts,
        replies: &replies,
        ..Inputs::default()
    };
    let e = evaluate(
        with_replies,
        &subjects,
        &r.calendar,
        &r.weights,
        period,
        now + 60_000,
    );
    let mb = unit(&e.accounts, "m-bj");
    assert_eq!(
        (
            mb.approval.replies_positive,
            mb.approval.replies_negative,
            mb.approval.reply_positive_share
        ),
        (3, 1, Some(0.75))
    );
    // No rated answers: approval is the replies' share alone; overall (0.25·18 + 0.2·75) / 0.45.
    assert_eq!(mb.scores.approval, Some(75.0));
    assert_eq!(mb.scores.overall, Some(43.3));
    let wb = unit(&e.accounts, "w-bj");
    let reach = wb.reach.as_ref().expect("reach");
    assert_eq!((reach.posts, reach.replies), (1, 1), "{reach:?}");
    // Eight days later with nothing new, both are quiet (聋哑).
    let later = now + 8 * 86_400_000;
    let p2 = huiying::evaluation::figures::Period {
        from: later - 7 * 86_400_000,
        to: later,
    };
    let e = evaluate(input, &subjects, &r.calendar, &r.weights, p2, later);
    let mb = unit(&e.accounts, "m-bj");
    assert!(mb.silent, "{mb:?}");
    assert!(
        mb.silent_reason
            .as_deref()
            .is_some_and(|s| s.contains("no post for 8 days")),
        "{:?}",
        mb.silent_reason
    );
    assert_eq!(mb.reach.as_ref().map(|r| r.posts), Some(0));
}

fn rules_for_reach(dir: &std::path::Path) -> Rules {
    Rules {
        router: Router::load(dir).expect("router"),
        calendar: Calendar::load(&dir.join("cases/calendar.toml"), &huiying::cases::KINDS)
            .expect("calendar"),
        weights: Weights::load(dir).expect("weights"),
    }
}

/// Notice fan-out as the evaluation sees it, through a running service: the lead posted (planned
/// 1, posted 1), the amplifier whose token the platform refuses posted nothing and is marked
/// silent for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_coverage_comes_from_the_notices_and_the_outbox() {
    let eng = crate::wall::RespondEngine::start(Vec::new()).await;
    let addr = eng.svc.addr;
    crate::wall::post_burst(
        addr,
        "ev",
        8,
        "北京海淀区路口积水严重，车被淹了，水已经没过车顶，有人被冲走",
    )
    .await;
    let id = crate::util::within("a draft", async {
        loop {
            let v = crate::util::get_json(addr, "/api/notices").await;
            if let Some(id) = v["notices"][0]["id"].as_str() {
                return id.to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    eng.approve(&id).await;
    let v = crate::util::within("the lead's post and the amplifier's failure", async {
        loop {
            let v = crate::util::get_json(addr, "/api/evaluation").await;
            let acc = |id: &str| {
                v["accounts"]
                    .as_array()
                    .and_then(|a| a.iter().find(|u| u["id"] == id).cloned())
                    .unwrap_or_default()
            };
            let (hd, bj) = (acc("hd-publicity"), acc("bj-publicity"));
            if hd["reach"]["fanned_out"] == 1 && bj["silent"] == true {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    let acc = |id: &str| {
        v["accounts"]
            .as_array()
            .and_then(|a| a.iter().find(|u| u["id"] == id).cloned())
            .unwrap_or_default()
    };
    let hd = acc("hd-publicity");
    assert_eq!(hd["reach"]["planned"], 1, "{hd}");
    assert_eq!(hd["reach"]["coverage"], 1.0, "{hd}");
    assert_eq!(hd["reach"]["fanout_secs"]["n"], 1, "{hd}");
    assert_eq!(hd["silent"], false, "{hd}");
    let bj = acc("bj-publicity");
    assert_eq!(
        (&bj["reach"]["planned"], &bj["reach"]["fanned_out"]),
        (&json!(1), &json!(0)),
        "{bj}"
    );
    assert!(
        bj["silent_reason"]
            .as_str()
            .is_some_and(|r| r.contains("posted none of the 1 notices")),
        "{bj}"
    );
    crate::util::stop(eng.svc).await;
}
