//! templates: being built.
