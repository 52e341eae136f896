//! Shared incidents: one incident id per key across instances, and emergency windows and
//! emerging terms' windows counted over every instance.
//!
//! - **Opened once.** When the engine is about to open an incident it proposes an id for the
//!   key (`em|{group}|{region}`: one per group of related categories and place, see
//!   `incidents::coord::incident_key`; `ru|claim|{claim}`, `ru|root|{post}`; `eg|{term}`); a Lua script sets
//!   `{ns}:claim:{key}` to it unless another instance got there first, and returns the id that
//!   holds. One round trip on the engine thread, only when opening. The claim lives while the
//!   incident is open (refreshed every 10 s, expiring after 60 s without refresh) and is deleted,
//!   if still ours, when it closes.
//! - **Merged windows.** The engine only buffers (key, bucket, author) here. Every 100 ms the
//!   sync task writes the buffer with one pipeline (`PFADD` into a HyperLogLog per key and
//!   bucket, `PEXPIRE`) and in the same round trip reads `PFCOUNT` over each watched key's
//!   window buckets (the cardinality of their union: distinct authors over every instance). The
//!   counts go back to the engine as [`Item::Fleet`].
//! - **Redis down.** Claims fall back to the local id at once (counted, logged by the health
//!   tracker); the buffer is kept (one window's worth) and written when Redis answers again.
//!
//! The same holds for the distinct authors of each term an emerging detector follows
//! (`eg|{term}`, in its own bucket width): a burst split across instances is counted whole on
//! each instance that follows the term.
//!
//! Keys of one emergency key share the hash tag `{em|…}`, so the multi-key `PFCOUNT` works in
//! Redis Cluster.

use super::{metrics, round_trip, Redis};
use crate::incidents::coord::{Coordinator, FleetCount, Hit};
use crate::ingest::Item;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// How often the sync task merges window counts.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Lifetime of an id claim without refresh.
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How often held claims are refreshed.
const CLAIM_REFRESH: Duration = Duration::from_secs(10);
/// How long the engine thread waits for a claim before opening with its own id.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(500);

const CLAIM_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

#[derive(Default)]
struct KeyBuf {
    /// Bucket index → author hashes added here since the last flush.
    buckets: BTreeMap<i64, BTreeSet<u64>>,
    head: i64,
    buckets_n: usize,
    bucket_ms: i64,
}

/// What the engine thread hands to the sync task.
#[derive(Default)]
struct Pending {
    keys: BTreeMap<String, KeyBuf>,
    releases: Vec<(String, String)>,
    /// Claims held by incidents open here: key → id.
    claims: BTreeMap<String, String>,
}

impl Pending {
    fn merge(&mut self, keys: BTreeMap<String, KeyBuf>) {
        for (k, kb) in keys {
            let e = self.keys.entry(k).or_default();
            e.head = e.head.max(kb.head);
            e.buckets_n = kb.buckets_n;
            e.bucket_ms = kb.bucket_ms;
            for (b, a) in kb.buckets {
                e.buckets.entry(b).or_default().extend(a);
            }
            // Buffered while Redis is down: keep one window, not everything.
            let oldest = e.head - e.buckets_n as i64 + 1;
            e.buckets.retain(|b, _| *b >= oldest);
        }
    }
}

/// The engine side: claims ids (one round trip when opening) and buffers window hits.
pub struct RedisCoordinator {
    redis: Redis,
    rt: Handle,
    pending: Arc<Mutex<Pending>>,
    claim: redis::Script,
}

/// The task side: merges buffered hits into Redis and reads the cluster's counts back.
pub struct SyncTask {
    redis: Redis,
    pending: Arc<Mutex<Pending>>,
}

