//! limits: being built.
