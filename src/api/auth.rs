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
//! injected [`Clock`], and carry a CSRF token: every state-changing request authenticated by the
//! cookie must send it as `X-CSRF-Token` (the cookie is also `SameSite=Strict`). Bearer requests
//! need no CSRF token: a browser never adds that header by itself.
//!
//! Failed logins are counted in `huiying_login_failures_total{reason}` and limited per user and
//! per client address in a sliding window on the same clock.

use super::{ApiError, ApiState};
use crate::config::AuthConfig;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "huiying_session";
/// The header carrying the per-session CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A role: what a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads incidents, feeds, notices, the stream and the wall.
    Viewer,
    /// Viewer, plus approve/reject/edit notices, close and merge incidents, pause publishing.
    Operator,
    /// Everything: users, tokens, rules reload.
    Admin,
    /// Only `POST /api/mentions`.
    Ingest,
}

impl Role {
    /// Every role, for help texts and validation.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Ingest];

    /// The name used in files, the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
        }
    }

    /// Whether this role may do what `need` allows. Admin may do everything; operator what a
    /// viewer may; ingest only ingest.
    pub fn allows(self, need: Role) -> bool {
        matches!(
            (self, need),
            (Role::Admin, _)
                | (Role::Operator, Role::Operator | Role::Viewer)
                | (Role::Viewer, Role::Viewer)
                | (Role::Ingest, Role::Ingest)
        )
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (viewer, operator, admin, ingest)"))
    }
}

/// Errors of the users file and of hashing.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid: `file:line: message`.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line (0: unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A name is empty or has characters outside `[A-Za-z0-9._@-]`.
    #[error("invalid name {0:?}: use letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    /// Hashing failed (should not happen with valid parameters).
    #[error("password hashing: {0}")]
    Hash(String),
}

/// One user of the users file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Login name; also the actor in the audit log.
    pub name: String,
    /// The user's role.
    pub role: Role,
    /// argon2id PHC string (`$argon2id$v=19$…`).
    pub password: String,
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
}

/// The users file: `[[user]]` and `[[token]]` tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Users who log in with a password.
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
    /// API tokens.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenEntry>,
}

fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(name.to_string()))
    }
}

