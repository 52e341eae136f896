//! Incidents: the single owner of detection state. Applies analysed mentions in input order on
//! event time, keeps spike windows per (category, region) and claim groups (the posts carrying
//! one claim: a repost cascade plus copy-paste variants), and turns them into incidents with a
//! lifecycle and a severity.
//!
//! - `engine/`: the [`Engine`] state machine (see its module doc for its files).
//! - `incident.rs`: the incident and event types the engine emits.
//! - `hours.rs`: the hourly figures (volume, regions, terms, most reposted) for reports.
//! - `rumor.rs`: claim-group look-ups (cascade map, sketch index).
//! - `control.rs`: operator changes (close, merge) that travel the pipeline as items.
//! - `coord.rs`: the [`coord::Coordinator`] hook through which a fleet of instances shares
//!   incident ids and window counts.

pub mod control;
pub mod coord;
pub mod engine;
pub mod hours;
pub mod incident;
pub mod rumor;

pub use control::Control;
pub use engine::{Engine, EngineStats};
pub use hours::{HourPost, HourStats};
pub use incident::{
    headline, Event, EventKind, Incident, IncidentKind, IncidentState, Rebuttal, RumorWhy,
    SpreadPost, HEADLINE_CHARS, SPREAD_TOP,
};
