//! Linkage (联动) beyond the platforms: what portals, alerting systems and newsrooms read.
//!
//! - [`cap`]: an emergency notice as an OASIS Common Alerting Protocol 1.2 `alert` (Chinese and
//!   English `info` blocks, the region's 6-digit code as its geocode; updates and all-clears
//!   reference the alerts they follow).
//!
//! Still to come (issue 18): the Atom/RSS feeds and `/cap/{id}.xml` routes, the WebSub/webhook
//! push through the outbox, and the public archive of notices and rebuttals.

pub mod cap;
