//! The hot path, stage by stage: `parse` → `normalize` → `analyze` (and, within it, the rumor
//! scorer's `rumor_signals`, the `emerging_terms` and jieba's `words`) → `engine` (fresh per batch, and
//! `steady_stream`: one engine on a stream that goes on, after its baselines exist), `hold`
//! (a mention packed as the engine holds it while it waits for an incident), the whole
//! `pipeline` (`huiying::app::replay` of 50k lines, 2 workers, events to a sink), and the
//! spike `window` alone (a busy key, a cascade's short life).
//!
//! Input comes from a small deterministic generator below (typical chatter, ~3% emergency
//! reports, ~1% rumor cues, some reposts, some traditional characters), not from the
//! `loadtest` crate. Run: `cargo bench --bench hot_path` (or `-- --quick`, or `-- parse`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use huiying::app::{replay, Emit};
use huiying::detect::rumor_model::features::PostSignals;
use huiying::detect::spike::Window;
use huiying::detect::{Analysis, Analyzer, RuleSet};
use huiying::feeds::jsonl::Speed;
use huiying::incidents::{Engine, Event};
use huiying::normalize::{parse_mention, Mention, Packed};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mentions per iteration of the per-stage groups.
const BATCH: usize = 1_000;
/// Mentions per iteration of the engine group (enough for windows to fill and incidents to open).
const ENGINE_BATCH: usize = 20_000;
/// Lines of the replayed file.
const PIPELINE_LINES: usize = 50_000;

const CHATTER: &[&str] = &[
    "今天天气真不错",
    "出太阳了赶紧晒被子",
    "中午吃了一碗牛肉面",
    "楼下新开的奶茶店排了好长的队",
    "周末和朋友去吃了火锅",
    "早高峰地铁又满员了",
    "公交车等了二十分钟才来",
    "双十一的快递终于到了",
    "超市今天鸡蛋打折",
    "昨晚追剧追到两点",
    "这部电影的结局太意外了",
    "加班到九点终于下班了",
    "家里的猫又把花盆推倒了",
    "健身房打卡第十天",
    "降温了大家注意保暖",
    "外卖又迟到了半个小时",
    "新出的综艺还挺好笑",
    "小区的桂花开了好香",
];
/// Traditional-script chatter (normalised to simplified).
const CHATTER_TRAD: &[&str] = &[
    "這個週末天氣很好",
    "買了一個新的電飯煲",
    "昨晚看電視劇看到兩點",
    "樓下新開的奶茶店排了好長的隊",
    "開車上班找車位太難了",
];
const EMERGENCY: &[&str] = &[
    "暴雨下得好大路上全是积水",
    "对面楼着火了，浓烟滚滚",
    "刚才地震了吧，楼在晃",
    "整栋楼都停电了",
    "前面发生车祸了，两辆车相撞",
    "暴雨來襲，車輛被淹",
    "發生火災，有人被困",
];
const RUMOR: &[&str] = &[
    "网传地铁二号线下周开始停运整整一个月，真的吗？",
    "紧急扩散！明天全市中小学全部停课放假一周",
    "求证：第一人民医院要关门停业整顿半年",
];
const REGIONS: &[&str] = &[
    "北京",
    "海淀区",
    "上海",
    "浦东",
    "广州",
    "天河",
    "成都",
    "武汉",
    "杭州",
    "西湖区",
];
const ENGLISH: &[&str] = &[
    "just had the best noodles in town",
    "the subway was packed this morning",
    "heavy rain and flooding on the main road",
];

/// SplitMix64: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Mention text: chatter of 60–140 characters, sometimes leading with an emergency report or
/// a rumor, sometimes in traditional script or English.
fn text(rng: &mut Rng) -> String {
    if rng.chance(4) {
        let mut t = rng.pick(ENGLISH).to_string();
        t.push_str(", ");
        t.push_str(rng.pick(ENGLISH));
        return t;
    }
    let mut t = String::new();
    let roll = rng.below(100);
    if roll < 3 {
        t.push_str(rng.pick(REGIONS));
        t.push('，');
        t.push_str(rng.pick(EMERGENCY));
        t.push('！');
    } else if roll < 4 {
        t.push_str(rng.pick(RUMOR));
    }
    let trad = rng.chance(20);
    let target = 60 + rng.below(80);
    while t.chars().count() < target {
        if !t.is_empty() {
            t.push('，');
        }
        t.push_str(if trad && rng.chance(40) {
            rng.pick(CHATTER_TRAD)
        } else {
            rng.pick(CHATTER)
        });
    }
    t
}

/// `n` generic-format lines; 20 mentions per ms of event time, ~12% reposts of recent ids.
fn lines(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let t0 = 1_780_000_000_000i64;
    (0..n)
        .map(|i| {
            let author = 1 + (rng.next() % 1000).pow(2) % 50_000;
            let mut l = format!(
                r#"{{"id":"{}","ts":{},"author":"u{}","text":"{}""#,
                4_900_000_000_000_000u64 + i as u64,
                t0 + i as i64 / 20,
                author,
                text(&mut rng)
            );
            if i > 100 && rng.chance(12) {
                let parent = i - 1 - rng.below(100);
                l.push_str(&format!(
                    r#","repost_of":"{}""#,
                    4_900_000_000_000_000u64 + parent as u64
                ));
            }
            l.push('}');
            l
        })
        .collect()
}

