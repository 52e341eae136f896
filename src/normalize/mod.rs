//! Normalise: parse raw mentions (JSON) into [`Mention`]s, reject bad input with a reason, and
//! bring text to one canonical form (NFKC, half-width, lower case, simplified Chinese).

pub mod dedup;
pub mod mention;
pub mod text;

pub use dedup::SeenIds;
pub use mention::{parse_mention, Author, Mention, RejectReason, MAX_LINE_BYTES};
pub use text::Normalizer;
