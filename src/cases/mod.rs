//! Cases: citizen requests (求助/投诉/举报/咨询/建议/表扬) and their accept (受理) → transfer (转办)
//! → supervise (督办) → feedback (反馈) workflow.
//!
//! Built so far: [`routing`], the departments of `rules/routing/` and the rules router that
//! picks a request's department and kinds, with [`classifier`], the trained model an office
//! fits on its past cases (`huiying cases classify`, `eval`, `train`), and
//! [`model`], the case, its states and transitions and the reading of a rating, and
//! [`deadlines`], the office's calendar (`rules/cases/calendar.toml`) and when a case is due.
//! Not built yet: intake, the case store, deadlines, answers through the outbox, Open311 (issue 14).

pub mod classifier;
pub mod deadlines;
pub mod model;
pub mod routing;

pub use model::{
    read_satisfaction, Case, CaseError, CaseEvent, CaseState, Channel, Contact, Intake, Requester,
    Satisfaction,
};
pub use routing::{Department, Departments, Router, Routing, DEPARTMENT_IDS};
