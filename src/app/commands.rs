//! The one-shot commands: `rules check|test`, `audit verify|export`, `user add`, `token create`.

use crate::detect::rules::LoadOptions;
use crate::detect::{Analyzer, RuleSet};
use crate::feeds::jsonl::{read_batches, Speed};
use crate::ingest::Item;
use crate::normalize::Normalizer;
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// `huiying user add`: the password from the terminal without echo, or the first line of a
/// piped stdin; its argon2id hash into the users file.
pub fn user_add(
    name: &str,
    role: crate::api::auth::Role,
    users: &Path,
    input: &mut dyn std::io::BufRead,
    interactive: bool,
) -> anyhow::Result<()> {
    let line = if interactive {
        rpassword::prompt_password(format!("Password for {name} (密码): "))
            .context("reading the password from the terminal")?
    } else {
        let mut line = String::new();
        input
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line
    };
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.chars().count() < 8 {
        anyhow::bail!("the password must have at least 8 characters");
    }
    let _held = crate::api::auth::UsersFile::lock(users)?;
    let mut f = crate::api::auth::UsersFile::load(users)?;
    f.set_user(name, role, pw)?;
    f.save(users)?;
    eprintln!("{}: user {name} ({role}) saved.", users.display());
    Ok(())
}

pub fn load_rules(dir: &Path, analyzer: &Analyzer) -> anyhow::Result<RuleSet> {
    load_rules_with(dir, &analyzer.normalizer, LoadOptions::default())
}

/// [`load_rules`] with options, and only the normaliser they need.
pub fn load_rules_with(
    dir: &Path,
    normalizer: &Normalizer,
    opts: LoadOptions,
) -> anyhow::Result<RuleSet> {
    RuleSet::load_with(dir, normalizer, opts).map_err(|e| anyhow::anyhow!("invalid rules:\n{e}"))
}

pub fn rules_test(dir: &Path, file: &Path) -> anyhow::Result<()> {
    let analyzer = Analyzer::new();
    let rs = load_rules(dir, &analyzer)?;
    let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    read_batches(std::io::BufReader::new(f), 256, Speed::Max, |items| {
        for (line, bytes) in items.iter().flat_map(Item::lines) {
            match crate::normalize::parse_mention(bytes) {
                Ok(m) => {
                    let a = analyzer.analyze(&rs, &m);
                    let _ = writeln!(out, "{}", rs.describe(&m.id, &a));
                }
                Err(e) => eprintln!("{}:{line}: rejected: {e}", file.display()),
            }
        }
        true
    })?;
    out.flush()?;
    Ok(())
}

/// `huiying rules check`: validate the rules (and the matrix and templates when present);
/// errors as file:line: message on stderr, exit 1.
pub fn rules_check(dir: &Path) -> std::process::ExitCode {
    let analyzer = Analyzer::new();
    let rs = match RuleSet::load(dir, &analyzer.normalizer) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    // The response rules, when present: the account matrix and notice templates.
    let (mut extra, mut errors) = (String::new(), Vec::new());
    if dir.join("matrix").is_dir() {
        match crate::respond::matrix::Matrix::load(&dir.join("matrix"), &rs) {
            Ok(m) => extra += &format!(", {} accounts", m.accounts().len()),
            Err(e) => errors.extend(e.0),
        }
    }
    if dir.join("templates").is_dir() {
        match crate::respond::templates::Templates::load(&dir.join("templates"), &rs) {
            Ok(t) => extra += &format!(", {} templates", t.len()),
            Err(e) => errors.extend(e.0),
        }
    }
    let mut departments = None;
    if dir.join("routing").is_dir() {
        match crate::cases::Departments::load(&dir.join("routing"), &analyzer.normalizer) {
            Ok(d) => {
                extra += &format!(", {} departments", d.all().len());
                departments = Some(d);
            }
            Err(e) => errors.extend(e.0),
        }
    }
    let calendar = dir.join("cases/calendar.toml");
    if calendar.is_file() {
        let kinds: Vec<&str> = rs.requests.iter().map(|k| &*k.id).collect();
        match crate::cases::deadlines::Calendar::load(&calendar, &kinds) {
            Ok(c) => {
                extra += ", a calendar";
                if let Some(d) = &departments {
                    for unknown in c.departments().filter(|x| d.get(x).is_none()) {
                        errors.push(crate::detect::RuleError {
                            file: calendar.clone(),
                            line: 0,
                            message: format!("a deadline names department {unknown:?}, which routing/ does not have"),
                        });
                    }
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if dir.join(crate::cases::texts::TEXTS_PATH).is_file() {
        match crate::cases::texts::Texts::load(dir) {
            Ok(_) => extra += ", case texts",
            Err(e) => errors.extend(e.0),
        }
    }
    if dir.join(crate::evaluation::weights::WEIGHTS_PATH).is_file() {
        match crate::evaluation::weights::Weights::load(dir) {
            Ok(_) => extra += ", evaluation weights",
            Err(e) => errors.extend(e.0),
        }
    }
    if !errors.is_empty() {
        eprintln!("{}", crate::detect::RuleErrors(errors));
        return std::process::ExitCode::from(1);
    }
    println!(
        "{}: ok — {} categories, {} claims, {} request kinds, {} regions, {} patterns{extra}",
        dir.display(),
        rs.categories.len(),
        rs.claims.len(),
        rs.requests.len(),
        rs.gazetteer.len(),
        rs.pattern_count()
    );
    std::process::ExitCode::SUCCESS
}

/// `huiying audit export`: the fleet's shared audit log to stdout, as the file would hold it.
pub fn audit_export(
    url: &str,
    namespace: &str,
    password_env: Option<String>,
) -> anyhow::Result<()> {
    let cfg = crate::store::redis::RedisConfig {
        password_env,
        ..Default::default()
    };
    let db = crate::respond::redis::Blocking::new(url, &cfg)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let n = crate::respond::audit::export_shared(&db, namespace, &mut out)?;
    out.flush()?;
    eprintln!("{n} records");
    Ok(())
}

/// `huiying token create`: a new token into the users file (as its hash), printed once.
pub fn token_create(
    name: &str,
    role: crate::api::auth::Role,
    owner: Option<&str>,
    users: &Path,
) -> anyhow::Result<()> {
    let _held = crate::api::auth::UsersFile::lock(users)?;
    let mut f = crate::api::auth::UsersFile::load(users)?;
    let token = f.add_token(name, role, owner)?;
    f.save(users)?;
    eprintln!(
        "{}: token {name} ({role}) saved as a hash; it is shown only now:",
        users.display()
    );
    println!("{token}");
    Ok(())
}
