//! `bursts`: a labelled dev set for `huiying eval bursts`, deterministic per seed. Hours of
//! real background (CED dev Weibo posts, CrisisLex T6 off-topic tweets; re-timed, fresh ids when
//! reused) at a steady rate, with real crises injected as bursts: slices of each T6 crisis's
//! on-topic tweets, and CED dev non-rumor cascades (true reports) whose original post names an
//! emergency (a fixed list of nouns below, written for this generator, not the rules'
//! keywords).
//!
//! Lines: `{"id","ts","author","text","repost_of","event","label"}`, sorted by `ts`.
//! Background: `event` = `none`, `label` = `off-topic` (tweets) or `background` (Weibo).
//! Bursts: `event` = `T6:<collection>#<n>` or the CED event id, `label` = a category id.

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

/// Emergency nouns that select CED cascades (in the first [`HEADLINE_CHARS`] characters of
/// the original post) and the category each maps to. Fixed once; not the rules' keywords.
pub const EMERGENCY_NOUNS: [(&str, &str); 24] = [
    ("地震", "earthquake"),
    ("余震", "earthquake"),
    ("火灾", "fire"),
    ("大火", "fire"),
    ("失火", "fire"),
    ("爆炸", "explosion"),
    ("洪水", "flood"),
    ("洪灾", "flood"),
    ("暴雨", "rainstorm"),
    ("坍塌", "collapse"),
    ("垮塌", "collapse"),
    ("矿难", "collapse"),
    ("泥石流", "landslide"),
    ("山体滑坡", "landslide"),
    ("车祸", "traffic_accident"),
    ("连环相撞", "traffic_accident"),
    ("坠机", "air_crash"),
    ("空难", "air_crash"),
    ("脱轨", "rail_accident"),
    ("泄漏", "hazmat_leak"),
    ("食物中毒", "food_poisoning"),
    ("疫情", "epidemic"),
    ("台风", "typhoon"),
    ("停电", "outage"),
];

/// How far into the original post a noun must appear (its headline).
pub const HEADLINE_CHARS: usize = 60;

/// T6 labels as category ids.
fn t6_category(label: &str) -> &str {
    match label {
        "hurricane" => "typhoon",
        "bombing" => "explosion",
        "tornado" => "extreme_weather",
        other => other,
    }
}

/// What to generate (also the command line of `huiying-loadtest bursts`).
#[derive(Debug, Clone, clap::Args)]
pub struct BurstsConfig {
    /// CED dev (`ced_dev.jsonl.gz`; kept outside the repository, never commit it).
    #[arg(long)]
    pub ced: PathBuf,
    /// CrisisLex T6 (`crisislex_t6.jsonl` or `.gz`).
    #[arg(long, default_value = "tests/data/crisislex/crisislex_t6.jsonl.gz")]
    pub t6: PathBuf,
    /// RNG seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Hours of background.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub hours: f64,
    /// Background mentions per second.
    #[arg(long, default_value_t = 8.0, value_parser = positive)]
    pub rate: f64,
    /// Share of background posts that are English tweets.
    #[arg(long, default_value_t = 0.3)]
    pub en_share: f64,
    /// Bursts per T6 crisis.
    #[arg(long, default_value_t = 4)]
    pub per_crisis: usize,
    /// CED cascades per category at most.
    #[arg(long, default_value_t = 2)]
    pub zh_per_category: usize,
    /// Event time of the start, unix ms.
    #[arg(long, default_value_t = 1_780_000_000_000)]
    pub start_ms: i64,
}

/// A command-line value that must be a positive, finite number.
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("must be a positive number, not {s:?}")),
    }
}

/// What was written.
#[derive(Debug, Default)]
pub struct BurstsSummary {
    /// Background lines.
    pub background: u64,
    /// English bursts and their posts.
    pub en_bursts: usize,
    /// Chinese bursts.
    pub zh_bursts: usize,
    /// Burst posts.
    pub burst_posts: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct Post {
    id: String,
    #[serde(default)]
    author: Option<String>,
    text: String,
    #[serde(default)]
    repost_of: Option<String>,
    event: String,
    label: String,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Clone, Deserialize)]
struct Meta {
    collection: String,
}

#[derive(Serialize)]
struct Line<'a> {
    id: String,
    ts: i64,
    author: &'a str,
    text: &'a str,
    repost_of: Option<String>,
    event: &'a str,
    label: &'a str,
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<Post>> {
    use std::io::BufRead;
    let r = huiying::app::replay::open_input(path)?;
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let p: Post =
            serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        out.push(p);
    }
    Ok(out)
}

