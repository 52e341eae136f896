//! Emerging incidents: bursts of terms no rule names open `kind: "emerging"` incidents, by
//! distinct author, grouped by the mentions they share, merged into a rule incident on the
//! same mentions, muted when dismissed; the state stays bounded.

use super::util::analyzer_and_rules;
use huiying::detect::RuleSet;
use huiying::incidents::coord::{Coordinator, FleetCount, Hit};
use huiying::incidents::{Control, Engine, Event, EventKind, Incident, IncidentKind};
use huiying::normalize::parse_mention;
use std::collections::BTreeMap;
use std::sync::Arc;

const T0: i64 = 1_795_833_158_000;
const MIN: i64 = 60_000;

/// Everyday posts, by many authors, that teach the baselines (no rule, no burst).
const EVERYDAY: [&str; 12] = [
    "早上好，今天地铁人好多",
    "中午吃了一碗牛肉面，味道不错",
    "下班路上堵车，心累",
    "周末去爬山吗？天气好像还行",
    "新买的耳机音质很好",
    "孩子作业写到十点，家长太难了",
    "公司楼下开了家奶茶店",
    "晚上跑步五公里，打卡",
    "看了一部老电影，很感动",
    "猫又把花盆打翻了",
    "图书馆今天人不多，适合学习",
    "good morning everyone, coffee time",
];

struct Feed {
    engine: Engine,
    events: Vec<Event>,
    n: usize,
    now: i64,
    rules: Arc<RuleSet>,
}

impl Feed {
    fn new() -> Self {
        Feed::with_rules(analyzer_and_rules().1.clone())
    }

    fn with_rules(rules: Arc<RuleSet>) -> Self {
        Feed {
            engine: Engine::new(),
            events: Vec::new(),
            n: 0,
            now: T0,
            rules,
        }
    }

    fn post(&mut self, ts: i64, author: &str, text: &str) -> String {
        let (analyzer, _) = analyzer_and_rules();
        let rules = &self.rules;
        let id = format!("m{}", self.n);
        self.n += 1;
        let line =
            serde_json::json!({"id": id, "ts": ts, "author": author, "text": text}).to_string();
        let m = parse_mention(line.as_bytes()).expect("mention");
        let a = analyzer.analyze(rules, &m);
        self.engine.process(rules, &m, &a, &mut self.events);
        self.now = self.now.max(ts);
        id
    }

    /// Everyday background for `minutes`: one post every 5 s by one of 60 authors.
    fn background(&mut self, minutes: i64) {
        let start = self.now;
        let mut i = 0;
        while i * 5_000 < minutes * MIN {
            let t = start + i * 5_000;
            let text = EVERYDAY[(i as usize * 7) % EVERYDAY.len()];
            self.post(t, &format!("bg{}", i % 60), text);
            i += 1;
        }
        self.now = start + minutes * MIN;
    }

    /// `n` posts over `minutes` from now, by `authors(i)`, texts `text(i)`.
    fn burst(
        &mut self,
        n: usize,
        minutes: i64,
        author: impl Fn(usize) -> String,
        text: impl Fn(usize) -> String,
    ) -> Vec<String> {
        let start = self.now;
        let step = minutes * MIN / n as i64;
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(self.post(start + i as i64 * step, &author(i), &text(i)));
        }
        self.now = start + minutes * MIN;
        ids
    }

    fn tick(&mut self, minutes: i64) {
        self.now += minutes * MIN;
        self.engine.tick(&self.rules, self.now, &mut self.events);
    }

    fn control(&mut self, c: Control) {
        self.engine.control(&c, &mut self.events);
    }

    /// The last state of every incident of `kind` that opened, in opening order.
    fn incidents(&self, kind: IncidentKind) -> Vec<Incident> {
        let mut order = Vec::new();
        let mut last: BTreeMap<String, Incident> = BTreeMap::new();
        for e in &self.events {
            if let Event::Incident {
                kind: k, incident, ..
            } = e
            {
                if incident.kind != kind {
                    continue;
                }
                if *k == EventKind::Opened {
                    order.push(incident.id.clone());
                }
                last.insert(incident.id.clone(), (**incident).clone());
            }
        }
        order.into_iter().map(|id| last[&id].clone()).collect()
    }

    fn assigned_to(&self, id: &str) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Assigned {
                    mention_id,
                    incident_id,
                    ..
                } if &**incident_id == id => Some(mention_id.clone()),
                _ => None,
            })
            .collect()
    }
}

