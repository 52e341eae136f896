//! The service (`run`, `demo`, and the tests' engine): feeds → bounded ingest queue → batcher →
//! pipeline → event bus → the stages (store writer, respond, API, other instances).

use super::commands::load_rules_with;
use crate::bus::Bus;
use crate::config::Config;
use crate::detect::reload::SharedRules;
use crate::detect::rules::LoadOptions;
use crate::detect::Analyzer;
use crate::feeds;
use crate::incidents::Engine;
use crate::ingest::Item;
use crate::live::Live;
use crate::pipeline::{Outcome, Pipeline, PipelineConfig};
use crate::stage::{Context, Handle};
use crate::store::Store;
use anyhow::Context as _;
use arc_swap::ArcSwap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    /// The audit log (`None` while the respond stage is off); its
    /// [`crate::respond::audit::AuditStatus`] injects failures in tests and drills.
    pub audit: Option<crate::respond::audit::SharedAudit>,
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
    crate::install_tls();
    let cfg = opts.config;
    let rules_dir = cfg.rules.clone();
    let (analyzer, rs) = tokio::task::spawn_blocking(move || {
        Analyzer::new_with(|n| load_rules_with(&rules_dir, n, LoadOptions::default()))
    })
    .await?;
    let (analyzer, rs) = (Arc::new(analyzer), rs?);
    let rules: SharedRules = Arc::new(ArcSwap::from_pointee(rs));
    let cancel = CancellationToken::new();
    // A start that fails half-way stops what it started (else the process waits on it forever).
    let stop_on_error = cancel.clone().drop_guard();

    // Restore what was open.
    let store = opts.store;
    let st2 = store.clone();
    let restored = tokio::task::spawn_blocking(move || st2.open_incidents()).await??;
    // Several instances as one: incident ids claimed in Redis, windows merged there.
    let redis = if crate::store::redis::is_redis_url(&cfg.store) {
        let r = crate::store::redis::Redis::connect(&cfg.store, &cfg.redis).await;
        Some(r.context("connecting to Redis")?)
    } else {
        None
    };
    let live = Live::new(redis.is_some());
    live.restore(&restored);
    if !restored.is_empty() {
        tracing::info!(count = restored.len(), "Restored open incidents.");
    }
    let mut engine = Engine::new();
    engine.restore(&rules.load(), restored);
    let (ingest_tx, ingest_rx) = tokio::sync::mpsc::channel::<Item>(cfg.ingest_queue.max(1024));
    let mut cx = Context {
        bus: Bus::default(),
        engine,
        store,
        rules: rules.clone(),
        rules_dir: cfg.rules.clone(),
        analyzer: analyzer.clone(),
        live,
        ingest: ingest_tx,
        redis: redis.clone(),
        feeds: Default::default(),
        routes: Default::default(),
        audit: None,
        cancel: cancel.clone(),
    };

    // The stages, each started from the context (a new stage is one line here).
    let mut stages = vec![
        crate::live::start(&mut cx),
        crate::store::writer::start(&mut cx),
        crate::store::redis::fleet::start(&mut cx).await,
    ];
    let (respond_stage, respond) = crate::respond::stage::start(&cfg.respond, &mut cx)
        .await
        .context("respond stage")?;
    stages.push(respond_stage);
    let (cases_stage, cases) =
        crate::cases::stage::start(&cfg.cases, &mut cx, &cfg.respond.data_dir, respond.as_ref())
            .await
            .context("cases stage")?;
    stages.push(cases_stage);
    let reports = cfg.cases.data_dir.clone();
    let reports = reports.as_deref().unwrap_or(&cfg.respond.data_dir);
    stages.push(crate::evaluation::stage::start(
        &mut cx,
        cases,
        respond.clone(),
        reports,
    ));
    stages.push(crate::opinion::stage::start(
        &cfg.opinion,
        &mut cx,
        respond.clone(),
        reports,
    ));
    stages.push(
        crate::linkage::stage::start(
            &cfg.linkage,
            &mut cx,
            respond.clone(),
            &cfg.respond.data_dir,
        )
        .context("linkage stage")?,
    );
    stages.push(crate::alerts::stage::start(
        &cfg.alerts,
        &mut cx,
        respond.clone(),
        &cfg.listen,
    )?);
    stages.push(feeds::start(&cfg.feeds, opts.demo, &cx).map_err(anyhow::Error::msg)?);
    stages.push(crate::detect::reload::start(cfg.watch_rules, &cx));
    let audit = cx.audit.clone();
    let api =
        crate::api::serve::start(api_options(&cfg, opts.auth_clock), respond, &mut cx).await?;
    stages.push(api.handle);

    // The engine: batches → analysis workers → engine thread → the bus, in input order.
    let Context {
        bus, mut engine, ..
    } = cx;
    if bus.wants_requests() {
        engine = engine.emitting_requests();
    }
    if bus.wants_hours() {
        engine = engine.emitting_hours();
    }
    let mut pcfg = PipelineConfig::default();
    if cfg.workers > 0 {
        pcfg.workers = cfg.workers;
    }
    let mut pipeline = Pipeline::start(pcfg, rules.clone(), analyzer, engine, move |o| {
        if let Outcome::Events(evs) = o {
            for e in evs {
                bus.publish(e);
            }
        }
    })?;
    let batcher = spawn_batcher(ingest_rx, pipeline.submitter().context("pipeline input")?)?;

    let demo_logins = if opts.demo {
        let (a, d) = (api.auth.clone(), cfg.respond.data_dir.clone());
        Some(tokio::task::spawn_blocking(move || demo_logins(&a, &d)).await??)
    } else {
        None
    };
    stop_on_error.disarm();
    let done = tokio::spawn(async move { cancel_then_drain(stages, batcher, pipeline).await });
    Ok(Service {
        addr: api.addr,
        redis,
        rules,
        metrics_addr: api.metrics_addr,
        auth: api.auth,
        demo_logins,
        audit,
        cancel,
        done,
    })
}