/// One burst to place: its posts (in their original order), label, event and length.
struct Burst<'a> {
    event: String,
    label: &'a str,
    posts: Vec<&'a Post>,
    fresh_ids: bool,
    minutes: u32,
}

/// Generate the set into `out`.
pub fn run(cfg: &BurstsConfig, mut out: impl Write) -> anyhow::Result<BurstsSummary> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let ced = read(&cfg.ced)?;
    let t6 = read(&cfg.t6)?;
    let mut s = BurstsSummary::default();

    // Chinese bursts: cascades whose original names an emergency in its headline.
    let mut cascades: BTreeMap<&str, Vec<&Post>> = BTreeMap::new();
    for p in &ced {
        cascades.entry(p.event.as_str()).or_default().push(p);
    }
    let mut candidates: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (ev, posts) in &cascades {
        let Some(orig) = posts.iter().find(|p| p.id == *ev) else {
            continue;
        };
        // A real crisis is a true report: a rumor cascade ("网传…地震", a celebrity's faked
        // death in a 车祸) is for the rumor detector, and stays in the background.
        if orig.label != "non-rumor" {
            continue;
        }
        let head: String = orig.text.chars().take(HEADLINE_CHARS).collect();
        if let Some((_, cat)) = EMERGENCY_NOUNS.iter().find(|(n, _)| head.contains(n)) {
            candidates.entry(cat).or_default().push(ev);
        }
    }
    let mut bursts: Vec<Burst> = Vec::new();
    let mut chosen: HashSet<&str> = HashSet::new();
    for (cat, evs) in &mut candidates {
        evs.shuffle(&mut rng);
        for ev in evs.iter().take(cfg.zh_per_category) {
            chosen.insert(ev);
            bursts.push(Burst {
                event: ev.to_string(),
                label: cat,
                posts: cascades[ev].clone(),
                fresh_ids: false,
                minutes: rng.random_range(10..=40),
            });
        }
    }
    s.zh_bursts = bursts.len();

    // English bursts: slices of each crisis's on-topic tweets.
    let mut by_coll: BTreeMap<&str, Vec<&Post>> = BTreeMap::new();
    let mut off_topic: Vec<&Post> = Vec::new();
    for p in &t6 {
        if p.label == "off-topic" {
            off_topic.push(p);
        } else if let Some(m) = &p.meta {
            by_coll.entry(m.collection.as_str()).or_default().push(p);
        }
    }
    for (coll, posts) in &by_coll {
        for k in 0..cfg.per_crisis {
            let n = rng.random_range(40..=300).min(posts.len());
            let from = rng.random_range(0..=posts.len() - n);
            bursts.push(Burst {
                event: format!("T6:{coll}#{k}"),
                label: t6_category(&posts[from].label),
                posts: posts[from..from + n].to_vec(),
                fresh_ids: true,
                minutes: rng.random_range(10..=40),
            });
            s.en_bursts += 1;
        }
    }

    // Place the bursts: the hours (less half an hour at each end) cut into one slot per burst
    // of a category, each burst somewhere in its slot and 20 minutes before its end, so two of
    // one category never run together (one (category, region) key cannot tell them apart).
    let span_ms = (cfg.hours * 3_600_000.0) as i64;
    let gap_ms = 20 * 60_000;
    let margin = 30 * 60_000;
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, b) in bursts.iter().enumerate() {
        by_label.entry(b.label).or_default().push(i);
    }
    let mut lines: Vec<(i64, u64, String)> = Vec::new();
    let mut seq = 0u64;
    for idx in by_label.values_mut() {
        idx.shuffle(&mut rng);
        let slot = (span_ms - 2 * margin) / idx.len() as i64;
        anyhow::ensure!(
            slot > gap_ms + 5 * 60_000,
            "too many bursts of one category for {} hours",
            cfg.hours
        );
        for (k, &b) in idx.iter().enumerate() {
            let burst = &bursts[b];
            let dur = (i64::from(burst.minutes) * 60_000).min(slot - gap_ms);
            let t0 = margin + k as i64 * slot + rng.random_range(0..=slot - gap_ms - dur);
            // A rise and fall: triangular arrival times, in the posts' original order.
            let mut ts: Vec<i64> = (0..burst.posts.len())
                .map(|_| {
                    let u = (rng.random::<f64>() + rng.random::<f64>()) / 2.0;
                    cfg.start_ms + t0 + (u * dur as f64) as i64
                })
                .collect();
            ts.sort_unstable();
            for (p, t) in burst.posts.iter().zip(ts) {
                let suffix = |id: &str| {
                    if burst.fresh_ids {
                        format!("{id}~{}", burst.event)
                    } else {
                        id.to_string()
                    }
                };
                let line = serde_json::to_string(&Line {
                    id: suffix(&p.id),
                    ts: t,
                    author: p.author.as_deref().unwrap_or(""),
                    text: &p.text,
                    repost_of: p.repost_of.as_deref().map(suffix),
                    event: &burst.event,
                    label: burst.label,
                })?;
                lines.push((t, seq, line));
                seq += 1;
                s.burst_posts += 1;
            }
        }
    }

    // Background: Poisson arrivals; each pool walked in a fresh shuffled order per pass, ids
    // (and authors, reposted ids) suffixed from the second pass on.
    let mut zh_pool: Vec<&Post> = ced
        .iter()
        .filter(|p| !chosen.contains(p.event.as_str()))
        .collect();
    let mut en_pool = off_topic;
    let (mut zh_at, mut zh_pass, mut en_at, mut en_pass) = (0usize, 0u32, 0usize, 0u32);
    zh_pool.shuffle(&mut rng);
    en_pool.shuffle(&mut rng);
    anyhow::ensure!(
        !zh_pool.is_empty() && !en_pool.is_empty(),
        "no background posts"
    );
    let mut t = 0.0f64;
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() / cfg.rate * 1000.0;
        if t >= span_ms as f64 {
            break;
        }
        let en = rng.random::<f64>() < cfg.en_share;
        let (pool, at, pass) = if en {
            (&mut en_pool, &mut en_at, &mut en_pass)
        } else {
            (&mut zh_pool, &mut zh_at, &mut zh_pass)
        };
        if *at == pool.len() {
            *at = 0;
            *pass += 1;
            pool.shuffle(&mut rng);
        }
        let p = pool[*at];
        *at += 1;
        let pass = *pass;
        let fresh = |id: &str| {
            if pass == 0 {
                id.to_string()
            } else {
                format!("{id}~{pass}")
            }
        };
        let ts = cfg.start_ms + t as i64;
        let author = p.author.as_deref().filter(|a| !a.is_empty()).map(&fresh);
        let line = serde_json::to_string(&Line {
            id: fresh(&p.id),
            ts,
            author: author.as_deref().unwrap_or(""),
            text: &p.text,
            repost_of: p.repost_of.as_deref().map(&fresh),
            event: "none",
            label: if en { "off-topic" } else { "background" },
        })?;
        lines.push((ts, seq, line));
        seq += 1;
        s.background += 1;
    }
    lines.sort_unstable_by_key(|(t, q, _)| (*t, *q));
    for (_, _, l) in &lines {
        out.write_all(l.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(s)
}

#[derive(Serialize)]
struct TextLine<'a> {
    id: String,
    ts: i64,
    author: &'a str,
    text: &'a str,
}