fn meteor(i: usize) -> String {
    format!("北京市海淀区刚才天上划过一颗陨石，亮得吓人，第{i}次看到这种")
}

#[test]
fn an_emerging_incidents_phrase_does_not_start_inside_a_word() {
    let mut f = Feed::new();
    f.background(40);
    // 看到 is a stop word: the chain of bigrams starts on 到一 (the phrase was
    // "到一颗陨石落下来" on the wall).
    f.burst(
        14,
        5,
        |i| format!("witness{i}"),
        |i| format!("我刚才看到一颗陨石落下来了，第{i}次见"),
    );
    f.tick(1);
    let em = f.incidents(IncidentKind::Emerging);
    assert_eq!(em.len(), 1, "{em:#?}");
    let terms = &em[0].top_terms;
    assert!(terms.iter().any(|t| t.starts_with("一颗陨石")), "{terms:?}");
    assert!(!terms.iter().any(|t| t.starts_with('到')), "{terms:?}");
}

#[test]
fn a_word_no_rule_names_from_many_authors_opens_one_emerging_incident() {
    let mut f = Feed::new();
    f.background(40);
    assert!(
        f.incidents(IncidentKind::Emerging).is_empty(),
        "everyday posts open nothing"
    );
    let burst_start = f.now;
    let ids = f.burst(14, 5, |i| format!("witness{i}"), meteor);
    f.tick(1);
    let em = f.incidents(IncidentKind::Emerging);
    assert_eq!(em.len(), 1, "{em:#?}");
    let inc = &em[0];
    assert_eq!(inc.category, "emerging");
    assert!(
        inc.top_terms.iter().any(|t| t.contains("陨石")),
        "{:?}",
        inc.top_terms
    );
    assert_eq!(
        inc.region.as_ref().map(|r| r.code.as_str()),
        Some("110108"),
        "the place most of its posts name"
    );
    assert!(
        inc.opened_at - burst_start <= 5 * MIN,
        "opened within the burst"
    );
    assert!(inc.authors >= 6 && inc.rate_per_min > inc.baseline_per_min);
    assert!(inc.headline.as_deref().is_some_and(|h| h.contains("陨石")));
    // Its mentions are assigned to it, the background's are not.
    let assigned = f.assigned_to(&inc.id);
    assert!(assigned.len() >= 10, "{}", assigned.len());
    assert!(assigned.iter().all(|m| ids.contains(m)), "{assigned:?}");
    // No rule incident for it: no category names a meteorite.
    assert!(f.incidents(IncidentKind::Emergency).is_empty());
    // Quiet (its window empties, then quiet_secs pass): it closes, and its terms are muted
    // (the tail of the burst does not reopen it).
    f.background(30);
    let closed = f
        .events
        .iter()
        .any(|e| matches!(e, Event::Incident { kind: EventKind::Closed, incident, .. } if incident.id == inc.id));
    assert!(closed, "closed when quiet");
    f.burst(8, 4, |i| format!("late{i}"), meteor);
    f.tick(1);
    assert_eq!(f.incidents(IncidentKind::Emerging).len(), 1, "muted");
}

#[test]
fn one_author_or_a_few_copy_pasting_open_nothing() {
    let mut f = Feed::new();
    f.background(40);
    // 300 copies from one account, and from three accounts: not a crowd.
    f.burst(300, 5, |_| "spam1".into(), meteor);
    f.burst(300, 5, |i| format!("spam{}", i % 3), meteor);
    f.tick(2);
    assert!(f.incidents(IncidentKind::Emerging).is_empty());
}

