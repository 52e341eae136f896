//! One incident per event: related categories (a `group` of `rules/categories.toml`) and a
//! region with its ancestors are one incident; unrelated categories or places stay apart.

use super::util::{analyzer_and_rules, rules_dir};
use huiying::detect::{Analyzer, RuleSet};
use huiying::incidents::{Engine, Event, EventKind, Incident};
use huiying::normalize::{parse_mention, Mention};
use std::collections::BTreeMap;
use std::sync::Arc;

fn setup() -> &'static (Analyzer, Arc<RuleSet>) {
    analyzer_and_rules()
}

const T0: i64 = 1_795_833_158_000;

/// What a run of the engine produced: the last state of every incident, and the incident
/// each mention was assigned to (every assignment, to catch doubles).
struct Run {
    incidents: BTreeMap<String, Incident>,
    opened: Vec<String>,
    assigned: Vec<(String, String)>,
}

impl Run {
    fn only(&self) -> &Incident {
        assert_eq!(self.opened.len(), 1, "one incident: {:?}", self.opened);
        &self.incidents[&self.opened[0]]
    }
}

/// Apply `posts` (author, text) 5 seconds apart, each by its own mention id, then 2 minutes
/// of quiet so updates are emitted.
fn run(posts: &[(&str, &str)]) -> Run {
    run_with(posts, |_, _| {})
}

/// [`run`], with `change` applied to the i-th mention after parsing (what a feed sets).
fn run_with(posts: &[(&str, &str)], change: impl Fn(usize, &mut Mention)) -> Run {
    let (analyzer, rules) = setup();
    let mut engine = Engine::new();
    let mut events = Vec::new();
    for (i, (author, text)) in posts.iter().enumerate() {
        let line = serde_json::json!({
            "id": format!("m{i}"),
            "ts": T0 + i as i64 * 5_000,
            "author": author,
            "text": text,
        })
        .to_string();
        let mut m = parse_mention(line.as_bytes()).expect("mention");
        change(i, &mut m);
        let a = analyzer.analyze(rules, &m);
        engine.process(rules, &m, &a, &mut events);
    }
    let end = T0 + posts.len() as i64 * 5_000 + 120_000;
    engine.tick(rules, end, &mut events);
    let mut r = Run {
        incidents: BTreeMap::new(),
        opened: Vec::new(),
        assigned: Vec::new(),
    };
    for e in events {
        match e {
            Event::Incident { kind, incident, .. } => {
                if kind == EventKind::Opened {
                    r.opened.push(incident.id.clone());
                }
                r.incidents.insert(incident.id.clone(), (*incident).clone());
            }
            Event::Assigned {
                mention_id,
                incident_id,
                ..
            } => r.assigned.push((mention_id, incident_id.to_string())),
            Event::Request { .. } | Event::Hour(_) => {}
        }
    }
    // The engine's own view agrees with the events.
    for inc in engine.open_incidents() {
        r.incidents.insert(inc.id.clone(), inc);
    }
    r
}

