//! The users file (`[[user]]` with argon2id hashes, `[[token]]` with SHA-256 hashes), its
//! validation with `file:line` errors, atomic private writes, and the hashing helpers.

use super::{Role, TokenEntry};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path as FsPath, PathBuf};

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
    /// A setting of `[auth]` that cannot be used (named in the message).
    #[error("{0}")]
    Config(String),
    /// A token that may not be made (reserved name, a user's name, no owner).
    #[error("{0}")]
    Refused(String),
    /// The action's audit record could not be written: nothing was done.
    #[error("the audit log cannot be written: {0}")]
    Audit(String),
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

/// Names the system acts under (drafts, policy approvals, the dispatcher, the engine…): no
/// token may be named after them or act for them.
pub const RESERVED_NAMES: [&str; 7] = [
    "system",
    "policy",
    "dispatcher",
    "engine",
    "replies",
    "huiying",
    "demo",
];

/// Why a token cannot be made or kept: a reserved name, a user's name, or an operator or
/// admin token that belongs to nobody.
pub(super) fn check_token(
    name: &str,
    role: Role,
    owner: Option<&str>,
    is_user: impl Fn(&str) -> bool,
) -> Result<(), String> {
    check_name(name).map_err(|e| e.to_string())?;
    if RESERVED_NAMES.contains(&name) {
        return Err(format!("token name {name:?} is reserved"));
    }
    if is_user(name) {
        return Err(format!(
            "token name {name:?} is a user's name: name it otherwise and give it --owner {name}"
        ));
    }
    match owner {
        Some(o) => {
            check_name(o).map_err(|e| e.to_string())?;
            if RESERVED_NAMES.contains(&o) {
                return Err(format!("token owner {o:?} is reserved"));
            }
        }
        None if matches!(role, Role::Operator | Role::Admin) => {
            return Err(format!(
                "an {role} token belongs to a user: give it an owner (--owner USER); \
                 the two-person rule counts the user, not the token"
            ));
        }
        None => {}
    }
    Ok(())
}

/// Names of users and tokens: 1–64 of `[A-Za-z0-9._@-]`.
pub(super) fn check_name(name: &str) -> Result<(), AuthError> {
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
    /// Hold the users file for a read-modify-write (an exclusive lock on `FILE.lock` beside
    /// it, released when the returned file is dropped): the service (token create/revoke,
    /// reload) and `huiying user add` / `token create` wait for each other, so neither writes
    /// back a copy that misses the other's change.
    pub fn lock(path: &FsPath) -> Result<std::fs::File, AuthError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = std::path::PathBuf::from(name);
        let io = |source| AuthError::Io {
            path: lock_path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        f.lock().map_err(io)?;
        Ok(f)
    }

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
            // Tokens written before tokens had owners still load (they act under their name);
            // a reserved name or a user's name never does.
            let owner = t.owner.as_deref().or(Some(t.name.as_str()));
            check_token(&t.name, t.role, owner, |n| {
                f.users.iter().any(|u| u.name == n)
            })
            .map_err(|m| invalid(at, m))?;
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

    /// Add a token named `name` acting for `owner` (required for operator and admin tokens;
    /// names may repeat: rotation); returns the token, shown once. Reserved names and users'
    /// names are refused ([`RESERVED_NAMES`]).
    pub fn add_token(
        &mut self,
        name: &str,
        role: Role,
        owner: Option<&str>,
    ) -> Result<String, AuthError> {
        check_token(name, role, owner, |n| {
            self.users.iter().any(|u| u.name == n)
        })
        .map_err(AuthError::Refused)?;
        let token = new_secret("hy_");
        self.tokens.push(TokenEntry {
            name: name.to_string(),
            role,
            sha256: token_hash(&token),
            owner: owner.map(str::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trips_and_names_the_line_of_a_bad_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("users.toml");
        let mut f = UsersFile::default();
        f.set_user("alice", Role::Admin, "pw").expect("user");
        let token = f.add_token("wall", Role::Viewer, None).expect("token");
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