#[test]
fn nothing_opens_while_the_baselines_learn() {
    let mut f = Feed::new();
    f.background(5);
    f.burst(14, 5, |i| format!("witness{i}"), meteor);
    f.tick(1);
    assert!(
        f.incidents(IncidentKind::Emerging).is_empty(),
        "within warmup_secs of the first mention"
    );
}

#[test]
fn terms_bursting_in_the_same_posts_are_one_incident_and_unrelated_ones_two() {
    let mut f = Feed::new();
    f.background(40);
    // Two events at once: a meteorite (陨石, 火球) and a sinkhole, each by its own people.
    let start = f.now;
    for i in 0..14 {
        let t = start + i * 20_000;
        f.post(
            t,
            &format!("a{i}"),
            &format!("陨石变成火球划过天空，编号{i}"),
        );
        f.post(
            t + 1,
            &format!("b{i}"),
            &format!("河边步道出现天坑，深不见底，第{i}个"),
        );
    }
    f.now = start + 14 * 20_000;
    f.tick(1);
    let em = f.incidents(IncidentKind::Emerging);
    assert_eq!(em.len(), 2, "{em:#?}");
    let meteor = em
        .iter()
        .find(|i| i.top_terms.iter().any(|t| t.contains("陨石")))
        .expect("the meteorite");
    assert!(
        meteor.top_terms.iter().any(|t| t.contains("火球")),
        "grouped: {:?}",
        meteor.top_terms
    );
    assert!(!meteor.top_terms.iter().any(|t| t.contains("天坑")));
    let sinkhole = em.iter().find(|i| i.id != meteor.id).expect("the other");
    assert!(sinkhole.top_terms.iter().any(|t| t.contains("天坑")));
    // No mention is in both.
    let a = f.assigned_to(&meteor.id);
    assert!(f.assigned_to(&sinkhole.id).iter().all(|m| !a.contains(m)));
}

#[test]
fn an_emerging_incident_merges_into_the_rule_incident_that_opens_on_its_mentions() {
    let mut f = Feed::new();
    f.background(40);
    // A refinery nobody wrote a rule for bursts first; then the same people write 爆炸
    // (the explosion category) in the same posts.
    f.burst(
        12,
        4,
        |i| format!("w{i}"),
        |i| format!("东郊炼油厂那边冒出好大的烟柱，编号{i}"),
    );
    f.tick(1);
    let em = f.incidents(IncidentKind::Emerging);
    assert_eq!(em.len(), 1, "{em:#?}");
    f.burst(
        16,
        3,
        |i| format!("w{i}"),
        |i| format!("东郊炼油厂发生爆炸，烟柱很高，编号{i}"),
    );
    f.tick(1);
    let rule = f.incidents(IncidentKind::Emergency);
    assert_eq!(rule.len(), 1, "{rule:#?}");
    let em = f.incidents(IncidentKind::Emerging);
    assert_eq!(em.len(), 1);
    assert_eq!(
        em[0].merged_into.as_deref(),
        Some(rule[0].id.as_str()),
        "one incident per event"
    );
    assert_eq!(em[0].state, huiying::incidents::IncidentState::Closed);
}

/// With `place_terms = false`, many people naming their district on an ordinary morning
/// open nothing (the region's names, Chinese and pinyin, are no terms); with the shipped
/// setting the same posts are a burst of the place.
#[test]
fn place_names_are_terms_unless_set_otherwise() {
    let (analyzer, shipped) = analyzer_and_rules();
    let dir = tempfile::tempdir().expect("tempdir");
    super::util::copy_dir(&super::util::rules_dir(), dir.path());
    let detection = dir.path().join("detection.toml");
    let text = std::fs::read_to_string(&detection).expect("detection.toml");
    assert!(text.contains("place_terms = true"), "the shipped setting");
    std::fs::write(
        &detection,
        text.replace("place_terms = true", "place_terms = false"),
    )
    .expect("write");
    let no_places = Arc::new(RuleSet::load(dir.path(), &analyzer.normalizer).expect("rules load"));
    for (rules, opens) in [(shipped.clone(), true), (no_places, false)] {
        let mut f = Feed::with_rules(rules);
        f.background(40);
        f.burst(
            40,
            4,
            |i| format!("local{i}"),
            |i| {
                if i % 2 == 0 {
                    "海淀，早上好，今天地铁人好多".to_string()
                } else {
                    "Haidian, good morning everyone, coffee time".to_string()
                }
            },
        );
        f.tick(1);
        let em = f.incidents(IncidentKind::Emerging);
        assert_eq!(!em.is_empty(), opens, "{em:#?}");
    }
}

