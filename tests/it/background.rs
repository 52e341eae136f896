//! Emergencies against real background: reposts that name nothing count for the report they
//! echo (while it is fresh), a window carried by echoes needs more authors than one of own
//! reports, keys without a place wait for a window of history and join another category's
//! incident only when they talk about it in the same words.

use super::util::analyzer_and_rules;
use huiying::detect::{Analyzer, RuleSet};
use huiying::incidents::{Engine, Event, EventKind, Incident};
use huiying::normalize::parse_mention;
use std::collections::BTreeMap;
use std::sync::Arc;

fn setup() -> &'static (Analyzer, Arc<RuleSet>) {
    analyzer_and_rules()
}

const T0: i64 = 1_795_833_158_000;
const MIN: i64 = 60_000;

/// A post: event time offset (ms from T0), id, author, text, the post it reposts.
struct Post {
    at: i64,
    id: String,
    author: String,
    text: String,
    repost_of: Option<String>,
}

fn post(at: i64, id: &str, author: &str, text: &str, repost_of: Option<&str>) -> Post {
    Post {
        at,
        id: id.into(),
        author: author.into(),
        text: text.into(),
        repost_of: repost_of.map(str::to_string),
    }
}

/// Emergency incidents opened (last state) and the mentions assigned to each.
struct Run {
    opened: BTreeMap<String, Incident>,
    assigned: BTreeMap<String, Vec<String>>,
}

/// One neutral post at T0 starts the engine's clock; then `posts` in time order; then two
/// minutes of quiet.
fn run(posts: &[Post]) -> Run {
    let (analyzer, rules) = setup();
    let mut engine = Engine::new();
    let mut events = Vec::new();
    let mut all = vec![post(0, "start", "clock", "今天天气不错", None)];
    all.extend(posts.iter().map(|p| Post {
        at: p.at,
        id: p.id.clone(),
        author: p.author.clone(),
        text: p.text.clone(),
        repost_of: p.repost_of.clone(),
    }));
    all.sort_by_key(|p| p.at);
    let mut last = 0;
    for p in &all {
        let line = serde_json::json!({
            "id": p.id,
            "ts": T0 + p.at,
            "author": p.author,
            "text": p.text,
            "repost_of": p.repost_of,
        })
        .to_string();
        let m = parse_mention(line.as_bytes()).expect("mention");
        let a = analyzer.analyze(rules, &m);
        engine.process(rules, &m, &a, &mut events);
        last = p.at;
    }
    engine.tick(rules, T0 + last + 2 * MIN, &mut events);
    let mut r = Run {
        opened: BTreeMap::new(),
        assigned: BTreeMap::new(),
    };
    for e in events {
        match e {
            Event::Incident { kind, incident, .. } => {
                if incident.id.starts_with("em-")
                    && (kind == EventKind::Opened || r.opened.contains_key(&incident.id))
                {
                    r.opened.insert(incident.id.clone(), (*incident).clone());
                }
            }
            Event::Assigned {
                mention_id,
                incident_id,
                ..
            } => {
                if incident_id.starts_with("em-") {
                    r.assigned
                        .entry(incident_id.to_string())
                        .or_default()
                        .push(mention_id);
                }
            }
            Event::Request { .. } | Event::Hour(_) => {}
        }
    }
    r
}

/// A report of an explosion in 海淀区 at `at` and `n` reposts of it that name nothing, by
/// distinct authors, 6 seconds apart from `first`.
fn echoed(at: i64, first: i64, n: usize) -> Vec<Post> {
    let mut v = vec![post(
        at,
        "report",
        "reporter",
        "海淀区一工厂发生爆炸，现场浓烟滚滚",
        None,
    )];
    for i in 0..n {
        let text = ["转发微博", "天哪", "[蜡烛]", "希望没事"][i % 4];
        v.push(post(
            first + i as i64 * 6_000,
            &format!("r{i}"),
            &format!("u{i}"),
            text,
            Some("report"),
        ));
    }
    v
}

