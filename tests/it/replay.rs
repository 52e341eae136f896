//! Replay tests: golden scenarios under tests/data, determinism, spam, bad input, the event
//! contract (ordering, update rate, closing).

use super::util::{data, json_lines, replay_file};
use huiying::app::Emit;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

fn opened(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "incident.opened")
        .map(|e| &e["incident"])
        .collect()
}

/// The projection of an opened incident that a golden file records.
fn projection(i: &Value) -> Value {
    serde_json::json!({
        "kind": i["kind"],
        "category": i["category"],
        "categories": i["categories"],
        "region": i["region"]["code"],
        "root_mention_id": i["root_mention_id"],
        "claim": i["rebuttal"]["claim_id"],
    })
}

#[test]
fn flood_haidian_matches_its_golden_incidents() {
    let (out, _, summary) = replay_file(&data("flood_haidian.jsonl"), Emit::Assignments, 2);
    let events = json_lines(&out);
    let got: Vec<Value> = opened(&events).into_iter().map(projection).collect();
    let golden: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(data("flood_haidian.expected.json")).expect("golden file"),
    )
    .expect("golden JSON");
    assert_eq!(
        got, golden,
        "opened incidents differ from tests/data/flood_haidian.expected.json"
    );
    assert_eq!(summary.rejected.values().sum::<u64>(), 0);

    // Every storm mention that names a flood keyword is assigned to the flood incident,
    // including the ones that opened it (rain and water words alike: one incident).
    let flood_id = opened(&events)
        .iter()
        .find(|i| i["category"] == "flood")
        .map(|i| i["id"].as_str().expect("id").to_string())
        .expect("flood incident");
    let assigned: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "mention.assigned" && e["incident_id"] == flood_id.as_str())
        .filter_map(|e| e["mention_id"].as_str())
        .collect();
    let src = std::fs::read_to_string(data("flood_haidian.jsonl")).expect("read");
    for line in src.lines() {
        let m: Value = serde_json::from_str(line).expect("json");
        let text = m["text"].as_str().unwrap_or("");
        let id = m["id"].as_str().unwrap_or("");
        if id.starts_with("fh-s")
            && (text.contains("积水")
                || text.contains("进水")
                || text.contains("內澇")
                || text.contains("淹"))
        {
            assert!(
                assigned.contains(id),
                "{id} ({text}) not assigned to {flood_id}"
            );
        }
    }
    // The known claim carries its rebuttal; the cascade names its root.
    let claim = opened(&events)
        .into_iter()
        .find(|i| !i["rebuttal"].is_null())
        .expect("claim incident");
    assert!(claim["rebuttal"]["zh"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(claim["rebuttal"]["link"]
        .as_str()
        .is_some_and(|s| s.starts_with("http")));
}

#[test]
fn replay_is_deterministic_whatever_the_worker_count() {
    let (a, _, _) = replay_file(&data("flood_haidian.jsonl"), Emit::Assignments, 2);
    let (b, _, _) = replay_file(&data("flood_haidian.jsonl"), Emit::Assignments, 2);
    let (c, _, _) = replay_file(&data("flood_haidian.jsonl"), Emit::Assignments, 1);
    assert!(!a.is_empty());
    assert_eq!(a, b, "two runs differ");
    assert_eq!(a, c, "one worker and two workers differ");
}

#[test]
fn events_are_in_event_time_order_and_updates_are_rate_limited() {
    let (out, _, _) = replay_file(&data("flood_haidian.jsonl"), Emit::Assignments, 2);
    let events = json_lines(&out);
    let ats: Vec<i64> = events
        .iter()
        .map(|e| e["at"].as_i64().expect("at"))
        .collect();
    assert!(
        ats.windows(2).all(|w| w[0] <= w[1]),
        "`at` must never go back"
    );
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "incident.updated") {
        let id = e["incident"]["id"].as_str().expect("id").to_string();
        let at = e["at"].as_i64().expect("at");
        if let Some(prev) = last.insert(id.clone(), at) {
            assert!(at - prev >= 60_000, "{id} updated twice within a minute");
        }
    }
}

#[test]
fn a_single_author_repeating_himself_opens_nothing() {
    let (out, _, summary) = replay_file(&data("spam_single_author.jsonl"), Emit::Assignments, 2);
    assert_eq!(summary.accepted, 250);
    assert_eq!(out, "", "no event expected");
    assert_eq!(summary.opened, [0, 0, 0]);
}

