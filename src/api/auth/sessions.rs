//! [`Auth`]: the directory of users and token hashes, sessions with their CSRF tokens on the
//! injected clock, and logins checked against the login limits.

use super::limits::{login_failures, Attempts, LoginFailure};
use super::users::{
    check_name, check_token, hash_password, new_secret, token_hash, verify_password, RESERVED_NAMES,
};
use super::{AuthConfig, AuthError, Role, UsersFile};
use crate::clock::Clock;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

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
    /// The user's password hash at login: a changed password (or role) ends the session at the
    /// next users-file reload.
    password: String,
    csrf: String,
    expires_at: i64,
}

/// Password checks at once (argon2id, 19 MiB each).
pub const ARGON_SLOTS: usize = 4;

/// Users and token hashes by lookup key.
#[derive(Debug, Default)]
struct Directory {
    users: HashMap<String, (Role, String)>,
    /// Hash → (token name, role, the user it acts for).
    tokens: HashMap<String, (String, Role, Option<String>)>,
    /// What does not come from the users file (the demo's users; config and legacy
    /// `[respond] operators` tokens): kept by every reload.
    memory_users: HashMap<String, (Role, String)>,
    memory_tokens: HashMap<String, (String, Role, Option<String>)>,
}

impl Directory {
    /// The in-memory entries plus the file's (the file's win on a name or hash both have).
    fn rebuild(&mut self, f: &UsersFile) {
        self.users = self.memory_users.clone();
        self.tokens = self.memory_tokens.clone();
        self.add_file(f);
    }

    fn add_file(&mut self, f: &UsersFile) {
        for u in &f.users {
            self.users
                .insert(u.name.clone(), (u.role, u.password.clone()));
        }
        for t in &f.tokens {
            self.tokens.insert(
                t.sha256.to_ascii_lowercase(),
                (t.name.clone(), t.role, t.owner.clone()),
            );
        }
    }
}

