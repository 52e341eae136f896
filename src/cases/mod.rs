//! Cases: citizen requests (求助/投诉/举报/咨询/建议/表扬) and their accept (受理) → transfer (转办)
//! → supervise (督办) → feedback (反馈) workflow.
//!
//! | file | owns |
//! |---|---|
//! | [`routing`] | the departments of `rules/routing/` and the router (keywords, then the trained [`classifier`]) |
//! | [`model`] | the case, its states and pure transitions, requesters, the reading of a rating |
//! | [`deadlines`] | the calendar of `rules/cases/calendar.toml` and when a case is due |
//! | [`texts`] | the acknowledgement, answer and e-mail texts of `rules/cases/replies.toml` |
//! | [`store`] | [`store::CaseStore`]: `redb` (default), memory, Redis |
//! | [`workflow`] | [`workflow::Cases`]: intake, duplicates, incident links, transitions with audit, answers through the outbox, ratings, supervision |
//! | [`stage`] | the stage: intake from `mention.request` (waited for), supervision rounds, the routes |
//! | [`api`] | `/api/cases…`, `/api/departments` with their access |
//! | [`open311`] | Open311 GeoReport v2 (`/open311/v2/…`, JSON and XML) |
//! | [`config`] | `[cases]` |

pub mod api;
pub mod classifier;
pub mod config;
pub mod deadlines;
pub mod model;
pub mod open311;
pub mod routing;
pub mod stage;
pub mod store;
pub mod texts;
pub mod workflow;

pub use config::CasesConfig;
pub use model::{
    read_satisfaction, Case, CaseError, CaseEvent, CaseState, Channel, Contact, Intake,
    PendingAnswer, Requester, Satisfaction,
};
pub use routing::{Department, Departments, Router, Routing, DEPARTMENT_IDS};
pub use workflow::{Actor, CaseFilter, Cases, IntakeOutcome, MentionOutcome, WorkflowError};

/// The request kinds a case may have (`rules/requests.toml` ids).
pub const KINDS: [&str; 6] = [
    "help",
    "complaint",
    "report",
    "inquiry",
    "suggestion",
    "praise",
];
