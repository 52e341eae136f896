//! Wiring: the command line, `replay`, `rules check|test`, `audit verify`, and the service (`run`, `demo`):
//! feeds → bounded ingest queue → batcher → pipeline → event bus → API, store writer.

use crate::api::{self, ApiState, LiveIncidents, StreamMsg};
use crate::cluster::{Engine, Event};
use crate::config::Config;
use crate::detect::reload::SharedRules;
use crate::detect::{Analyzer, RuleSet};
use crate::feeds::jsonl::{read_batches, Speed};
use crate::feeds::{self, Ingest};
use crate::feeds::{FeedConfig, FeedKind};
use crate::pipeline::{Item, Outcome, Pipeline, PipelineConfig};
use crate::store::Store;
use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

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
    /// Validate or try out rules.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
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
        /// The token's name (the actor in the audit log).
        name: String,
        /// viewer, operator, admin or ingest.
        #[arg(long)]
        role: crate::api::auth::Role,
        /// The users file.
        #[arg(long, default_value = "users.toml")]
        users: PathBuf,
    },
}

/// `huiying user add`: the password from the terminal without echo, or the first line of a
/// piped stdin; its argon2id hash into the users file.
fn user_add(
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
    let mut f = crate::api::auth::UsersFile::load(users)?;
    f.set_user(name, role, pw)?;
    f.save(users)?;
    eprintln!("{}: user {name} ({role}) saved.", users.display());
    Ok(())
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

/// What `replay` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// Incident events only.
    Incidents,
    /// Incident events and `mention.assigned` events.
    Assignments,
}

