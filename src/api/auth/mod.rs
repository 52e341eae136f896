//! Login, roles and API authentication.
//!
//! Roles: `viewer` (read the API, the wall), `operator` (viewer + notice and incident state
//! changes, publishing pause), `admin` (everything, including tokens and reloads) and `ingest`
//! (only `POST /api/mentions`, for feeds and scripts). Credentials, in this order:
//! `Authorization: Bearer <token>`; the `huiying_session` cookie set by `POST /api/login`; and
//! for the `/api/stream` websocket only, `?access_token=<token>` (browsers cannot set headers on
//! a websocket).
//!
//! Users (name, role, argon2id password hash) and API tokens (name, role, SHA-256 of the token)
//! live in the users file named by `[auth] users_file`. Tokens are 256 random bits, so a single
//! SHA-256 is enough to make a stolen file useless; passwords are guessable and get argon2id.
//! Sessions live in memory (a restart logs everyone out), expire after `session_secs` on the
//! injected [`crate::clock::Clock`], and carry a CSRF token: every state-changing request authenticated by the
//! cookie must send it as `X-CSRF-Token` (the cookie is also `SameSite=Strict`). Bearer requests
//! need no CSRF token: a browser never adds that header by itself.
//!
//! Failed logins are counted in `huiying_login_failures_total{reason}` and limited per user and
//! per client address in a sliding window on the same clock.
//!
//! Files: `config.rs` (the `[auth]` section and config tokens), `roles.rs` ([`Role`]),
//! `users.rs` (the users file and hashing), `limits.rs` (login limits and their metric),
//! `sessions.rs` ([`Auth`]: directory, sessions, logins), `middleware.rs` ([`authenticate`],
//! [`guard`], [`Access`], [`security_headers`]), `handlers.rs` ([`routes`]).

mod config;
mod handlers;
mod limits;
mod middleware;
mod proxies;
mod roles;
mod sessions;
mod users;

pub use config::{AuthConfig, TokenEntry};
pub use handlers::routes;
pub use limits::{login_failures, LoginFailure};
pub use middleware::{authenticate, guard, security_headers, Access, Credential};
pub use roles::Role;
pub use sessions::{no_audit, AuditFirst, Auth, ClientIp, LoggedIn, Principal, Refused};
pub use users::{
    hash_password, new_secret, token_hash, verify_password, write_private, AuthError, UserEntry,
    UsersFile,
};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "huiying_session";
/// The session cookie's name with `[auth] secure_cookie`: the `__Host-` prefix makes browsers
/// refuse it unless it is `Secure`, has `Path=/` and no `Domain`, so neither a plain-HTTP
/// answer nor a sibling subdomain can plant or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-huiying_session";
/// The header carrying the per-session CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