impl UsersFile {
    /// Read and validate a users file; a missing file is an empty one.
    pub fn load(path: &FsPath) -> Result<UsersFile, AuthError> {
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UsersFile::default()),
            Err(source) => {
                return Err(AuthError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(path, &src)
    }

    /// Parse and validate `src` (named `path` in errors).
    pub fn parse(path: &FsPath, src: &str) -> Result<UsersFile, AuthError> {
        let invalid = |line: usize, message: String| AuthError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let f: UsersFile = toml::from_str(src).map_err(|e| {
            let line = e
                .span()
                .map(|s| src[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            invalid(line, e.message().trim().to_string())
        })?;
        // Line of the n-th occurrence of a table header, for errors after parsing.
        let line_of = |table: &str, n: usize| {
            src.lines()
                .enumerate()
                .filter(|(_, l)| l.trim() == table)
                .nth(n)
                .map(|(i, _)| i + 1)
                .unwrap_or(0)
        };
        let mut seen = std::collections::HashSet::new();
        for (i, u) in f.users.iter().enumerate() {
            let at = line_of("[[user]]", i);
            check_name(&u.name).map_err(|e| invalid(at, e.to_string()))?;
            if !seen.insert(u.name.as_str()) {
                return Err(invalid(at, format!("user {:?} appears twice", u.name)));
            }
            PasswordHash::new(&u.password).map_err(|e| {
                invalid(
                    at,
                    format!("user {:?}: password is not a PHC hash: {e}", u.name),
                )
            })?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in f.tokens.iter().enumerate() {
            let at = line_of("[[token]]", i);
            check_name(&t.name).map_err(|e| invalid(at, e.to_string()))?;
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    at,
                    format!("token {:?}: sha256 must be 64 hex digits", t.name),
                ));
            }
            if !seen.insert(t.sha256.to_ascii_lowercase()) {
                return Err(invalid(at, format!("token {:?} appears twice", t.name)));
            }
        }
        Ok(f)
    }

    /// Write the file atomically (temporary file, then rename), readable by the owner only.
    pub fn save(&self, path: &FsPath) -> Result<(), AuthError> {
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::from(
            "# huiying users and API tokens: argon2id password hashes, SHA-256 of tokens.\n\
             # Edit with `huiying user add` and `huiying token create`.\n\n",
        );
        text += &toml::to_string(self).map_err(|e| AuthError::Hash(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("toml.tmp");
        write_private(&tmp, text.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Add a user, or replace the role and password of the user with that name.
    pub fn set_user(&mut self, name: &str, role: Role, password: &str) -> Result<(), AuthError> {
        check_name(name)?;
        let hash = hash_password(password)?;
        self.users.retain(|u| u.name != name);
        self.users.push(UserEntry {
            name: name.to_string(),
            role,
            password: hash,
        });
        Ok(())
    }

    /// Add a token named `name` (names may repeat: rotation); returns the token, shown once.
    pub fn add_token(&mut self, name: &str, role: Role) -> Result<String, AuthError> {
        check_name(name)?;
        let token = new_secret("hy_");
        self.tokens.push(TokenEntry {
            name: name.to_string(),
            role,
            sha256: token_hash(&token),
        });
        Ok(token)
    }
}

/// Create (or truncate) a file with mode 0600 and write `bytes`, synced.
pub fn write_private(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// An argon2id hash (PHC string) of `password` with a random salt and the crate's default
/// parameters (19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 256 random bits, hex, after `prefix`.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Where the time comes from: sessions and login limits run on it, so tests move it by hand.
pub trait Clock: Send + Sync + 'static {
    /// Now, in unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock moved by hand (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        ManualClock(AtomicI64::new(ms))
    }
    /// Move the clock forward.
    pub fn advance(&self, d: std::time::Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Who made a request, as the handlers see it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User or token name: the actor of the audit log.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The CSRF token, when authenticated by the session cookie.
    pub csrf: Option<String>,
    /// Session expiry (unix ms), when authenticated by the session cookie.
    pub expires_at: Option<i64>,
}

/// The client's address, as the middleware saw it (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: Role,
    csrf: String,
    expires_at: i64,
}

/// Users and token hashes by lookup key.
#[derive(Debug, Default)]
struct Directory {
    users: HashMap<String, (Role, String)>,
    tokens: HashMap<String, (String, Role)>,
}

impl Directory {
    fn add_file(&mut self, f: &UsersFile) {
        for u in &f.users {
            self.users
                .insert(u.name.clone(), (u.role, u.password.clone()));
        }
        for t in &f.tokens {
            self.tokens
                .insert(t.sha256.to_ascii_lowercase(), (t.name.clone(), t.role));
        }
    }
}

/// Why a login failed (the `reason` label of `huiying_login_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// No such user.
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// Too many recent failures for this user or this client address.
    RateLimited,
    /// The request is not a login request (bad JSON, missing fields).
    BadRequest,
}

impl LoginFailure {
    /// Every reason, for the metric's label set.
    pub const ALL: [LoginFailure; 4] = [
        LoginFailure::UnknownUser,
        LoginFailure::WrongPassword,
        LoginFailure::RateLimited,
        LoginFailure::BadRequest,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::UnknownUser => "unknown_user",
            LoginFailure::WrongPassword => "wrong_password",
            LoginFailure::RateLimited => "rate_limited",
            LoginFailure::BadRequest => "bad_request",
        }
    }

    /// Count it.
    pub fn emit(self) {
        login_failures().with_label_values(&[self.as_str()]).inc();
        tracing::info!(reason = self.as_str(), "Login refused.");
    }
}

/// `huiying_login_failures_total{reason}`, registered in the global registry on first use.
pub fn login_failures() -> &'static prometheus::IntCounterVec {
    static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "huiying_login_failures_total",
                "Refused console logins, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for r in LoginFailure::ALL {
            c.with_label_values(&[r.as_str()]);
        }
        // Registered once per process; a second registry user would be a programming error
        // caught by the tests, not something to crash a server over.
        if let Err(e) = crate::metrics::global()
            .registry
            .register(Box::new(c.clone()))
        {
            tracing::error!(error = %e, "Cannot register huiying_login_failures_total.");
        }
        c
    })
}