#[test]
fn a_burst_the_rules_already_name_opens_no_emerging_incident() {
    let mut f = Feed::new();
    f.background(40);
    f.burst(
        16,
        4,
        |i| format!("w{i}"),
        |i| format!("海淀区暴雨，路上积水很深，第{i}条"),
    );
    f.tick(2);
    assert_eq!(f.incidents(IncidentKind::Emergency).len(), 1);
    assert!(f.incidents(IncidentKind::Emerging).is_empty());
}

#[test]
fn a_dismissed_incident_closes_and_its_terms_stay_muted_for_the_time_chosen() {
    let mut f = Feed::new();
    f.background(40);
    f.burst(14, 5, |i| format!("w{i}"), meteor);
    f.tick(1);
    let id = f.incidents(IncidentKind::Emerging)[0].id.clone();
    f.control(Control::Dismiss {
        id: id.clone(),
        mute_secs: 2 * 3600,
    });
    assert_eq!(
        f.incidents(IncidentKind::Emerging)[0].state,
        huiying::incidents::IncidentState::Closed
    );
    // A new burst of the same words an hour later: muted.
    f.background(60);
    f.burst(14, 5, |i| format!("x{i}"), meteor);
    f.tick(1);
    assert_eq!(f.incidents(IncidentKind::Emerging).len(), 1, "muted");
    // After the mute: a bigger burst opens again (the two before are in its baseline now).
    f.background(70);
    f.burst(40, 5, |i| format!("y{i}"), meteor);
    f.tick(1);
    assert_eq!(f.incidents(IncidentKind::Emerging).len(), 2, "mute expired");
}

#[test]
fn the_terms_followed_stay_within_the_bound_whatever_the_input() {
    let (_, rules) = analyzer_and_rules();
    let max = rules.settings.emerging.max_candidates as usize;
    let mut f = Feed::new();
    // 3 × max distinct new words, each twice in one minute: every one would be followed.
    let start = f.now;
    for i in 0..3 * max {
        let t = start + (i as i64 % 50) * 1_000;
        let w = format!("zq{i}x");
        f.post(t, &format!("u{}", i % 97), &format!("{w} {w}"));
        f.post(t, &format!("v{}", i % 89), &w);
    }
    let (followed, overflow) = f.engine.emerging_sizes();
    assert!(followed <= max, "{followed} > {max}");
    assert!(overflow > 0, "new terms beyond the bound wait");
    assert!(Engine::emerging_bound_bytes(max) < 300 << 20);
}

#[test]
fn a_burst_is_still_followed_while_rare_words_flood_the_table() {
    let (_, rules) = analyzer_and_rules();
    let max = rules.settings.emerging.max_candidates as usize;
    let mut f = Feed::new();
    f.background(40);
    // Every minute a quarter of the table's worth of new rare words, each from two authors:
    // after four minutes they alone would fill it, and they stay followed for the window.
    let per_min = max / 4;
    let mut word = 0usize;
    let mut meteor_ids = Vec::new();
    for minute in 0..9i64 {
        let start = f.now;
        for i in 0..per_min {
            let t = start + (i as i64 * MIN) / per_min as i64;
            let w = format!("qz{word}k");
            word += 1;
            f.post(t, &format!("r{}", word % 997), &w);
            f.post(t, &format!("s{}", word % 991), &w);
            // From the sixth minute a meteor, from a new author every few seconds.
            if minute >= 5 && i % (per_min / 6) == 0 {
                let n = meteor_ids.len();
                meteor_ids.push(f.post(t, &format!("witness{n}"), &meteor(n)));
            }
        }
        f.now = start + MIN;
    }
    f.tick(1);
    let (followed, _) = f.engine.emerging_sizes();
    assert!(followed <= max);
    let em = f.incidents(IncidentKind::Emerging);
    let meteor = em
        .iter()
        .find(|i| i.top_terms.iter().any(|t| t.contains("陨石")))
        .unwrap_or_else(|| {
            panic!(
                "the meteor opens while the table is flooded; opened: {:?}",
                em.iter().map(|i| &i.top_terms).collect::<Vec<_>>()
            )
        });
    assert!(
        em.iter()
            .all(|i| i.top_terms.iter().all(|t| !t.starts_with("qz"))),
        "rare words from two authors each open nothing"
    );
    let joined = f.assigned_to(&meteor.id);
    assert!(
        meteor_ids.iter().filter(|m| joined.contains(m)).count() >= 6,
        "its posts are in it"
    );
}

