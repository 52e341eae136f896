//! Loading and validating `rules/matrix/*.toml`: every problem reported at `file:line`.

use super::plan::{chain_codes, find_lead};
use super::*;
use crate::detect::diagnostics::{line_at, read_dir_toml, Problems};
use crate::detect::gazetteer::{Level, RegionRef};
use crate::detect::rules::{RuleError, RuleErrors, RuleSet};
use crate::respond::templates::Lang;
use ahash::{AHashMap, AHashSet};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

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
        let mut profiles: Vec<NamedProfile> = Vec::new();
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
                profiles.push(NamedProfile {
                    id,
                    platform,
                    limits: crate::respond::limits::Profile {
                        posts_per_hour: *d.posts_per_hour.get_ref(),
                        comments_per_hour: *d.comments_per_hour.get_ref(),
                        reposts_per_hour: *d.reposts_per_hour.get_ref(),
                        burst: 1,
                    },
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
            name_en: String::new(),
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
}

/// Every cycle of a directed graph found by depth-first search, each as the path of nodes from
/// where it closes (`a → b → a` is `[a, b, a]`). Each back edge yields one cycle.
pub(super) fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
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