#[test]
fn reposts_that_name_nothing_count_for_the_report_they_echo() {
    let r = run(&echoed(MIN, MIN + 10_000, 16));
    assert_eq!(r.opened.len(), 1, "{:?}", r.opened.keys());
    let (id, inc) = r.opened.iter().next().expect("one");
    // 爆炸 and 浓烟: explosion and fire, one incident of the blast group.
    assert!(
        inc.categories.iter().any(|c| c == "explosion"),
        "{:?}",
        inc.categories
    );
    assert_eq!(inc.region.as_ref().map(|g| g.code.as_str()), Some("110108"));
    let members = &r.assigned[id];
    assert!(members.contains(&"report".to_string()), "{members:?}");
    assert!(members.len() >= 15, "{members:?}");
}

#[test]
fn a_window_carried_by_echoes_needs_three_times_the_authors() {
    // Nine authors: enough for nine own reports, not for one report and its eight echoes.
    let echoes = run(&echoed(MIN, MIN + 10_000, 8));
    assert!(echoes.opened.is_empty(), "{:?}", echoes.opened);
    let own: Vec<Post> = (0..9)
        .map(|i| {
            post(
                MIN + i * 6_000,
                &format!("o{i}"),
                &format!("w{i}"),
                &format!("海淀区发生爆炸了，第{i}个目击者"),
                None,
            )
        })
        .collect();
    assert_eq!(run(&own).opened.len(), 1);
}

#[test]
fn reposts_of_an_old_report_are_not_echoes() {
    // The same sixteen reposts two hours after the report: the tail of an old story.
    let r = run(&echoed(MIN, 2 * 60 * MIN, 16));
    assert!(r.opened.is_empty(), "{:?}", r.opened);
}

/// `n` English posts from `at` on, 10 s apart, by distinct authors (`tag` names them).
fn tweets(at: i64, tag: &str, n: usize, text: &str) -> Vec<Post> {
    (0..n)
        .map(|i| {
            post(
                at + i as i64 * 10_000,
                &format!("{tag}{i}"),
                &format!("{tag}-author{i}"),
                &format!("{text} #{i}"),
                None,
            )
        })
        .collect()
}

#[test]
fn keys_without_a_place_wait_for_a_window_of_history() {
    let early = run(&tweets(MIN, "t", 12, "A tornado just hit Moore, Oklahoma"));
    assert!(early.opened.is_empty(), "{:?}", early.opened);
    let later = run(&tweets(
        11 * MIN,
        "t",
        12,
        "A tornado just hit Moore, Oklahoma",
    ));
    assert_eq!(later.opened.len(), 1, "{:?}", later.opened.keys());
}

/// A tornado burst without a place and, 5 s behind it, a flood burst saying `flood`.
fn tornado_and_flood(flood: &str) -> Run {
    let mut posts = tweets(
        11 * MIN,
        "t",
        12,
        "A tornado just hit Moore Oklahoma, homes gone",
    );
    posts.extend(tweets(11 * MIN + 5_000, "f", 12, flood));
    run(&posts)
}

#[test]
fn placeless_bursts_join_only_when_they_talk_alike() {
    // A tornado in Oklahoma and a flood in Queensland at the same time: two events.
    let apart = tornado_and_flood("Bundaberg Queensland flooding, the Burnett river keeps rising");
    let cats: Vec<&str> = apart.opened.values().map(|i| i.category.as_str()).collect();
    assert_eq!(apart.opened.len(), 2, "{cats:?}");
    assert!(
        cats.contains(&"flood") && cats.contains(&"extreme_weather"),
        "{cats:?}"
    );
    // The tornado's own floods, told in its words: one event.
    let one = tornado_and_flood("Moore Oklahoma streets flooding after the tornado, homes gone");
    assert_eq!(one.opened.len(), 1, "{:?}", one.opened.keys());
}
