//! Jetstream feed tests.
