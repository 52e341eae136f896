//! matrix: being built.