/// Failure timestamps per key (`u:<name>` / `ip:<addr>`), pruned to the window.
#[derive(Debug, Default)]
struct Attempts(HashMap<String, VecDeque<i64>>);

impl Attempts {
    /// How many failures `key` has in the window ending `now`.
    fn count(&mut self, key: &str, now: i64, window_ms: i64) -> usize {
        match self.0.get_mut(key) {
            Some(q) => {
                while q.front().is_some_and(|t| *t <= now - window_ms) {
                    q.pop_front();
                }
                q.len()
            }
            None => 0,
        }
    }

    /// When the oldest failure of `key` leaves the window.
    fn free_at(&self, key: &str, window_ms: i64) -> Option<i64> {
        self.0.get(key)?.front().map(|t| t + window_ms)
    }

    fn record(&mut self, key: String, now: i64, window_ms: i64) {
        // Bounded memory under a spray of user names: drop keys with nothing in the window.
        if self.0.len() > 10_000 {
            self.0
                .retain(|_, q| q.back().is_some_and(|t| *t > now - window_ms));
        }
        self.0.entry(key).or_default().push_back(now);
    }
}

/// Authentication state shared by the middleware and the handlers.
pub struct Auth {
    cfg: AuthConfig,
    metrics_elsewhere: bool,
    dir: RwLock<Directory>,
    sessions: Mutex<HashMap<String, Session>>,
    attempts: Mutex<Attempts>,
    clock: Arc<dyn Clock>,
    /// Verified against for unknown users so both failures cost the same time.
    dummy_hash: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.dir.read().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Auth")
            .field("users", &d.users.len())
            .field("tokens", &d.tokens.len())
            .finish_non_exhaustive()
    }
}

/// What a login hands back.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The session id (the cookie's value).
    pub session: String,
    /// The user.
    pub user: String,
    /// The role.
    pub role: Role,
    /// The CSRF token for state-changing requests.
    pub csrf: String,
    /// Expiry, unix ms.
    pub expires_at: i64,
}

/// A refused login: the reason and, when rate limited, the seconds until the next try.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// Why.
    pub reason: LoginFailure,
    /// Seconds to wait (rate limited only).
    pub retry_after_secs: Option<u64>,
}

impl Auth {
    /// Build from the config: the users file (if any) plus extra in-memory tokens (the legacy
    /// `[respond] operators`, tests). `metrics_elsewhere`: `/metrics` has its own address, so
    /// the main one requires a viewer.
    pub fn new(
        cfg: AuthConfig,
        extra_tokens: Vec<(String, String, Role)>,
        metrics_elsewhere: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<Auth, AuthError> {
        let mut dir = Directory::default();
        if let Some(p) = &cfg.users_file {
            dir.add_file(&UsersFile::load(p)?);
        }
        for t in &cfg.tokens {
            dir.tokens
                .insert(t.sha256.to_ascii_lowercase(), (t.name.clone(), t.role));
        }
        for (name, token, role) in extra_tokens {
            dir.tokens.insert(token_hash(&token), (name, role));
        }
        let dummy_hash = hash_password(&new_secret(""))?;
        // Exported from the start (at zero), not from the first failure.
        login_failures();
        Ok(Auth {
            cfg,
            metrics_elsewhere,
            dir: RwLock::new(dir),
            sessions: Mutex::default(),
            attempts: Mutex::default(),
            clock,
            dummy_hash,
        })
    }

    /// Users and tokens loaded.
    pub fn counts(&self) -> (usize, usize) {
        let d = self.dir.read().unwrap_or_else(|p| p.into_inner());
        (d.users.len(), d.tokens.len())
    }

    /// Add (or replace) an in-memory user, e.g. the demo's ephemeral accounts.
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), AuthError> {
        check_name(name)?;
        let hash = hash_password(password)?;
        self.dir
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .insert(name.to_string(), (role, hash));
        Ok(())
    }

