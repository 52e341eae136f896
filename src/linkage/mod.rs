//! Linkage (联动) beyond the platforms: what portals, alerting systems and newsrooms read.
//!
//! - [`cap`]: an emergency notice as an OASIS Common Alerting Protocol 1.2 `alert` (Chinese and
//!   English `info` blocks, the region's 6-digit code as its geocode; updates and all-clears
//!   reference the alerts they follow).
//!
//! - [`feed`]: the published notices and rebuttals as Atom 1.0 and RSS 2.0, each emergency
//!   notice linking its CAP alert.
//!
//! - [`stage`]: the public routes `/cap/{id}.xml`, `/feeds/notices.atom` and `.rss` (with ETag).
//!
//! Still to come (issue 18): the WebSub/webhook push through the outbox, and the public archive
//! of notices and rebuttals.

pub mod cap;
pub mod feed;
pub mod stage;