fn assert_each_assigned_once(r: &Run, n: usize) {
    let mut ids: Vec<&str> = r.assigned.iter().map(|(m, _)| m.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(
        before,
        ids.len(),
        "a mention assigned twice: {:?}",
        r.assigned
    );
    assert_eq!(ids.len(), n, "{:?}", r.assigned);
}

/// The demo's waterlogging burst: every post names rain and standing water, so `rainstorm`
/// and `flood` both fire on the same mentions. One incident, both categories listed.
#[test]
fn haidian_waterlogging_with_rain_and_flood_words_is_one_incident() {
    let texts = [
        "北京海淀区暴雨，路口积水已经没过膝盖了",
        "海淀区大暴雨！小区地库进水，车被淹了",
        "北京海淀这雨太大了，暴雨，地下通道积水",
        "海淀暴雨红色预警，路上全是积水",
        "海淀区下暴雨了，地铁站进水，大家注意安全",
        "海淀暴雨，积水太深了，公交停运",
        "海淀区暴雨，内涝严重",
        "海淀区暴雨积水，车都泡了",
    ];
    let posts: Vec<(String, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("hd{i}"), *t))
        .collect();
    let posts: Vec<(&str, &str)> = posts.iter().map(|(a, t)| (a.as_str(), *t)).collect();
    let r = run(&posts);
    let inc = r.only();
    assert_eq!(inc.region.as_ref().map(|r| r.code.as_str()), Some("110108"));
    assert!(
        inc.category == "flood" || inc.category == "rainstorm",
        "{}",
        inc.category
    );
    assert_eq!(inc.categories[0], inc.category, "primary first");
    let mut cats = inc.categories.clone();
    cats.sort();
    assert_eq!(cats, ["flood", "rainstorm"]);
    assert_each_assigned_once(&r, texts.len());
    assert_eq!(inc.mentions, texts.len() as u64);
    // The samples are the first mentions whole (the engine holds them packed), in the
    // engine's view and in the events alike.
    let ids: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    assert_eq!(inc.sample_mention_ids, ids);
    let sampled: Vec<(&str, &str, Option<&str>)> = inc
        .samples
        .iter()
        .map(|m| {
            (
                m.id.as_str(),
                m.text.as_str(),
                m.author.as_ref().map(|a| a.id.as_str()),
            )
        })
        .collect();
    let want: Vec<(&str, &str, Option<&str>)> = (0..5)
        .map(|i| (ids[i].as_str(), texts[i], Some(posts[i].0)))
        .collect();
    assert_eq!(sampled, want);
}

/// A mention deleted at the source leaves the samples of the incident it joined, in the
/// engine's view and in the next update; its count stays.
#[test]
fn a_deleted_mention_leaves_the_samples() {
    let (analyzer, rules) = setup();
    let mut engine = Engine::new();
    let mut events = Vec::new();
    for i in 0..8 {
        let line = serde_json::json!({
            "id": format!("d{i}"), "ts": T0 + i * 5_000, "author": format!("a{i}"),
            "text": format!("海淀区暴雨，路口积水很深 {i}"),
        });
        let m = parse_mention(line.to_string().as_bytes()).expect("mention");
        let a = analyzer.analyze(rules, &m);
        engine.process(rules, &m, &a, &mut events);
    }
    let before: Vec<Incident> = engine.open_incidents().collect();
    assert_eq!(before.len(), 1);
    assert!(
        before[0].samples.iter().any(|m| m.id == "d1"),
        "{:?}",
        before[0].samples
    );
    engine.delete(&["d1".to_string()], &mut events);
    events.clear();
    engine.tick(rules, T0 + 200_000, &mut events);
    let after: Vec<Incident> = engine.open_incidents().collect();
    for inc in after.iter().chain(events.iter().filter_map(|e| match e {
        Event::Incident { incident, .. } => Some(&**incident),
        _ => None,
    })) {
        assert!(
            !inc.samples.iter().any(|m| m.id == "d1"),
            "{:?}",
            inc.samples
        );
        assert!(!inc.sample_mention_ids.iter().any(|m| m == "d1"));
        assert_eq!(inc.samples.len(), inc.sample_mention_ids.len());
        assert_eq!(inc.mentions, 8);
    }
    assert!(!events.is_empty(), "an update follows the deletion");
}

/// What an office's opt-in automatic approval trusts: whether an official feed's mention and
/// how many verified authors counted towards the incident. Neither comes from the input text.
#[test]
fn an_incident_knows_its_official_and_verified_sources() {
    let texts: Vec<(String, String)> = (0..8)
        .map(|i| (format!("hd{i}"), format!("海淀区暴雨，路口积水很深 {i}")))
        .collect();
    let posts: Vec<(&str, &str)> = texts
        .iter()
        .map(|(a, t)| (a.as_str(), t.as_str()))
        .collect();
    let crowd = run(&posts);
    assert!(!crowd.only().official);
    assert_eq!(crowd.only().verified_authors, 0);
    let with = run_with(&posts, |i, m| {
        m.official = i == 5;
        if i % 2 == 0 {
            if let Some(a) = m.author.as_mut() {
                a.verified = true;
            }
        }
    });
    assert!(with.only().official);
    assert_eq!(with.only().verified_authors, 4);
    // The JSON cannot say it is official.
    let line = r#"{"id":"x","ts":1,"text":"t","official":true}"#;
    assert!(!parse_mention(line.as_bytes()).expect("mention").official);
}

