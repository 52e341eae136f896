//! The threaded core shared by `replay` and the service: batches in, events out.
//!
//! ```text
//! submit(batch) ─► [bounded] ─► worker × N (parse + analyze, pure) ─► [bounded] ─► engine thread
//!                                                                   (re-orders by sequence,
//!                                                                    applies in input order)
//! ```
//! Every hand-off carries a batch, never a single mention: a cross-core wake-up costs more than
//! analysing dozens of mentions. An applied batch goes back to the worker that analysed it, to
//! be freed there: the allocator frees a block on the thread that made it at a fraction of the
//! cost of a free from another thread, and the engine thread, the one that cannot be split,
//! spends none of its time on it.

use crate::detect::reload::SharedRules;
use crate::detect::{Analysis, Analyzer, RuleSet};
use crate::incidents::coord::FleetCount;
use crate::incidents::Control;
use crate::incidents::{Engine, EngineStats, Event};
use crate::ingest::Item;
use crate::normalize::{parse_mention, Mention, RejectReason};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// What the engine thread reports for every input item, in input order.
pub enum Outcome<'a> {
    /// A line was rejected.
    Rejected {
        /// Line number (0 for non-file input).
        line: u64,
        /// Why.
        reason: &'a RejectReason,
    },
    /// Events caused by one item (possibly none).
    Events(&'a [Event]),
}

enum Done {
    Ok(Box<(Mention, Analysis)>, Option<Instant>),
    Rejected(u64, RejectReason),
    Tick(i64),
    Delete(Vec<String>),
    Fleet(Vec<FleetCount>),
    Control(Control),
}

struct Analysed {
    seq: u64,
    /// The worker that analysed the batch (which frees it).
    worker: usize,
    rules: Arc<RuleSet>,
    items: Vec<Done>,
}

/// Applied batches that may wait for their worker to free them; past this the engine thread
/// frees them itself rather than wait.
const SPENT_BATCHES: usize = 4;

/// Handle to a running pipeline.
pub struct Pipeline {
    input: Option<Sender<(u64, Vec<Item>)>>,
    seq: u64,
    workers: Vec<JoinHandle<()>>,
    engine: Option<JoinHandle<Engine>>,
}

/// How the pipeline is built.
pub struct PipelineConfig {
    /// Analysis worker threads.
    pub workers: usize,
    /// Batches that may wait in each channel.
    pub queue_batches: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(1, 8),
            // 8 × 512 mentions in each channel keep two workers and the engine busy (replay of
            // 1M real lines ~2 % slower than with 16, with 4 ~5 %) and hold ~10 MB less in
            // flight than 16 (an analysed mention of a long post is ~2 KB).
            queue_batches: 8,
        }
    }
}

impl Pipeline {
    /// Start the workers and the engine thread. `sink` runs on the engine thread for every
    /// item, in input order.
    pub fn start<F>(
        cfg: PipelineConfig,
        rules: SharedRules,
        analyzer: Arc<Analyzer>,
        mut engine: Engine,
        mut sink: F,
    ) -> std::io::Result<Pipeline>
    where
        F: FnMut(Outcome<'_>) + Send + 'static,
    {
        let (in_tx, in_rx) = bounded::<(u64, Vec<Item>)>(cfg.queue_batches.max(1));
        let (out_tx, out_rx) = bounded::<Analysed>(cfg.queue_batches.max(1));
        let mut workers = Vec::new();
        let mut spent = Vec::new();
        for i in 0..cfg.workers.max(1) {
            let (spent_tx, spent_rx) = bounded::<Vec<Done>>(SPENT_BATCHES);
            spent.push(spent_tx);
            let (rx, tx, rules, analyzer) = (
                in_rx.clone(),
                out_tx.clone(),
                rules.clone(),
                analyzer.clone(),
            );
            workers.push(
                std::thread::Builder::new()
                    .name(format!("analyze-{i}"))
                    .spawn(move || worker(i, rx, spent_rx, tx, rules, analyzer))?,
            );
        }
        drop(out_tx);
        let engine = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let m = crate::metrics::global();
                let cluster_h = m.stage_seconds.with_label_values(&["cluster"]);
                let e2e = m.stage_seconds.with_label_values(&["end_to_end"]);
                let mut next = 0u64;
                let mut held: BTreeMap<u64, Analysed> = BTreeMap::new();
                let mut events = Vec::new();
                for batch in out_rx.iter() {
                    held.insert(batch.seq, batch);
                    while let Some(b) = held.remove(&next) {
                        next += 1;
                        let t0 = Instant::now();
                        for d in &b.items {
                            events.clear();
                            match d {
                                Done::Ok(ma, arrived) => {
                                    let (mention, analysis) = &**ma;
                                    engine.process(&b.rules, mention, analysis, &mut events);
                                    if let Some(a) = arrived {
                                        if events.iter().any(Event::is_incident) {
                                            e2e.observe(a.elapsed().as_secs_f64());
                                        }
                                    }
                                    sink(Outcome::Events(&events));
                                }
                                Done::Rejected(line, reason) => sink(Outcome::Rejected {
                                    line: *line,
                                    reason,
                                }),
                                Done::Delete(ids) => {
                                    engine.delete(ids, &mut events);
                                    sink(Outcome::Events(&events));
                                }
                                Done::Fleet(counts) => {
                                    engine.merge_fleet(&b.rules, counts, &mut events);
                                    sink(Outcome::Events(&events));
                                }
                                Done::Control(c) => {
                                    engine.control(c, &mut events);
                                    sink(Outcome::Events(&events));
                                }
                                Done::Tick(now) => {
                                    engine.tick(&b.rules, *now, &mut events);
                                    sink(Outcome::Events(&events));
                                }
                            }
                        }
                        cluster_h.observe(t0.elapsed().as_secs_f64());
                        // Back to its worker to be freed; freed here when that one is behind
                        // (or gone), never waited for.
                        if let Some(tx) = spent.get(b.worker) {
                            let _ = tx.try_send(b.items);
                        }
                    }
                }
                // The input closed: the hour being counted is stored as far as it got (a
                // restart adds the rest of it).
                events.clear();
                engine.end_hour(&mut events);
                if !events.is_empty() {
                    sink(Outcome::Events(&events));
                }
                engine
            })?;
        Ok(Pipeline {
            input: Some(in_tx),
            seq: 0,
            workers,
            engine: Some(engine),
        })
    }

    /// A sender that feeds this pipeline from another thread (the service's batcher).
    pub fn submitter(&mut self) -> Option<Submitter> {
        self.input.take().map(|tx| Submitter { tx, seq: self.seq })
    }

    /// Submit a batch; blocks while the pipeline is full (back-pressure reaches the reader).
    pub fn submit(&mut self, items: Vec<Item>) -> bool {
        let Some(tx) = &self.input else { return false };
        crate::metrics::global()
            .batch_size
            .observe(crate::ingest::mentions_in(&items) as f64);
        let ok = tx.send((self.seq, items)).is_ok();
        self.seq += 1;
        ok
    }

    /// Close the input, drain every stage and return the engine with its final state.
    pub fn finish(mut self) -> Option<Engine> {
        self.input = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.engine.take().and_then(|e| e.join().ok())
    }
}

