//! Mastodon feed tests.
