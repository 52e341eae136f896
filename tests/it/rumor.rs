//! Rumors end to end: near-duplicate copies, a rumor's severity, the trained model scoring a
//! cascade as posts arrive (slow cascades too), the model file and `huiying train rumor`.

use crate::util::{copy_dir, json_lines, rules_dir, SharedBuf};
use huiying::detect::rumor_model::{RumorModel, CASCADE_FEATURES, CASCADE_FEATURE_NAMES};
use serde_json::{json, Value};
use std::path::Path;

/// Replay `lines` with the rules in `rules`; the output events.
fn replay(rules: &Path, lines: &[Value]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("in.jsonl");
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&f, body).expect("write input");
    let out = SharedBuf::default();
    let mut diag = Vec::new();
    huiying::app::replay(
        &f,
        rules,
        huiying::feeds::jsonl::Speed::Max,
        huiying::app::Emit::Assignments,
        Some(2),
        out.clone(),
        &mut diag,
    )
    .expect("replay runs");
    json_lines(&out.text())
}

fn post(id: &str, author: &str, text: &str, ts: i64, repost_of: Option<&str>) -> Value {
    json!({"id": id, "ts": ts, "author": author, "text": text, "repost_of": repost_of})
}

fn opened_rumors(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "incident.opened" && e["incident"]["kind"] == "rumor")
        .map(|e| &e["incident"])
        .collect()
}

/// The shipped rules without the trained model (the cue-count rule decides).
fn rules_without_model() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    copy_dir(&rules_dir(), d.path());
    let _ = std::fs::remove_file(d.path().join("models/rumor.bin"));
    d
}

const T0: i64 = 1_780_000_000_000;

#[test]
fn copies_that_add_or_change_a_character_stay_in_one_claim_group() {
    let rules = rules_without_model();
    let texts = [
        "紧急扩散：明天起全市停水三天，请大家提前储水，告诉家人！",
        "紧急扩散：明天起全市要停水三天，请大家提前储水，告诉家人！",
        "紧急扩散：明天起全市停水三天，请大家提前储水，告诉家人!!",
        "紧急扩散：明天起全市停水3天，请大家提前储水，告诉家人！",
        "紧急扩散:明天起全市停水三天,请大家提前储水,告诉家人",
        "紧急扩散：明天全市停水三天，请大家提前储水，告诉家人！",
        "紧急扩散：明天起全市停水三天，请大家提前存水，告诉家人！",
    ];
    let lines: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            post(
                &format!("c{i}"),
                &format!("u{i}"),
                t,
                T0 + i as i64 * 30_000,
                None,
            )
        })
        .collect();
    let events = replay(rules.path(), &lines);
    let opened = opened_rumors(&events);
    assert_eq!(opened.len(), 1, "one claim, one incident: {events:#?}");
    let id = opened[0]["id"].as_str().expect("id");
    let assigned: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "mention.assigned" && e["incident_id"] == id)
        .filter_map(|e| e["mention_id"].as_str())
        .collect();
    for (i, text) in texts.iter().enumerate() {
        assert!(
            assigned.contains(&format!("c{i}").as_str()),
            "copy c{i} ({text}) fell out of the claim group: {assigned:?}"
        );
    }
}