fn rules(analyzer: &Analyzer) -> RuleSet {
    RuleSet::load(&rules_dir(), &analyzer.normalizer).expect("rules")
}

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn parse_all(lines: &[String]) -> Vec<Mention> {
    lines
        .iter()
        .map(|l| parse_mention(l.as_bytes()).expect("generated line parses"))
        .collect()
}

fn bench_parse(c: &mut Criterion) {
    let input = lines(BATCH, 1);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("parse_mention", |b| {
        b.iter(|| {
            for l in &input {
                black_box(parse_mention(black_box(l.as_bytes())).ok());
            }
        })
    });
    g.finish();
}

/// What the engine holds of a mention waiting for an incident: the mention packed with its
/// terms (one allocation), against the boxed clone and terms it held before. `packed`: three
/// words none of the posts holds (each looked for through the whole text, the worst case);
/// `packed_own_terms`: each post with its own terms from the analyser (what the engine packs).
fn bench_hold(c: &mut Criterion) {
    let input = parse_all(&lines(BATCH, 1));
    let terms: Vec<String> = ["停水", "暴雨", "网传"].map(String::from).to_vec();
    let analyzer = Analyzer::new();
    let own: Vec<Vec<String>> = input
        .iter()
        .map(|m| analyzer.terms(&analyzer.normalizer.normalize(&m.text)))
        .collect();
    let mut g = c.benchmark_group("hold");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("packed", |b| {
        b.iter(|| {
            for m in &input {
                black_box(Packed::new(black_box(m), &terms));
            }
        })
    });
    g.bench_function("packed_own_terms", |b| {
        b.iter(|| {
            for (m, t) in input.iter().zip(&own) {
                black_box(Packed::new(black_box(m), t));
            }
        })
    });
    g.bench_function("boxed_clone", |b| {
        b.iter(|| {
            for m in &input {
                black_box((Box::new(black_box(m).clone()), terms.clone()));
            }
        })
    });
    g.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let analyzer = Analyzer::new();
    let mut rng = Rng(2);
    let texts: Vec<String> = (0..BATCH).map(|_| text(&mut rng)).collect();
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("normalize", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(analyzer.normalizer.normalize(black_box(t)));
            }
        })
    });
    g.finish();
}

/// The two parts of `analyze` that run on every mention besides the automaton: the trained
/// rumor scorer's signals (its n-gram dot products and a post's shape, the shape also alone),
/// and the terms the emerging detector counts.
fn bench_signals_and_terms(c: &mut Criterion) {
    let analyzer = Analyzer::new();
    let rules = rules(&analyzer);
    let model = rules.rumor_model.clone().expect("rules/models/rumor.bin");
    let mut rng = Rng(7);
    let texts: Vec<String> = (0..BATCH)
        .map(|_| analyzer.normalizer.normalize(&text(&mut rng)).into_owned())
        .collect();
    let mut g = c.benchmark_group("per_mention");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("rumor_signals", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(PostSignals::of(black_box(t), &model));
            }
        })
    });
    g.bench_function("post_shape", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(PostSignals::shape(black_box(t)));
            }
        })
    });
    g.bench_function("emerging_terms", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(huiying::detect::emerging::terms(black_box(t)));
            }
        })
    });
    // jieba's words of a post (cut for the posts that hit, here for every one).
    g.bench_function("words", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(analyzer.terms(black_box(t)));
            }
        })
    });
    g.finish();
}