impl RedisCoordinator {
    /// A coordinator for the engine and its sync task (spawn [`SyncTask::run`]).
    pub fn new(redis: Redis, rt: Handle) -> (RedisCoordinator, SyncTask) {
        let pending = Arc::new(Mutex::new(Pending::default()));
        (
            RedisCoordinator {
                redis: redis.clone(),
                rt,
                pending: pending.clone(),
                claim: redis::Script::new(CLAIM_LUA),
            },
            SyncTask { redis, pending },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn claim_key(redis: &Redis, key: &str) -> String {
    redis.key(&format!("claim:{{{key}}}"))
}

fn window_key(redis: &Redis, key: &str, bucket: i64) -> String {
    redis.key(&format!("w:{{{key}}}:{bucket}"))
}

impl Coordinator for RedisCoordinator {
    fn claim_open(&mut self, key: &str, proposed: &str) -> String {
        let m = metrics();
        if !self.redis.is_up() {
            // Do not stall detection on a Redis known to be down.
            m.claims.with_label_values(&["local"]).inc();
            return proposed.to_string();
        }
        let mut conn = self.redis.conn();
        let mut inv = self.claim.key(claim_key(&self.redis, key));
        inv.arg(proposed).arg(CLAIM_TTL.as_millis() as u64);
        let r = self.rt.block_on(async {
            match tokio::time::timeout(CLAIM_TIMEOUT, inv.invoke_async::<String>(&mut conn)).await {
                Ok(r) => r,
                Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "claim timed out",
                ))),
            }
        });
        round_trip("claim");
        match self.redis.track(r) {
            Ok(id) => {
                let result = if id == proposed { "won" } else { "adopted" };
                m.claims.with_label_values(&[result]).inc();
                tracing::debug!(key, id = %id, result, "Incident id claimed.");
                self.lock().claims.insert(key.to_string(), id.clone());
                id
            }
            Err(e) => {
                m.errors.with_label_values(&["claim"]).inc();
                m.claims.with_label_values(&["local"]).inc();
                tracing::warn!(key, error = %e, "Cannot claim the incident id in Redis; opening with the local id.");
                proposed.to_string()
            }
        }
    }

    fn release(&mut self, key: &str, id: &str) {
        let mut p = self.lock();
        p.claims.remove(key);
        p.releases.push((key.to_string(), id.to_string()));
    }

    fn record(&mut self, hit: Hit<'_>) {
        let mut p = self.lock();
        let kb = match p.keys.get_mut(hit.key) {
            Some(kb) => kb,
            None => p.keys.entry(hit.key.to_string()).or_default(),
        };
        kb.head = kb.head.max(hit.head);
        kb.buckets_n = hit.buckets;
        kb.bucket_ms = hit.bucket_ms;
        kb.buckets.entry(hit.bucket).or_default().insert(hit.author);
    }
}

/// A key whose cluster count is read back on every sync.
struct Watch {
    head: i64,
    buckets_n: usize,
    bucket_ms: i64,
    touched: Instant,
    sent: Option<(i64, u64)>,
}

