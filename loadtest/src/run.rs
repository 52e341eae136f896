//! One run of a scenario: write the engine's config, start the engine (in this process, or as
//! its own process pinned to other cores), start the feed server, the fake platform and the
//! driver, send the traffic, drain, and write the report. The top of the harness: `anyhow` here.

use crate::driver::{self, SharedObserved, Tick};
use crate::fake_platform::{FakeHandle, FakePlatform};
use crate::fanout;
use crate::feed::{self, FeedServer, SenderConfig, SharedLog};
use crate::report::{self, RunResult};
use crate::scenario::{FeedFormat, Scenario};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How the engine runs.
#[derive(Debug, Clone)]
pub enum EngineMode {
    /// `huiying::app::start` in this process (the smoke test; CPU and RSS are the harness's too).
    InProcess,
    /// `huiying run --config …` as a child process, under `taskset -c CPUS` when given.
    Spawn {
        /// The `huiying` binary.
        bin: PathBuf,
        /// CPU list for the engine (`taskset -c`).
        cpus: Option<String>,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `scenarios/<name>`.
    pub scenario_dir: PathBuf,
    /// Where the config, engine data and reports go.
    pub out_dir: PathBuf,
    /// The engine.
    pub engine: EngineMode,
    /// Cap on the traffic's duration (seconds), e.g. to bound the soak.
    pub max_duration: Option<f64>,
    /// Rules directory (default: `rules` of the repository).
    pub rules: PathBuf,
}

/// The running engine.
enum Engine {
    InProcess(Box<huiying::app::Service>),
    Child(tokio::process::Child),
}

/// The repository's rules directory (next to this crate).
pub fn default_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr()?)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("mkdir {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let e = e?;
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()))?;
        } else {
            std::fs::copy(&p, to.join(e.file_name()))
                .with_context(|| format!("copy {}", p.display()))?;
        }
    }
    Ok(())
}

/// The engine config: the scenario's `engine.toml` (if any) with the harness's settings on top.
fn engine_config(
    sc: &Scenario,
    token: &str,
    listen: SocketAddr,
    feed_url: &str,
    rules: &Path,
    out: &Path,
) -> anyhow::Result<String> {
    let path = sc.dir.join("engine.toml");
    let mut t: toml::Table = if path.exists() {
        let src = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        toml::from_str(&src).with_context(|| path.display().to_string())?
    } else {
        toml::Table::new()
    };
    t.insert("listen".into(), listen.to_string().into());
    t.entry("store").or_insert("memory".into());
    t.insert("rules".into(), rules.display().to_string().into());
    t.insert("watch_rules".into(), false.into());
    let kind = match sc.feed {
        FeedFormat::Generic => "generic",
        FeedFormat::Mastodon => "mastodon",
    };
    let mut f = toml::Table::new();
    f.insert("name".into(), "loadtest".into());
    f.insert("kind".into(), kind.into());
    f.insert("url".into(), feed_url.into());
    if sc.feed == FeedFormat::Mastodon {
        f.insert("streams".into(), vec!["public:local"].into());
    }
    t.insert("feeds".into(), vec![toml::Value::Table(f)].into());
    let mut respond = toml::Table::new();
    respond.insert("enabled".into(), sc.fanout.is_some().into());
    respond.insert(
        "data_dir".into(),
        out.join("engine-data").display().to_string().into(),
    );
    if sc.fanout.is_some() {
        // Only the drill's notices: no automatic drafts, nothing pre-approved, one approver.
        let mut policy = toml::Table::new();
        policy.insert("draft_threshold".into(), 6.into());
        policy.insert("pre_approved".into(), toml::Value::Array(Vec::new()));
        policy.insert("two_operator_severity".into(), 5.into());
        respond.insert("policy".into(), policy.into());
        let ops: Vec<toml::Value> = fanout::OPERATORS
            .iter()
            .map(|(name, var)| {
                let mut o = toml::Table::new();
                o.insert("name".into(), (*name).into());
                o.insert("token_env".into(), (*var).into());
                toml::Value::Table(o)
            })
            .collect();
        respond.insert("operators".into(), ops.into());
    }
    t.insert("respond".into(), respond.into());
    // The driver reads the stream and the metrics as a viewer; only the token's hash is written.
    let mut entry = toml::Table::new();
    entry.insert("name".into(), "loadtest".into());
    entry.insert("role".into(), "viewer".into());
    entry.insert(
        "sha256".into(),
        huiying::api::auth::token_hash(token).into(),
    );
    let auth = t.entry("auth").or_insert_with(|| toml::Table::new().into());
    if let Some(a) = auth.as_table_mut() {
        let tokens = a
            .entry("tokens")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let Some(list) = tokens.as_array_mut() {
            list.push(entry.into());
        }
    }
    Ok(toml::to_string(&t)?)
}

