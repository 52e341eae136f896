//! crisislex tests.