#[test]
fn a_spreading_water_outage_rumor_is_severe_enough_for_a_rebuttal_draft() {
    let rules = rules_without_model();
    let lines: Vec<Value> = (0..6)
        .map(|i| {
            post(
                &format!("w{i}"),
                &format!("u{i}"),
                "网传明天全市停水三天，真的假的？",
                T0 + i * 60_000,
                (i > 0).then_some("w0"),
            )
        })
        .collect();
    let events = replay(rules.path(), &lines);
    let opened = opened_rumors(&events);
    assert_eq!(opened.len(), 1, "{events:#?}");
    let sev = opened[0]["severity"].as_u64().expect("severity");
    let threshold = huiying::respond::notices::ApprovalPolicy::default().draft_threshold;
    assert!(
        sev >= u64::from(threshold),
        "a rumor about an outage that people act on opens at {sev}, below the draft threshold {threshold}"
    );
    // The same spread without a hazard or public service in it stays below.
    let lines: Vec<Value> = (0..6)
        .map(|i| {
            post(
                &format!("g{i}"),
                &format!("u{i}"),
                "网传某明星下个月要结婚了，真的假的？",
                T0 + i * 60_000,
                (i > 0).then_some("g0"),
            )
        })
        .collect();
    let events = replay(rules.path(), &lines);
    let opened = opened_rumors(&events);
    assert_eq!(opened.len(), 1, "{events:#?}");
    assert!(opened[0]["severity"].as_u64().expect("severity") < u64::from(threshold));
}

/// A model that weighs only what is easy to reason about: the share of reposts asking whether
/// the post is true.
fn enquiry_model() -> RumorModel {
    let bits = 8;
    let mut w_cascade = [0f32; CASCADE_FEATURES];
    let i = CASCADE_FEATURE_NAMES
        .iter()
        .position(|n| *n == "enquiry_ratio")
        .expect("feature");
    w_cascade[i] = 10.0;
    RumorModel {
        w_cascade,
        bias: -6.0,
        threshold: 0.9,
        min_posts: 3,
        ..RumorModel::blank(bits)
    }
}

fn rules_with(model: &RumorModel) -> tempfile::TempDir {
    let d = rules_without_model();
    model
        .save(&d.path().join("models/rumor.bin"))
        .expect("save model");
    d
}

#[test]
fn the_model_scores_a_slow_cascade_and_opens_once() {
    let rules = rules_with(&enquiry_model());
    let hour = 3_600_000;
    let mut lines = vec![post("o", "a0", "某地化工厂要搬到我们小区旁边了", T0, None)];
    // Reposts three hours apart: far beyond the 30-minute counting window.
    let texts = [
        "真的吗？",
        "求证，是真的吗",
        "有人知道吗？真的假的",
        "真的假的",
    ];
    for (i, t) in texts.iter().enumerate() {
        lines.push(post(
            &format!("r{i}"),
            &format!("a{}", i + 1),
            t,
            T0 + (i as i64 + 1) * 3 * hour,
            Some("o"),
        ));
    }
    // Later reposts after the incident closed (quiet) do not open it again.
    for i in 0..4 {
        lines.push(post(
            &format!("late{i}"),
            &format!("b{i}"),
            "真的假的？",
            T0 + 40 * hour + i * hour,
            Some("o"),
        ));
    }
    let events = replay(rules.path(), &lines);
    let opened = opened_rumors(&events);
    assert_eq!(opened.len(), 1, "{events:#?}");
    assert_eq!(opened[0]["root_mention_id"], "o");
    // min_posts 3 and two enquiring reposts of two: flagged at the third post.
    assert_eq!(opened[0]["opened_at"], T0 + 2 * 3 * hour);

    // Reposts that do not ask: the same cascade never opens.
    let calm: Vec<Value> =
        std::iter::once(post("o", "a0", "某地化工厂要搬到我们小区旁边了", T0, None))
            .chain((0..6).map(|i| {
                post(
                    &format!("r{i}"),
                    &format!("a{}", i + 1),
                    "支持",
                    T0 + (i + 1) * 3 * hour,
                    Some("o"),
                )
            }))
            .collect();
    assert!(opened_rumors(&replay(rules.path(), &calm)).is_empty());
}

