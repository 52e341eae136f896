//! `[auth]`: the users file, extra tokens, the public wall, session lifetime and login limits.

use super::Role;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[auth]`: who may use the API and the console (see `crate::api::auth`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The users file (`[[user]]` with argon2 hashes, `[[token]]` with SHA-256 hashes),
    /// relative to the config file; written by `huiying user add` / `huiying token create`.
    pub users_file: Option<PathBuf>,
    /// Extra API tokens given by hash in the config itself (`{ name, role, sha256 }`).
    pub tokens: Vec<TokenEntry>,
    /// Serve `/wall` and every read it makes (GET endpoints) without a credential.
    pub public_wall: bool,
    /// Session lifetime from login, seconds (default 8 h).
    pub session_secs: u64,
    /// Failed logins per user name within the window before logins are refused (default 5).
    pub login_max_failures_per_user: usize,
    /// Failed logins per client address within the window (default 20).
    pub login_max_failures_per_ip: usize,
    /// The sliding window of the login limits, seconds (default 15 min).
    pub login_window_secs: u64,
    /// Mark the session cookie `Secure` (set when HTTPS terminates in front of the engine).
    pub secure_cookie: bool,
    /// Reverse proxies (addresses or CIDR blocks, e.g. `["127.0.0.1", "10.0.0.0/8"]`) whose
    /// `X-Forwarded-For` names the client: the per-address login limit then counts clients,
    /// not the proxy. Empty (default): the header is ignored, the peer's address counts.
    pub trusted_proxies: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users_file: None,
            tokens: Vec::new(),
            public_wall: false,
            session_secs: 8 * 3600,
            login_max_failures_per_user: 5,
            login_max_failures_per_ip: 20,
            login_window_secs: 15 * 60,
            secure_cookie: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// One API token of the users file (the token itself is shown once, when created).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The token's name; the actor in the audit log.
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// The user the token acts for: the actor of its requests and approvals (one person with
    /// two tokens is still one approver). Required for operator and admin tokens created
    /// since tokens had owners; a token without one acts under its own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl TokenEntry {
    /// Who the token acts for: its owner, else its name.
    pub fn actor(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.name)
    }
}
