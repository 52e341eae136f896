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

/// A hash that is the same in every process and run, eight or sixteen bytes a step (the
/// structure of rapidhash: 64 × 64 → 128-bit multiplies folded), for short keys hashed by the
/// hundred per post: the emerging detector's terms. Kept in memory only (never stored or sent),
/// so it may differ from [`stable_hash`], which FNV's byte-at-a-time chain makes ~4× slower on a
/// six-byte bigram.
#[inline]
pub fn fast_hash(bytes: &[u8]) -> u64 {
    const S0: u64 = 0x2d35_8dcc_aa6c_78a5;
    const S1: u64 = 0x8bb8_4b93_962e_acc9;
    const S2: u64 = 0x4b33_a62e_d433_d4a3;
    #[inline(always)]
    fn mum(a: u64, b: u64) -> (u64, u64) {
        let r = u128::from(a) * u128::from(b);
        (r as u64, (r >> 64) as u64)
    }
    #[inline(always)]
    fn mix(a: u64, b: u64) -> u64 {
        let (lo, hi) = mum(a, b);
        lo ^ hi
    }
    #[inline(always)]
    fn r64(b: &[u8], i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    }
    #[inline(always)]
    fn r32(b: &[u8], i: usize) -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[i..i + 4]);
        u64::from(u32::from_le_bytes(w))
    }
    let n = bytes.len();
    let mut seed = S0 ^ (n as u64).wrapping_mul(S2);
    // Every byte is read: the first and last 4 (or 8) bytes overlap for 4..=16, and the first,
    // middle and last byte are all of a text of 1..=3; the length is in the seed.
    let (a, b) = if n <= 16 {
        if n >= 8 {
            (r64(bytes, 0), r64(bytes, n - 8))
        } else if n >= 4 {
            (r32(bytes, 0), r32(bytes, n - 4))
        } else if n > 0 {
            let x = u64::from(bytes[0]) << 16 | u64::from(bytes[n / 2]) << 8;
            (x | u64::from(bytes[n - 1]), 0)
        } else {
            (0, 0)
        }
    } else {
        let mut i = 0;
        while n - i > 16 {
            seed = mix(r64(bytes, i) ^ S1, r64(bytes, i + 8) ^ seed);
            i += 16;
        }
        (r64(bytes, n - 16), r64(bytes, n - 8))
    };
    let (a, b) = mum(a ^ S1, b ^ seed);
    mix(a ^ S0 ^ n as u64, b ^ S1)
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

#[cfg(test)]
mod tests {
    use super::fast_hash;

    #[test]
    fn every_bit_of_every_byte_and_the_length_change_the_fast_hash() {
        // Lengths on each side of the 4-, 8- and 16-byte cases and of several 16-byte blocks.
        for n in 0..=70usize {
            let text: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let h = fast_hash(&text);
            for i in 0..n {
                for bit in 0..8 {
                    let mut t = text.clone();
                    t[i] ^= 1 << bit;
                    assert_ne!(fast_hash(&t), h, "length {n}: byte {i} bit {bit} ignored");
                }
            }
            let mut longer = text.clone();
            longer.push(0);
            assert_ne!(fast_hash(&longer), h, "length {n}: a zero byte appended");
        }
    }

    #[test]
    fn the_fast_hash_spreads_terms_over_the_bits_the_sketch_and_filter_read() {
        // Every bigram of 400 common Han characters and every ASCII word of 1..=3 letters:
        // no two share a hash, and the three bit ranges read by the term sketch (bits 0..16,
        // 32..48) and the stop filter (48..64) fill their 65,536 cells evenly.
        let chars: Vec<char> = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
            .chars()
            .take(400)
            .collect();
        let mut texts: Vec<String> = Vec::new();
        for a in &chars {
            for b in &chars {
                texts.push(format!("{a}{b}"));
            }
        }
        let letters: Vec<char> = ('a'..='z').chain('0'..='9').collect();
        for a in &letters {
            texts.push(a.to_string());
            for b in &letters {
                texts.push(format!("{a}{b}"));
                for c in &letters {
                    texts.push(format!("{a}{b}{c}"));
                }
            }
        }
        let hashes: Vec<u64> = texts.iter().map(|t| fast_hash(t.as_bytes())).collect();
        let mut sorted = hashes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), texts.len(), "two terms share a hash");
        let n = hashes.len() as f64;
        for shift in [0, 32, 48] {
            let mut cells = vec![0u32; 1 << 16];
            for h in &hashes {
                cells[(h >> shift & 0xFFFF) as usize] += 1;
            }
            // Chi-square over 65,536 cells: mean 65,535 and s.d. ~362 for a uniform spread.
            let e = n / 65_536.0;
            let chi: f64 = cells.iter().map(|&c| (f64::from(c) - e).powi(2) / e).sum();
            assert!(
                chi < 65_535.0 + 6.0 * 362.0,
                "bits {shift}..: chi-square {chi:.0}"
            );
        }
    }
}
