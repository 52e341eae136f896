//! huiying-loadtest: drives a running huiying over real sockets the way a deployment is loaded,
//! and measures it.
//!
//! ```text
//!  scenario.toml ──► feed server (ws: generic / Mastodon) ──► huiying ──► /api/stream ──► driver
//!                    gen + injections, stamped, send log ◄──────────── latency, detection ─┘
//!                    fake platform (posts, limits) ◄── huiying publishes ◄── fan-out drill
//!                    /proc/PID + /metrics every second ──► result.json, report.md, chart.svg
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`bursts`] | the labelled dev burst set (real background, real crises injected) for `huiying eval bursts` |
//! | [`gen`] | realistic mentions (heavy-tailed authors, cascades, topics, emoji, links, regions) |
//! | [`vocab`] | the generator's vocabulary |
//! | [`scenario`] | `scenarios/<name>/scenario.toml`: rate profiles, injections, the drill |
//! | [`inject`] | injections as mentions, with ids that name their injection |
//! | [`feed`] | the websocket feed server and the paced sender, with its send log |
//! | [`driver`] | the `/api/stream` client and the per-second sampler |
//! | [`procstat`] | RSS and CPU time from `/proc/PID` |
//! | [`fanout`] | the publishing drill: generated matrix, notices, the limits' minimum |
//! | [`report`] | the result, the Markdown report and the SVG chart |
//! | [`run`] | one run, end to end (engine in-process or as a pinned child process) |

pub mod bursts;
pub mod driver;
#[path = "../../tests/fake_platform/mod.rs"]
pub mod fake_platform;
pub mod fanout;
pub mod feed;
pub mod gen;
pub mod inject;
pub mod procstat;
pub mod report;
pub mod run;
pub mod scenario;
pub mod vocab;
