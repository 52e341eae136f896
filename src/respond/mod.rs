//! Respond: the linked-account matrix, notice templates, the hash-chained audit log, the durable
//! outbox, rate limits and the platform publishers.
//!
//! Being built (issue 4). Done so far: see each module. Not wired into the service yet: notices,
//! approval and the dispatcher come next.

pub mod audit;
pub mod dispatch;
pub mod limits;
pub mod matrix;
pub mod notices;
pub mod outbox;
pub mod publish;
pub mod templates;
