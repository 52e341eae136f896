//! The command line: parses it and hands each command to [`super::commands`], [`super::replay`]
//! or [`super::service`].

use super::commands;
use super::replay::{replay_into, Emit, ReplayStore};
use super::{default_rules_dir, service};
use crate::config::Config;
use crate::feeds::jsonl::Speed;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "huiying",
    version,
    about = "回应 — find emergencies and rumors in mentions of official accounts, fast."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the service with a built-in drill feed on the embedded store, and print where to look.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// `memory` or a store file.
        #[arg(long, default_value = "huiying-data/demo.redb")]
        store: String,
        /// Rules directory.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Run the service against the feeds of a config file.
    Run {
        /// The config file.
        #[arg(long, default_value = "huiying.toml")]
        config: PathBuf,
        /// Override the listen address.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Replay a JSON Lines file through detection and print events on stdout.
    Replay {
        /// The file (`-` for stdin).
        file: PathBuf,
        /// Rules directory.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// `max` or a multiple of real time.
        #[arg(long, default_value = "max")]
        speed: Speed,
        /// What to print.
        #[arg(long, value_enum, default_value = "incidents")]
        emit: Emit,
        /// Analysis worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Also write incidents and the mention index to a store, as the service does: a redb
        /// file, or `redis://HOST:PORT/DB` (then incident ids are claimed and windows merged in
        /// Redis too, so the output depends on timing). Default: no store, byte-identical output.
        #[arg(long)]
        store: Option<String>,
        /// Key namespace with a Redis `--store`.
        #[arg(long, default_value = "huiying-replay")]
        namespace: String,
    },
    /// Measure detection on labelled JSON Lines (labels are stripped before the engine).
    Eval {
        #[command(subcommand)]
        cmd: EvalCmd,
    },
    /// Validate or try out rules.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Train a model from labelled data.
    Train {
        #[command(subcommand)]
        cmd: TrainCmd,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Console users (the users file of `[auth] users_file`).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// API tokens (kept as SHA-256 hashes in the users file).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Reports: `evaluation` (绩效评估 of every department and account), `opinion` (舆情报告).
    Report {
        #[command(subcommand)]
        cmd: ReportCmd,
    },
    /// Citizen requests: route them to departments (`rules/routing/`).
    Cases {
        #[command(subcommand)]
        cmd: CasesCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ReportCmd {
    /// Score every department and matrix account over a period (service, interaction,
    /// approval; silent ones; rank; trend against the previous period) from the case store.
    Evaluation {
        /// First day (`2026-11-01`, the office's local date), an RFC 3339 time or unix ms
        /// (default: 30 days before `--to`).
        #[arg(long)]
        from: Option<String>,
        /// Last day, included (`2026-11-30`), an RFC 3339 time or unix ms (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only this department.
        #[arg(long)]
        department: Option<String>,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// The case store: a `.redb` file or `redis://…` (default: the config's).
        #[arg(long)]
        store: Option<String>,
        /// The service's config (its store, data directory, rules and `[redis]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rules directory (with `routing/`, `cases/`, `matrix/`, `evaluation.toml`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// `json`, `csv` or `html` (one self-contained printable page with charts).
        #[arg(long, default_value = "json")]
        format: String,
        /// Directory to write `evaluation-FROM-TO.{json,csv,html}` into (`-`: stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// 舆情报告: volume by hour and day, top terms against the period before, incidents opened,
    /// rumors and their rebuttals, regions by activity, the most reposted posts and the notices
    /// published, from the service's store (stop the service first on the embedded store).
    Opinion {
        /// First day (`2026-12-01`, Beijing time), an RFC 3339 time or unix ms (default: the
        /// day before `--to`).
        #[arg(long)]
        from: Option<String>,
        /// Last day, included (`2026-12-04`), an RFC 3339 time or unix ms (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only this region (6-digit code; a province or city covers its parts).
        #[arg(long)]
        region: Option<String>,
        /// The store: a `.redb` file or `redis://…` (default: the config's).
        #[arg(long)]
        store: Option<String>,
        /// The service's config (its store, data directory, rules and `[redis]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rules directory (the gazetteer).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// `json`, `csv` or `html` (one self-contained page with charts, A4 in print).
        #[arg(long, default_value = "html")]
        format: String,
        /// Directory to write `opinion-FROM-TO.{json,csv,html}` into (`-`: stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CasesCmd {
    /// Print one JSON line per request: `{"id","department","kinds","confidence"}`.
    Classify {
        /// Rules directory (with `routing/`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// JSON Lines of requests (the mention format; `.gz` too; `-` for stdin).
        file: PathBuf,
    },
    /// Measure the router on requests labelled with `department` (and `kinds`).
    Eval {
        /// Rules directory (with `routing/`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// The keyword rules alone, without `routing/model.bin`.
        #[arg(long)]
        rules_only: bool,
        /// Labelled JSON Lines.
        file: PathBuf,
    },
    /// Load an existing system's history into the case store (the same line twice changes
    /// nothing): one JSON object a line with id, ts, author, text, title, department, reply,
    /// reply_ts, state (and kind, region, satisfaction).
    Import {
        /// Rules directory (with `routing/` and `cases/`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The case store: a `.redb` file or `redis://…` (default: the config's, else
        /// `huiying-data/cases.redb`). Not while a service has the file open.
        #[arg(long)]
        store: Option<String>,
        /// The service's config (its store, data directory and `[redis]` settings).
        #[arg(long)]
        config: Option<PathBuf>,
        /// History JSON Lines (`.gz` too).
        file: PathBuf,
    },
    /// Train the department classifier on past cases labelled `department`.
    Train {
        /// Rules directory (with `routing/`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Where to write the model.
        #[arg(long, default_value = "rules/routing/model.bin")]
        out: PathBuf,
        /// Labelled JSON Lines.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Add a user, or set the role and password of an existing one. The password is read from
    /// stdin (first line), never from the command line.
    Add {
        /// Login name.
        name: String,
        /// viewer, operator, admin or ingest.
        #[arg(long)]
        role: crate::api::auth::Role,
        /// The users file.
        #[arg(long, default_value = "users.toml")]
        users: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Create an API token and print it once (only its hash is stored).
    Create {
        /// The token's name (not a user's name, not a reserved one such as `system`).
        name: String,
        /// viewer, operator, admin or ingest.
        #[arg(long)]
        role: crate::api::auth::Role,
        /// The user the token acts for (the actor of its approvals and in the audit log);
        /// required for operator and admin tokens.
        #[arg(long)]
        owner: Option<String>,
        /// The users file.
        #[arg(long, default_value = "users.toml")]
        users: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TrainCmd {
    /// Train the rumor model on labelled cascades (JSON Lines, `.gz` too: the mention fields plus
    /// `event` and `label` = "rumor" | "non-rumor"), cross-validate it and write it.
    Rumor {
        /// The labelled file.
        file: PathBuf,
        /// Where to write the model (the rules load `models/rumor.bin`).
        #[arg(long, default_value = "rules/models/rumor.bin")]
        out: PathBuf,
        /// Rules directory (its rumor cues are model features).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Cross-validation folds over events (0: none; the threshold stays 0.5).
        #[arg(long, default_value_t = 5)]
        folds: u32,
        /// 2^bits hash buckets per text part.
        #[arg(long, default_value_t = 16)]
        bits: u8,
        /// Inverse L2 regularisation.
        #[arg(long, default_value_t = 4.0)]
        c: f64,
        /// Full-batch iterations.
        #[arg(long, default_value_t = 300)]
        iterations: u32,
        /// Posts a cascade needs before it can be flagged.
        #[arg(long, default_value_t = 2)]
        min_posts: u32,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Verify the hash chain: `ok` with the record count and head hash (exit 0), or the first
    /// broken line as file:line: … (exit 1; 3 for only a torn last line from a crash).
    Verify {
        /// The log.
        #[arg(default_value = "huiying-data/audit.jsonl")]
        file: PathBuf,
        /// A head hash printed earlier, which the chain must still contain.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Write the audit log a cluster shares in Redis to stdout (JSON Lines, as the file), for
    /// `audit verify`. The password comes from `--password-env`.
    Export {
        /// `redis://HOST:PORT/DB`.
        url: String,
        /// The key namespace (`[redis] namespace`).
        #[arg(long, default_value = "huiying")]
        namespace: String,
        /// Environment variable holding the Redis password.
        #[arg(long)]
        password_env: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum EvalCmd {
    /// Rumor incidents against rumor/non-rumor cascades (`event`, `label` = rumor|non-rumor):
    /// event-level precision, recall, F1, posts seen at the flag, early-detection curve.
    Rumors {
        /// The labelled file (`.gz` too).
        file: PathBuf,
        /// Rules directory.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Write the per-event table (tab-separated) here.
        #[arg(long)]
        table: Option<PathBuf>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
        /// Analysis worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Cross-validate the rumor model through the engine: train on K-1 folds of events,
        /// replay the K-th, for every fold (the figures of a model that never saw the event).
        #[arg(long)]
        cv: Option<u32>,
    },
    /// Emergency incidents against injected bursts (`event` = none for background, `label` =
    /// a category or off-topic): recall (zh/en), delay, false alarms per 10 h, off-topic rate.
    Bursts {
        /// The labelled file (`.gz` too).
        file: PathBuf,
        /// Rules directory.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
        /// Analysis worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Leave every category's keywords out of the rules: what the emerging detector
        /// finds when no rule names the crisis.
        #[arg(long)]
        without_categories: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RulesCmd {
    /// Validate a rules directory; errors as file:line: message.
    Check {
        /// Rules directory.
        dir: Option<PathBuf>,
    },
    /// Print what the rules see in each mention of a JSON Lines file.
    Test {
        /// Rules directory.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The file.
        file: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "huiying=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The case store a one-shot command works on: `store` (a `.redb` file or `redis://…`), else
/// the config's Redis store, else `cases.redb` in the cases (or respond) data directory.
fn open_case_store(
    store: Option<String>,
    cfg: &crate::config::Config,
) -> anyhow::Result<crate::cases::store::CaseStore> {
    let target = store.unwrap_or_else(|| {
        if crate::store::redis::is_redis_url(&cfg.store) {
            return cfg.store.clone();
        }
        cfg.cases
            .data_dir
            .clone()
            .unwrap_or_else(|| cfg.respond.data_dir.clone())
            .join("cases.redb")
            .to_string_lossy()
            .into_owned()
    });
    Ok(if crate::store::redis::is_redis_url(&target) {
        crate::install_tls();
        let db = crate::respond::redis::Blocking::new(&target, &cfg.redis)
            .map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
        crate::cases::store::CaseStore::redis(std::sync::Arc::new(db), &cfg.redis.namespace)
    } else {
        crate::cases::store::CaseStore::open(std::path::Path::new(&target))
            .map_err(|e| anyhow::anyhow!("{e} (is a service using it?)"))?
    })
}

/// A case command's store and rules: `--store`, else the config's (see [`open_case_store`]);
/// `--rules`, else the config's rules when a config is given, else the default rules.
fn case_store_and_rules(
    store: Option<String>,
    config: Option<&std::path::Path>,
    rules: Option<PathBuf>,
) -> anyhow::Result<(crate::cases::store::CaseStore, PathBuf)> {
    let (cfg, rules) = config_and_rules(config, rules)?;
    Ok((open_case_store(store, &cfg)?, rules))
}

/// A report's config (`--config`, else the defaults) and rules: `--rules`, else the config's
/// rules when a config is given, else the default rules.
fn config_and_rules(
    config: Option<&std::path::Path>,
    rules: Option<PathBuf>,
) -> anyhow::Result<(crate::config::Config, PathBuf)> {
    let cfg = match config {
        Some(p) => crate::config::Config::load(p)?,
        None => crate::config::Config::default(),
    };
    let rules = rules.unwrap_or_else(|| {
        if config.is_some() {
            cfg.rules.clone()
        } else {
            default_rules_dir()
        }
    });
    Ok((cfg, rules))
}

fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.cmd {
        Cmd::Rules {
            cmd: RulesCmd::Check { dir },
        } => Ok(commands::rules_check(
            &dir.unwrap_or_else(default_rules_dir),
        )),
        Cmd::Rules {
            cmd: RulesCmd::Test { rules, file },
        } => {
            commands::rules_test(&rules.unwrap_or_else(default_rules_dir), &file)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Eval { cmd } => eval(cmd),
        Cmd::Cases {
            cmd: CasesCmd::Train { rules, out, file },
        } => {
            let n = super::cases::train(
                &rules.unwrap_or_else(default_rules_dir),
                &file,
                &out,
                &mut std::io::stderr(),
            )?;
            eprintln!("{}: trained on {n} cases", out.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Report {
            cmd:
                ReportCmd::Evaluation {
                    from,
                    to,
                    department,
                    account,
                    store,
                    config,
                    rules,
                    format,
                    out,
                },
        } => {
            let (case_store, rules) = case_store_and_rules(store, config.as_deref(), rules)?;
            super::report::evaluation(
                &super::report::EvaluationArgs {
                    rules,
                    from,
                    to,
                    department,
                    account,
                    format,
                    out,
                },
                &case_store,
                &mut std::io::stdout(),
            )?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Report {
            cmd:
                ReportCmd::Opinion {
                    from,
                    to,
                    region,
                    store,
                    config,
                    rules,
                    format,
                    out,
                },
        } => {
            let (cfg, rules) = config_and_rules(config.as_deref(), rules)?;
            super::report::opinion(
                &super::report::OpinionArgs {
                    rules,
                    from,
                    to,
                    region,
                    store,
                    format,
                    out,
                },
                &cfg,
                &mut std::io::stdout(),
            )?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Cases {
            cmd:
                CasesCmd::Import {
                    rules,
                    store,
                    config,
                    file,
                },
        } => {
            let (case_store, rules) = case_store_and_rules(store, config.as_deref(), rules)?;
            let r = super::cases::import(&rules, &file, case_store, &mut std::io::stderr())?;
            eprintln!(
                "{}: {} imported, {} already there, {} bad",
                file.display(),
                r.imported,
                r.existing,
                r.bad
            );
            Ok(if r.bad > 0 {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            })
        }
        Cmd::Cases {
            cmd: CasesCmd::Classify { rules, file },
        } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let bad = super::cases::classify(
                &rules.unwrap_or_else(default_rules_dir),
                &file,
                &mut out,
                &mut std::io::stderr(),
            )?;
            std::io::Write::flush(&mut out)?;
            Ok(if bad > 0 {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            })
        }
        Cmd::Cases {
            cmd:
                CasesCmd::Eval {
                    rules,
                    json,
                    rules_only,
                    file,
                },
        } => {
            let r = super::cases::eval(
                &rules.unwrap_or_else(default_rules_dir),
                &file,
                rules_only,
                &mut std::io::stderr(),
            )?;
            let mut out = std::io::stdout().lock();
            if json {
                std::io::Write::write_all(
                    &mut out,
                    format!("{}\n", serde_json::to_string(&r)?).as_bytes(),
                )?;
            } else {
                r.write_text(&mut out)?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Replay {
            file,
            rules,
            speed,
            emit,
            workers,
            store,
            namespace,
        } => {
            let rules = rules.unwrap_or_else(default_rules_dir);
            let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            let store = store.map(|spec| ReplayStore {
                spec,
                redis: crate::store::redis::RedisConfig {
                    namespace,
                    ..Default::default()
                },
            });
            let summary = replay_into(
                &file,
                &rules,
                speed,
                emit,
                workers,
                store,
                out,
                &mut std::io::stderr(),
            )?;
            eprintln!("{summary}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Demo {
            listen,
            store,
            rules,
        } => {
            let mut cfg = Config {
                listen,
                store,
                rules: rules.unwrap_or_else(default_rules_dir),
                ..Config::default()
            };
            // Approved notices go to a file, never to a real account.
            cfg.respond.drill_sink = Some(cfg.respond.data_dir.join("demo-posts.jsonl"));
            // Its CAP alerts say so too.
            cfg.linkage.exercise = true;
            service::serve(cfg, true)
        }
        Cmd::Audit {
            cmd: AuditCmd::Verify { file, anchor },
        } => Ok(std::process::ExitCode::from(
            crate::respond::audit::verify_command(
                &file,
                anchor.as_deref(),
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ),
        )),
        Cmd::Audit {
            cmd:
                AuditCmd::Export {
                    url,
                    namespace,
                    password_env,
                },
        } => {
            commands::audit_export(&url, &namespace, password_env)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::User {
            cmd: UserCmd::Add { name, role, users },
        } => {
            use std::io::IsTerminal;
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            commands::user_add(&name, role, &users, &mut stdin.lock(), interactive)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Token {
            cmd:
                TokenCmd::Create {
                    name,
                    role,
                    owner,
                    users,
                },
        } => {
            commands::token_create(&name, role, owner.as_deref(), &users)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Train {
            cmd:
                TrainCmd::Rumor {
                    file,
                    out,
                    rules,
                    folds,
                    bits,
                    c,
                    iterations,
                    min_posts,
                },
        } => {
            if !(8..=24).contains(&bits) {
                anyhow::bail!("--bits must be between 8 and 24");
            }
            let settings = crate::detect::rumor_model::train::TrainSettings {
                bits,
                c,
                iterations,
                folds,
                min_posts: min_posts.max(1),
                ..Default::default()
            };
            super::train::train_rumor(
                &file,
                &rules.unwrap_or_else(default_rules_dir),
                &out,
                &settings,
                &mut std::io::stdout(),
            )?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Run { config, listen } => {
            let mut cfg = Config::load(&config)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            service::serve(cfg, false)
        }
    }
}

fn eval(cmd: EvalCmd) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match cmd {
        EvalCmd::Rumors {
            file,
            rules,
            table,
            json,
            workers,
            cv,
        } => {
            let rules = rules.unwrap_or_else(default_rules_dir);
            let r = match cv {
                Some(k) => {
                    super::eval::rumors::eval_cv(&file, &rules, k, workers, &mut std::io::stderr())?
                }
                None => super::eval::rumors::eval(&file, &rules, workers, &mut std::io::stderr())?,
            };
            if let Some(t) = table {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&t)
                        .with_context(|| format!("cannot create {}", t.display()))?,
                );
                r.write_table(&mut f)
                    .and_then(|_| f.flush())
                    .with_context(|| format!("writing {}", t.display()))?;
            }
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                r.write_text(&mut stdout)?;
            }
        }
        EvalCmd::Bursts {
            file,
            rules,
            json,
            workers,
            without_categories,
        } => {
            let rules = rules.unwrap_or_else(default_rules_dir);
            let r = super::eval::bursts::eval(
                &file,
                &rules,
                without_categories,
                workers,
                &mut std::io::stderr(),
            )?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                r.write_text(&mut stdout)?;
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