impl SyncTask {
    /// Merge every [`SYNC_INTERVAL`] until cancelled; counts go to the engine through `tx`.
    pub async fn run(self, tx: tokio::sync::mpsc::Sender<Item>, cancel: CancellationToken) {
        let mut iv = tokio::time::interval(SYNC_INTERVAL);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watched: BTreeMap<String, Watch> = BTreeMap::new();
        let mut last_refresh = Instant::now();
        // The engine's newest bucket, per bucket width (emergency windows and emerging terms
        // count in buckets of their own): windows of keys quiet here still move with event
        // time.
        let mut global_head: BTreeMap<i64, i64> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = iv.tick() => {}
            }
            let (keys, releases, claims) = {
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let refresh = last_refresh.elapsed() >= CLAIM_REFRESH;
                let claims: Vec<String> = if refresh {
                    p.claims.keys().cloned().collect()
                } else {
                    Vec::new()
                };
                (
                    std::mem::take(&mut p.keys),
                    std::mem::take(&mut p.releases),
                    claims,
                )
            };
            if !claims.is_empty() {
                last_refresh = Instant::now();
            }
            for (k, kb) in &keys {
                let w = watched.entry(k.clone()).or_insert(Watch {
                    head: kb.head,
                    buckets_n: kb.buckets_n,
                    bucket_ms: kb.bucket_ms,
                    touched: Instant::now(),
                    sent: None,
                });
                w.head = w.head.max(kb.head);
                w.buckets_n = kb.buckets_n;
                w.bucket_ms = kb.bucket_ms;
                w.touched = Instant::now();
            }
            for w in watched.values() {
                let g = global_head.entry(w.bucket_ms).or_insert(i64::MIN);
                *g = (*g).max(w.head);
            }
            for w in watched.values_mut() {
                w.head = global_head.get(&w.bucket_ms).copied().unwrap_or(w.head);
            }
            // Other instances may still add to a key this one saw lately; after a window of
            // wall time without a local mention it is no longer read.
            watched.retain(|_, w| {
                w.touched.elapsed().as_millis() as i64 <= w.bucket_ms * w.buckets_n as i64
            });
            if keys.is_empty() && releases.is_empty() && claims.is_empty() && watched.is_empty() {
                continue;
            }
            let pipe = self.build(&keys, &releases, &claims, &watched);
            let mut conn = self.redis.conn();
            let r = pipe.query_async::<Vec<u64>>(&mut conn).await;
            round_trip("sync");
            match self.redis.track(r) {
                Ok(counts) => {
                    let mut out = Vec::new();
                    for ((k, w), n) in watched.iter_mut().zip(counts) {
                        let head = w.head;
                        if w.sent != Some((head, n)) {
                            w.sent = Some((head, n));
                            out.push(FleetCount {
                                key: k.clone(),
                                head,
                                authors: n,
                            });
                        }
                    }
                    if !out.is_empty() && tx.send(Item::Fleet(out)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    metrics().errors.with_label_values(&["sync"]).inc();
                    tracing::debug!(error = %e, "Window merge failed; kept for the next try.");
                    let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                    p.merge(keys);
                    p.releases.extend(releases);
                    // Counts must be read again once Redis answers.
                    for w in watched.values_mut() {
                        w.sent = None;
                    }
                }
            }
        }
    }

    fn build(
        &self,
        keys: &BTreeMap<String, KeyBuf>,
        releases: &[(String, String)],
        claims: &[String],
        watched: &BTreeMap<String, Watch>,
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (k, kb) in keys {
            // A bucket lives as long as a window after it, plus a margin for clock skew.
            let ttl = kb.bucket_ms * (kb.buckets_n as i64 + 1) + 60_000;
            let oldest = kb.head - kb.buckets_n as i64 + 1;
            for (b, authors) in kb.buckets.range(oldest..) {
                let wk = window_key(&self.redis, k, *b);
                pipe.cmd("PFADD")
                    .arg(&wk)
                    .arg(authors.iter().collect::<Vec<_>>())
                    .ignore();
                pipe.cmd("PEXPIRE").arg(&wk).arg(ttl).ignore();
            }
        }
        for (k, id) in releases {
            pipe.cmd("EVAL")
                .arg(RELEASE_LUA)
                .arg(1)
                .arg(claim_key(&self.redis, k))
                .arg(id)
                .ignore();
        }
        for k in claims {
            pipe.cmd("PEXPIRE")
                .arg(claim_key(&self.redis, k))
                .arg(CLAIM_TTL.as_millis() as u64)
                .ignore();
        }
        for (k, w) in watched {
            let oldest = w.head - w.buckets_n as i64 + 1;
            let wkeys: Vec<String> = (oldest..=w.head)
                .map(|b| window_key(&self.redis, k, b))
                .collect();
            pipe.cmd("PFCOUNT").arg(wkeys);
        }
        pipe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(head: i64, buckets: &[(i64, u64)]) -> KeyBuf {
        let mut kb = KeyBuf {
            head,
            buckets_n: 30,
            bucket_ms: 10_000,
            ..KeyBuf::default()
        };
        for (b, a) in buckets {
            kb.buckets.entry(*b).or_default().insert(*a);
        }
        kb
    }

    #[test]
    fn hits_kept_while_redis_is_down_are_merged_and_bounded_to_one_window() {
        let mut p = Pending::default();
        let k = "em|rainstorm|110108".to_string();
        p.merge(BTreeMap::from([(
            k.clone(),
            buf(100, &[(80, 1), (100, 2)]),
        )]));
        p.merge(BTreeMap::from([(
            k.clone(),
            buf(120, &[(100, 3), (120, 4)]),
        )]));
        let kb = &p.keys[&k];
        assert_eq!(kb.head, 120);
        // Bucket 80 is older than the window ending at 120 (30 buckets): dropped.
        let kept: Vec<(i64, Vec<u64>)> = kb
            .buckets
            .iter()
            .map(|(b, a)| (*b, a.iter().copied().collect()))
            .collect();
        assert_eq!(kept, [(100, vec![2, 3]), (120, vec![4])]);
    }
}
