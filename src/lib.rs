//! huiying (回应, "to respond"): an engine that watches mentions of official accounts, finds
//! emergencies and rumors as they start, and (in later stages) helps offices respond.
//!
//! # The map
//!
//! ```text
//! feeds ──► normalize ──► detect (analyze) ──► cluster (engine) ──► events ──► api / store
//! (ws, HTTP,  (parse,       (one Aho-Corasick    (spike windows per     (broadcast)
//!  JSONL,      reject,       automaton, regions,  category+region, rumor
//!  demo)       NFKC/t2s)     tokens, SimHash)     clusters, incidents)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`feeds`] | inputs: one websocket loop (ping, read timeout, backoff, bad-frame accounting) with protocols for the generic format, Mastodon streaming (+ REST backfill) and Bluesky Jetstream (+ cursor); JSON Lines files; the demo drill; per-feed health |
//! | [`normalize`] | the [`normalize::Mention`] type, parsing and rejection reasons, text normalisation, de-duplication |
//! | [`detect`] | `rules/` loading and validation, the automaton, the pure per-mention analysis, gazetteer, SimHash, spike maths, hot reload |
//! | [`cluster`] | the single-threaded state machine that opens, updates and closes incidents on event time; the `Coordinator` hook through which instances share ids and window counts |
//! | [`pipeline`] | threads and bounded channels: batches → analysis workers → engine, in input order |
//! | [`store`] | the `Store` trait (incidents, mention index, feed cursors), the embedded `redb` store (default), the in-memory one, and Redis (`store::redis`: the shared store, incident id claims, window counts merged across instances, live events between instances) |
//! | [`api`] | the axum HTTP server: incidents, feeds, `/api/stream`, `POST /api/mentions`, health, metrics; login, roles, tokens, CSRF (`api::auth`); the operator console (`api::console`); the wall display (`api::wall`) |
//! | [`metrics`] | the Prometheus registry |
//! | [`respond`] | account matrix and plans, templates, notices and approval, hash-chained audit log, durable outbox, GCRA limits, dispatcher, publishers (Mastodon, Weibo, webhook, file), rebuttal replies to the most-spread rumor posts |
//! | [`cases`] | citizen requests: not built yet |
//! | [`app`] | wiring: `replay`, `run`, `demo`, `rules check|test` |
//! | [`clock`] | the one injected clock (sessions, login limits, publishing limiters, dispatcher); `ManualClock` for tests |
//! | [`config`] | `huiying.toml` |
//!
//! See `ARCHITECTURE.md` for the channels, their bounds and the reasons behind the design.

pub mod api;
pub mod app;
pub mod bus;
pub mod cases;
pub mod clock;
pub mod config;
pub mod detect;
pub mod feeds;
pub mod incidents;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod respond;
pub mod stage;
pub mod store;

/// Make `wss://`, `rediss://` and `https://` work: rustls with the `ring` provider and the
/// Mozilla roots (`webpki-roots`), so no system certificate store or OpenSSL is needed. Called
/// once by [`app::main`] and by [`app::start`] (the entry point of embedders and tests);
/// idempotent.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A hash that is the same in every process and run (FNV-1a, 64 bit), for ids, author keys and
/// SimHash features. Determinism of replay depends on it.
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
