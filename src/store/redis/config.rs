//! `[redis]`: the section of `huiying.toml` for a store shared by several instances.

use serde::Deserialize;
use std::path::PathBuf;

/// `[redis]`: the distributed engine's settings (with `store = "redis://HOST:PORT/DB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Prefix of every key (several deployments can share one Redis).
    pub namespace: String,
    /// This instance's name in the cluster (consumer name, claim owner); default
    /// `{hostname}-{pid}`.
    pub instance: Option<String>,
    /// Environment variable holding the Redis password.
    pub password_env: Option<String>,
    /// File holding the Redis password.
    pub password_file: Option<PathBuf>,
    /// `rediss://`: a PEM file of the CA that signed the server's certificate (default: the
    /// built-in Mozilla roots and the system's certificates).
    pub ca_file: Option<PathBuf>,
    /// Days a closed incident (and its mention index) stays in Redis (default 30).
    pub closed_retention_days: u32,
    /// Outbox entries of an instance idle this long (it stopped) are claimed by another (ms).
    pub claim_idle_ms: u64,
    /// A claimed job left `attempting` this long is uncertain and checked with the platform
    /// (ms; must exceed a platform call's timeout, 20 s).
    pub attempt_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            namespace: "huiying".into(),
            instance: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            closed_retention_days: 30,
            claim_idle_ms: 30_000,
            attempt_timeout_ms: 30_000,
        }
    }
}

impl RedisConfig {
    /// This instance's name: `instance`, or `{hostname}-{pid}`.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "huiying".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The password, if a source is configured (errors name the source, never the secret).
    pub fn password(&self) -> Result<Option<String>, String> {
        let raw = if let Some(var) = &self.password_env {
            std::env::var(var).map_err(|_| format!("[redis] password_env: {var} is not set"))?
        } else if let Some(f) = &self.password_file {
            std::fs::read_to_string(f)
                .map_err(|e| format!("[redis] password_file {}: {e}", f.display()))?
        } else {
            return Ok(None);
        };
        let p = raw.trim();
        if p.is_empty() {
            return Err("[redis] the password is empty".into());
        }
        Ok(Some(p.to_string()))
    }
}