/// The rules directory to use when none is given: `./rules`, else the one in the source tree.
pub fn default_rules_dir() -> PathBuf {
    let here = PathBuf::from("rules");
    if here.join("categories.toml").is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
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

fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.cmd {
        Cmd::Rules {
            cmd: RulesCmd::Check { dir },
        } => {
            let dir = dir.unwrap_or_else(default_rules_dir);
            let analyzer = Analyzer::new();
            match RuleSet::load(&dir, &analyzer.normalizer) {
                Ok(rs) => {
                    // The response rules, when present: the account matrix and notice templates.
                    let (mut extra, mut errors) = (String::new(), Vec::new());
                    if dir.join("matrix").is_dir() {
                        match crate::respond::matrix::Matrix::load(&dir.join("matrix"), &rs) {
                            Ok(m) => extra += &format!(", {} accounts", m.accounts().len()),
                            Err(e) => errors.extend(e.0),
                        }
                    }
                    if dir.join("templates").is_dir() {
                        match crate::respond::templates::Templates::load(
                            &dir.join("templates"),
                            &rs,
                        ) {
                            Ok(t) => extra += &format!(", {} templates", t.len()),
                            Err(e) => errors.extend(e.0),
                        }
                    }
                    if !errors.is_empty() {
                        eprintln!("{}", crate::detect::RuleErrors(errors));
                        return Ok(std::process::ExitCode::from(1));
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
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(std::process::ExitCode::from(1))
                }
            }
        }
        Cmd::Rules {
            cmd: RulesCmd::Test { rules, file },
        } => {
            rules_test(&rules.unwrap_or_else(default_rules_dir), &file)?;
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
                redis: crate::config::RedisConfig {
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
            serve(cfg, true)
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
            let cfg = crate::config::RedisConfig {
                password_env,
                ..Default::default()
            };
            let db = crate::respond::redis::Blocking::new(&url, &cfg)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = crate::respond::audit::export_shared(&db, &namespace, &mut out)?;
            std::io::Write::flush(&mut out)?;
            eprintln!("{n} records");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::User {
            cmd: UserCmd::Add { name, role, users },
        } => {
            use std::io::IsTerminal;
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            user_add(&name, role, &users, &mut stdin.lock(), interactive)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Token {
            cmd: TokenCmd::Create { name, role, users },
        } => {
            let mut f = crate::api::auth::UsersFile::load(&users)?;
            let token = f.add_token(&name, role)?;
            f.save(&users)?;
            eprintln!(
                "{}: token {name} ({role}) saved as a hash; it is shown only now:",
                users.display()
            );
            println!("{token}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Run { config, listen } => {
            let mut cfg = Config::load(&config)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            serve(cfg, false)
        }
    }
}

fn load_rules(dir: &Path, analyzer: &Analyzer) -> anyhow::Result<RuleSet> {
    RuleSet::load(dir, &analyzer.normalizer).map_err(|e| anyhow::anyhow!("invalid rules:\n{e}"))
}

fn rules_test(dir: &Path, file: &Path) -> anyhow::Result<()> {
    let analyzer = Analyzer::new();
    let rs = load_rules(dir, &analyzer)?;
    let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    read_batches(std::io::BufReader::new(f), 256, Speed::Max, |items| {
        for it in items {
            if let Item::Raw { line, bytes } = it {
                match crate::normalize::parse_mention(&bytes) {
                    Ok(m) => {
                        let a = analyzer.analyze(&rs, &m);
                        let _ = writeln!(out, "{}", rs.describe(&m.id, &a));
                    }
                    Err(e) => eprintln!("{}:{line}: rejected: {e}", file.display()),
                }
            }
        }
        true
    })?;
    out.flush()?;
    Ok(())
}

/// What a replay did, printed on stderr at the end.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    /// Lines read.
    pub lines: u64,
    /// Mentions accepted (parsed).
    pub accepted: u64,
    /// Rejections by reason.
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Incidents opened: emergency, rumor.
    pub opened: [u64; 2],
    /// Incidents closed.
    pub closed: u64,
    /// Wall time.
    pub wall: Duration,
    /// Round trips to Redis (with a Redis `--store`).
    pub redis_round_trips: Option<u64>,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejected: u64 = self.rejected.values().sum();
        let secs = self.wall.as_secs_f64().max(1e-9);
        writeln!(f, "replay summary")?;
        writeln!(f, "  mentions read:     {}", self.accepted + rejected)?;
        writeln!(f, "  accepted:          {}", self.accepted)?;
        write!(f, "  rejected:          {rejected}")?;
        for (r, n) in &self.rejected {
            write!(f, " {r}={n}")?;
        }
        writeln!(f)?;
        writeln!(f, "  duplicates:        {}", self.duplicates)?;
        writeln!(
            f,
            "  incidents opened:  emergency={} rumor={}",
            self.opened[0], self.opened[1]
        )?;
        writeln!(f, "  incidents closed:  {}", self.closed)?;
        writeln!(f, "  wall time:         {:.3} s", self.wall.as_secs_f64())?;
        write!(
            f,
            "  mentions/s:        {:.0}",
            (self.accepted + rejected) as f64 / secs
        )?;
        if let Some(n) = self.redis_round_trips {
            let read = (self.accepted + rejected).max(1) as f64;
            write!(
                f,
                "\n  redis round trips: {n} ({:.2} per 1,000 mentions)",
                n as f64 * 1000.0 / read
            )?;
        }
        Ok(())
    }
}

/// Replay `file` (or stdin for `-`) and write events as JSON lines to `out`; the first few
/// rejects go to `diag` with their line numbers.
pub fn replay<W: Write + Send + 'static>(
    file: &Path,
    rules_dir: &Path,
    speed: Speed,
    emit: Emit,
    workers: Option<usize>,
    out: W,
    diag: &mut (dyn Write + Send),
) -> anyhow::Result<ReplaySummary> {
    replay_into(file, rules_dir, speed, emit, workers, None, out, diag)
}

/// Where `replay --store` also writes incidents and the mention index.
pub struct ReplayStore {
    /// A redb file or a Redis URL.
    pub spec: String,
    /// The `[redis]` settings with a Redis URL.
    pub redis: crate::config::RedisConfig,
}

/// The store side of a replay: a runtime with the store writer and, on Redis, the window
/// sync task (whose counts the reader slips into the next batch).
struct ReplayBackend {
    rt: tokio::runtime::Runtime,
    store_tx: tokio::sync::mpsc::Sender<Arc<Event>>,
    writer: tokio::task::JoinHandle<u64>,
    cluster_rx: Option<tokio::sync::mpsc::Receiver<Item>>,
    sync: Option<tokio::task::JoinHandle<()>>,
    cancel: CancellationToken,
}

fn redis_round_trips() -> u64 {
    let m = crate::store::redis::metrics();
    ["store", "sync", "claim", "events"]
        .iter()
        .map(|op| m.round_trips.with_label_values(&[op]).get())
        .sum()
}

impl ReplayBackend {
    fn open(s: ReplayStore, engine: Engine) -> anyhow::Result<(ReplayBackend, Engine)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let cfg = Config {
            store: s.spec.clone(),
            redis: s.redis,
            ..Config::default()
        };
        let (store, redis) = rt.block_on(async {
            let store = open_store(&cfg).await?;
            let redis = if crate::store::redis::is_redis_url(&cfg.store) {
                Some(crate::store::redis::Redis::connect(&cfg.store, &cfg.redis).await?)
            } else {
                None
            };
            anyhow::Ok((store, redis))
        })?;
        let (store_tx, store_rx) = tokio::sync::mpsc::channel::<Arc<Event>>(65_536);
        let writer = rt.spawn(crate::store::writer::run(store, store_rx));
        let cancel = CancellationToken::new();
        let (mut engine, mut cluster_rx, mut sync) = (engine, None, None);
        if let Some(r) = redis {
            let (coord, task) = crate::store::redis::RedisCoordinator::new(r, rt.handle().clone());
            engine = engine.with_coordinator(Box::new(coord));
            let (tx, rx) = tokio::sync::mpsc::channel::<Item>(1024);
            sync = Some(rt.spawn(task.run(tx, cancel.clone())));
            cluster_rx = Some(rx);
        }
        Ok((
            ReplayBackend {
                rt,
                store_tx,
                writer,
                cluster_rx,
                sync,
                cancel,
            },
            engine,
        ))
    }

    /// Stop the sync task and wait until the writer has stored everything.
    fn finish(self) -> u64 {
        let ReplayBackend {
            rt,
            writer,
            sync,
            cancel,
            ..
        } = self;
        cancel.cancel();
        rt.block_on(async {
            if let Some(s) = sync {
                let _ = s.await;
            }
            writer.await.unwrap_or(1)
        })
    }
}

/// [`replay`], also writing to a store when `store` is given (see `huiying replay --store`).
#[allow(clippy::too_many_arguments)]
pub fn replay_into<W: Write + Send + 'static>(
    file: &Path,
    rules_dir: &Path,
    speed: Speed,
    emit: Emit,
    workers: Option<usize>,
    store: Option<ReplayStore>,
    out: W,
    diag: &mut (dyn Write + Send),
) -> anyhow::Result<ReplaySummary> {
    let started = Instant::now();
    let trips0 = redis_round_trips();
    let is_redis = store
        .as_ref()
        .is_some_and(|s| crate::store::redis::is_redis_url(&s.spec));
    let (mut backend, engine) = match store {
        Some(s) => {
            let (b, e) = ReplayBackend::open(s, Engine::new())?;
            (Some(b), e)
        }
        None => (None, Engine::new()),
    };
    let store_tx = backend.as_ref().map(|b| b.store_tx.clone());
    let mut cluster_rx = backend.as_mut().and_then(|b| b.cluster_rx.take());
    if let Some(b) = &mut backend {
        // Only the sink's clone may keep the writer alive.
        let (tx, _) = tokio::sync::mpsc::channel(1);
        b.store_tx = tx;
    }
    let analyzer = Arc::new(Analyzer::new());
    let rules: SharedRules = Arc::new(ArcSwap::from_pointee(load_rules(rules_dir, &analyzer)?));
    let mut cfg = PipelineConfig::default();
    if let Some(w) = workers {
        cfg.workers = w.max(1);
    }
    let (diag_tx, diag_rx) = std::sync::mpsc::channel::<String>();
    let with_assign = emit == Emit::Assignments;
    let file_name = file.display().to_string();
    let state = Arc::new(std::sync::Mutex::new((
        ReplaySummary::default(),
        out,
        None::<std::io::Error>,
    )));
    let st = state.clone();
    let mut shown = 0;
    let mut pipeline = Pipeline::start(cfg, rules, analyzer, engine, move |o| {
        if let (Some(tx), Outcome::Events(evs)) = (&store_tx, &o) {
            for e in evs.iter() {
                // The store sees every event, as in the service: wait rather than drop.
                let _ = tx.blocking_send(Arc::new(e.clone()));
            }
        }
        let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
        let (summary, out, err) = &mut *g;
        match o {
            Outcome::Rejected { line, reason } => {
                *summary.rejected.entry(reason.as_str()).or_insert(0) += 1;
                crate::metrics::global().rejected("replay", reason.as_str());
                if shown < 10 {
                    shown += 1;
                    let _ = diag_tx.send(format!(
                        "{file_name}:{line}: rejected ({}): {reason}",
                        reason.as_str()
                    ));
                }
            }
            Outcome::Events(evs) => {
                summary.accepted += 1;
                if err.is_some() {
                    return;
                }
                for e in evs {
                    if e.is_assignment() && !with_assign {
                        continue;
                    }
                    let mut line = e.to_json();
                    line.push('\n');
                    if let Err(x) = out.write_all(line.as_bytes()) {
                        *err = Some(x);
                        return;
                    }
                }
            }
        }
    })?;
    // With Redis, the cluster's window counts join the next batch.
    let mut submit = |mut b: Vec<Item>| {
        if let Some(rx) = &mut cluster_rx {
            while let Ok(it) = rx.try_recv() {
                b.push(it);
            }
        }
        pipeline.submit(b)
    };
    let lines = if file == Path::new("-") {
        read_batches(std::io::stdin().lock(), 512, speed, &mut submit)?
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        read_batches(
            std::io::BufReader::with_capacity(1 << 20, f),
            512,
            speed,
            &mut submit,
        )?
    };
    let engine = pipeline.finish();
    if let Some(b) = backend {
        if b.finish() > 0 {
            let _ = writeln!(diag, "some store batches failed to write");
        }
    }
    for d in diag_rx.try_iter() {
        let _ = writeln!(diag, "{d}");
    }
    let mut g = state.lock().unwrap_or_else(|p| p.into_inner());
    let (summary, out, err) = &mut *g;
    if let Some(e) = err.take() {
        return Err(e).context("writing events");
    }
    out.flush().context("writing events")?;
    let mut s = summary.clone();
    if let Some(e) = engine {
        let st = e.stats();
        s.duplicates = st.duplicates;
        s.opened = st.opened;
        s.closed = st.closed;
    }
    s.lines = lines;
    s.wall = started.elapsed();
    if is_redis {
        s.redis_round_trips = Some(redis_round_trips() - trips0);
    }
    Ok(s)
}

