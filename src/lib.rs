//! huiying (回应, "to respond"): an engine that watches mentions of official accounts, finds
//! emergencies and rumors as they start, and (in later stages) helps offices respond.
//!
//! # The map
//!
//! ```text
//! feeds ──► ingest ──► pipeline: normalize + detect (analysis workers, pure) ──► incidents (engine
//! (ws, HTTP,  (one bounded   (parse, reject, NFKC/t2s; one Aho-Corasick pass,     thread: windows,
//!  JSONL,      queue of       regions, tokens, sketches)                          claim groups,
//!  demo)       Items)                                                             incidents)
//!                                                                                      │
//!  cases ◄── live view + /api/stream ◄── store writer ◄── respond ◄── fleet ◄── wall ◄── bus (one
//!        (every stage subscribes to the bus and starts from one stage::Context)      queue per stage)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`feeds`] | the feeds stage: one websocket loop (ping, read timeout, backoff, bad-frame accounting) with protocols for the generic format, Mastodon streaming (+ REST backfill) and Bluesky Jetstream (+ cursor); JSON Lines files; the demo drill; per-feed health; `[[feeds]]` |
//! | [`ingest`] | the engine's input: [`ingest::Item`] and [`ingest::Ingest`], the sending end of the bounded queue |
//! | [`normalize`] | the [`normalize::Mention`] type, parsing and rejection reasons, text and HTML normalisation, de-duplication, the packed form a mention waits in for an incident ([`normalize::Packed`]) |
//! | [`detect`] | `rules/` loading and validation (`file:line` diagnostics) and the changes the service writes into them (promotions), the automaton, the pure per-mention analysis, every mention's terms and their count-min sketch (emerging incidents), gazetteer, near-duplicate sketches, the rumor model, spike maths, hot reload |
//! | [`pipeline`] | threads and bounded channels: batches → analysis workers → engine, in input order |
//! | [`incidents`] | the engine thread: the single owner of detection state, which opens, updates and closes incidents (emergency, rumor, emerging: bursts no rule names) on event time and emits the events; operator changes (close, merge, dismiss); the `Coordinator` hook of a fleet |
//! | [`bus`] | the event bus: every engine event to every subscribed stage, waited for or dropped when full, as each asked |
//! | [`stage`] | the stage contract: one `Context` every stage starts from, one `Handle` it returns |
//! | [`live`] | the live view of open incidents and the event stream (`/api/stream`) |
//! | [`store`] | the `Store` trait (incidents, mention index, feed cursors), the embedded `redb` store (default), the in-memory one, the writer stage, and Redis (`store::redis`: the shared store, incident id claims, emergency windows and emerging terms' counts merged across the fleet, events between instances; `[redis]`) |
//! | [`respond`] | the respond stage: account matrix and plans, templates, notices and approval (following their incident: updates, all-clears, withdrawals), hash-chained audit log, durable outbox, GCRA limits, dispatcher, publishers (Mastodon, Weibo, webhook, file, e-mail, IM group bots), rebuttal replies, its HTTP routes; `[respond]` |
//! | [`api`] | the API stage (axum): incidents, feeds, `/api/stream`, `POST /api/mentions`, health, metrics; routes declared with their access (`api::routes`); login, roles, tokens, CSRF (`api::auth`, `[auth]`); the operator console; the wall display |
//! | [`cases`] | the cases stage: citizen requests taken in from mentions addressed to the matrix's accounts and `POST /api/cases`, the router to departments (keywords, learned corrections, a trained classifier: `huiying cases classify` / `eval` / `train`), duplicates and incident links, the 受理 → 转办 → 督办 → 反馈 workflow audited first with replies through the respond stage's outbox, ratings read from replies, deadlines on the calendar of `rules/cases/`, the case store (redb, Redis), its routes and Open311 GeoReport v2; `[cases]` |
//! | [`evaluation`] | 绩效评估: every department and matrix account scored over a period from the case store (service, interaction, approval; reach from the accounts' own timelines, read every 30 min), silent ones marked, ranked among peers, against the previous period; weights in `rules/evaluation.toml`; `GET /api/evaluation`, `huiying report evaluation` (JSON, CSV, HTML), the monthly report, department gauges |
//! | [`opinion`] | 舆情报告: each event-time hour's figures (volume, regions, terms, most reposted) stored by the opinion stage, and the report over any period from the store (against the period before; incidents, rumors and time to rebuttal, regions, notices) as JSON, CSV and HTML; `GET /api/reports/opinion`, `huiying report opinion`, the daily and weekly reports and their webhook; `[opinion]` |
//! | [`linkage`] | 联动 beyond the platforms: the linkage stage's public routes: an emergency notice as a CAP 1.2 alert (`/cap/{id}.xml`: zh-CN and en-US, region code as geocode, updates and all-clears referencing earlier alerts) the published notices as Atom/RSS feeds with ETags, and the public archive page (`/archive`, searchable, no JavaScript); each new notice pushed to subscribers (signed webhook, WebSub hub ping) through an outbox of its own, exactly once per key across a crash (`[[linkage.push]]`, `GET /api/push`); `[linkage]` |
//! | [`alerts`] | 值班提醒: severe incidents and notices left waiting become alerts to the IM group bots (WeCom, DingTalk, Feishu: `[[respond.bots]]`) and e-mail through the respond stage's outbox, once each; `GET /api/alerts` for the console's browser notifications; `[alerts]` |
//! | [`metrics`] | the Prometheus registry |
//! | [`clock`] | the one injected clock (sessions, login limits, publishing limiters, dispatcher); `ManualClock` for tests |
//! | [`app`] | wiring: the command line, the one-shot commands, `replay`, `eval` (detection on labelled files), `train rumor`, and the service as a list of stages |
//! | [`config`] | `huiying.toml`: the top-level keys and one section per stage (read only by [`app`]) |
//!
//! See `ARCHITECTURE.md` for the channels, their bounds and the reasons behind the design.

