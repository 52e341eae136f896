//! The linked-account matrix (`rules/matrix/*.toml`): which official accounts exist, on which
//! platform, for which region and function, with which rate-limit profile and where their token
//! comes from; and the links that say who speaks for which category. [`Matrix::plan`] turns an
//! incident into a fan-out [`Plan`]: the lead, the co-publishers and the amplifiers.
//!
//! Pure data and pure functions: nothing here talks to a platform. The format and the planning
//! rules are documented in `rules/README.md` ("`matrix/`").

use super::templates::Lang;
use crate::cluster::{Incident, IncidentKind};
use crate::detect::diagnostics::{line_at, read_dir_toml, Problems};
use crate::detect::gazetteer::{Gazetteer, Level, RegionRef};
use crate::detect::rules::{RuleError, RuleErrors, RuleSet};
use ahash::{AHashMap, AHashSet};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

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

/// A platform's rate limits (`[[profile]]`), per account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Stable id.
    pub id: String,
    /// The platform the limits are for.
    pub platform: Platform,
    /// Original posts per hour.
    pub posts_per_hour: u32,
    /// Comments / replies per hour.
    pub comments_per_hour: u32,
    /// Reposts / reblogs / quotes per hour.
    pub reposts_per_hour: u32,
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
    pub profile: Profile,
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

/// The validated matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    default_region: RegionRef,
    /// Codes from the default region up to its province.
    default_chain: Vec<String>,
    /// The lead of a plan in the default region when nothing more specific applies.
    default_lead: usize,
    accounts: Vec<Account>,
    by_id: AHashMap<Arc<str>, usize>,
    /// Accounts per region code, sorted by id.
    by_region: AHashMap<String, Vec<usize>>,
    /// For each region with a publicity account: the nearest ancestor region with one.
    publicity_parent: Vec<(String, Option<String>)>,
    profiles: Vec<Profile>,
    links: AHashMap<String, Link>,
    star: Option<Link>,
    /// Reverse of `amplifies`: who reposts account i's posts.
    amplified_by: Vec<Vec<usize>>,
}

