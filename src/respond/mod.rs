//! Respond: notice drafts, approval and fan-out through the linked-account matrix.
//!
//! Not built yet: this arrives with the response issue. Incident events are already published
//! on the event bus (see [`crate::app`]) for this stage to subscribe to.