    /// Re-read the users file (new users and tokens take effect; removed ones stop working;
    /// sessions of removed users end).
    pub fn reload_users(&self) -> Result<(usize, usize), AuthError> {
        let Some(p) = &self.cfg.users_file else {
            return Ok(self.counts());
        };
        let f = UsersFile::load(p)?;
        let mut d = self.dir.write().unwrap_or_else(|p| p.into_inner());
        // In-memory entries (demo users, config tokens) are kept; the file's are replaced.
        let file_tokens: std::collections::HashSet<String> = f
            .tokens
            .iter()
            .map(|t| t.sha256.to_ascii_lowercase())
            .collect();
        d.tokens.retain(|h, _| {
            file_tokens.contains(h) || self.cfg.tokens.iter().any(|t| &t.sha256 == h)
        });
        d.add_file(&f);
        let users: std::collections::HashSet<&str> = d.users.keys().map(String::as_str).collect();
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| users.contains(s.user.as_str()));
        Ok((d.users.len(), d.tokens.len()))
    }

    /// Create a token, persist its hash in the users file (when there is one) and return it.
    pub fn create_token(&self, name: &str, role: Role) -> Result<String, AuthError> {
        let token = match &self.cfg.users_file {
            Some(p) => {
                let mut f = UsersFile::load(p)?;
                let t = f.add_token(name, role)?;
                f.save(p)?;
                t
            }
            None => {
                check_name(name)?;
                new_secret("hy_")
            }
        };
        self.dir
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .insert(token_hash(&token), (name.to_string(), role));
        Ok(token)
    }

    /// Revoke every token named `name` (in memory and in the users file); how many went.
    pub fn revoke_tokens(&self, name: &str) -> Result<usize, AuthError> {
        if let Some(p) = &self.cfg.users_file {
            let mut f = UsersFile::load(p)?;
            let before = f.tokens.len();
            f.tokens.retain(|t| t.name != name);
            if f.tokens.len() != before {
                f.save(p)?;
            }
        }
        let mut d = self.dir.write().unwrap_or_else(|p| p.into_inner());
        let before = d.tokens.len();
        d.tokens.retain(|_, (n, _)| n != name);
        Ok(before - d.tokens.len())
    }

    /// Users (name, role) and token names with roles, sorted; never a hash.
    pub fn listing(&self) -> Value {
        let d = self.dir.read().unwrap_or_else(|p| p.into_inner());
        let mut users: Vec<_> = d
            .users
            .iter()
            .map(|(n, (r, _))| json!({"name": n, "role": r}))
            .collect();
        users.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_string());
        let mut tokens: Vec<_> = d
            .tokens
            .values()
            .map(|(n, r)| json!({"name": n, "role": r}))
            .collect();
        tokens.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_string());
        json!({ "users": users, "tokens": tokens })
    }

    fn by_token(&self, token: &str) -> Option<Principal> {
        let d = self.dir.read().unwrap_or_else(|p| p.into_inner());
        d.tokens
            .get(&token_hash(token))
            .map(|(name, role)| Principal {
                name: name.clone(),
                role: *role,
                csrf: None,
                expires_at: None,
            })
    }

    fn by_session(&self, id: &str) -> Option<Principal> {
        let now = self.clock.now_ms();
        let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = token_hash(id);
        let s = g.get(&key)?;
        if s.expires_at <= now {
            g.remove(&key);
            return None;
        }
        Some(Principal {
            name: s.user.clone(),
            role: s.role,
            csrf: Some(s.csrf.clone()),
            expires_at: Some(s.expires_at),
        })
    }

    /// Check a password (argon2: call off the async threads). On success a new session.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<LoggedIn, Refused> {
        let now = self.clock.now_ms();
        let window = i64::try_from(self.cfg.login_window_secs)
            .unwrap_or(i64::MAX / 2000)
            .saturating_mul(1000);
        let ukey = format!("u:{user}");
        let ikey = ip.map(|i| format!("ip:{i}"));
        {
            let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let mut blocked = None;
            if a.count(&ukey, now, window) >= self.cfg.login_max_failures_per_user {
                blocked = a.free_at(&ukey, window);
            }
            if let Some(k) = &ikey {
                if a.count(k, now, window) >= self.cfg.login_max_failures_per_ip {
                    blocked = blocked.max(a.free_at(k, window));
                }
            }
            if let Some(at) = blocked {
                return Err(Refused {
                    reason: LoginFailure::RateLimited,
                    retry_after_secs: Some(u64::try_from((at - now).max(1000) / 1000).unwrap_or(1)),
                });
            }
        }
        let found = self
            .dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .get(user)
            .cloned();
        let outcome = match &found {
            Some((role, hash)) if verify_password(hash, password) => Ok(*role),
            Some(_) => Err(LoginFailure::WrongPassword),
            None => {
                // Same cost as a real check: response time does not reveal who exists.
                let _ = verify_password(&self.dummy_hash, password);
                Err(LoginFailure::UnknownUser)
            }
        };
        let role = match outcome {
            Ok(r) => r,
            Err(reason) => {
                let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                a.record(ukey, now, window);
                if let Some(k) = ikey {
                    a.record(k, now, window);
                }
                return Err(Refused {
                    reason,
                    retry_after_secs: None,
                });
            }
        };
        let session = new_secret("");
        let ttl = i64::try_from(self.cfg.session_secs)
            .unwrap_or(i64::MAX / 2000)
            .saturating_mul(1000);
        let s = Session {
            user: user.to_string(),
            role,
            csrf: new_secret(""),
            expires_at: now.saturating_add(ttl),
        };
        let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // Expired sessions go whenever someone logs in: memory stays bounded by live sessions.
        g.retain(|_, s| s.expires_at > now);
        g.insert(token_hash(&session), s.clone());
        Ok(LoggedIn {
            session,
            user: s.user,
            role,
            csrf: s.csrf,
            expires_at: s.expires_at,
        })
    }

    /// End a session.
    pub fn logout(&self, session: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token_hash(session));
    }

    /// The principal of the credential a request carries (and whether it came by cookie);
    /// `None` without a valid one.
    fn authenticate(&self, req: &Request) -> Option<(Principal, bool)> {
        if let Some(v) = req.headers().get(header::AUTHORIZATION) {
            let t = v.to_str().ok()?.strip_prefix("Bearer ")?.trim();
            return self.by_token(t).map(|p| (p, false));
        }
        if let Some(id) = session_cookie(req.headers()) {
            if let Some(p) = self.by_session(id) {
                return Some((p, true));
            }
        }
        if req.uri().path() == "/api/stream" {
            let q = req.uri().query().unwrap_or("");
            for pair in q.split('&') {
                if let Some(t) = pair.strip_prefix("access_token=") {
                    return self.by_token(t).map(|p| (p, false));
                }
            }
        }
        None
    }

    /// What a request needs: `None` for public endpoints, else the least role.
    pub fn requirement(&self, method: &Method, path: &str) -> Option<Role> {
        let read = matches!(*method, Method::GET | Method::HEAD);
        match path {
            "/healthz" | "/api/login" => return None,
            "/metrics" if !self.metrics_elsewhere => return None,
            "/console" => return None,
            p if p.starts_with("/console/") => return None,
            // The wall's page and assets hold no data (that is under /api), and a page
            // navigation cannot carry a bearer token: `/wall#token=…` must load.
            "/wall" => return None,
            p if p.starts_with("/wall/") => return None,
            "/api/mentions" => return Some(Role::Ingest),
            "/api/audit" => return Some(Role::Operator),
            p if p.starts_with("/api/admin/") => return Some(Role::Admin),
            _ => {}
        }
        // The wall and the reads it makes are public when configured so (not the accounts,
        // the audit log or who is logged in).
        if read && self.cfg.public_wall && wall_read(path) {
            return None;
        }
        if read || path == "/api/logout" {
            Some(Role::Viewer)
        } else {
            // Anything else that changes state: notices, publishing, incidents.
            Some(Role::Operator)
        }
    }

    /// Session lifetime, seconds.
    pub fn session_secs(&self) -> u64 {
        self.cfg.session_secs
    }

    /// Whether the session cookie is marked `Secure` (HTTPS in front).
    pub fn secure_cookie(&self) -> bool {
        self.cfg.secure_cookie
    }
}