pub mod alerts;
pub mod api;
pub mod app;
pub mod bus;
pub mod cases;
pub mod clock;
pub mod config;
pub mod detect;
pub mod evaluation;
pub mod feeds;
pub mod incidents;
pub mod ingest;
pub mod linkage;
pub mod live;
pub mod metrics;
pub mod normalize;
pub mod opinion;
pub mod pipeline;
pub mod respond;
pub mod stage;
pub mod store;

/// Make `wss://`, `rediss://` and `https://` work: rustls with the `ring` provider and the
/// Mozilla roots (`webpki-roots`), so no system certificate store or OpenSSL is needed. The one
/// place TLS is set up: run once per process (by [`app::start`], and by the builders of the
/// HTTP and Redis clients, so a library user or a test never meets rustls's "no provider"
/// panic).
pub fn install_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Read a response body, never more than `limit` bytes of it: `(body, complete)`. When the
/// body is longer, reading stops at the chunk that crossed the limit, `body` is its first
/// `limit` bytes and `complete` is false.
pub async fn read_body_capped(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            body.extend_from_slice(&chunk[..limit - body.len()]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// `text` cut to at most `max` characters (at a character boundary), with `…` when cut: for
/// text from another party (a platform's error) before it reaches logs, the audit log or a
/// screen.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => {
            let mut out = text[..end].to_string();
            out.push('…');
            out
        }
    }
}

/// The most entries a hash table of `2^log2_buckets` buckets holds before it grows: 7/8 of
/// them (hashbrown's load factor, from 8 buckets up). A bounded table whose bound is just past
/// this (1,000,000 entries where 2^20 buckets hold 917,504) grows to twice the buckets, twice the
/// memory, for 9 % more entries; the bounded tables of the engine take their bound from here.
pub const fn full_table(log2_buckets: u32) -> usize {
    (1usize << log2_buckets) / 8 * 7
}

/// A hash map held by the hundred thousand (a window's authors, a claim group's, an open
/// incident's): ahash under one random key per process, not one per map, so the map is 32
/// bytes, not 64. The key stays random and secret per run (ids and authors are chosen by
/// whoever posts), and nothing reads these maps in iteration order.
pub type SmallMap<K, V> = std::collections::HashMap<K, V, ProcessHasher>;

/// A hash set of the same kind as [`SmallMap`].
pub type SmallSet<K> = std::collections::HashSet<K, ProcessHasher>;

/// The hasher of [`SmallMap`] and [`SmallSet`]: zero bytes, its key drawn once per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessHasher;

impl std::hash::BuildHasher for ProcessHasher {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static KEY: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        KEY.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// A hash that is the same in every process and run (FNV-1a, 64 bit), for ids, author keys and
/// sketch features. Determinism of replay depends on it.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Final avalanche (from splitmix64) so nearby inputs spread over all bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `s` escaped for HTML text and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Write a report's files `{dir}/{stem}.{ext}` in order, each through a temporary file and a
/// rename, so a reader never sees half a file (the last one written marks the report whole).
/// The paths written.
pub fn write_report_files(
    dir: &std::path::Path,
    stem: &str,
    files: &[(&str, String)],
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for (ext, text) in files {
        let path = dir.join(format!("{stem}.{ext}"));
        let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        out.push(path);
    }
    Ok(out)
}