/// A running service (used by `run`, `demo` and the tests).
pub struct Service {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    /// The live rules.
    pub rules: SharedRules,
    /// The shared Redis when `store` is a Redis URL (for the stages that share state through it).
    pub redis: Option<crate::store::redis::Redis>,
    /// The separate `/metrics` address, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// Users, tokens and sessions.
    pub auth: Arc<crate::api::auth::Auth>,
    /// `demo` only: the 0600 file with the ephemeral console logins.
    pub demo_logins: Option<PathBuf>,
    cancel: CancellationToken,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Open the store a config names: `memory`, a redb file, or a Redis URL (connecting with the
/// `[redis]` settings). Call from inside the runtime.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    use crate::store::redis::{is_redis_url, Redis, RedisStore};
    if is_redis_url(&cfg.store) {
        let r = Redis::connect(&cfg.store, &cfg.redis)
            .await
            .context("connecting to Redis for the store")?;
        let retention = Duration::from_secs(u64::from(cfg.redis.closed_retention_days) * 86_400);
        return Ok(Arc::new(RedisStore::new(r, retention)?));
    }
    let spec = cfg.store.clone();
    Ok(tokio::task::spawn_blocking(move || crate::store::open(&spec)).await??)
}

impl Service {
    /// Stop feeds, drain every stage, flush the store; resolves when all is done.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.done.await.context("service task")?
    }