fn bench_analyze(c: &mut Criterion) {
    let analyzer = Analyzer::new();
    let rules = rules(&analyzer);
    let mentions = parse_all(&lines(BATCH, 3));
    let hits = mentions
        .iter()
        .filter(|m| analyzer.analyze(&rules, m).is_relevant())
        .count();
    eprintln!("analyze: {hits} of {BATCH} mentions hit a category, cue or claim");
    let mut g = c.benchmark_group("analyze");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("analyze", |b| {
        b.iter(|| {
            for m in &mentions {
                black_box(analyzer.analyze(&rules, black_box(m)));
            }
        })
    });
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    let analyzer = Analyzer::new();
    let rules = std::sync::Arc::new(rules(&analyzer));
    let analysed: Vec<(Mention, Analysis)> = parse_all(&lines(ENGINE_BATCH, 4))
        .into_iter()
        .map(|m| {
            let a = analyzer.analyze(&rules, &m);
            (m, a)
        })
        .collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(ENGINE_BATCH as u64));
    g.sample_size(20);
    g.bench_function("process", |b| {
        // A fresh engine per batch: a reused one would drop every id as a duplicate.
        b.iter_batched(
            || (Engine::new(), Vec::<Event>::with_capacity(64)),
            |(mut engine, mut events)| {
                for (m, a) in &analysed {
                    events.clear();
                    engine.process(&rules, m, a, &mut events);
                    black_box(events.len());
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The engine on a stream that goes on: one engine, event time moving on by the pool's second
/// each round (fresh ids, reposts pointing at their round's parents). Measured after three
/// minutes of chatter, once the baselines exist: the everyday words of the chatter, too common
/// to burst, are then no longer followed (they were most of the engine thread's time in the
/// live run of issue 19).
fn bench_engine_steady(c: &mut Criterion) {
    use std::fmt::Write as _;
    let analyzer = Analyzer::new();
    let rules = std::sync::Arc::new(rules(&analyzer));
    let base_id = 4_900_000_000_000_000u64;
    // Chatter only (the posts that hit no rule): the same emergency reports every second would
    // keep hundreds of incidents open, and the look-up of related open incidents, linear in
    // them, would be all the bench measured.
    let mut pool: Vec<(Mention, Analysis, Option<u64>)> = parse_all(&lines(ENGINE_BATCH, 5))
        .into_iter()
        .map(|m| {
            let a = analyzer.analyze(&rules, &m);
            let parent = m
                .repost_of
                .as_deref()
                .and_then(|p| p.parse::<u64>().ok())
                .map(|p| p - base_id);
            (m, a, parent)
        })
        .filter(|(_, a, _)| !a.is_relevant())
        .collect();
    let t0 = pool.first().map_or(0, |(m, _, _)| m.ts);
    let pool_len = pool.len();
    // The pool's event time (20 mentions per ms), so rounds follow each other.
    let span = (ENGINE_BATCH / 20) as i64;
    let mut engine = Engine::new();
    let mut events = Vec::<Event>::with_capacity(64);
    let mut round = 0i64;
    let mut run_round = |engine: &mut Engine, events: &mut Vec<Event>| {
        for (i, (m, a, parent)) in pool.iter_mut().enumerate() {
            m.id.clear();
            let _ = write!(m.id, "r{round}-{i}");
            if let (Some(r), Some(p)) = (m.repost_of.as_mut(), parent) {
                r.clear();
                let _ = write!(r, "r{round}-{p}");
            }
            m.ts = t0 + round * span + i as i64 / 20;
            events.clear();
            engine.process(&rules, m, a, events);
            black_box(events.len());
        }
        round += 1;
    };
    for _ in 0..180 {
        run_round(&mut engine, &mut events);
    }
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(pool_len as u64));
    g.sample_size(10);
    g.bench_function("steady_stream", |b| {
        b.iter(|| run_round(&mut engine, &mut events))
    });
    g.finish();
}

/// The spike window alone: a busy key (every bucket of the ring holds posts, 50 mentions per
/// 10 s bucket from 200 authors) and a cascade's life (a new window, two posts, dropped), the
/// shape of most claim groups.
fn bench_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("window");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("busy_key", |b| {
        let mut w = Window::new(30, 0);
        let mut i = 0u64;
        b.iter(|| {
            for _ in 0..BATCH {
                let bucket = (i / 50) as i64;
                w.advance(bucket, 0.99);
                w.add(bucket, i.wrapping_mul(0x9e37_79b9) % 200);
                i += 1;
            }
            black_box(w.authors())
        })
    });
    g.bench_function("cascade", |b| {
        b.iter(|| {
            for k in 0..BATCH as i64 {
                let mut w = Window::new(30, k);
                w.add(k, 1);
                w.advance(k + 1, 0.99);
                w.add(k + 1, 2);
                black_box(w.authors());
            }
        })
    });
    g.finish();
}

fn write_file(path: &Path, lines: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("temp file"));
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    f.flush().expect("flush");
}

fn bench_pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("mentions.jsonl");
    write_file(&big, &lines(PIPELINE_LINES, 5));
    let one = dir.path().join("one.jsonl");
    write_file(&one, &lines(1, 6));
    let rules = rules_dir();
    let run = |file: &Path| {
        let s = replay(
            file,
            &rules,
            Speed::Max,
            Emit::Incidents,
            Some(2),
            std::io::sink(),
            &mut std::io::sink(),
        )
        .expect("replay");
        black_box(s.accepted)
    };
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Elements(PIPELINE_LINES as u64));
    g.bench_function("replay_50k_2_workers", |b| b.iter(|| run(&big)));
    // The fixed cost inside every replay (jieba dictionary, OpenCC table, rules, threads), to
    // subtract from the figure above.
    g.throughput(Throughput::Elements(1));
    g.bench_function("replay_startup_1_line", |b| b.iter(|| run(&one)));
    g.finish();
}

criterion_group! {
    name = stages;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_parse, bench_hold, bench_normalize, bench_signals_and_terms, bench_analyze, bench_engine, bench_engine_steady, bench_window
}
criterion_group!(pipeline, bench_pipeline);
criterion_main!(stages, pipeline);
