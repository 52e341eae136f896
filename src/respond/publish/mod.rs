//! Publishers: being built.
