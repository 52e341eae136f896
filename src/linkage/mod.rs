//! Linkage (联动) beyond the platforms: what portals, alerting systems and newsrooms read.
//!
//! - [`cap`]: an emergency notice as an OASIS Common Alerting Protocol 1.2 `alert` (Chinese and
//!   English `info` blocks, the region's 6-digit code as its geocode; updates and all-clears
//!   reference the alerts they follow).
//!
//! - [`feed`]: the published notices and rebuttals as Atom 1.0 and RSS 2.0, each emergency
//!   notice linking its CAP alert.
//!
//! - [`archive`]: the public archive page of notices and rebuttals, searchable by words, day,
//!   region, category and kind, server-rendered.
//! - [`push`]: each new notice to the subscribers (a signed webhook with the notice as JSON, a
//!   WebSub hub ping) through an outbox of its own: never lost, never doubled under two keys.
//! - [`stage`]: the public routes `/cap/{id}.xml`, `/feeds/notices.atom` and `.rss`, `/archive`
//!   (with ETag), `/api/push`; the push's dispatcher and enqueuer.

pub mod archive;
pub mod cap;
pub mod feed;
pub mod push;
pub mod stage;
