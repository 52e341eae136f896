//! Respond: the linked-account matrix, notice templates, the hash-chained audit log, the durable
//! outbox, rate limits, the platform publishers and the rebuttal replies to rumor posts.
//!
//! [`stage`] wires them into the service (drafting from incidents, the dispatcher task); the
//! API's notice endpoints are in `crate::api::notices`.

pub mod api;
pub mod audit;
pub mod config;
pub mod dispatch;
pub mod limits;
pub mod matrix;
pub mod notices;
pub mod outbox;
pub mod publish;
pub mod redis;
pub mod replies;
pub mod stage;
pub mod templates;

pub use config::{BotConfig, Operator, RespondConfig, SmtpConfig};