    /// The token that stops the service.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// What the service needs to start.
pub struct ServiceOptions {
    /// The configuration.
    pub config: Config,
    /// The store (already opened).
    pub store: Arc<dyn Store>,
    /// Play the demo drill (and create ephemeral console users, see [`demo_logins`]).
    pub demo: bool,
    /// The clock of sessions and login limits (`None`: the system clock).
    pub auth_clock: Option<Arc<dyn crate::clock::Clock>>,
}

/// `demo`: an `admin` and an `operator` user with random passwords, kept in memory only; the
/// passwords go to a file readable by the owner only (never to the log) whose path is returned.
fn demo_logins(auth: &crate::api::auth::Auth, dir: &Path) -> anyhow::Result<PathBuf> {
    use crate::api::auth::{new_secret, write_private, Role};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = String::from("# huiying demo console logins (valid until the demo stops)\n");
    for (name, role) in [("admin", Role::Admin), ("operator", Role::Operator)] {
        let pw = new_secret("")[..20].to_string();
        auth.add_user(name, role, &pw)?;
        text += &format!("{name} {pw}\n");
    }
    let path = dir.join("demo-logins.txt");
    write_private(&path, text.as_bytes()).with_context(|| format!("{}", path.display()))?;
    Ok(path)
}

/// Start the service; returns once it listens.
pub async fn start(opts: ServiceOptions) -> anyhow::Result<Service> {
    feeds::install_tls();
    let cfg = opts.config;
    let analyzer = tokio::task::spawn_blocking(|| Arc::new(Analyzer::new())).await?;
    let rules_dir = cfg.rules.clone();
    let a2 = analyzer.clone();
    let rs = tokio::task::spawn_blocking(move || load_rules(&rules_dir, &a2)).await??;
    let rules: SharedRules = Arc::new(ArcSwap::from_pointee(rs));
    let cancel = CancellationToken::new();

    // Restore what was open.
    let store = opts.store;
    let st2 = store.clone();
    let restored = tokio::task::spawn_blocking(move || st2.open_incidents()).await??;
    let live: LiveIncidents = Default::default();
    let mut engine = Engine::new();
    // Several instances as one: incident ids claimed in Redis, windows merged there.
    let redis = if crate::store::redis::is_redis_url(&cfg.store) {
        Some(
            crate::store::redis::Redis::connect(&cfg.store, &cfg.redis)
                .await
                .context("connecting to Redis")?,
        )
    } else {
        None
    };
    let mut sync_task = None;
    if let Some(r) = &redis {
        let (coord, sync) = crate::store::redis::RedisCoordinator::new(
            r.clone(),
            tokio::runtime::Handle::current(),
        );
        engine = engine.with_coordinator(Box::new(coord));
        sync_task = Some(sync);
        tracing::info!(namespace = %r.namespace(), instance = %r.instance(), "Sharing incidents through Redis.");
    }
    {
        let mut g = live.write().unwrap_or_else(|p| p.into_inner());
        for i in &restored {
            g.insert(i.id.clone(), Arc::new(i.clone()));
        }
    }
    api::refresh_open_gauge(&live);
    if !restored.is_empty() {
        tracing::info!(count = restored.len(), "Restored open incidents.");
    }
    engine.restore(&rules.load(), restored);

    // The respond stage (notices, approval, publishing), when enabled and its rules are valid.
    let respond = crate::respond::stage::start(
        &cfg.respond,
        &cfg.rules,
        rules.clone(),
        crate::store::redis::is_redis_url(&cfg.store).then(|| crate::respond::stage::Shared {
            url: cfg.store.clone(),
            redis: cfg.redis.clone(),
        }),
        cancel.clone(),
    )
    .await
    .context("respond stage")?;
    let (respond, respond_tx, respond_tasks) = match respond {
        Some(s) => (Some(s.respond), Some(s.events), s.tasks),
        None => (None, None, Vec::new()),
    };

    let (events_tx, _) = tokio::sync::broadcast::channel::<StreamMsg>(4096);
    let (store_tx, store_rx) = tokio::sync::mpsc::channel::<Arc<Event>>(65_536);
    let writer = tokio::spawn(crate::store::writer::run(store.clone(), store_rx));

    // Incident events go to the other instances; each stream announces an incident once.
    let dedup = Arc::new(crate::store::redis::StreamDedup::default());
    let (publish_tx, publisher) = match &redis {
        Some(r) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Arc<Event>>(4096);
            let task = tokio::spawn(crate::store::redis::events::publish(r.clone(), rx));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let dedup2 = dedup.clone();
    let live2 = live.clone();
    let bus = events_tx.clone();
    let mut pcfg = PipelineConfig::default();
    if cfg.workers > 0 {
        pcfg.workers = cfg.workers;
    }
    let mut pipeline = Pipeline::start(pcfg, rules.clone(), analyzer.clone(), engine, move |o| {
        if let Outcome::Events(evs) = o {
            for e in evs {
                api::apply_to_live(&live2, e);
                let show = match (e, &publish_tx) {
                    (Event::Incident { kind, incident, .. }, Some(_)) => {
                        dedup2.first(*kind, &incident.id)
                    }
                    _ => true,
                };
                if show {
                    let _ = bus.send(StreamMsg {
                        json: Arc::from(e.to_json()),
                        assignment: e.is_assignment(),
                    });
                }
                // The store must see every event: wait rather than drop.
                let shared = Arc::new(e.clone());
                if let (Some(tx), Event::Incident { .. }) = (&publish_tx, e) {
                    // Live-only: the other instances read the shared store after a gap.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) =
                        tx.try_send(shared.clone())
                    {
                        tracing::warn!(
                            "Cluster event queue full: an incident event was not published."
                        );
                    }
                }
                if let (Some(tx), Event::Incident { .. }) = (&respond_tx, e) {
                    // Drafting is idempotent and every update carries the incident again: a
                    // full queue drops (and logs) rather than stall the pipeline.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) =
                        tx.try_send(shared.clone())
                    {
                        tracing::warn!(
                            "Respond queue full: an incident event was not seen for drafting."
                        );
                    }
                }
                let _ = store_tx.blocking_send(shared);
            }
        }
    })?;
    let mut submitter = pipeline.submitter().context("pipeline input")?;

    // Feeds → one bounded queue → the batcher thread.
    let (ingest_tx, mut ingest_rx) = tokio::sync::mpsc::channel::<Item>(cfg.ingest_queue.max(1024));
    let batcher = std::thread::Builder::new()
        .name("batcher".into())
        .spawn(move || {
            while let Some(first) = ingest_rx.blocking_recv() {
                let mut batch = Vec::with_capacity(64);
                batch.push(first);
                while batch.len() < 512 {
                    match ingest_rx.try_recv() {
                        Ok(it) => batch.push(it),
                        Err(_) => break,
                    }
                }
                if !submitter.submit(batch) {
                    break;
                }
            }
        })?;

    let mut tasks = respond_tasks;
    if let (Some(r), Some(sync)) = (&redis, sync_task) {
        tasks.push(tokio::spawn(sync.run(ingest_tx.clone(), cancel.clone())));
        let sinks = crate::store::redis::events::Sinks {
            live: live.clone(),
            bus: events_tx.clone(),
            dedup: dedup.clone(),
            store: store.clone(),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(crate::store::redis::events::subscribe(
            r.clone(),
            sinks,
            ready_tx,
            cancel.clone(),
        )));
        // Started means receiving the other instances' events; a Redis that is down does not
        // hold the start up for long (the subscriber keeps retrying).
        if tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .is_err()
        {
            tracing::warn!("Not subscribed to the other instances' events yet; going on.");
        }
    }
    // Event time keeps moving on quiet feeds.
    {
        let tx = ingest_tx.clone();
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = iv.tick() => {
                        if tx.send(Item::Tick(chrono::Utc::now().timestamp_millis())).await.is_err() { break; }
                    }
                }
            }
        }));
    }
    let registry = Arc::new(feeds::health::FeedRegistry::default());
    for f in &cfg.feeds {
        tasks.push(spawn_feed(
            f.clone(),
            Ingest::new(f.name.clone(), ingest_tx.clone(), true),
            store.clone(),
            &registry,
            cancel.clone(),
        )?);
    }
    if opts.demo {
        let ingest = Ingest::new("demo", ingest_tx.clone(), true);
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let mut drill = feeds::demo::Drill::new(2026, chrono::Utc::now().timestamp_millis());
            let mut iv = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = iv.tick() => {
                        for m in drill.advance(chrono::Utc::now().timestamp_millis()) {
                            if !ingest.send(m).await { return; }
                        }
                    }
                }
            }
        }));
    }
    let watcher = if cfg.watch_rules {
        match crate::detect::reload::spawn_watcher(
            rules.clone(),
            cfg.rules.clone(),
            analyzer.clone(),
            cancel.clone(),
        ) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch the rules directory; hot reload is off.");
                None
            }
        }
    } else {
        None
    };

    // Legacy `[respond] operators`: tokens with the operator role.
    let mut extra_tokens = Vec::new();
    for op in &cfg.respond.operators {
        match op.token() {
            Ok(t) => extra_tokens.push((op.name.clone(), t, crate::api::auth::Role::Operator)),
            Err(e) => tracing::warn!(error = %e, "Operator skipped."),
        }
    }
    let clock = opts
        .auth_clock
        .unwrap_or_else(|| Arc::new(crate::clock::SystemClock));
    let acfg = cfg.auth.clone();
    let metrics_elsewhere = cfg.metrics_listen.is_some();
    let auth = Arc::new(
        tokio::task::spawn_blocking(move || {
            crate::api::auth::Auth::new(acfg, extra_tokens, metrics_elsewhere, clock)
        })
        .await?
        .context("auth")?,
    );
    let demo_logins = if opts.demo {
        let (a, d) = (auth.clone(), cfg.respond.data_dir.clone());
        Some(tokio::task::spawn_blocking(move || demo_logins(&a, &d)).await??)
    } else {
        None
    };
    let (users, tokens) = auth.counts();
    tracing::info!(
        users,
        tokens,
        public_wall = cfg.auth.public_wall,
        "Auth ready."
    );
    if users == 0 && tokens == 0 {
        tracing::warn!("No users and no API tokens: every endpoint but /healthz and /metrics answers 401. Add one with `huiying user add NAME --role admin`.");
    }

    let state = ApiState {
        auth: auth.clone(),
        rules_dir: cfg.rules.clone(),
        control: ingest_tx.clone(),
        live,
        store: store.clone(),
        events: events_tx,
        ingest: Ingest::new("http", ingest_tx, true),
        rules: rules.clone(),
        max_body_bytes: cfg.max_body_bytes,
        cancel: cancel.clone(),
        feeds: registry,
        respond,
        redis: redis.clone(),
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let app = api::router(state);
    let c = cancel.clone();
    // The client address feeds the per-address login limit.
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { c.cancelled().await })
        .await
    });
    let metrics_addr = match &cfg.metrics_listen {
        Some(m) => {
            let l = tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("cannot listen on {m} (metrics_listen)"))?;
            let a = l.local_addr()?;
            let c = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let r = axum::serve(l, api::metrics_router())
                    .with_graceful_shutdown(async move { c.cancelled().await })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "Metrics server failed.");
                }
            }));
            Some(a)
        }
        None => None,
    };
    let done = tokio::spawn(async move {
        server.await??;
        for t in tasks {
            let _ = t.await;
        }
        // Every ingest sender is gone now: the batcher ends, the pipeline drains.
        tokio::task::spawn_blocking(move || {
            let _ = batcher.join();
            pipeline.finish();
            if let Some(w) = watcher {
                let _ = w.join();
            }
        })
        .await?;
        if let Some(p) = publisher {
            let _ = p.await;
        }
        let failed = writer.await?;
        if failed > 0 {
            tracing::warn!(failed, "Some store batches failed to write.");
        }
        tracing::info!("Stopped.");
        Ok(())
    });
    Ok(Service {
        addr,
        redis,
        rules,
        metrics_addr,
        auth,
        demo_logins,
        cancel,
        done,
    })
}