/// What `huiying-loadtest text` writes (the real-text throughput and memory input).
#[derive(Debug, Clone, clap::Args)]
pub struct TextConfig {
    /// CED dev (`ced_dev.jsonl.gz`; kept outside the repository, never commit it).
    #[arg(long)]
    pub ced: PathBuf,
    /// CrisisLex T6 (`crisislex_t6.jsonl` or `.gz`).
    #[arg(long, default_value = "tests/data/crisislex/crisislex_t6.jsonl.gz")]
    pub t6: PathBuf,
    /// Lines to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Mentions per second of event time.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub rate: f64,
    /// RNG seed (the order the texts are cycled in).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Event time of the first line, unix ms.
    #[arg(long, default_value_t = 1_780_000_000_000)]
    pub start_ms: i64,
}

/// Every CED dev and T6 post's text, shuffled once, cycled to `count` lines with fresh ids and
/// fresh authors on every pass (the same person posting again is a new voice after a pass), at
/// `rate` per second: real Chinese and English text at any volume, for throughput and memory.
pub fn text(cfg: &TextConfig, mut out: impl Write) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut posts = read(&cfg.ced)?;
    posts.extend(read(&cfg.t6)?);
    anyhow::ensure!(!posts.is_empty(), "no posts in {}", cfg.ced.display());
    posts.shuffle(&mut rng);
    let step = 1000.0 / cfg.rate;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut out);
    for i in 0..cfg.count {
        let n = posts.len() as u64;
        let p = &posts[(i % n) as usize];
        let pass = i / n;
        let who = p
            .author
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(&p.id);
        let author = format!("{who}~{pass}");
        let line = TextLine {
            id: format!("t{i}"),
            ts: cfg.start_ms + (i as f64 * step) as i64,
            author: &author,
            text: &p.text,
        };
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(cfg.count)
}