/// What the wall display reads: the page and its assets, incidents, feeds, notices, the stream.
fn wall_read(path: &str) -> bool {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    ["/api/wall", "/api/incidents", "/api/feeds", "/api/notices"]
        .into_iter()
        .any(under)
        || path == "/api/stream"
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

/// The middleware: resolves the credential, checks the role and, for cookie requests that
/// change state, the CSRF token; puts [`Principal`] and [`ClientIp`] into the request.
pub async fn require(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    req.extensions_mut().insert(ClientIp(ip));
    let Some(need) = auth.requirement(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some((p, by_cookie)) = auth.authenticate(&req) else {
        return unauthorized(
            "log in, or send a token (Authorization: Bearer …); 请先登录或提供访问令牌",
        );
    };
    if !p.role.allows(need) {
        tracing::info!(actor = %p.name, role = %p.role, need = %need, path = %req.uri().path(), "Forbidden.");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {need} role; {} has {}", p.name, p.role),
        )
        .into_response();
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if by_cookie && !safe {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let ok = match (sent, &p.csrf) {
            (Some(s), Some(c)) => constant_time_eq(s.as_bytes(), c.as_bytes()),
            _ => false,
        };
        if !ok {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token for a cookie-authenticated request",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Security headers on every answer: no framing, no sniffing, no referrer, and a CSP that
/// allows only the engine's own scripts, styles and connections (no inline script).
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    r
}

/// The login, logout, identity and admin routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/admin/users", get(admin_users))
        .route("/api/admin/users/reload", post(admin_reload_users))
        .route("/api/admin/tokens", post(admin_create_token))
        .route("/api/admin/tokens/{name}/revoke", post(admin_revoke_token))
        .route("/api/admin/rules/reload", post(admin_reload_rules))
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

fn cookie(auth: &Auth, value: &str, max_age: u64) -> String {
    let secure = if auth.secure_cookie() { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    )
}

async fn login(
    State(s): State<ApiState>,
    Extension(ip): Extension<ClientIp>,
    body: axum::body::Bytes,
) -> Response {
    let b: LoginBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            LoginFailure::BadRequest.emit();
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
                .into_response();
        }
    };
    let auth = s.auth.clone();
    let res = tokio::task::spawn_blocking(move || auth.login(&b.user, &b.password, ip.0)).await;
    match res {
        Ok(Ok(li)) => {
            tracing::info!(actor = %li.user, role = %li.role, "Logged in.");
            super::audit(&s, &li.user, "login", json!({"role": li.role})).await;
            let mut r = Json(json!({
                "user": li.user, "role": li.role, "csrf": li.csrf, "expires_at": li.expires_at,
            }))
            .into_response();
            if let Ok(v) =
                HeaderValue::from_str(&cookie(&s.auth, &li.session, s.auth.session_secs()))
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Err(refused)) => {
            refused.reason.emit();
            if let Some(secs) = refused.retry_after_secs {
                let mut r = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("too many failed logins; try again in {secs} s; 登录失败次数过多，请稍后再试"),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return r;
            }
            // The same answer for an unknown user and a wrong password.
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong user name or password; 用户名或密码错误",
            )
            .into_response()
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

async fn logout(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = session_cookie(&headers) {
        s.auth.logout(id);
        super::audit(&s, &p.name, "logout", json!({})).await;
    }
    let mut r = Json(json!({"ok": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie(&s.auth, "", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn me(Extension(p): Extension<Principal>) -> Json<Value> {
    Json(json!({
        "user": p.name, "role": p.role, "csrf": p.csrf, "expires_at": p.expires_at,
    }))
}

async fn admin_users(State(s): State<ApiState>) -> Json<Value> {
    Json(s.auth.listing())
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::BadName(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        AuthError::Invalid { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_users_file",
            e.to_string(),
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            e.to_string(),
        ),
    }
}

/// Run users-file work (hashing, file I/O) off the async threads.
async fn off_thread<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    let auth = s.auth.clone();
    tokio::task::spawn_blocking(move || f(&auth))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(auth_error)
}

async fn admin_reload_users(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let (users, tokens) = off_thread(&s, |a| a.reload_users()).await?;
    super::audit(
        &s,
        &p.name,
        "users_reload",
        json!({"users": users, "tokens": tokens}),
    )
    .await;
    Ok(Json(json!({"users": users, "tokens": tokens})))
}

#[derive(Debug, Deserialize)]
struct NewToken {
    name: String,
    role: Role,
}

async fn admin_create_token(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let (name, role) = (b.name.clone(), b.role);
    let token = off_thread(&s, move |a| a.create_token(&name, role)).await?;
    super::audit(
        &s,
        &p.name,
        "token_create",
        json!({"name": b.name, "role": b.role}),
    )
    .await;
    tracing::info!(actor = %p.name, token = %b.name, role = %b.role, "Token created.");
    Ok(Json(
        json!({"name": b.name, "role": b.role, "token": token}),
    ))
}

async fn admin_revoke_token(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n2 = name.clone();
    let revoked = off_thread(&s, move |a| a.revoke_tokens(&n2)).await?;
    super::audit(
        &s,
        &p.name,
        "token_revoke",
        json!({"name": name, "revoked": revoked}),
    )
    .await;
    Ok(Json(json!({"name": name, "revoked": revoked})))
}

async fn admin_reload_rules(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let rules = s.rules.clone();
    let dir = s.rules_dir.clone();
    let res = tokio::task::spawn_blocking(move || {
        let normalizer = crate::normalize::Normalizer::new();
        crate::detect::reload::reload(&rules, &dir, &normalizer)
            .map(|()| rules.load().pattern_count())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match res {
        Ok(patterns) => {
            super::audit(&s, &p.name, "rules_reload", json!({"patterns": patterns})).await;
            Ok(Json(json!({"ok": true, "patterns": patterns})))
        }
        Err(e) => {
            super::audit(
                &s,
                &p.name,
                "rules_reload_failed",
                json!({"errors": e.to_string()}),
            )
            .await;
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_rules",
                e.to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(clock: Arc<ManualClock>) -> Auth {
        let cfg = AuthConfig {
            login_max_failures_per_user: 3,
            login_max_failures_per_ip: 5,
            login_window_secs: 60,
            session_secs: 600,
            ..AuthConfig::default()
        };
        let a = Auth::new(cfg, vec![], false, clock).expect("auth");
        a.add_user("alice", Role::Operator, "correct horse")
            .expect("user");
        a
    }

    #[test]
    fn roles_nest_except_ingest() {
        let table = [
            (Role::Admin, [true, true, true, true]),
            (Role::Operator, [true, true, false, false]),
            (Role::Viewer, [true, false, false, false]),
            (Role::Ingest, [false, false, false, true]),
        ];
        for (have, allowed) in table {
            for (need, want) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(have.allows(need), want, "{have} → {need}");
            }
        }
    }

    #[test]
    fn what_each_route_needs() {
        let clock = Arc::new(ManualClock::new(0));
        let closed = auth(clock.clone());
        let public = Auth::new(
            AuthConfig {
                public_wall: true,
                ..AuthConfig::default()
            },
            vec![],
            true,
            clock,
        )
        .expect("auth");
        use Role::*;
        let (get, post) = (Method::GET, Method::POST);
        let table: [(&Method, &str, Option<Role>, Option<Role>); 19] = [
            (&get, "/healthz", None, None),
            (&get, "/metrics", None, Some(Viewer)),
            (&get, "/console", None, None),
            (&get, "/console/app.js", None, None),
            (&post, "/api/login", None, None),
            (&post, "/api/logout", Some(Viewer), Some(Viewer)),
            (&get, "/api/me", Some(Viewer), Some(Viewer)),
            (&get, "/wall", None, None),
            (&get, "/wall/wall.js", None, None),
            (&get, "/api/wall/labels", Some(Viewer), None),
            (&get, "/api/stream", Some(Viewer), None),
            (&get, "/api/incidents/i-1", Some(Viewer), None),
            (&get, "/api/notices", Some(Viewer), None),
            (&get, "/api/accounts", Some(Viewer), Some(Viewer)),
            (&get, "/api/audit", Some(Operator), Some(Operator)),
            (
                &post,
                "/api/notices/n-1/approve",
                Some(Operator),
                Some(Operator),
            ),
            (
                &post,
                "/api/incidents/i-1/close",
                Some(Operator),
                Some(Operator),
            ),
            (&post, "/api/mentions", Some(Ingest), Some(Ingest)),
            (&get, "/api/admin/users", Some(Admin), Some(Admin)),
        ];
        for (m, path, want_closed, want_public) in table {
            assert_eq!(closed.requirement(m, path), want_closed, "{m} {path}");
            assert_eq!(
                public.requirement(m, path),
                want_public,
                "{m} {path} (public wall)"
            );
        }
    }

    #[test]
    fn per_user_limit_opens_again_after_the_window() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let a = auth(clock.clone());
        for _ in 0..3 {
            let r = a.login("alice", "wrong", None).expect_err("wrong password");
            assert_eq!(r.reason, LoginFailure::WrongPassword);
        }
        let r = a
            .login("alice", "correct horse", None)
            .expect_err("limited");
        assert_eq!(r.reason, LoginFailure::RateLimited);
        assert_eq!(r.retry_after_secs, Some(60));
        clock.advance(std::time::Duration::from_secs(30));
        let r = a
            .login("alice", "correct horse", None)
            .expect_err("still limited");
        assert_eq!(r.retry_after_secs, Some(30));
        clock.advance(std::time::Duration::from_secs(30));
        a.login("alice", "correct horse", None)
            .expect("window passed");
    }

    #[test]
    fn sessions_expire_on_the_clock() {
        let clock = Arc::new(ManualClock::new(0));
        let a = auth(clock.clone());
        let li = a.login("alice", "correct horse", None).expect("login");
        assert_eq!(
            a.by_session(&li.session).map(|p| p.name),
            Some("alice".into())
        );
        clock.advance(std::time::Duration::from_secs(599));
        assert!(a.by_session(&li.session).is_some());
        clock.advance(std::time::Duration::from_secs(1));
        assert!(a.by_session(&li.session).is_none());
    }

    #[test]
    fn users_file_round_trips_and_names_the_line_of_a_bad_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("users.toml");
        let mut f = UsersFile::default();
        f.set_user("alice", Role::Admin, "pw").expect("user");
        let token = f.add_token("wall", Role::Viewer).expect("token");
        f.save(&p).expect("save");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(!text.contains(&token) && !text.contains("\"pw\""), "{text}");
        let g = UsersFile::load(&p).expect("load");
        assert!(verify_password(&g.users[0].password, "pw"));
        assert_eq!(g.tokens[0].sha256, token_hash(&token));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bad = "[[user]]\nname = \"a\"\nrole = \"operator\"\npassword = \"x\"\n\n[[user]]\nname = \"b\"\nrole = \"boss\"\npassword = \"x\"\n";
        let e = UsersFile::parse(FsPath::new("u.toml"), bad).expect_err("bad role");
        assert!(e.to_string().starts_with("u.toml:8:"), "{e}");
        let e = UsersFile::parse(FsPath::new("u.toml"), &bad.replace("boss", "viewer"))
            .expect_err("bad hash");
        assert!(e.to_string().starts_with("u.toml:1:"), "{e}");
    }
}