/// Authentication state shared by the middleware and the handlers.
pub struct Auth {
    pub(super) cfg: AuthConfig,
    pub(super) metrics_elsewhere: bool,
    dir: RwLock<Directory>,
    sessions: Mutex<HashMap<String, Session>>,
    attempts: Mutex<Attempts>,
    /// Held while the users file is read-modified-written or reloaded.
    file_lock: Mutex<()>,
    /// `[auth] trusted_proxies`, parsed.
    proxies: Vec<super::proxies::Block>,
    /// Password checks running at once (argon2id takes 19 MiB each): a flood of logins
    /// queues here instead of exhausting memory.
    argon: tokio::sync::Semaphore,
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

/// Writes an action's audit record before the action takes effect (audit first): called with
/// the record's `detail` once the action is checked, under the locks that make it; an `Err`
/// (why the record could not be written) refuses the action and nothing changes.
pub type AuditFirst<'a> = &'a (dyn Fn(Value) -> Result<(), String> + Sync);

/// No audit log (tests, the command line): every action goes ahead.
pub fn no_audit(_: Value) -> Result<(), String> {
    Ok(())
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
        let proxies = super::proxies::parse_all(&cfg.trusted_proxies)?;
        let mut dir = Directory::default();
        for t in &cfg.tokens {
            dir.memory_tokens.insert(
                t.sha256.to_ascii_lowercase(),
                (t.name.clone(), t.role, t.owner.clone()),
            );
        }
        for (name, token, role) in extra_tokens {
            dir.memory_tokens
                .insert(token_hash(&token), (name, role, None));
        }
        let f = match &cfg.users_file {
            Some(p) => UsersFile::load(p)?,
            None => UsersFile::default(),
        };
        dir.rebuild(&f);
        // A config token may not act as the system or as a user (that user would approve twice).
        for (i, t) in cfg.tokens.iter().enumerate() {
            let why = if RESERVED_NAMES.contains(&t.name.as_str()) {
                Some("is reserved")
            } else if dir.users.contains_key(&t.name) {
                Some("is a user's name")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(AuthError::Config(format!(
                    "[auth] tokens[{i}]: the name {:?} {why}",
                    t.name
                )));
            }
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
            file_lock: Mutex::default(),
            argon: tokio::sync::Semaphore::new(ARGON_SLOTS),
            proxies,
            clock,
            dummy_hash,
        })
    }

    /// A slot to check a password in (at most [`ARGON_SLOTS`] at once); `None` when the
    /// service is shutting down.
    pub async fn password_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.argon.acquire().await.ok()
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded.
    pub fn client_ip(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
    ) -> Option<std::net::IpAddr> {
        super::proxies::client_ip(peer, headers, &self.proxies)
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
        let mut d = self.dir.write().unwrap_or_else(|p| p.into_inner());
        d.memory_users
            .insert(name.to_string(), (role, hash.clone()));
        d.users.insert(name.to_string(), (role, hash));
        Ok(())
    }

    /// Re-read the users file and rebuild users and tokens from it plus the in-memory ones
    /// (demo users, config and legacy `[respond] operators` tokens): new entries take effect,
    /// removed ones stop working, and the sessions of users removed, demoted or promoted, or
    /// whose password changed, end (they log in again under what the file now says).
    pub fn reload_users(&self, audit: AuditFirst<'_>) -> Result<(usize, usize), AuthError> {
        let Some(p) = &self.cfg.users_file else {
            let (users, tokens) = self.counts();
            audit(json!({"users": users, "tokens": tokens})).map_err(AuthError::Audit)?;
            return Ok((users, tokens));
        };
        let _file = self.file_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _held = UsersFile::lock(p)?;
        let f = UsersFile::load(p)?;
        let mut next = {
            let d = self.dir.read().unwrap_or_else(|p| p.into_inner());
            Directory {
                memory_users: d.memory_users.clone(),
                memory_tokens: d.memory_tokens.clone(),
                ..Directory::default()
            }
        };
        next.rebuild(&f);
        let counts = (next.users.len(), next.tokens.len());
        audit(json!({"users": counts.0, "tokens": counts.1})).map_err(AuthError::Audit)?;
        let mut d = self.dir.write().unwrap_or_else(|p| p.into_inner());
        // In-memory entries change only at start-up (demo users, config tokens).
        *d = next;
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| {
                d.users
                    .get(&s.user)
                    .is_some_and(|(role, hash)| *role == s.role && *hash == s.password)
            });
        Ok(counts)
    }

    /// Create a token acting for `owner` (the admin who asks for it: one person minting
    /// tokens is still one approver), persist its hash in the users file (when there is one)
    /// and return it. Reserved names and users' names are refused.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        owner: &str,
        audit: AuditFirst<'_>,
    ) -> Result<String, AuthError> {
        let is_user = |n: &str| {
            self.dir
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .users
                .contains_key(n)
        };
        check_token(name, role, Some(owner), is_user).map_err(AuthError::Refused)?;
        // One rewrite of the file at a time: a revoke racing a create must not bring the
        // revoked token back.
        let _file = self.file_lock.lock().unwrap_or_else(|p| p.into_inner());
        let record =
            || audit(json!({"name": name, "role": role, "owner": owner})).map_err(AuthError::Audit);
        let token = match &self.cfg.users_file {
            Some(p) => {
                let _held = UsersFile::lock(p)?;
                let mut f = UsersFile::load(p)?;
                let t = f.add_token(name, role, Some(owner))?;
                record()?;
                f.save(p)?;
                t
            }
            None => {
                record()?;
                new_secret("hy_")
            }
        };
        self.dir
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .insert(
                token_hash(&token),
                (name.to_string(), role, Some(owner.to_string())),
            );
        Ok(token)
    }

    /// Revoke every token named `name` (in memory and in the users file); how many went.
    pub fn revoke_tokens(&self, name: &str, audit: AuditFirst<'_>) -> Result<usize, AuthError> {
        let _file = self.file_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Held to the end: the save below happens under the lock the CLI also takes.
        let _held = match &self.cfg.users_file {
            Some(p) => Some(UsersFile::lock(p)?),
            None => None,
        };
        let file = match &self.cfg.users_file {
            Some(p) => {
                let mut f = UsersFile::load(p)?;
                let before = f.tokens.len();
                f.tokens.retain(|t| t.name != name);
                (f.tokens.len() != before).then_some((p, f))
            }
            None => None,
        };
        let revoked = self
            .dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .values()
            .filter(|(n, _, _)| n == name)
            .count();
        audit(json!({"name": name, "revoked": revoked})).map_err(AuthError::Audit)?;
        if let Some((p, f)) = file {
            f.save(p)?;
        }
        let mut d = self.dir.write().unwrap_or_else(|p| p.into_inner());
        let before = d.tokens.len();
        d.tokens.retain(|_, (n, _, _)| n != name);
        d.memory_tokens.retain(|_, (n, _, _)| n != name);
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
            .map(|(n, r, o)| json!({"name": n, "role": r, "owner": o}))
            .collect();
        tokens.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_string());
        json!({ "users": users, "tokens": tokens })
    }

    /// The principal of an API token given outside the `Authorization` header (Open311 puts
    /// its `api_key` in the request body); `None` for an unknown one.
    pub fn token_principal(&self, token: &str) -> Option<Principal> {
        self.by_token(token)
    }

    pub(super) fn by_token(&self, token: &str) -> Option<Principal> {
        let d = self.dir.read().unwrap_or_else(|p| p.into_inner());
        d.tokens
            .get(&token_hash(token))
            .map(|(name, role, owner)| Principal {
                name: owner.clone().unwrap_or_else(|| name.clone()),
                role: *role,
                csrf: None,
                expires_at: None,
            })
    }

    pub(super) fn by_session(&self, id: &str) -> Option<Principal> {
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

    /// Check a password (argon2: call off the async threads). On success `audit` writes the
    /// login's record (audit first), then a new session; a refused record refuses the login
    /// ([`LoginFailure::AuditUnavailable`]) and no session is made.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: Option<IpAddr>,
        audit: AuditFirst<'_>,
    ) -> Result<LoggedIn, Refused> {
        let now = self.clock.now_ms();
        let window = i64::try_from(self.cfg.login_window_secs)
            .unwrap_or(i64::MAX / 2000)
            .saturating_mul(1000);
        // A name no user can have is refused before it becomes a limiter key.
        if check_name(user).is_err() {
            return Err(Refused {
                reason: LoginFailure::BadRequest,
                retry_after_secs: None,
            });
        }
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
            // Reserve the attempt as a failure before the slow check: attempts in flight
            // count, so parallel guesses are limited like sequential ones. Taken back on
            // success.
            a.record(ukey.clone(), now, window);
            if let Some(k) = &ikey {
                a.record(k.clone(), now, window);
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
            Some((role, hash)) if verify_password(hash, password) => Ok((*role, hash.clone())),
            Some(_) => Err(LoginFailure::WrongPassword),
            None => {
                // Same cost as a real check: response time does not reveal who exists.
                let _ = verify_password(&self.dummy_hash, password);
                Err(LoginFailure::UnknownUser)
            }
        };
        let (role, password_hash) = match outcome {
            Ok(r) => {
                let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                a.unrecord(&ukey, now);
                if let Some(k) = &ikey {
                    a.unrecord(k, now);
                }
                r
            }
            Err(reason) => {
                return Err(Refused {
                    reason,
                    retry_after_secs: None,
                });
            }
        };
        if let Err(e) = audit(json!({"role": role})) {
            tracing::error!(actor = %user, error = %e, "Login refused: its audit record cannot be written.");
            return Err(Refused {
                reason: LoginFailure::AuditUnavailable,
                retry_after_secs: None,
            });
        }
        let session = new_secret("");
        let ttl = i64::try_from(self.cfg.session_secs)
            .unwrap_or(i64::MAX / 2000)
            .saturating_mul(1000);
        let s = Session {
            user: user.to_string(),
            role,
            password: password_hash,
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

    /// Session lifetime, seconds.
    pub fn session_secs(&self) -> u64 {
        self.cfg.session_secs
    }

    /// Whether the session cookie is marked `Secure` (HTTPS in front).
    pub fn secure_cookie(&self) -> bool {
        self.cfg.secure_cookie
    }

    /// The session cookie's name: [`super::SECURE_SESSION_COOKIE`] with `secure_cookie`, and
    /// then only that name is read.
    pub fn cookie_name(&self) -> &'static str {
        if self.cfg.secure_cookie {
            super::SECURE_SESSION_COOKIE
        } else {
            super::SESSION_COOKIE
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::clock::ManualClock;

    pub(in crate::api::auth) fn auth(clock: Arc<ManualClock>) -> Auth {
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
    fn per_user_limit_opens_again_after_the_window() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let a = auth(clock.clone());
        for _ in 0..3 {
            let r = a
                .login("alice", "wrong", None, &no_audit)
                .expect_err("wrong password");
            assert_eq!(r.reason, LoginFailure::WrongPassword);
        }
        let r = a
            .login("alice", "correct horse", None, &no_audit)
            .expect_err("limited");
        assert_eq!(r.reason, LoginFailure::RateLimited);
        assert_eq!(r.retry_after_secs, Some(60));
        clock.advance(std::time::Duration::from_secs(30));
        let r = a
            .login("alice", "correct horse", None, &no_audit)
            .expect_err("still limited");
        assert_eq!(r.retry_after_secs, Some(30));
        clock.advance(std::time::Duration::from_secs(30));
        a.login("alice", "correct horse", None, &no_audit)
            .expect("window passed");
    }

    #[test]
    fn sessions_expire_on_the_clock() {
        let clock = Arc::new(ManualClock::new(0));
        let a = auth(clock.clone());
        let li = a
            .login("alice", "correct horse", None, &no_audit)
            .expect("login");
        assert_eq!(
            a.by_session(&li.session).map(|p| p.name),
            Some("alice".into())
        );
        clock.advance(std::time::Duration::from_secs(599));
        assert!(a.by_session(&li.session).is_some());
        clock.advance(std::time::Duration::from_secs(1));
        assert!(a.by_session(&li.session).is_none());
    }
}