// ---------------------------------------------------------------------------------------------
// Loading

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixTable {
    default_region: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountDef {
    id: Spanned<String>,
    name: String,
    platform: Spanned<String>,
    handle: String,
    region: Spanned<String>,
    level: Spanned<String>,
    function: Spanned<String>,
    profile: Spanned<String>,
    #[serde(default)]
    lang: Option<Spanned<String>>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
    #[serde(default)]
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    amplifies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDef {
    id: Spanned<String>,
    platform: Spanned<String>,
    posts_per_hour: Spanned<u32>,
    comments_per_hour: Spanned<u32>,
    reposts_per_hour: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkDef {
    category: Spanned<String>,
    #[serde(default)]
    functions: Vec<Spanned<String>>,
    #[serde(default)]
    lead_function: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    #[serde(default)]
    matrix: Option<MatrixTable>,
    #[serde(default)]
    account: Vec<AccountDef>,
    #[serde(default)]
    profile: Vec<ProfileDef>,
    #[serde(default)]
    link: Vec<LinkDef>,
}

/// Region codes from `i` up to its province (guarded against a malformed parent loop).
fn chain_codes(g: &Gazetteer, i: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Some(i);
    while let Some(c) = cur {
        if out.len() >= 8 {
            break;
        }
        let r = g.get(c);
        out.push(r.code.clone());
        cur = r.parent;
    }
    out
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Province => "province",
        Level::City => "city",
        Level::District => "district",
    }
}

fn parse_level(s: &str) -> Option<Level> {
    match s {
        "province" => Some(Level::Province),
        "city" => Some(Level::City),
        "district" => Some(Level::District),
        _ => None,
    }
}

fn is_slug(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
}

/// Where an account was defined (for messages).
struct Loc {
    file: PathBuf,
    line: usize,
    amplifies: Vec<(usize, String)>,
}

impl Matrix {
    /// Load and validate every `*.toml` file of the matrix directory `dir` (normally
    /// `rules/matrix/`) against the loaded rules (category ids, the gazetteer). All problems are
    /// reported, each as `file:line: message`.
    pub fn load(dir: &Path, rules: &RuleSet) -> Result<Matrix, RuleErrors> {
        let mut p = Problems::new();
        if !dir.is_dir() {
            p.at(dir, 0, "not a directory");
            return Err(RuleErrors(p.errors));
        }
        let files = read_dir_toml::<MatrixFile>(dir, &mut p);
        if !p.errors.is_empty() {
            // A file that does not parse would make cross-file checks report phantom problems
            // (its accounts or defaults missing): report the syntax first.
            return Err(RuleErrors(p.errors));
        }
        let g = &rules.gazetteer;

        // Profiles first: accounts refer to them.
        let mut profiles: Vec<Profile> = Vec::new();
        let mut profile_at: AHashMap<String, (PathBuf, usize)> = AHashMap::new();
        for (path, src, f) in &files {
            for d in &f.profile {
                let line = line_at(src, d.id.span().start);
                let id = d.id.get_ref().clone();
                if !is_slug(&id, b"-_") {
                    p.at(
                        path,
                        line,
                        format!("profile id {id:?} must be lower-case letters, digits, - and _"),
                    );
                }
                if let Some((f0, l0)) = profile_at.get(&id) {
                    p.at(
                        path,
                        line,
                        format!(
                            "duplicate profile id {id:?} (first at {}:{l0})",
                            f0.display()
                        ),
                    );
                    continue;
                }
                let Some(platform) = Platform::parse(d.platform.get_ref()) else {
                    p.at(
                        path,
                        line_at(src, d.platform.span().start),
                        format!(
                            "unknown platform {:?} (mastodon, weibo, webhook or file)",
                            d.platform.get_ref()
                        ),
                    );
                    continue;
                };
                for (name, v) in [
                    ("posts_per_hour", &d.posts_per_hour),
                    ("comments_per_hour", &d.comments_per_hour),
                    ("reposts_per_hour", &d.reposts_per_hour),
                ] {
                    if *v.get_ref() == 0 {
                        p.at(
                            path,
                            line_at(src, v.span().start),
                            format!("profile {id:?}: {name} must be at least 1"),
                        );
                    }
                }
                profile_at.insert(id.clone(), (path.clone(), line));
                profiles.push(Profile {
                    id,
                    platform,
                    posts_per_hour: *d.posts_per_hour.get_ref(),
                    comments_per_hour: *d.comments_per_hour.get_ref(),
                    reposts_per_hour: *d.reposts_per_hour.get_ref(),
                });
            }
        }

        // Accounts.
        let mut accounts: Vec<Account> = Vec::new();
        let mut locs: Vec<Loc> = Vec::new();
        let mut by_id: AHashMap<Arc<str>, usize> = AHashMap::new();
        for (path, src, f) in &files {
            for d in &f.account {
                let line = line_at(src, d.id.span().start);
                let lat = |s: &Spanned<String>| line_at(src, s.span().start);
                let id = d.id.get_ref().clone();
                let mut ok = true;
                if !is_slug(&id, b"-_") {
                    p.at(
                        path,
                        line,
                        format!("account id {id:?} must be lower-case letters, digits, - and _"),
                    );
                }
                if let Some(&i) = by_id.get(id.as_str()) {
                    p.at(
                        path,
                        line,
                        format!(
                            "duplicate account id {id:?} (first at {}:{})",
                            locs[i].file.display(),
                            locs[i].line
                        ),
                    );
                    continue;
                }
                let platform = Platform::parse(d.platform.get_ref());
                if platform.is_none() {
                    ok = false;
                    p.at(
                        path,
                        lat(&d.platform),
                        format!(
                            "account {id:?}: unknown platform {:?} (mastodon, weibo, webhook or file)",
                            d.platform.get_ref()
                        ),
                    );
                }
                let code = d.region.get_ref();
                let region = g.by_code(code);
                if region.is_none() {
                    ok = false;
                    p.at(
                        path,
                        lat(&d.region),
                        format!("account {id:?}: unknown region code {code:?}"),
                    );
                }
                let level = parse_level(d.level.get_ref());
                match (level, region) {
                    (None, _) => {
                        ok = false;
                        p.at(
                            path,
                            lat(&d.level),
                            format!(
                                "account {id:?}: unknown level {:?} (province, city or district)",
                                d.level.get_ref()
                            ),
                        );
                    }
                    (Some(l), Some(r)) if g.get(r).level != l => {
                        let reg = g.get(r);
                        p.at(
                            path,
                            lat(&d.level),
                            format!(
                                "account {id:?}: level {:?} does not match region {} ({}), which is a {}",
                                d.level.get_ref(),
                                reg.code,
                                reg.name,
                                level_name(reg.level)
                            ),
                        );
                    }
                    _ => {}
                }
                let function = d.function.get_ref().clone();
                if !is_slug(&function, b"_") {
                    p.at(
                        path,
                        lat(&d.function),
                        format!(
                            "account {id:?}: function {function:?} must be lower-case letters, digits and _"
                        ),
                    );
                }
                let lang = match &d.lang {
                    None => Lang::Zh,
                    Some(s) => match Lang::parse(s.get_ref()) {
                        Some(l) => l,
                        None => {
                            p.at(
                                path,
                                lat(s),
                                format!(
                                    "account {id:?}: unknown lang {:?} (zh or en)",
                                    s.get_ref()
                                ),
                            );
                            Lang::Zh
                        }
                    },
                };
                let profile = profiles
                    .iter()
                    .find(|pr| pr.id == *d.profile.get_ref())
                    .cloned();
                match (&profile, platform) {
                    (None, _) => {
                        ok = false;
                        p.at(
                            path,
                            lat(&d.profile),
                            format!("account {id:?}: unknown profile {:?}", d.profile.get_ref()),
                        );
                    }
                    (Some(pr), Some(pl)) if pr.platform != pl => {
                        p.at(
                            path,
                            lat(&d.profile),
                            format!(
                                "account {id:?}: profile {:?} is for {}, but the account is on {pl}",
                                pr.id, pr.platform
                            ),
                        );
                    }
                    _ => {}
                }
                let token_source = match (&d.token_env, &d.token_file) {
                    (Some(a), Some(_)) => {
                        p.at(
                            path,
                            lat(a),
                            format!("account {id:?}: set token_env or token_file, not both"),
                        );
                        TokenSource::None
                    }
                    (Some(v), None) => {
                        let v = v.get_ref().trim();
                        if v.is_empty() || v.contains('=') || v.contains('\0') {
                            p.at(
                                path,
                                line,
                                format!("account {id:?}: token_env must be a variable name"),
                            );
                        }
                        TokenSource::Env(v.to_string())
                    }
                    (None, Some(f)) => {
                        if f.get_ref().trim().is_empty() {
                            p.at(path, lat(f), format!("account {id:?}: token_file is empty"));
                        }
                        TokenSource::File(PathBuf::from(f.get_ref().trim()))
                    }
                    (None, None) => TokenSource::None,
                };
                if let Some(pl) = platform {
                    if pl.needs_token() && token_source == TokenSource::None {
                        p.at(
                            path,
                            line,
                            format!(
                                "account {id:?}: no credentials source ({pl} accounts need token_env or token_file)"
                            ),
                        );
                    }
                    match &d.endpoint {
                        None if pl.needs_endpoint() => p.at(
                            path,
                            line,
                            format!(
                                "account {id:?}: {pl} accounts need an endpoint ({})",
                                if pl == Platform::File {
                                    "the file to write to"
                                } else {
                                    "a base URL"
                                }
                            ),
                        ),
                        Some(e)
                            if pl != Platform::File
                                && !(e.get_ref().starts_with("https://")
                                    || e.get_ref().starts_with("http://")) =>
                        {
                            p.at(
                                path,
                                lat(e),
                                format!(
                                    "account {id:?}: endpoint {:?} must be an http(s) URL",
                                    e.get_ref()
                                ),
                            )
                        }
                        Some(e) if e.get_ref().trim().is_empty() => {
                            p.at(path, lat(e), format!("account {id:?}: endpoint is empty"))
                        }
                        _ => {}
                    }
                }
                let (Some(platform), Some(r), Some(profile)) = (platform, region, profile) else {
                    continue;
                };
                if !ok {
                    continue;
                }
                let reg = g.get(r);
                by_id.insert(Arc::from(id.as_str()), accounts.len());
                locs.push(Loc {
                    file: path.clone(),
                    line,
                    amplifies: d
                        .amplifies
                        .iter()
                        .map(|a| (lat(a), a.get_ref().clone()))
                        .collect(),
                });
                accounts.push(Account {
                    id: AccountId::from(id.as_str()),
                    name: d.name.clone(),
                    platform,
                    handle: d.handle.clone(),
                    region: g.region_ref(r),
                    level: reg.level,
                    function,
                    lang,
                    profile,
                    token_source,
                    endpoint: d.endpoint.as_ref().map(|e| e.get_ref().clone()),
                    amplifies: Vec::new(),
                });
            }
        }

        // Explicit amplification edges, then cycles.
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); accounts.len()];
        for (i, loc) in locs.iter().enumerate() {
            for (line, target) in &loc.amplifies {
                match by_id.get(target.as_str()) {
                    Some(&j) => {
                        if !edges[i].contains(&j) {
                            edges[i].push(j);
                            let target_id = accounts[j].id.clone();
                            accounts[i].amplifies.push(target_id);
                        }
                    }
                    None => p.at(
                        &loc.file,
                        *line,
                        format!(
                            "account {:?}: amplifies unknown account {target:?}",
                            accounts[i].id.as_str()
                        ),
                    ),
                }
            }
        }
        for cycle in find_cycles(&edges) {
            let path_txt: Vec<&str> = cycle.iter().map(|&i| accounts[i].id.as_str()).collect();
            let first = cycle[0];
            let second = cycle.get(1).copied().unwrap_or(first);
            let line = locs[first]
                .amplifies
                .iter()
                .find(|(_, t)| t == accounts[second].id.as_str())
                .map(|(l, _)| *l)
                .unwrap_or(locs[first].line);
            p.at(
                &locs[first].file,
                line,
                format!("amplification cycle: {}", path_txt.join(" → ")),
            );
        }
        let mut amplified_by: Vec<Vec<usize>> = vec![Vec::new(); accounts.len()];
        for (i, es) in edges.iter().enumerate() {
            for &j in es {
                amplified_by[j].push(i);
            }
        }

        // Index by region; every account needs a publicity account up its region chain.
        let mut by_region: AHashMap<String, Vec<usize>> = AHashMap::new();
        for (i, a) in accounts.iter().enumerate() {
            by_region.entry(a.region.code.clone()).or_default().push(i);
        }
        for v in by_region.values_mut() {
            v.sort_by(|a, b| accounts[*a].id.cmp(&accounts[*b].id));
        }
        let has_publicity = |code: &str| {
            by_region
                .get(code)
                .is_some_and(|v| v.iter().any(|i| accounts[*i].function == PUBLICITY))
        };
        let chain_of = |code: &str| g.by_code(code).map(|i| chain_codes(g, i));
        let mut reported: AHashSet<String> = AHashSet::new();
        for (i, a) in accounts.iter().enumerate() {
            let chain = chain_of(&a.region.code).unwrap_or_default();
            if !chain.iter().any(|c| has_publicity(c)) && reported.insert(a.region.code.clone()) {
                p.at(
                    &locs[i].file,
                    locs[i].line,
                    format!(
                        "no publicity account for region {} ({}) or its ancestors",
                        a.region.code, a.region.name
                    ),
                );
            }
        }
        let mut publicity_parent: Vec<(String, Option<String>)> = by_region
            .keys()
            .filter(|c| has_publicity(c))
            .map(|c| {
                let up = chain_of(c)
                    .unwrap_or_default()
                    .into_iter()
                    .skip(1)
                    .find(|a| has_publicity(a));
                (c.clone(), up)
            })
            .collect();
        publicity_parent.sort();

        // Links.
        let functions: AHashSet<&str> = accounts.iter().map(|a| a.function.as_str()).collect();
        let mut links: AHashMap<String, Link> = AHashMap::new();
        let mut star: Option<Link> = None;
        let mut link_at: AHashMap<String, (PathBuf, usize)> = AHashMap::new();
        for (path, src, f) in &files {
            for d in &f.link {
                let line = line_at(src, d.category.span().start);
                let cat = d.category.get_ref().clone();
                if cat != "*" && rules.category_index(&cat).is_none() {
                    p.at(
                        path,
                        line,
                        format!("link: unknown category {cat:?} (a category id or \"*\")"),
                    );
                    continue;
                }
                if let Some((f0, l0)) = link_at.get(&cat) {
                    p.at(
                        path,
                        line,
                        format!(
                            "duplicate link for category {cat:?} (first at {}:{l0})",
                            f0.display()
                        ),
                    );
                    continue;
                }
                link_at.insert(cat.clone(), (path.clone(), line));
                let mut fs: Vec<String> = Vec::new();
                for fun in d.functions.iter().chain(d.lead_function.iter()) {
                    if !functions.contains(fun.get_ref().as_str()) {
                        p.at(
                            path,
                            line_at(src, fun.span().start),
                            format!("link {cat:?}: no account has function {:?}", fun.get_ref()),
                        );
                    }
                }
                for fun in &d.functions {
                    if !fs.contains(fun.get_ref()) {
                        fs.push(fun.get_ref().clone());
                    }
                }
                let link = Link {
                    category: cat.clone(),
                    functions: fs,
                    lead_function: d.lead_function.as_ref().map(|s| s.get_ref().clone()),
                };
                if cat == "*" {
                    star = Some(link);
                } else {
                    links.insert(cat, link);
                }
            }
        }

        // The default region.
        let mut default: Option<(PathBuf, usize, String)> = None;
        for (path, src, f) in &files {
            if let Some(m) = &f.matrix {
                let line = line_at(src, m.default_region.span().start);
                if let Some((f0, l0, _)) = &default {
                    p.at(
                        path,
                        line,
                        format!("a second [matrix] table (first at {}:{l0})", f0.display()),
                    );
                    continue;
                }
                default = Some((path.clone(), line, m.default_region.get_ref().clone()));
            }
        }
        let mut default_region = RegionRef {
            code: String::new(),
            name: String::new(),
        };
        let mut default_chain = Vec::new();
        let mut default_lead = None;
        match &default {
            None if !files.is_empty() => p.at(
                dir,
                0,
                "no [matrix] table with default_region (where incidents without a region go)",
            ),
            None => {}
            Some((path, line, code)) => match g.by_code(code) {
                None => p.at(
                    path,
                    *line,
                    format!("default_region: unknown region code {code:?}"),
                ),
                Some(r) => {
                    default_region = g.region_ref(r);
                    default_chain = chain_codes(g, r);
                    default_lead = find_lead(&accounts, &by_region, &default_chain, None);
                    if default_lead.is_none() {
                        p.at(
                            path,
                            *line,
                            format!(
                                "no publicity account for region {code} ({}) or its ancestors",
                                default_region.name
                            ),
                        );
                    }
                }
            },
        }

        p.finish()?;
        let Some((default_lead, _)) = default_lead else {
            // Unreachable: a missing default lead is reported above.
            return Err(RuleErrors(vec![RuleError {
                file: dir.to_path_buf(),
                line: 0,
                message: "no default lead account".into(),
            }]));
        };
        Ok(Matrix {
            default_region,
            default_chain,
            default_lead,
            accounts,
            by_id,
            by_region,
            publicity_parent,
            profiles,
            links,
            star,
            amplified_by,
        })
    }

    /// An account by id.
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.by_id.get(id).map(|i| &self.accounts[*i])
    }

    /// Every account, in file order.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Every profile, in file order.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The region of incidents that have none.
    pub fn default_region(&self) -> &RegionRef {
        &self.default_region
    }

    /// The link that applies to a category: its own, else `*`.
    pub fn link(&self, category: &str) -> Option<&Link> {
        self.links.get(category).or(self.star.as_ref())
    }

    fn at_region(&self, code: &str) -> &[usize] {
        self.by_region.get(code).map(Vec::as_slice).unwrap_or(&[])
    }

    fn with_function<'a>(&'a self, code: &str, f: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.at_region(code)
            .iter()
            .copied()
            .filter(move |i| self.accounts[*i].function == f)
    }

    /// The fan-out plan for an incident (see the module docs and `rules/README.md`).
    ///
    /// * Region R: the incident's; if it has none, or the matrix has no publicity account up
    ///   its chain (another province), the matrix's `default_region`.
    /// * Lead: walking up from R, the first region with an account of the category link's
    ///   `lead_function` (emergencies only) or a publicity account; that account (lowest id).
    /// * Co-publishers: for each function of the category's link, the accounts with that
    ///   function at R, or at the nearest ancestor that has one; plus the other accounts with
    ///   the lead's function at the lead's region (e.g. an English mirror).
    /// * Amplifiers: the publicity accounts of the lead's region (when the lead is not one), of
    ///   the nearest ancestor region with any, and of the nearest descendant regions with any;
    ///   plus every account that `amplifies` the lead, transitively.
    pub fn plan(&self, incident: &Incident, rules: &RuleSet) -> Plan {
        let g = &rules.gazetteer;
        let link = self.link(&incident.category);
        let lead_fn = match incident.kind {
            IncidentKind::Emergency => link.and_then(|l| l.lead_function.as_deref()),
            IncidentKind::Rumor => None,
        };
        let own = incident.region.as_ref().and_then(|r| {
            let chain = chain_codes(g, g.by_code(&r.code)?);
            let (lead, pos) = find_lead(&self.accounts, &self.by_region, &chain, lead_fn)?;
            Some((r.clone(), chain, lead, pos))
        });
        let (region, chain, lead, lead_pos) = match own {
            Some(x) => x,
            None => {
                let (lead, pos) = find_lead(
                    &self.accounts,
                    &self.by_region,
                    &self.default_chain,
                    lead_fn,
                )
                .unwrap_or((self.default_lead, 0));
                (
                    self.default_region.clone(),
                    self.default_chain.clone(),
                    lead,
                    pos,
                )
            }
        };
        let lead_acc = &self.accounts[lead];
        let lead_region = chain[lead_pos].as_str();

        let mut co: Vec<usize> = Vec::new();
        if let Some(l) = link {
            for f in &l.functions {
                for code in &chain {
                    let found: Vec<usize> = self.with_function(code, f).collect();
                    if !found.is_empty() {
                        co.extend(found);
                        break;
                    }
                }
            }
        }
        co.extend(self.with_function(lead_region, &lead_acc.function));
        let co = self.ordered(co, &[lead]);

        let mut amp: Vec<usize> = Vec::new();
        if lead_acc.function != PUBLICITY {
            amp.extend(self.with_function(lead_region, PUBLICITY));
        }
        for code in &chain[lead_pos + 1..] {
            let found: Vec<usize> = self.with_function(code, PUBLICITY).collect();
            if !found.is_empty() {
                amp.extend(found);
                break;
            }
        }
        for (code, parent) in &self.publicity_parent {
            if parent.as_deref() == Some(lead_region) {
                amp.extend(self.with_function(code, PUBLICITY));
            }
        }
        let mut stack = vec![lead];
        let mut seen: AHashSet<usize> = AHashSet::new();
        while let Some(i) = stack.pop() {
            for &j in &self.amplified_by[i] {
                if seen.insert(j) {
                    amp.push(j);
                    stack.push(j);
                }
            }
        }
        let mut exclude = co.clone();
        exclude.push(lead);
        let amp = self.ordered(amp, &exclude);

        Plan {
            region,
            lead: lead_acc.id.clone(),
            co_publishers: co.iter().map(|i| self.accounts[*i].id.clone()).collect(),
            amplifiers: amp.iter().map(|i| self.accounts[*i].id.clone()).collect(),
        }
    }

    /// Deduplicated, without `exclude`, by region level then id.
    fn ordered(&self, mut v: Vec<usize>, exclude: &[usize]) -> Vec<usize> {
        v.retain(|i| !exclude.contains(i));
        v.sort_by(|a, b| {
            let (a, b) = (&self.accounts[*a], &self.accounts[*b]);
            (a.level, &a.id).cmp(&(b.level, &b.id))
        });
        v.dedup();
        v
    }
}

