//! `huiying report evaluation`: the evaluation of every department and account from a case
//! store, as JSON or CSV, to a file or stdout.

use crate::detect::Analyzer;
use std::io::Write;
use std::path::PathBuf;

/// What `huiying report evaluation` was asked.
pub struct EvaluationArgs {
    /// Rules directory.
    pub rules: PathBuf,
    /// Period start, as given.
    pub from: Option<String>,
    /// Period end, as given.
    pub to: Option<String>,
    /// Only this department.
    pub department: Option<String>,
    /// Only this account.
    pub account: Option<String>,
    /// `json`, `csv` or `html`.
    pub format: String,
    /// A directory, or `-` for `stdout`.
    pub out: PathBuf,
}

/// Compute and write the evaluation; the file written is named on stderr.
pub fn evaluation(
    a: &EvaluationArgs,
    store: &crate::cases::store::CaseStore,
    stdout: &mut dyn Write,
) -> anyhow::Result<()> {
    let format = a.format.as_str();
    if !matches!(format, "json" | "csv" | "html") {
        anyhow::bail!("--format {format:?}: json, csv or html");
    }
    let invalid = |what: &str, e: &dyn std::fmt::Display| anyhow::anyhow!("invalid {what}:\n{e}");
    let analyzer = Analyzer::new();
    let rs = crate::detect::RuleSet::load(&a.rules, &analyzer.normalizer)
        .map_err(|e| invalid("rules", &e))?;
    let router = crate::cases::Router::load(&a.rules).map_err(|e| invalid("routing", &e))?;
    let kinds: Vec<&str> = rs.requests.iter().map(|k| &*k.id).collect();
    let calendar =
        crate::cases::deadlines::Calendar::load(&a.rules.join("cases/calendar.toml"), &kinds)
            .map_err(|e| invalid("calendar", &e))?;
    let weights = crate::evaluation::weights::Weights::load(&a.rules)
        .map_err(|e| invalid("evaluation weights", &e))?;
    let mdir = a.rules.join("matrix");
    let matrix = if mdir.is_dir() {
        Some(crate::respond::matrix::Matrix::load(&mdir, &rs).map_err(|e| invalid("matrix", &e))?)
    } else {
        None
    };
    for (what, id, known) in [
        (
            "department",
            a.department.as_deref(),
            a.department
                .as_deref()
                .is_none_or(|d| router.departments.get(d).is_some()),
        ),
        (
            "account",
            a.account.as_deref(),
            a.account
                .as_deref()
                .is_none_or(|x| matrix.as_ref().is_some_and(|m| m.account(x).is_some())),
        ),
    ] {
        if !known {
            anyhow::bail!("--{what} {:?}: no such {what}", id.unwrap_or_default());
        }
    }
    let now = crate::respond::dispatch::system_now_ms();
    let period = crate::evaluation::period(
        a.from.as_deref(),
        a.to.as_deref(),
        calendar.offset_secs(),
        now,
    )
    .map_err(anyhow::Error::msg)?;
    let loaded = crate::evaluation::Loaded::from_store(store)
        .map_err(|e| anyhow::anyhow!("reading the case store: {e}"))?;
    let subjects = crate::evaluation::Subjects::of(&router, matrix.as_ref())
        .only(a.department.as_deref(), a.account.as_deref());
    let e =
        crate::evaluation::evaluate(loaded.inputs(), &subjects, &calendar, &weights, period, now);
    let text = match format {
        "csv" => crate::evaluation::report::csv(&e),
        "html" => crate::evaluation::report::html(&e),
        _ => crate::evaluation::report::json(&e) + "\n",
    };
    if a.out.as_os_str() == "-" {
        stdout.write_all(text.as_bytes())?;
        return Ok(());
    }
    std::fs::create_dir_all(&a.out).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    let day = |ms: i64| calendar.day_key(ms);
    let path = a.out.join(format!(
        "evaluation-{}-{}.{format}",
        day(period.from),
        day(period.to - 1)
    ));
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    eprintln!("{}", path.display());
    Ok(())
}
