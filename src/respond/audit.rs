//! audit: being built.
