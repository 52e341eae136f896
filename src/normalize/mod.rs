//! Normalise: parse raw mentions (JSON) into [`Mention`]s, reject bad input with a reason, and
//! bring text to one canonical form (NFKC, half-width, lower case, simplified Chinese); post
//! HTML to plain text.
//!
//! Files: `mention.rs` (the type, parsing, reasons), `text.rs` (the [`Normalizer`]), `html.rs`
//! ([`html_to_text`]), `dedup.rs` ([`SeenIds`]), `packed.rs` ([`Packed`]: a mention held
//! in one shared string while it waits for an incident).

pub mod dedup;
pub mod html;
pub mod mention;
pub mod packed;
pub mod text;

pub use dedup::SeenIds;
pub use html::html_to_text;
pub use mention::{parse_mention, Author, Mention, RejectReason, MAX_LINE_BYTES};
pub use packed::Packed;
pub use text::Normalizer;
