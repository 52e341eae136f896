//! dashboards tests: the Grafana dashboards in `dashboards/` query only metrics a live engine
//! exports (respond stage on, a configured feed, after a flood was detected, drafted, approved
//! and posted), their PromQL parses (`promtool check rules`), the exposition passes `promtool
//! check metrics`, and the provisioning files have the shape Grafana loads.

use crate::service::{fake_feed, feed, Script};
use crate::util::mention;
use crate::util::{self, get_json, get_metrics, within};
use crate::wall::{post_burst, RespondEngine, FLOOD};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// Every dashboard JSON file, parsed, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir()).expect("dashboards/") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every `expr` string anywhere in `v` (panel targets, rows' nested panels).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// `huiying_…` metric names in a PromQL expression, with histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("huiying_") {
        let start = i + at;
        let word_start =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if word_start {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end;
    }
    names
}

/// Metric family names of an exposition (`# TYPE name kind` lines).
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let e = r#"histogram_quantile(0.99, sum by (le) (rate(huiying_stage_duration_seconds_bucket{stage="x"}[5m]))) / on() xhuiying_not + huiying_a_total"#;
    let got: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(got, ["huiying_a_total", "huiying_stage_duration_seconds"]);
}

#[test]
fn the_dashboards_and_provisioning_have_the_shape_grafana_loads() {
    let ds = dashboards();
    let files: Vec<&str> = ds.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, ["operations.json", "response.json"]);
    let mut uids = BTreeSet::new();
    for (f, d) in &ds {
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{f}: no uid"));
        assert!(uids.insert(uid.to_string()), "{f}: uid {uid} used twice");
        assert!(
            d["title"].as_str().is_some_and(|t| t.contains("huiying")),
            "{f}: title"
        );
        assert!(
            d["schemaVersion"].as_u64() >= Some(30),
            "{f}: schemaVersion"
        );
        let panels = d["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{f}: panels"));
        let mut ids = BTreeSet::new();
        for p in panels {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{f}: panel without id: {p}"));
            assert!(ids.insert(id), "{f}: panel id {id} twice");
            let g = &p["gridPos"];
            assert!(
                g["w"]
                    .as_u64()
                    .is_some_and(|w| w >= 1 && g["x"].as_u64().unwrap_or(99) + w <= 24),
                "{f}: panel {id} gridPos {g}"
            );
            if p["type"] != "row" {
                assert!(
                    p["title"].as_str().is_some_and(|t| !t.is_empty()),
                    "{f}: panel {id} title"
                );
                let targets = p["targets"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{f}: panel {id} targets"));
                assert!(!targets.is_empty(), "{f}: panel {id} has no query");
                for t in targets {
                    let e = t["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{f}: panel {id}: {t}"));
                    assert!(
                        e.contains(r#"instance=~"$instance""#),
                        "{f}: panel {id}: {e}"
                    );
                    assert_eq!(t["datasource"]["uid"], "${datasource}", "{f}: panel {id}");
                }
            }
        }
    }
    let providers = std::fs::read_to_string(dir().join("provisioning/dashboards/huiying.yaml"))
        .expect("dashboard provider");
    let sources = std::fs::read_to_string(dir().join("provisioning/datasources/prometheus.yaml"))
        .expect("datasource");
    for (name, text, needles) in [
        (
            "provider",
            &providers,
            &["apiVersion: 1", "providers:", "type: file", "path: "][..],
        ),
        (
            "datasource",
            &sources,
            &[
                "apiVersion: 1",
                "datasources:",
                "type: prometheus",
                "uid: huiying-prometheus",
            ][..],
        ),
    ] {
        for n in needles {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().trim_start_matches("- ").starts_with(n)),
                "{name}: no {n:?}"
            );
        }
    }
}

/// Every query parses as PromQL: each becomes a recording rule for `promtool check rules`.
#[tokio::test]
async fn every_dashboard_query_is_valid_promql() {
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (f, d) in dashboards() {
        let mut es = Vec::new();
        exprs(&d, &mut es);
        assert!(!es.is_empty(), "{f}: no queries");
        for e in es {
            n += 1;
            // Grafana's variables become what "All" selects.
            let e = e.replace("$instance", ".*");
            let quoted = serde_json::to_string(&e).expect("JSON string is a YAML string");
            rules.push_str(&format!(
                "      - record: dashboard_query_{n}\n        expr: {quoted}\n"
            ));
        }
    }
    util::promtool(&["check", "rules", "FILE"], &rules).await;
}

/// The engine exports every metric the dashboards query, once the respond stage has drafted,
/// approved and posted a notice; and the exposition passes `promtool check metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_a_dashboard_queries_is_exported_by_the_engine() {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (f, d) in dashboards() {
        let mut es = Vec::new();
        exprs(&d, &mut es);
        for e in es {
            for m in metric_names(&e) {
                wanted.push((m, f.clone()));
            }
        }
    }
    assert!(wanted.len() >= 20, "{wanted:?}");

    // A socket feed that sends one mention and a malformed frame.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("feed listener");
    let feed = feed("upstream", listener.local_addr().expect("feed addr"));
    let frames = vec![
        Message::text(mention("up-1", "up-author", "今天天气不错", util::now_ms()).to_string()),
        Message::text("{oops"),
    ];
    let (upstream, _) = fake_feed(
        listener,
        vec![Script {
            gate: None,
            frames,
            close: false,
        }],
    );
    let eng = RespondEngine::start(vec![feed]).await;
    let addr = eng.svc.addr;
    post_burst(addr, "dash", 8, FLOOD).await;
    let (status, _) = util::http(addr, "POST", "/api/mentions", b"{oops").await;
    assert_eq!(status, 400);
    let id = within("a draft", async {
        loop {
            let v = get_json(addr, "/api/notices").await;
            if let Some(id) = v["notices"][0]["id"].as_str() {
                return id.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eng.approve(&id).await;
    within("the lead's post", async {
        while eng.fake.posts().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within("the feed's mention", async {
        while get_json(addr, "/api/feeds").await["feeds"][0]["messages"].as_u64() < Some(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let m = get_metrics(addr).await;
    let have = exported(&m);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !have.contains(name))
        .map(|(name, f)| format!("{name} ({f})"))
        .collect();
    assert!(
        missing.is_empty(),
        "queried by a dashboard but not exported: {missing:?}\nexported: {have:?}"
    );
    assert!(
        util::metric(&m, r#"huiying_posts_total{outcome="ok",platform="weibo"}"#) >= Some(1.0),
        "{m}"
    );
    util::stop(eng.svc).await;
    upstream.abort();
    util::promtool(&["check", "metrics"], &m).await;
}