#[test]
fn bad_lines_are_rejected_with_reasons_and_good_ones_go_through() {
    let (out, diag, summary) = replay_file(&data("bad_lines.jsonl"), Emit::Incidents, 2);
    let want: BTreeMap<&str, u64> = [
        ("invalid_json", 1),
        ("invalid_utf8", 1),
        ("missing_field", 2),
        ("bad_field", 1),
        ("too_large", 1),
    ]
    .into();
    assert_eq!(summary.rejected, want);
    assert_eq!(summary.accepted, 12);
    // Line numbers and reasons on the diagnostics stream.
    assert!(
        diag.contains("bad_lines.jsonl:4: rejected (invalid_json)"),
        "{diag}"
    );
    assert!(diag.contains("missing required field `id`"), "{diag}");
    assert!(diag.contains("field `created_at`"), "{diag}");
    // The twelve good mentions still open their incident.
    let events = json_lines(&out);
    assert!(
        opened(&events).iter().any(|i| i["category"] == "fire"),
        "{out}"
    );
}

/// A burst, then hours of quiet chatter: the incident closes once, after the quiet period.
#[test]
fn an_incident_closes_after_a_quiet_period_and_does_not_flap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("close.jsonl");
    let mut f = std::fs::File::create(&path).expect("create");
    let t0: i64 = 1_795_833_158_000;
    for i in 0..12 {
        let m = serde_json::json!({"id": format!("b{i}"), "ts": t0 + i * 10_000, "author": format!("a{i}"),
            "text": "上海浦东新区一栋居民楼起火，浓烟滚滚"});
        writeln!(f, "{m}").expect("write");
    }
    // Quiet: one unrelated mention a minute for two hours, plus a lone straggler on the topic.
    for i in 0..120 {
        let m = serde_json::json!({"id": format!("q{i}"), "ts": t0 + 200_000 + i * 60_000, "author": format!("q{i}"),
            "text": "今天天气不错"});
        writeln!(f, "{m}").expect("write");
        if i == 30 {
            let m = serde_json::json!({"id": "late-one", "ts": t0 + 200_000 + i * 60_000 + 1, "author": "z",
                "text": "浦东新区那栋楼起火的事有后续吗"});
            writeln!(f, "{m}").expect("write");
        }
    }
    drop(f);
    let (out, _, summary) = replay_file(&path, Emit::Incidents, 2);
    let events = json_lines(&out);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(summary.opened, [1, 0, 0], "{kinds:?}");
    assert_eq!(kinds.first(), Some(&"incident.opened"));
    let closed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "incident.closed")
        .collect();
    assert_eq!(closed.len(), 1, "{kinds:?}");
    let c = &closed[0];
    assert_eq!(c["incident"]["state"], "closed");
    let opened_at = c["incident"]["opened_at"].as_i64().expect("opened_at");
    let closed_at = c["at"].as_i64().expect("at");
    // The default quiet period is 15 minutes of event time after activity stops.
    assert!(closed_at - opened_at >= 15 * 60_000, "closed too early");
    assert!(closed_at - opened_at <= 60 * 60_000, "closed too late");
}

#[test]
fn duplicate_ids_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dup.jsonl");
    let mut f = std::fs::File::create(&path).expect("create");
    let t0: i64 = 1_795_833_158_000;
    // Five authors post; every line is sent three times (overlapping feeds).
    for i in 0..4 {
        for _ in 0..3 {
            let m = serde_json::json!({"id": format!("d{i}"), "ts": t0 + i * 1000, "author": format!("a{i}"), "text": "广州天河区发生爆炸，巨响"});
            writeln!(f, "{m}").expect("write");
        }
    }
    drop(f);
    let (out, _, summary) = replay_file(&path, Emit::Incidents, 2);
    assert_eq!(summary.duplicates, 8);
    assert_eq!(
        out, "",
        "four distinct authors are below the minimum of five"
    );
}

/// A gzip input that is cut short (a copy interrupted) is an error naming the file, after the
/// lines before the cut were replayed; a file that is not gzip at all, too.
#[test]
fn a_truncated_or_bogus_gzip_input_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = std::fs::read(data("crisislex/crisislex_t6.jsonl.gz")).expect("read gz");
    for (name, bytes) in [
        ("cut.jsonl.gz", &whole[..50_000]),
        ("bogus.jsonl.gz", &b"not gzip"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = huiying::app::replay(
            &path,
            &super::util::rules_dir(),
            huiying::feeds::jsonl::Speed::Max,
            Emit::Incidents,
            Some(1),
            std::io::sink(),
            &mut std::io::sink(),
        )
        .expect_err("a broken gzip input must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains(name), "{msg}");
    }
}