fn spawn_feed(
    f: FeedConfig,
    ingest: Ingest,
    store: Arc<dyn Store>,
    registry: &feeds::health::FeedRegistry,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token = f.token()?;
    let health = registry.register(&f.name, f.kind.as_str());
    Ok(match f.kind {
        FeedKind::Generic => tokio::spawn(feeds::websocket::run(
            feeds::websocket::Generic { url: f.url.clone() },
            token,
            ingest,
            health,
            f.ws_options(),
            cancel,
        )),
        FeedKind::Mastodon => tokio::spawn(feeds::mastodon::run(f, token, ingest, health, cancel)),
        FeedKind::Jetstream => {
            tokio::spawn(feeds::jetstream::run(f, store, ingest, health, cancel))
        }
        FeedKind::File => tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let file = match tokio::fs::File::open(&f.url).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(feed = %f.name, error = %e, "Cannot open the feed file.");
                    return;
                }
            };
            let mut lines = tokio::io::BufReader::new(file).lines();
            loop {
                let line = tokio::select! {
                    _ = cancel.cancelled() => break,
                    l = lines.next_line() => l,
                };
                match line {
                    Ok(Some(l)) if l.trim().is_empty() => {}
                    Ok(Some(l)) => match crate::normalize::parse_mention(l.as_bytes()) {
                        Ok(m) => {
                            if !ingest.send(m).await {
                                break;
                            }
                        }
                        Err(e) => ingest.rejected(e.as_str()),
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(feed = %f.name, error = %e, "Feed file read error.");
                        ingest.rejected("invalid_utf8");
                        break;
                    }
                }
            }
        }),
    })
}