/// The input end of a pipeline, movable to the thread that batches live input.
pub struct Submitter {
    tx: Sender<(u64, Vec<Item>)>,
    seq: u64,
}

impl Submitter {
    /// Submit a batch; blocks while the pipeline is full. False once the pipeline is gone.
    pub fn submit(&mut self, items: Vec<Item>) -> bool {
        crate::metrics::global()
            .batch_size
            .observe(crate::ingest::mentions_in(&items) as f64);
        let ok = self.tx.send((self.seq, items)).is_ok();
        self.seq += 1;
        ok
    }
}

fn worker(
    me: usize,
    rx: Receiver<(u64, Vec<Item>)>,
    spent: Receiver<Vec<Done>>,
    tx: Sender<Analysed>,
    rules: SharedRules,
    analyzer: Arc<Analyzer>,
) {
    let m = crate::metrics::global();
    let parse_h = m.stage_seconds.with_label_values(&["parse"]);
    let analyze_h = m.stage_seconds.with_label_values(&["analyze"]);
    for (seq, batch) in rx.iter() {
        // The batches the engine has applied since: freed on this thread, which made them.
        spent.try_iter().for_each(drop);
        let rs = rules.load_full();
        let n = crate::ingest::mentions_in(&batch) + batch.len();
        let mut items = Vec::with_capacity(n);
        let t0 = Instant::now();
        let mut parsed = Vec::with_capacity(n);
        // Each mention goes once into the allocation that carries it to the engine, and is
        // analysed there in place (a mention and its analysis are ~0.5 kB: moving them twice
        // per mention showed in profiles).
        let carrier = |m: Mention| Box::new((m, Analysis::default()));
        for item in batch {
            parsed.push(match item {
                Item::Lines(lines) => {
                    for (line, bytes) in lines.iter() {
                        parsed.push(match parse_mention(bytes) {
                            Ok(mention) => Ok((carrier(mention), None)),
                            Err(e) => Err(Done::Rejected(line, e)),
                        });
                    }
                    continue;
                }
                Item::Parsed(mention, at) => Ok((carrier(*mention), Some(at))),
                Item::Tick(now) => Err(Done::Tick(now)),
                Item::Delete(ids) => Err(Done::Delete(ids)),
                Item::Fleet(c) => Err(Done::Fleet(c)),
                Item::Control(c) => Err(Done::Control(c)),
            });
        }
        let t1 = Instant::now();
        parse_h.observe((t1 - t0).as_secs_f64());
        for p in parsed {
            items.push(match p {
                Ok((mut ma, at)) => {
                    let (mention, analysis) = &mut *ma;
                    analyzer.analyze_into(&rs, mention, analysis);
                    Done::Ok(ma, at)
                }
                Err(d) => d,
            });
        }
        analyze_h.observe(t1.elapsed().as_secs_f64());
        if tx
            .send(Analysed {
                seq,
                worker: me,
                rules: rs,
                items,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Convenience for callers that only want the final statistics.
pub fn engine_stats(e: &Option<Engine>) -> EngineStats {
    e.as_ref().map(|e| e.stats().clone()).unwrap_or_default()
}
