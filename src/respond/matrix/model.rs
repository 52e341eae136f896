//! The matrix's vocabulary: platforms, account ids, token sources, profiles, accounts, links
//! and plans.

use crate::detect::gazetteer::{Level, RegionRef};
use crate::respond::templates::Lang;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The function of the accounts that lead by default and amplify.
pub const PUBLICITY: &str = "publicity";

/// Where an account publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// A Mastodon instance (`endpoint` is the instance's base URL).
    Mastodon,
    /// Sina Weibo (`endpoint` defaults to `https://api.weibo.com`).
    Weibo,
    /// A signed JSON webhook (`endpoint` is the URL).
    Webhook,
    /// A file sink for drills (`endpoint` is the path).
    File,
}

impl Platform {
    /// Every platform, in documentation order.
    pub const ALL: [Platform; 4] = [
        Platform::Mastodon,
        Platform::Weibo,
        Platform::Webhook,
        Platform::File,
    ];

    /// The name used in the TOML files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Mastodon => "mastodon",
            Platform::Weibo => "weibo",
            Platform::Webhook => "webhook",
            Platform::File => "file",
        }
    }

    /// Parse a platform name.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether accounts on this platform need a credentials source.
    pub fn needs_token(self) -> bool {
        !matches!(self, Platform::File)
    }

    /// Whether accounts on this platform must name an `endpoint`.
    pub fn needs_endpoint(self) -> bool {
        !matches!(self, Platform::Weibo)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable id of an account (`id` in the matrix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccountId(Arc<str>);

impl AccountId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AccountId {
    fn from(s: &str) -> Self {
        AccountId(Arc::from(s))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for AccountId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for AccountId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::borrow::Borrow<str> for AccountId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Where an account's token comes from. Only the *source* is kept: the token itself is read by
/// [`Account::token`] at call time and never stored, logged or serialised.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable (its name).
    Env(String),
    /// A file holding the token (surrounding whitespace is trimmed).
    File(PathBuf),
    /// No credentials (file sinks).
    None,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env(v) => write!(f, "env:{v}"),
            TokenSource::File(p) => write!(f, "file:{}", p.display()),
            TokenSource::None => f.write_str("none"),
        }
    }
}

impl Serialize for TokenSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TokenSource::None => s.serialize_none(),
            other => s.collect_str(other),
        }
    }
}

/// Reading an account's token failed. The messages name the account and the source, never a
/// token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The environment variable is not set (or not UTF-8).
    #[error("account {account}: environment variable {var} is not set")]
    EnvNotSet {
        /// The account.
        account: AccountId,
        /// The variable's name.
        var: String,
    },
    /// The token file cannot be read.
    #[error("account {account}: token file {}: {source}", path.display())]
    File {
        /// The account.
        account: AccountId,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The source exists but holds only whitespace.
    #[error("account {account}: the token from {source_name} is empty")]
    Empty {
        /// The account.
        account: AccountId,
        /// `env:NAME` or `file:PATH`.
        source_name: String,
    },
}

/// A `[[profile]]`: a platform's rate limits under a name, per account. The limits are the
/// limiter's own [`crate::respond::limits::Profile`] (reachable directly through `Deref`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedProfile {
    /// Stable id.
    pub id: String,
    /// The platform the limits are for.
    pub platform: Platform,
    /// The limits (serialised inline: `posts_per_hour`, `comments_per_hour`, …).
    #[serde(flatten)]
    pub limits: crate::respond::limits::Profile,
}

impl std::ops::Deref for NamedProfile {
    type Target = crate::respond::limits::Profile;

    fn deref(&self) -> &Self::Target {
        &self.limits
    }
}

/// One official account.
#[derive(Clone, Serialize)]
pub struct Account {
    /// Stable id.
    pub id: AccountId,
    /// Display name (北京发布).
    pub name: String,
    /// Platform.
    pub platform: Platform,
    /// Handle on the platform (`@北京发布`).
    pub handle: String,
    /// Region the account speaks for.
    pub region: RegionRef,
    /// The region's level.
    pub level: Level,
    /// `publicity`, `police`, `fire`, `weather`, `emergency`, `health` …
    pub function: String,
    /// Language the account publishes in (`zh` unless set).
    pub lang: Lang,
    /// Rate limits.
    pub profile: NamedProfile,
    /// Where the token comes from.
    pub token_source: TokenSource,
    /// Base URL (Mastodon, Weibo), URL (webhook) or path (file), as configured.
    pub endpoint: Option<String>,
    /// Accounts whose lead posts this one also reposts (explicit edges; acyclic).
    pub amplifies: Vec<AccountId>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Manual so that a future field holding secret material is never printed by accident;
        // the token source shows only the variable name or the file path.
        f.debug_struct("Account")
            .field("id", &self.id.as_str())
            .field("name", &self.name)
            .field("platform", &self.platform)
            .field("handle", &self.handle)
            .field("region", &self.region.code)
            .field("level", &self.level)
            .field("function", &self.function)
            .field("lang", &self.lang)
            .field("profile", &self.profile.id)
            .field("token_source", &self.token_source)
            .field("endpoint", &self.endpoint)
            .field("amplifies", &self.amplifies)
            .finish()
    }
}

impl Account {
    /// Read the token now, from the environment or the file (`Ok(None)` for accounts without a
    /// credentials source). The value is never kept or logged.
    pub fn token(&self) -> Result<Option<String>, TokenError> {
        let raw = match &self.token_source {
            TokenSource::None => return Ok(None),
            TokenSource::Env(var) => std::env::var(var).map_err(|_| TokenError::EnvNotSet {
                account: self.id.clone(),
                var: var.clone(),
            })?,
            TokenSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| TokenError::File {
                    account: self.id.clone(),
                    path: path.clone(),
                    source,
                })?
            }
        };
        let t = raw.trim();
        if t.is_empty() {
            return Err(TokenError::Empty {
                account: self.id.clone(),
                source_name: self.token_source.to_string(),
            });
        }
        Ok(Some(t.to_string()))
    }

    /// The endpoint to use: the configured one, or the platform's default (Weibo:
    /// `https://api.weibo.com`). `None` only for platforms that require one, which validation
    /// guarantees is set.
    pub fn endpoint(&self) -> Option<&str> {
        match (&self.endpoint, self.platform) {
            (Some(e), _) => Some(e.as_str()),
            (None, Platform::Weibo) => Some("https://api.weibo.com"),
            (None, _) => None,
        }
    }
}

/// Who speaks for a category (`[[link]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// A category id or `*`.
    pub category: String,
    /// Function accounts that co-publish for this category.
    pub functions: Vec<String>,
    /// Emergencies: the lead is this function's account (where the walk up the regions finds
    /// one before a publicity account).
    pub lead_function: Option<String>,
}

/// Who publishes a notice about one incident, and how.
///
/// Order of work: the lead posts first; co-publishers post the same notice in parallel once it is
/// approved; amplifiers repost or quote the lead's post once its id is known. Within each list,
/// accounts are ordered by region level (province, city, district) and then by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The region the plan is for: the incident's, or the matrix's default region.
    pub region: RegionRef,
    /// The account that posts first.
    pub lead: AccountId,
    /// Accounts that post the notice themselves.
    pub co_publishers: Vec<AccountId>,
    /// Accounts that repost or quote the lead's post.
    pub amplifiers: Vec<AccountId>,
}

impl Plan {
    /// Every account of the plan: lead, co-publishers, amplifiers.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountId> {
        std::iter::once(&self.lead)
            .chain(&self.co_publishers)
            .chain(&self.amplifiers)
    }
}