/// Posts of one phrase, `per_min` a minute for `minutes`, by 500 authors in turn (`from` carries
/// the turn on between calls).
fn steady(f: &mut Feed, text: &str, per_min: i64, minutes: i64, from: &mut usize) {
    let start = f.now;
    for i in 0..per_min * minutes {
        f.post(
            start + i * MIN / per_min,
            &format!("daily{}", *from % 500),
            text,
        );
        *from += 1;
    }
    f.now = start + minutes * MIN;
}

#[test]
fn words_too_common_to_burst_are_not_followed_until_they_rise() {
    let mut f = Feed::new();
    let mut who = 0;
    // 60 posts a minute from 500 authors: ~600 authors' worth in a 10-minute window, where at
    // most 256 are counted per term: under such a baseline no count could be improbable.
    steady(&mut f, "每日打卡签到", 60, 4, &mut who);
    f.tick(1);
    let (followed, _) = f.engine.emerging_sizes();
    assert_eq!(
        followed, 0,
        "terms that cannot burst on this instance are not followed"
    );
    // The same steady use goes on: it is not followed again (no churn at each bucket).
    steady(&mut f, "每日打卡签到", 60, 2, &mut who);
    f.tick(1);
    assert_eq!(f.engine.emerging_sizes().0, 0, "still not followed");
    // A rise to several times its baseline within a bucket follows its terms again.
    steady(&mut f, "每日打卡签到", 400, 1, &mut who);
    let (followed, _) = f.engine.emerging_sizes();
    assert!(
        followed >= 1,
        "a term rising far above its baseline is followed again"
    );
    // A rarer word beside it (a few authors a minute) stays followed through bucket ends.
    for i in 0..6 {
        f.post(f.now + i * 10_000, &format!("rare{i}"), "青团");
    }
    f.now += MIN;
    f.tick(1);
    assert!(
        f.engine.emerging_sizes().0 >= 1,
        "a rare word stays followed"
    );
}

/// A fleet in one process: what `store::redis::shared` does through Redis (windows of distinct
/// authors per key and bucket, summed over instances; the first claim of a key wins).
#[derive(Default)]
struct FakeFleet {
    windows: BTreeMap<String, BTreeMap<i64, std::collections::BTreeSet<u64>>>,
    claims: BTreeMap<String, String>,
    released: Vec<String>,
    /// Bucket width and buckets per window of each key.
    shape: BTreeMap<String, (i64, usize)>,
}

struct FleetMember(std::sync::Arc<std::sync::Mutex<FakeFleet>>);

impl Coordinator for FleetMember {
    fn claim_open(&mut self, key: &str, proposed: &str) -> String {
        let mut f = self.0.lock().expect("fleet");
        f.claims
            .entry(key.to_string())
            .or_insert_with(|| proposed.to_string())
            .clone()
    }

    fn release(&mut self, key: &str, id: &str) {
        let mut f = self.0.lock().expect("fleet");
        if f.claims.get(key).map(String::as_str) == Some(id) {
            f.claims.remove(key);
        }
        f.released.push(key.to_string());
    }

    fn record(&mut self, hit: Hit<'_>) {
        let mut f = self.0.lock().expect("fleet");
        f.shape
            .insert(hit.key.to_string(), (hit.bucket_ms, hit.buckets));
        f.windows
            .entry(hit.key.to_string())
            .or_default()
            .entry(hit.bucket)
            .or_default()
            .insert(hit.author);
    }
}