async fn wait_healthy(
    addr: SocketAddr,
    token: &str,
    child: &mut Option<&mut tokio::process::Child>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if driver::get(&client, addr, token, "/healthz").await.is_ok() {
            return Ok(());
        }
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait()? {
                anyhow::bail!("the engine exited during start: {status}");
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the engine did not answer /healthz on {addr} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("uptime: {e}"))
}

/// Run a scenario; the result is also written to `out_dir`.
pub async fn run(opts: RunOptions) -> anyhow::Result<RunResult> {
    // The HTTP client is built on rustls with no default provider: install the engine's.
    huiying::install_tls();
    let sc = Scenario::load(&opts.scenario_dir)?;
    let duration = opts
        .max_duration
        .map_or(sc.duration_secs, |m| m.min(sc.duration_secs));
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("mkdir {}", out.display()))?;
    let out = std::fs::canonicalize(out)?;
    let load_at_start = uptime();
    let started_at = chrono::Utc::now().to_rfc3339();

    // The fake platform and the matrix it needs.
    let mut fake: Option<FakeHandle> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut rules = std::fs::canonicalize(&opts.rules)
        .with_context(|| format!("rules directory {}", opts.rules.display()))?;
    if let Some(f) = &sc.fanout {
        let (_, handle) = FakePlatform::start().await;
        let dir = out.join("rules");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        copy_dir(&rules, &dir)?;
        std::fs::remove_dir_all(dir.join("matrix"))?;
        fanout::write_matrix(
            &dir.join("matrix"),
            f.accounts,
            f.per_hour,
            &handle.base_url(),
            &handle,
        )?;
        rules = dir;
        env = fanout::env(f.accounts);
        fake = Some(handle);
    }

    let server = FeedServer::bind().await?;
    let feed_url = server.url(sc.feed);
    let listen = free_port()?;
    // A fresh viewer token per run (256 random bits), never written or logged in clear.
    let token = format!(
        "hy_lt_{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let cfg_text = engine_config(&sc, &token, listen, &feed_url, &rules, &out)?;
    let cfg_path = out.join("engine.toml");
    std::fs::write(&cfg_path, &cfg_text)?;

    let (mut engine, pid, addr, engine_desc) = match &opts.engine {
        EngineMode::InProcess => {
            for (k, v) in &env {
                std::env::set_var(k, v);
            }
            let config = huiying::config::Config::load(&cfg_path)?;
            let svc = huiying::app::start(huiying::app::ServiceOptions {
                config,
                store: Arc::new(huiying::store::MemoryStore::default()),
                demo: false,
                auth_clock: None,
            })
            .await?;
            let addr = svc.addr;
            (
                Engine::InProcess(Box::new(svc)),
                std::process::id(),
                addr,
                "in-process".to_string(),
            )
        }
        EngineMode::Spawn { bin, cpus } => {
            let mut cmd = match cpus {
                Some(c) => {
                    let mut x = tokio::process::Command::new("taskset");
                    x.arg("-c").arg(c).arg(bin);
                    x
                }
                None => tokio::process::Command::new(bin),
            };
            cmd.arg("run")
                .arg("--config")
                .arg(&cfg_path)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(out.join("engine.log"))?)
                .kill_on_drop(true);
            let desc = format!(
                "{}{} run --config {}",
                cpus.as_ref()
                    .map(|c| format!("taskset -c {c} "))
                    .unwrap_or_default(),
                bin.display(),
                cfg_path.display()
            );
            let mut child = cmd.spawn().with_context(|| desc.clone())?;
            let pid = child.id().context("engine pid")?;
            wait_healthy(listen, &token, &mut Some(&mut child)).await?;
            (Engine::Child(child), pid, listen, desc)
        }
    };
    if let EngineMode::InProcess = opts.engine {
        wait_healthy(addr, &token, &mut None).await?;
    }
    tracing::info!(engine = %engine_desc, %addr, pid, "Engine up.");

    // Subscribe before any traffic, then start sampling and sending.
    let start = Instant::now();
    let log = SharedLog::default();
    let obs = SharedObserved::default();
    let ticks: Arc<Mutex<Vec<Tick>>> = Arc::default();
    let stop = CancellationToken::new();
    let ws = driver::connect(addr, &token).await?;
    let watcher = tokio::spawn(driver::watch(
        ws,
        start,
        obs.clone(),
        log.clone(),
        stop.clone(),
    ));
    let sampler = tokio::spawn(driver::sample(
        addr,
        token.clone(),
        pid,
        start,
        ticks.clone(),
        stop.clone(),
    ));
    let conns = server.spawn_accept();
    let cancel_send = CancellationToken::new();
    let sender = tokio::spawn(feed::send(
        SenderConfig {
            scenario: sc.clone(),
            duration_secs: duration,
            start,
            host: "127.0.0.1".into(),
        },
        conns,
        log.clone(),
        cancel_send.clone(),
        Duration::from_secs(30),
    ));

    let mut fanout_result = None;
    if let (Some(f), Some(fake)) = (&sc.fanout, &fake) {
        tokio::time::sleep(Duration::from_secs_f64(f.at_secs)).await;
        let r = fanout::drill(addr, fake, f.accounts, f.notices, f.per_hour, pid).await;
        cancel_send.cancel();
        fanout_result = Some(r?);
    }
    while !log.lock().finished && !sender.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent_secs = start.elapsed().as_secs_f64();

    // Drain: until the engine accepted (or rejected) all that was sent, then a little more for
    // the last events; bounded by the scenario's drain time.
    let sent = log.lock().sent;
    let drain_until = Instant::now() + Duration::from_secs_f64(sc.drain_secs);
    loop {
        let done = ticks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .is_some_and(|t| (t.accepted + t.rejected) as u64 >= sent && t.t > sent_secs + 1.0);
        if done || Instant::now() > drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel_send.cancel();
    sender.await.context("sender task")??;
    stop.cancel();
    let _ = watcher.await;
    let _ = sampler.await;

    match &mut engine {
        Engine::InProcess(_) => {}
        Engine::Child(c) => {
            // SIGTERM for a clean drain, then wait (bounded).
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            if tokio::time::timeout(Duration::from_secs(15), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
    if let Engine::InProcess(svc) = engine {
        svc.shutdown().await?;
    }

    let log = log.lock();
    let obs = obs.lock();
    let ticks = ticks.lock().unwrap_or_else(|e| e.into_inner());
    let result = report::compute(report::Inputs {
        scenario: &sc,
        duration_secs: sent_secs.min(duration.max(sent_secs)),
        engine: engine_desc,
        engine_pid: pid,
        load_at_start,
        started_at,
        log: &log,
        obs: &obs,
        ticks: &ticks,
        fanout: fanout_result,
    });
    report::write(&out, &result)?;
    Ok(result)
}
