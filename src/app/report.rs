//! `huiying report evaluation`: the evaluation of every department and account from a case
//! store, as JSON or CSV, to a file or stdout; `huiying report opinion`: the public-opinion
//! report from the service's store and notices.

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

/// What `huiying report opinion` was asked.
pub struct OpinionArgs {
    /// Rules directory (the gazetteer).
    pub rules: PathBuf,
    /// Period start, as given.
    pub from: Option<String>,
    /// Period end, as given.
    pub to: Option<String>,
    /// Only this region (6-digit code).
    pub region: Option<String>,
    /// The store (default: the config's).
    pub store: Option<String>,
    /// `json`, `csv` or `html`.
    pub format: String,
    /// A directory, or `-` for `stdout`.
    pub out: PathBuf,
}

/// Compute the opinion report from the store the config names (or `--store`) and the respond
/// stage's notices beside it; the file written is named on stderr.
pub fn opinion(
    a: &OpinionArgs,
    cfg: &crate::config::Config,
    stdout: &mut dyn Write,
) -> anyhow::Result<()> {
    use crate::detect::gazetteer::check_region_filter as check_region;
    use crate::opinion::{report, Ask, CST_OFFSET_SECS};
    let format = a.format.as_str();
    if !matches!(format, "json" | "csv" | "html") {
        anyhow::bail!("--format {format:?}: json, csv or html");
    }
    let region = check_region(a.region.as_deref()).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let analyzer = Analyzer::new();
    let rs = crate::detect::RuleSet::load(&a.rules, &analyzer.normalizer)
        .map_err(|e| anyhow::anyhow!("invalid rules:\n{e}"))?;
    if let Some(r) = &region {
        if rs.gazetteer.by_code(r).is_none() {
            anyhow::bail!("--region {r:?}: no such division code");
        }
    }
    let now = crate::respond::dispatch::system_now_ms();
    let (from, to) =
        crate::clock::period(a.from.as_deref(), a.to.as_deref(), CST_OFFSET_SECS, now, 1)
            .map_err(anyhow::Error::msg)?;
    let spec = a.store.clone().unwrap_or_else(|| cfg.store.clone());
    // A report reads: a mistyped path must not become a new, empty store reporting zeros.
    if spec != "memory"
        && !crate::store::redis::is_redis_url(&spec)
        && !std::path::Path::new(&spec).is_file()
    {
        anyhow::bail!("no store at {spec} (--store, or the config's `store`)");
    }
    let mut cfg = cfg.clone();
    cfg.store = spec.clone();
    // Redis answers on a runtime of its own; the report's reads block on it from here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let redis = crate::store::redis::is_redis_url(&spec);
    if redis {
        crate::install_tls();
    }
    let store = rt
        .block_on(crate::app::service::open_store(&cfg))
        .map_err(|e| anyhow::anyhow!("{spec}: {e:#} (is a service using it?)"))?;
    let notices = if redis {
        let db = crate::respond::redis::Blocking::new(&spec, &cfg.redis)
            .map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
        crate::respond::notices::NoticeStore::redis(std::sync::Arc::new(db), &cfg.redis.namespace)
            .all()
    } else {
        let path = cfg.respond.data_dir.join("notices.redb");
        if path.is_file() {
            crate::respond::notices::NoticeStore::open(&path).and_then(|s| s.all())
        } else {
            Ok(Vec::new())
        }
    }
    .map_err(|e| anyhow::anyhow!("reading the notices: {e}"))?;
    let o = crate::opinion::compute(
        store.as_ref(),
        &notices,
        &rs.gazetteer,
        &Ask {
            from,
            to,
            region,
            offset_secs: CST_OFFSET_SECS,
            generated_at: now,
        },
    )
    .map_err(|e| anyhow::anyhow!("reading the store: {e}"))?;
    let text = match format {
        "csv" => report::csv(&o),
        "html" => report::html(&o),
        _ => report::json(&o) + "\n",
    };
    if a.out.as_os_str() == "-" {
        stdout.write_all(text.as_bytes())?;
        return Ok(());
    }
    std::fs::create_dir_all(&a.out).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    let day = |ms: i64| crate::opinion::local_day(ms, CST_OFFSET_SECS).replace('-', "");
    let path = a
        .out
        .join(format!("opinion-{}-{}.{format}", day(from), day(to - 1)));
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    eprintln!("{}", path.display());
    Ok(())
}