/// Walking up `chain`, the first region with a `lead_fn` account or else a publicity account:
/// (account, position in the chain).
fn find_lead(
    accounts: &[Account],
    by_region: &AHashMap<String, Vec<usize>>,
    chain: &[String],
    lead_fn: Option<&str>,
) -> Option<(usize, usize)> {
    for (pos, code) in chain.iter().enumerate() {
        let Some(v) = by_region.get(code) else {
            continue;
        };
        let pick = |f: &str| v.iter().copied().find(|i| accounts[*i].function == f);
        if let Some(i) = lead_fn.and_then(pick).or_else(|| pick(PUBLICITY)) {
            return Some((i, pos));
        }
    }
    None
}

/// Every cycle of a directed graph found by depth-first search, each as the path of nodes from
/// where it closes (`a → b → a` is `[a, b, a]`). Each back edge yields one cycle.
fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    let mut cycles = Vec::new();
    for start in 0..edges.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge index); `path` mirrors the open nodes.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut path: Vec<usize> = vec![start];
        mark[start] = Mark::Open;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if next < edges[node].len() {
                top.1 += 1;
                let to = edges[node][next];
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::Open;
                        stack.push((to, 0));
                        path.push(to);
                    }
                    Mark::Open => {
                        if let Some(k) = path.iter().position(|n| *n == to) {
                            let mut c = path[k..].to_vec();
                            c.push(to);
                            cycles.push(c);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
                path.pop();
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_with_their_path() {
        // 0 → 1 → 2 → 0, 3 → 3, 4 → 0 (no cycle of its own)
        let edges = vec![vec![1], vec![2], vec![0], vec![3], vec![0]];
        let c = find_cycles(&edges);
        assert_eq!(c, vec![vec![0, 1, 2, 0], vec![3, 3]]);
        assert!(find_cycles(&[vec![1, 2], vec![2], vec![]]).is_empty());
    }

    #[test]
    fn platforms_parse_and_need_credentials() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
        assert_eq!(Platform::parse("twitter"), None);
        assert!(Platform::Weibo.needs_token() && !Platform::File.needs_token());
        assert!(!Platform::Weibo.needs_endpoint() && Platform::Webhook.needs_endpoint());
    }

    #[test]
    fn debug_and_serialisation_show_the_source_not_the_token() {
        let a = Account {
            id: AccountId::from("x"),
            name: "X".into(),
            platform: Platform::Weibo,
            handle: "@x".into(),
            region: RegionRef {
                code: "110000".into(),
                name: "北京市".into(),
            },
            level: Level::Province,
            function: PUBLICITY.into(),
            lang: Lang::Zh,
            profile: Profile {
                id: "p".into(),
                platform: Platform::Weibo,
                posts_per_hour: 30,
                comments_per_hour: 60,
                reposts_per_hour: 30,
            },
            token_source: TokenSource::Env("HUIYING_TEST_MATRIX_SECRET_VAR".into()),
            endpoint: None,
            amplifies: Vec::new(),
        };
        std::env::set_var("HUIYING_TEST_MATRIX_SECRET_VAR", "  s3cr3t-value \n");
        assert_eq!(a.token().expect("token").as_deref(), Some("s3cr3t-value"));
        let dbg = format!("{a:?}");
        assert!(dbg.contains("env:HUIYING_TEST_MATRIX_SECRET_VAR"), "{dbg}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        let json = serde_json::to_string(&a).expect("json");
        assert!(json.contains("\"token_source\":\"env:HUIYING_TEST_MATRIX_SECRET_VAR\""));
        assert!(!json.contains("s3cr3t"), "{json}");
        std::env::remove_var("HUIYING_TEST_MATRIX_SECRET_VAR");
        let e = a.token().expect_err("unset");
        assert!(e
            .to_string()
            .contains("HUIYING_TEST_MATRIX_SECRET_VAR is not set"));
        assert_eq!(a.endpoint(), Some("https://api.weibo.com"));

        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("tok");
        std::fs::write(&f, "\n").expect("write");
        let b = Account {
            token_source: TokenSource::File(f.clone()),
            ..a.clone()
        };
        assert!(matches!(b.token(), Err(TokenError::Empty { .. })));
        std::fs::write(&f, "abc\n").expect("write");
        assert_eq!(b.token().expect("token").as_deref(), Some("abc"));
        let c = Account {
            token_source: TokenSource::None,
            platform: Platform::File,
            ..a
        };
        assert_eq!(c.token().expect("none"), None);
    }
}
