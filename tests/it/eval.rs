//! `huiying eval`: the figures it computes on small labelled fixtures (`tests/data/eval/`),
//! and bad lines named by file:line, counted and skipped.

use super::util::{data, rules_dir};
use huiying::app::eval::{bursts, rumors};

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn one_of_two_rumor_events_flagged_gives_precision_1_recall_half() {
    // The cue-count rule (the rules without the trained model), so the figures are known.
    let rules = tempfile::tempdir().expect("tempdir");
    super::util::copy_dir(&rules_dir(), rules.path());
    let _ = std::fs::remove_file(rules.path().join("models/rumor.bin"));
    let mut diag = Vec::new();
    let r = rumors::eval(&data("eval/rumors.jsonl"), rules.path(), Some(2), &mut diag)
        .expect("eval runs");
    assert_eq!((r.rumor_events, r.non_rumor_events), (2, 1));
    assert_eq!(
        (r.true_positives, r.false_positives, r.false_negatives),
        (1, 0, 1)
    );
    assert!(near(r.precision, 1.0) && near(r.recall, 0.5));
    assert!(near(r.f1, 2.0 / 3.0), "F1 {}", r.f1);
    // The spreading cascade opens with its 5th distinct author: flagged at its 5th post.
    let ra = r.events.iter().find(|e| e.event == "ra0").expect("ra0");
    assert_eq!((ra.flagged, ra.posts_at_flag, ra.posts), (true, Some(5), 9));
    assert_eq!(r.median_posts_at_flag, Some(5.0));
    let by5 = &r.curve[0];
    assert_eq!(by5.by_post, 5);
    assert!(near(by5.f1, 2.0 / 3.0));
    let mut table = Vec::new();
    r.write_table(&mut table).expect("table");
    let table = String::from_utf8(table).expect("utf-8");
    assert!(table.starts_with("event\tlabel\tposts\tflagged\tposts_at_flag\tincident\n"));
    assert!(table.contains("ra0\trumor\t9\ttrue\t5\tru-"), "{table}");
    let mut text = Vec::new();
    r.write_text(&mut text).expect("text");
    assert!(String::from_utf8_lossy(&text).contains("谣言 F1 / rumor F1: 0.667"));
}

#[test]
fn labels_never_reach_the_engine_and_bad_lines_are_named_and_skipped() {
    let mut diag = Vec::new();
    let path = data("eval/rumors_bad.jsonl");
    let r = rumors::eval(&path, &rules_dir(), Some(1), &mut diag).expect("eval runs");
    let diag = String::from_utf8(diag).expect("utf-8");
    let name = path.display().to_string();
    assert_eq!(r.bad_lines, 3, "{diag}");
    assert!(diag.contains(&format!("{name}:4: not JSON")), "{diag}");
    assert!(
        diag.contains(&format!("{name}:8: missing `label`")),
        "{diag}"
    );
    assert!(
        diag.contains(&format!("{name}:12: missing `event`")),
        "{diag}"
    );
    // The good lines give the same figures as the clean file.
    assert_eq!(r.lines, 18);
    assert!(near(r.precision, 1.0) && near(r.recall, 0.5));
    let l = huiying::app::eval::Labelled::read(&path).expect("read");
    let input = String::from_utf8(l.input.clone()).expect("utf-8");
    assert!(!input.contains("\"event\"") && !input.contains("\"label\""));
    // Bad lines stay as blank lines, so the engine's line numbers are the file's.
    assert_eq!(input.lines().count(), 21);
}

#[test]
fn a_chinese_flood_burst_is_detected_and_off_topic_hits_are_counted() {
    let mut diag = Vec::new();
    let r = bursts::eval(
        &data("eval/bursts.jsonl"),
        &rules_dir(),
        false,
        Some(2),
        &mut diag,
    )
    .expect("eval runs");
    assert_eq!(r.events.len(), 1);
    let e = &r.events[0];
    assert_eq!(
        (e.event.as_str(), e.script, e.detected),
        ("zh-flood", "zh", true)
    );
    assert!(e.delay_secs.is_some_and(|d| (0.0..=150.0).contains(&d)));
    assert_eq!((r.recall_zh.detected, r.recall_zh.events), (1, 1));
    assert_eq!(r.recall_en.events, 0);
    assert!(r.false_alarms.is_empty(), "{:?}", r.false_alarms);
    // 游戏里的爆炸特效 and 小区停电了 get a category; 电影太火爆了 and 被淹没在人海 do not.
    assert_eq!((r.off_topic_with_category, r.off_topic), (2, 4));
    assert!(near(r.off_topic_rate, 0.5));
    // Background spans from the first to the last `none` line: 39 × 45 s.
    assert!(near(r.background_hours, 39.0 * 45.0 / 3600.0));
}