/// Primary category: the one most of the incident's mentions hit.
#[test]
fn the_primary_category_is_the_one_most_mentions_hit() {
    let mut posts: Vec<(String, &str)> = Vec::new();
    for i in 0..6 {
        posts.push((format!("r{i}"), "海淀区暴雨，雨下得太大了"));
    }
    posts.push(("f0".into(), "海淀区暴雨，路口积水了"));
    let posts: Vec<(&str, &str)> = posts.iter().map(|(a, t)| (a.as_str(), *t)).collect();
    let r = run(&posts);
    let inc = r.only();
    assert_eq!(inc.category, "rainstorm");
    assert_eq!(inc.categories, ["rainstorm", "flood"]);
}

/// Some posts name the district, some only the city, some both: one incident.
#[test]
fn district_and_city_posts_of_one_burst_are_one_incident() {
    let texts = [
        "海淀区着火了，浓烟滚滚",
        "北京着火了，好大的烟",
        "北京海淀区起火，消防车来了",
        "海淀着火了，好多消防车",
        "北京着火了吗？看到好大的烟",
        "海淀区火灾，大家注意",
        "北京发生火灾，浓烟好大",
        "海淀区起火了，119到了",
        "北京起火了，烟好大",
        "北京火灾现场好多人",
        "海淀着火了，火势很大",
        "北京着火了，大家小心",
    ];
    let posts: Vec<(String, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("dc{i}"), *t))
        .collect();
    let posts: Vec<(&str, &str)> = posts.iter().map(|(a, t)| (a.as_str(), *t)).collect();
    let r = run(&posts);
    let inc = r.only();
    assert_eq!(inc.category, "fire");
    let code = inc.region.as_ref().map(|r| r.code.as_str());
    assert!(code == Some("110108") || code == Some("110000"), "{code:?}");
    assert_each_assigned_once(&r, texts.len());
}

/// The city's posts first, then the district's: still one incident (the district joins the
/// city's).
#[test]
fn district_posts_join_an_open_incident_of_their_city() {
    let mut posts: Vec<(String, &str)> = Vec::new();
    for i in 0..6 {
        posts.push((format!("c{i}"), "北京暴雨，雨太大了"));
    }
    for i in 0..6 {
        posts.push((format!("d{i}"), "海淀区暴雨，雨太大了"));
    }
    let posts: Vec<(&str, &str)> = posts.iter().map(|(a, t)| (a.as_str(), *t)).collect();
    let r = run(&posts);
    let inc = r.only();
    assert_eq!(inc.region.as_ref().map(|r| r.code.as_str()), Some("110000"));
    assert_each_assigned_once(&r, 12);
}

/// Unrelated categories in one city stay two incidents, and so do related categories in two
/// places of which neither is the other's ancestor.
#[test]
fn unrelated_categories_or_places_stay_apart() {
    let mut posts: Vec<(String, &str)> = Vec::new();
    for i in 0..6 {
        posts.push((format!("f{i}"), "北京朝阳区着火了，浓烟滚滚"));
        posts.push((format!("e{i}"), "北京地震了，楼在晃"));
    }
    let posts: Vec<(&str, &str)> = posts.iter().map(|(a, t)| (a.as_str(), *t)).collect();
    let r = run(&posts);
    let cats: Vec<&str> = r
        .opened
        .iter()
        .map(|id| r.incidents[id].category.as_str())
        .collect();
    assert_eq!(r.opened.len(), 2, "{cats:?}");
    assert!(
        cats.contains(&"fire") && cats.contains(&"earthquake"),
        "{cats:?}"
    );

    let mut posts: Vec<(String, &str)> = Vec::new();
    for i in 0..6 {
        posts.push((format!("h{i}"), "海淀区暴雨，雨太大了"));
        posts.push((format!("p{i}"), "浦东积水严重，路都淹了"));
    }
    let posts: Vec<(&str, &str)> = posts.iter().map(|(a, t)| (a.as_str(), *t)).collect();
    let r = run(&posts);
    let regions: Vec<&str> = r
        .opened
        .iter()
        .filter_map(|id| r.incidents[id].region.as_ref().map(|g| g.code.as_str()))
        .collect();
    assert_eq!(regions.len(), 2, "{regions:?}");
    assert!(regions.contains(&"110108") && regions.contains(&"310115"));
}

