//! service tests.