#[test]
fn a_damaged_model_is_a_rules_error_naming_the_file() {
    let rules = rules_with(&enquiry_model());
    let p = rules.path().join("models/rumor.bin");
    let mut bytes = std::fs::read(&p).expect("read model");
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&p, &bytes).expect("write");
    let analyzer = huiying::detect::Analyzer::new();
    let err = huiying::detect::RuleSet::load(rules.path(), &analyzer.normalizer)
        .expect_err("a corrupt model is refused")
        .to_string();
    assert!(
        err.contains("models/rumor.bin") && err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn the_shipped_model_loads_with_its_provenance() {
    let rules = crate::util::shipped_rules();
    let m = rules
        .rumor_model
        .as_ref()
        .expect("rules/models/rumor.bin ships");
    assert!(m.info.trained_on.contains("events"), "{:?}", m.info);
    assert!(m.info.cv.iter().any(|p| p.by_post == 100 && p.f1 > 0.0));
    assert!(m.threshold > 0.0 && m.threshold < 1.0);
}

#[test]
fn train_rumor_writes_a_model_the_rules_load_and_names_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("cascades.jsonl");
    let mut lines = Vec::new();
    for e in 0..16 {
        let rumor = e % 2 == 0;
        let (orig, reply) = if rumor {
            ("紧急扩散！网传明天全市停水三天，赶紧储水", "真的假的？求证")
        } else {
            (
                "市气象台发布天气预报：明天多云，气温十五到二十二度",
                "转发微博",
            )
        };
        let label = if rumor { "rumor" } else { "non-rumor" };
        let root = format!("e{e}");
        lines.push(
            json!({"id": root, "ts": T0 + e * 1000, "author": format!("a{e}"),
            "text": format!("{orig}（{e}）"), "repost_of": null, "event": root, "label": label}),
        );
        for r in 0..6 {
            lines.push(
                json!({"id": format!("e{e}r{r}"), "ts": T0 + e * 1000 + (r + 1) * 60_000,
                "author": format!("u{e}-{r}"), "text": reply, "repost_of": root,
                "event": root, "label": label}),
            );
        }
    }
    let mut body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    body.push_str("{\"id\":\"x\",\"ts\":1,\"text\":\"没有标签\"}\n");
    std::fs::write(&data, body).expect("write");
    let rules = rules_without_model();
    let out_model = rules.path().join("models/rumor.bin");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["train", "rumor"])
        .arg(&data)
        .arg("--rules")
        .arg(rules.path())
        .arg("--out")
        .arg(&out_model)
        .args(["--folds", "2", "--iterations", "60", "--bits", "10"])
        .output()
        .expect("run huiying train rumor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("16 events (8 rumor)"), "{stdout}");
    assert!(stdout.contains("by post 100"), "{stdout}");
    assert!(
        stderr.contains("cascades.jsonl:113: skipped: field `event`"),
        "the unlabelled line is named: {stderr}"
    );
    let m = RumorModel::load(&out_model).expect("the model loads");
    assert_eq!(m.bits, 10);
    assert!(m.info.trained_on.contains("cascades.jsonl"));
    // The rules load it, and it tells these cascades apart.
    let unlabelled: Vec<Value> = lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if let Some(o) = l.as_object_mut() {
                o.remove("event");
                o.remove("label");
            }
            l
        })
        .collect();
    let events = replay(rules.path(), &unlabelled);
    let flagged: std::collections::BTreeSet<&str> = opened_rumors(&events)
        .iter()
        .filter_map(|i| i["root_mention_id"].as_str())
        .collect();
    assert!(
        flagged.contains("e0") && !flagged.contains("e1"),
        "{flagged:?}"
    );
}

#[test]
fn the_demo_drills_rumor_opens_with_the_shipped_model() {
    let analyzer = huiying::detect::Analyzer::new();
    let rules = std::sync::Arc::new(
        huiying::detect::RuleSet::load(&rules_dir(), &analyzer.normalizer).expect("rules"),
    );
    assert!(
        rules.rumor_model.is_some(),
        "the shipped rules carry the model"
    );
    let mut drill = huiying::feeds::demo::Drill::new(2026, T0);
    let mut engine = huiying::incidents::Engine::new();
    let mut out = Vec::new();
    // Two and a half minutes of the drill, in 100 ms steps as the service plays it.
    for step in 1..=1_500 {
        for m in drill.advance(T0 + step * 100) {
            let a = analyzer.analyze(&rules, &m);
            engine.process(&rules, &m, &a, &mut out);
        }
    }
    let rumors: Vec<_> = engine
        .open_incidents()
        .filter(|i| i.kind == huiying::incidents::IncidentKind::Rumor)
        .collect();
    assert!(
        rumors.iter().any(|i| i.rebuttal.is_none()),
        "the 停水 cascade opens a rumor incident: {rumors:#?}"
    );
}