/// Stored incidents from before `categories` existed still load, and restore to windows that
/// the next mentions join.
#[test]
fn incidents_stored_without_categories_still_load_and_restore() {
    let old = r#"{"id":"em-1-00000001","kind":"emergency","category":"flood","region":{"code":"110108","name":"海淀区"},"first_seen":1,"opened_at":1,"updated_at":1795833158000,"mentions":5,"authors":5,"rate_per_min":1.0,"baseline_per_min":0.01,"severity":3,"top_terms":[],"sample_mention_ids":[],"root_mention_id":null,"rebuttal":null,"state":"open"}"#;
    let inc: Incident = serde_json::from_str(old).expect("an old incident loads");
    assert!(inc.categories.is_empty());
    let (analyzer, rules) = setup();
    let mut engine = Engine::new();
    engine.restore(rules, vec![inc]);
    let mut events = Vec::new();
    let m = parse_mention(
        format!(
            r#"{{"id":"x1","ts":{},"author":"a","text":"海淀区暴雨"}}"#,
            T0 + 1_000
        )
        .as_bytes(),
    )
    .expect("mention");
    let a = analyzer.analyze(rules, &m);
    engine.process(rules, &m, &a, &mut events);
    let joined: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Assigned { incident_id, .. } => Some(&**incident_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        joined,
        ["em-1-00000001"],
        "a rainstorm post joins the flood incident"
    );
    let open: Vec<Incident> = engine.open_incidents().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].categories, ["flood", "rainstorm"]);
}

/// An incident restored after a restart keeps its samples whole (the engine packs them).
#[test]
fn a_restored_incident_keeps_its_samples() {
    let (_, rules) = setup();
    let line = r#"{"id":"s1","ts":1795833157000,"author":{"id":"u1","name":"市民","followers":12,"verified":true},"text":"海淀区暴雨，积水很深","region":"110108","lang":"zh","repost_of":"p0"}"#;
    let sample = parse_mention(line.as_bytes()).expect("mention");
    let old = r#"{"id":"em-1-00000002","kind":"emergency","category":"flood","region":{"code":"110108","name":"海淀区"},"first_seen":1,"opened_at":1,"updated_at":1795833158000,"mentions":5,"authors":5,"rate_per_min":1.0,"baseline_per_min":0.01,"severity":3,"top_terms":[],"sample_mention_ids":["s1"],"root_mention_id":null,"rebuttal":null,"state":"open"}"#;
    let mut inc: Incident = serde_json::from_str(old).expect("an incident loads");
    inc.samples = vec![sample.clone()];
    let mut engine = Engine::new();
    engine.restore(rules, vec![inc]);
    let open: Vec<Incident> = engine.open_incidents().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].samples, [sample]);
}

/// `group` fields are checked, each problem at `categories.toml:line`.
#[test]
fn bad_groups_are_reported_at_their_line() {
    let (analyzer, _) = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    super::util::copy_dir(&rules_dir(), dir.path());
    let cats = dir.path().join("categories.toml");
    let src = std::fs::read_to_string(&cats).expect("read");
    // A group of one, a malformed group and a group named after a category outside it.
    let broken = src
        .replacen("group = \"ground\"", "group = \"lonely\"", 1)
        .replacen("group = \"transport\"", "group = \"Bad Name\"", 1)
        .replacen("group = \"blast\"", "group = \"earthquake\"", 2);
    std::fs::write(&cats, &broken).expect("write");
    let line = |needle: &str| {
        broken
            .lines()
            .position(|l| l.contains(needle))
            .expect("line")
            + 1
    };
    let err = RuleSet::load(dir.path(), &analyzer.normalizer)
        .expect_err("must fail")
        .to_string();
    for (needle, what) in [
        ("\"lonely\"", "has no other category"),
        ("\"Bad Name\"", "lower-case"),
        ("\"earthquake\"", "outside the group"),
    ] {
        let l = line(&format!("group = {needle}"));
        assert!(
            err.lines()
                .any(|e| e.contains(&format!("categories.toml:{l}:")) && e.contains(what)),
            "{needle} at line {l}: {err}"
        );
    }
}