fn serve(cfg: Config, demo: bool) -> anyhow::Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = open_store(&cfg).await?;
        let svc = start(ServiceOptions {
            config: cfg.clone(),
            store,
            demo,
            auth_clock: None,
        })
        .await?;
        let url = format!("http://{}", svc.addr);
        println!("huiying is running{}.", if demo { " the demo drill" } else { "" });
        println!("  wall:       {url}/wall");
        println!("  incidents:  {url}/api/incidents");
        println!("  live:       ws://{}/api/stream", svc.addr);
        println!("  post:       curl -XPOST {url}/api/mentions -d '{{\"id\":\"1\",\"text\":\"…\",\"ts\":…}}'");
        println!("  console:    {url}/console");
        match svc.metrics_addr {
            Some(m) => println!("  metrics:    http://{m}/metrics     health: {url}/healthz"),
            None => println!("  metrics:    {url}/metrics     health: {url}/healthz"),
        }
        if let Some(p) = &svc.demo_logins {
            println!("  logins:     {} (admin and operator; readable by you only)", p.display());
        }
        println!("  store:      {}   rules: {}", cfg.store, cfg.rules.display());
        if demo {
            println!("The drill: chatter now, a rainstorm in 海淀区 from 15 s, a rumor from 40 s, a known claim at 70 s.");
            if let Some(sink) = &cfg.respond.drill_sink {
                println!(
                    "  posts:      {} (approved notices are published here, not to real accounts)",
                    sink.display()
                );
            }
        }
        println!("Ctrl-C stops it.");
        let _ = std::io::stdout().flush();
        shutdown_signal().await;
        tracing::info!("Shutting down.");
        svc.shutdown().await?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