#[test]
fn a_full_table_of_cascades_drops_the_longest_idle_and_still_takes_new_ones() {
    use huiying::detect::{Analyzer, RuleSet};
    use huiying::incidents::{Engine, Event, EventKind};
    use huiying::normalize::parse_mention;
    let dir = rules_with(&enquiry_model());
    let f = dir.path().join("detection.toml");
    let toml = std::fs::read_to_string(&f).expect("read detection.toml");
    assert!(toml.contains("max_groups = 50000"), "the shipped bound");
    std::fs::write(&f, toml.replace("max_groups = 50000", "max_groups = 16")).expect("write");
    let analyzer = Analyzer::new();
    let rules =
        std::sync::Arc::new(RuleSet::load(dir.path(), &analyzer.normalizer).expect("rules load"));
    let mut engine = Engine::new();
    let mut events = Vec::new();
    let mut feed = |engine: &mut Engine, p: Value| {
        let m = parse_mention(p.to_string().as_bytes()).expect("mention");
        let a = analyzer.analyze(&rules, &m);
        engine.process(&rules, &m, &a, &mut events);
    };
    // 64 quiet cascades, a minute apart: an original and a repost that asks nothing.
    for i in 0..64 {
        let ts = T0 + i * 60_000;
        let o = format!("o{i}");
        let text = format!("某地化工厂要搬到我们小区旁边了，第{i}号地块");
        feed(&mut engine, post(&o, &format!("a{i}"), &text, ts, None));
        feed(
            &mut engine,
            post(
                &format!("r{i}"),
                &format!("b{i}"),
                "支持",
                ts + 1_000,
                Some(&o),
            ),
        );
        assert!(
            engine.state_sizes().1 <= 16,
            "cascade {i}: {:?}",
            engine.state_sizes()
        );
    }
    let evicted = engine.stats().groups_evicted;
    assert!(evicted >= 64 - 16, "{evicted}");
    assert_eq!(engine.stats().group_overflow, 0);
    // The newest cascade was kept: its next repost joins it (nothing dropped to make room)...
    let ts = T0 + 64 * 60_000;
    feed(&mut engine, post("r63b", "c63", "支持", ts, Some("o63")));
    assert_eq!(
        engine.stats().groups_evicted,
        evicted,
        "o63's group was dropped"
    );
    // ...the oldest was dropped: its next repost starts it again, and that takes a place.
    feed(
        &mut engine,
        post("r0b", "c0", "支持", ts + 1_000, Some("o0")),
    );
    assert!(
        engine.stats().groups_evicted > evicted,
        "o0's group was kept"
    );
    // A new cascade that asks whether it is true still gets a group and opens.
    let ts = ts + 60_000;
    feed(
        &mut engine,
        post("x", "x0", "听说明天全市要停水停电三天了", ts, None),
    );
    for (i, t) in ["真的吗？", "求证，是真的吗", "真的假的"]
        .iter()
        .enumerate()
    {
        let id = format!("x{}", i + 1);
        let ts = ts + (i as i64 + 1) * 1_000;
        feed(&mut engine, post(&id, &format!("y{i}"), t, ts, Some("x")));
    }
    let opened: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Incident {
                kind: EventKind::Opened,
                incident,
                ..
            } => Some(incident.root_mention_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opened, vec![Some("x".to_string())], "{opened:?}");
}