impl FakeFleet {
    /// Every key's distinct authors over its window ending at event time `now`.
    fn counts(&self, now: i64) -> Vec<FleetCount> {
        self.windows
            .iter()
            .map(|(k, buckets)| {
                let (bms, n) = self.shape[k];
                let head = now.div_euclid(bms);
                let authors: std::collections::BTreeSet<u64> = buckets
                    .range(head - n as i64 + 1..=head)
                    .flat_map(|(_, a)| a.iter().copied())
                    .collect();
                FleetCount {
                    key: k.clone(),
                    head,
                    authors: authors.len() as u64,
                }
            })
            .collect()
    }
}

/// Seven witnesses of a meteorite write to one instance and seven to another: too few on
/// each to be improbable under its baseline (a term is followed from its second mention in a
/// bucket: six authors each), twelve over the fleet. With the terms' windows merged (as through
/// Redis), both open it, under one id, with the fleet's authors; closed, the id's claim is
/// released. Alone (the same posts, no fleet), neither opens anything.
#[test]
fn a_burst_split_across_instances_opens_one_emerging_incident_on_the_merged_counts() {
    let fleet = std::sync::Arc::new(std::sync::Mutex::new(FakeFleet::default()));
    let run = |shared: bool| {
        let mut a = Feed::new();
        let mut b = Feed::new();
        if shared {
            a.engine = Engine::new().with_coordinator(Box::new(FleetMember(fleet.clone())));
            b.engine = Engine::new().with_coordinator(Box::new(FleetMember(fleet.clone())));
        }
        a.background(40);
        b.background(40);
        let start = a.now;
        let (_, rules) = analyzer_and_rules();
        // Both instances in event-time order, each sweeping every 10 s; the sync task's
        // counts reach each engine between its sweeps (every 100 ms of wall time).
        let mut t = start;
        let mut i = 0;
        while t <= start + 2 * MIN {
            if i < 14 && start + i as i64 * 5_000 <= t {
                let f = if i % 2 == 0 { &mut a } else { &mut b };
                f.post(t, &format!("witness{i}"), &meteor(i));
                i += 1;
                continue;
            }
            t += 5_000;
            for f in [&mut a, &mut b] {
                f.now = t;
                if shared {
                    let counts = fleet.lock().expect("fleet").counts(f.now);
                    f.engine.merge_fleet(rules, &counts, &mut f.events);
                }
                f.engine.tick(rules, f.now, &mut f.events);
            }
        }
        (a, b)
    };
    let (a, b) = run(false);
    assert!(a.incidents(IncidentKind::Emerging).is_empty());
    assert!(b.incidents(IncidentKind::Emerging).is_empty());

    let (mut a, b) = run(true);
    let (ea, eb) = (
        a.incidents(IncidentKind::Emerging),
        b.incidents(IncidentKind::Emerging),
    );
    assert_eq!(ea.len(), 1, "{ea:#?}");
    assert_eq!(eb.len(), 1, "{eb:#?}");
    assert_eq!(ea[0].id, eb[0].id, "one id over the fleet");
    assert!(ea[0].top_terms.iter().any(|t| t.contains("陨石")));
    assert!(
        ea[0].authors >= 12,
        "the fleet's authors: {}",
        ea[0].authors
    );
    // Each instance holds its own mentions of it.
    let here = a.assigned_to(&ea[0].id).len();
    assert!((6..=7).contains(&here), "{here}");
    let key = {
        let f = fleet.lock().expect("fleet");
        let (k, _) = f
            .claims
            .iter()
            .find(|(_, id)| **id == ea[0].id)
            .expect("the id is claimed");
        k.clone()
    };
    assert!(key.starts_with("eg|"), "{key}");
    a.control(Control::Dismiss {
        id: ea[0].id.clone(),
        mute_secs: 3600,
    });
    let f = fleet.lock().expect("fleet");
    assert!(f.released.contains(&key), "released on close");
}
