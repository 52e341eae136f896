//! `huiying replay`: a JSON Lines file through the same pipeline as the service, events as JSON
//! lines on stdout in event-time order (byte-identical on every run without a Redis store).

use super::service::open_store;
use crate::config::Config;
use crate::detect::reload::SharedRules;
use crate::detect::Analyzer;
use crate::feeds::jsonl::{read_batches, Speed};
use crate::incidents::{Engine, Event};
use crate::ingest::Item;
use crate::pipeline::{Outcome, Pipeline, PipelineConfig};
use anyhow::Context;
use arc_swap::ArcSwap;
use clap::ValueEnum;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What `replay` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// Incident events only.
    Incidents,
    /// Incident events and `mention.assigned` events.
    Assignments,
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
    /// Incidents opened: emergency, rumor, emerging.
    pub opened: [u64; 3],
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
            "  incidents opened:  emergency={} rumor={} emerging={}",
            self.opened[0], self.opened[1], self.opened[2]
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

/// Where `replay --store` also writes incidents, the mention index and each hour's figures
/// (for `huiying report opinion`).
pub struct ReplayStore {
    /// A redb file or a Redis URL.
    pub spec: String,
    /// The `[redis]` settings with a Redis URL.
    pub redis: crate::store::redis::RedisConfig,
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

/// A JSON Lines input: `-` for stdin, a file, or a gzip file (`*.gz`, decompressed as read).
pub fn open_input(file: &Path) -> anyhow::Result<Box<dyn std::io::BufRead + Send>> {
    if file == Path::new("-") {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "gz") {
        let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f));
        return Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, gz)));
    }
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
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
    let sink = JsonSink {
        out,
        with_assign: emit == Emit::Assignments,
    };
    let input = open_input(file)?;
    let (summary, mut sink) = replay_events(
        input,
        file,
        rules_dir,
        Default::default(),
        speed,
        workers,
        store,
        sink,
        diag,
    )?;
    sink.out.flush().context("writing events")?;
    Ok(summary)
}

/// Where a replay's events go: each item's events, in input order, with the item's 0-based
/// index among the input's non-blank lines (rejected lines count too).
pub trait EventSink: Send + 'static {
    /// The events one item caused (possibly none).
    fn events(&mut self, item: u64, events: &[Event]) -> std::io::Result<()>;
}

/// `huiying replay`'s sink: one JSON line per event.
struct JsonSink<W> {
    out: W,
    with_assign: bool,
}

impl<W: Write + Send + 'static> EventSink for JsonSink<W> {
    fn events(&mut self, _item: u64, evs: &[Event]) -> std::io::Result<()> {
        for e in evs {
            // An hour's figures go to the store only (`--store`): the output stays the same.
            if (e.is_assignment() && !self.with_assign) || matches!(e, Event::Hour(_)) {
                continue;
            }
            let mut line = e.to_json();
            line.push('\n');
            self.out.write_all(line.as_bytes())?;
        }
        Ok(())
    }
}

/// The replay pipeline over any JSON Lines input (`file` only names it in diagnostics), its
/// events to `sink`. The first error of the sink stops the calls and is returned; the sink is
/// handed back so the caller can read what it collected.
#[allow(clippy::too_many_arguments)]
pub fn replay_events<S: EventSink>(
    input: Box<dyn std::io::BufRead + Send>,
    file: &Path,
    rules_dir: &Path,
    opts: crate::detect::rules::LoadOptions,
    speed: Speed,
    workers: Option<usize>,
    store: Option<ReplayStore>,
    sink: S,
    diag: &mut (dyn Write + Send),
) -> anyhow::Result<(ReplaySummary, S)> {
    let started = Instant::now();
    let trips0 = redis_round_trips();
    let is_redis = store
        .as_ref()
        .is_some_and(|s| crate::store::redis::is_redis_url(&s.spec));
    let (mut backend, engine) = match store {
        Some(s) => {
            // With a store, the hours' figures too: a replayed day can be reported on.
            let (b, e) = ReplayBackend::open(s, Engine::new().emitting_hours())?;
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
    let (analyzer, rules) =
        Analyzer::new_with(|n| super::commands::load_rules_with(rules_dir, n, opts));
    let analyzer = Arc::new(analyzer);
    let rules: SharedRules = Arc::new(ArcSwap::from_pointee(rules?));
    let mut cfg = PipelineConfig::default();
    if let Some(w) = workers {
        cfg.workers = w.max(1);
    }
    let (diag_tx, diag_rx) = std::sync::mpsc::channel::<String>();
    let file_name = file.display().to_string();
    // The engine thread owns the summary and the sink (no lock per item); they come back here
    // when the pipeline drops its sink.
    let (state_tx, state_rx) = std::sync::mpsc::sync_channel(1);
    let mut st = ReturnOnDrop {
        value: Some((ReplaySummary::default(), sink, None::<std::io::Error>)),
        to: state_tx,
    };
    let mut shown = 0;
    let mut item = 0u64;
    let mut pipeline = Pipeline::start(cfg, rules, analyzer, engine, move |o| {
        if let (Some(tx), Outcome::Events(evs)) = (&store_tx, &o) {
            for e in evs.iter() {
                // The store sees every event, as in the service: wait rather than drop.
                let _ = tx.blocking_send(Arc::new(e.clone()));
            }
        }
        let index = item;
        item += 1;
        let Some((summary, sink, err)) = st.value.as_mut() else {
            return;
        };
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
                if let Err(x) = sink.events(index, evs) {
                    *err = Some(x);
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
    let lines = read_batches(input, 512, speed, &mut submit)
        .with_context(|| format!("reading {}", file.display()))?;
    let engine = pipeline.finish();
    if let Some(b) = backend {
        if b.finish() > 0 {
            let _ = writeln!(diag, "some store batches failed to write");
        }
    }
    for d in diag_rx.try_iter() {
        let _ = writeln!(diag, "{d}");
    }
    // The pipeline has finished, so its sink is gone and has handed the state back.
    let Ok((summary, sink, err)) = state_rx.try_recv() else {
        anyhow::bail!("the replay sink outlived the pipeline");
    };
    if let Some(e) = err {
        return Err(e).context("writing events");
    }
    let mut s = summary;
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
    Ok((s, sink))
}

/// A value sent to `to` when it is dropped (by then nothing else can hold it).
struct ReturnOnDrop<T> {
    value: Option<T>,
    to: std::sync::mpsc::SyncSender<T>,
}

impl<T> Drop for ReturnOnDrop<T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            let _ = self.to.try_send(v);
        }
    }
}