/// The API's options from the config: the top-level keys, `[auth]`, and the legacy
/// `[respond] operators` as operator tokens.
fn api_options(
    cfg: &Config,
    clock: Option<Arc<dyn crate::clock::Clock>>,
) -> crate::api::serve::ApiOptions {
    let mut extra_tokens = Vec::new();
    for op in &cfg.respond.operators {
        match op.token() {
            Ok(t) => extra_tokens.push((op.name.clone(), t, crate::api::auth::Role::Operator)),
            Err(e) => tracing::warn!(error = %e, "Operator skipped."),
        }
    }
    crate::api::serve::ApiOptions {
        listen: cfg.listen.clone(),
        max_body_bytes: cfg.max_body_bytes,
        max_stream_clients: cfg.max_stream_clients,
        metrics_listen: cfg.metrics_listen.clone(),
        auth: cfg.auth.clone(),
        extra_tokens,
        clock,
    }
}

/// Feeds → one bounded queue → this thread, which takes what is queued (up to 512) as one batch.
fn spawn_batcher(
    mut rx: tokio::sync::mpsc::Receiver<Item>,
    mut submitter: crate::pipeline::Submitter,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("batcher".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = Vec::with_capacity(64);
                batch.push(first);
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(it) => batch.push(it),
                        Err(_) => break,
                    }
                }
                if !submitter.submit(batch) {
                    break;
                }
            }
        })
}

/// After cancel: the stages' tasks that feed the engine end, so the batcher ends and the
/// pipeline drains into the bus; then the bus closes and the subscribers (the store writer
/// last of all) finish what they hold.
async fn cancel_then_drain(
    stages: Vec<Handle>,
    batcher: std::thread::JoinHandle<()>,
    pipeline: Pipeline,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let _ = batcher.join();
        pipeline.finish();
    })
    .await?;
    for s in stages {
        s.join().await;
    }
    tracing::info!("Stopped.");
    Ok(())
}

pub fn serve(cfg: Config, demo: bool) -> anyhow::Result<std::process::ExitCode> {
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
