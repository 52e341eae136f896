//! outbox: being built.
