//! The [`Store`] on Redis: what the embedded redb file keeps, shared by every instance.
//!
//! Keys (all under the namespace):
//!
//! | key | type | what | TTL |
//! |---|---|---|---|
//! | `{ns}:inc:{id}` | string | the incident with its samples (JSON) | none while open; `retention` once closed |
//! | `{ns}:open` | set | ids of open incidents | none |
//! | `{ns}:im:{id}` | sorted set (all scores 0: byte order) | mention ids of the incident | as the incident |
//! | `{ns}:cursor:{feed}` | string | a feed's resume cursor | none |
//! | `{ns}:feed:{feed}` | string | a feed's resume state | none |
//! | `{ns}:opened` | sorted set (score: opened at, ms) | ids of incidents by opening time | entries beyond `retention` dropped |
//! | `{ns}:hour:{start}` | hash: instance → JSON | each instance's figures of an event-time hour | [`HOUR_RETENTION`] |
//! | `{ns}:hours` | sorted set (score: hour start) | the hours stored | entries beyond [`HOUR_RETENTION`] dropped |
//!
//! The trait is blocking (called from `spawn_blocking` threads): each call runs its commands
//! as one pipeline on the shared connection through the runtime's [`Handle`].

use super::Redis;
use crate::incidents::hours::HourStats;
use crate::incidents::{Incident, IncidentState};
use crate::store::{Store, StoreError, StoredIncident};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// How long a closed incident stays readable by default (`[redis] closed_retention_days`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long an hour's figures stay (reports compare a period with the one before it).
pub const HOUR_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Incidents, the mention index and feed cursors in Redis.
pub struct RedisStore {
    redis: Redis,
    rt: Handle,
    retention_ms: u64,
}

impl RedisStore {
    /// A store on `redis`; blocking calls run on the current runtime (call from inside it).
    pub fn new(redis: Redis, retention: Duration) -> Result<RedisStore, StoreError> {
        let rt = Handle::try_current().map_err(|e| StoreError::new("open", e))?;
        Ok(RedisStore {
            redis,
            rt,
            retention_ms: retention.as_millis().max(1) as u64,
        })
    }

    /// Run one pipeline and wait for its answer. Never on a runtime worker thread: from an
    /// async context the thread is handed over first (`block_in_place`).
    /// The members of the sorted set `{ns}:{set}` scored in `[from, to)`, lowest first (none
    /// when the period is empty).
    fn by_score<T: redis::FromRedisValue>(
        &self,
        set: &str,
        from: i64,
        to: i64,
        op: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(self.redis.key(set))
            .arg(from)
            .arg(format!("({to}"))
            .arg("BYSCORE");
        let (members,): (Vec<T>,) = self.run(op, &pipe)?;
        Ok(members)
    }

    fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.redis.conn();
        let fut = pipe.query_async::<T>(&mut conn);
        let r = match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
                return Err(StoreError::new(
                    op,
                    "the Redis store was called on a current-thread runtime; use spawn_blocking",
                ))
            }
            Ok(_) => tokio::task::block_in_place(|| self.rt.block_on(fut)),
            Err(_) => self.rt.block_on(fut),
        };
        super::round_trip("store");
        self.redis.track(r).map_err(|e| StoreError::new(op, e))
    }

    fn inc_key(&self, id: &str) -> String {
        self.redis.key(&format!("inc:{id}"))
    }

    fn index_key(&self, id: &str) -> String {
        self.redis.key(&format!("im:{id}"))
    }
}

impl Store for RedisStore {
    fn put_incidents(&self, incidents: &[Arc<Incident>]) -> Result<(), StoreError> {
        let open = self.redis.key("open");
        let opened = self.redis.key("opened");
        let mut pipe = redis::pipe();
        if let Some(newest) = incidents.iter().map(|i| i.opened_at).max() {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&opened)
                .arg("-inf")
                .arg(format!("({}", newest - self.retention_ms as i64))
                .ignore();
        }
        for i in incidents {
            pipe.cmd("ZADD")
                .arg(&opened)
                .arg(i.opened_at)
                .arg(&i.id)
                .ignore();
            let json = serde_json::to_string(&StoredIncident::from_incident(i))
                .map_err(|e| StoreError::new("put_incidents", e))?;
            let (k, ik) = (self.inc_key(&i.id), self.index_key(&i.id));
            if i.state == IncidentState::Open {
                pipe.cmd("SET").arg(&k).arg(json).ignore();
                pipe.cmd("PERSIST").arg(&ik).ignore();
                pipe.cmd("SADD").arg(&open).arg(&i.id).ignore();
            } else {
                // Closed: kept for the retention period, then Redis forgets it.
                pipe.cmd("SET")
                    .arg(&k)
                    .arg(json)
                    .arg("PX")
                    .arg(self.retention_ms)
                    .ignore();
                pipe.cmd("PEXPIRE").arg(&ik).arg(self.retention_ms).ignore();
                pipe.cmd("SREM").arg(&open).arg(&i.id).ignore();
            }
        }
        self.run::<()>("put_incidents", &pipe)
    }

    fn put_assignments(&self, pairs: &[(Arc<str>, String)]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for (inc, mention) in pairs {
            pipe.cmd("ZADD")
                .arg(self.index_key(inc))
                .arg(0)
                .arg(mention)
                .ignore();
        }
        self.run::<()>("put_assignments", &pipe)
    }

    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.inc_key(id));
        let (raw,): (Option<String>,) = self.run("get_incident", &pipe)?;
        raw.map(|s| decode(&s)).transpose()
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SMEMBERS").arg(self.redis.key("open"));
        let (mut ids,): (Vec<String>,) = self.run("open_incidents", &pipe)?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        let keys: Vec<String> = ids.iter().map(|id| self.inc_key(id)).collect();
        pipe.cmd("MGET").arg(keys);
        let (raw,): (Vec<Option<String>>,) = self.run("open_incidents", &pipe)?;
        let mut out = Vec::with_capacity(raw.len());
        for s in raw.into_iter().flatten() {
            let i = decode(&s)?;
            if i.state == IncidentState::Open {
                out.push(i);
            }
        }
        Ok(out)
    }

    fn incident_mentions(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(self.index_key(id))
            .arg("-")
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let (ids,): (Vec<String>,) = self.run("incident_mentions", &pipe)?;
        Ok(ids)
    }

    fn incidents_between(&self, from: i64, to: i64) -> Result<Vec<Incident>, StoreError> {
        let ids: Vec<String> = self.by_score("opened", from, to, "incidents_between")?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            let keys: Vec<String> = chunk.iter().map(|id| self.inc_key(id)).collect();
            pipe.cmd("MGET").arg(keys);
            let (raw,): (Vec<Option<String>>,) = self.run("incidents_between", &pipe)?;
            // A closed incident past its retention is gone: not counted.
            for s in raw.into_iter().flatten() {
                out.push(decode(&s)?);
            }
        }
        out.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn add_hour(&self, hour: &HourStats) -> Result<(), StoreError> {
        let key = self.redis.key(&format!("hour:{}", hour.hour));
        let me = self.redis.instance().to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(&key).arg(&me);
        let (old,): (Option<String>,) = self.run("add_hour", &pipe)?;
        let mut h = hour.clone();
        if let Some(o) = old {
            let mut o: HourStats = serde_json::from_str(&o)
                .map_err(|e| StoreError::new("decode", format!("hour {}: {e}", hour.hour)))?;
            o.merge(hour);
            h = o;
        }
        let json = serde_json::to_string(&h).map_err(|e| StoreError::new("add_hour", e))?;
        let keep = HOUR_RETENTION.as_millis() as i64;
        let hours = self.redis.key("hours");
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&key).arg(&me).arg(json).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(keep).ignore();
        pipe.cmd("ZADD")
            .arg(&hours)
            .arg(hour.hour)
            .arg(hour.hour)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&hours)
            .arg("-inf")
            .arg(format!("({}", hour.hour - keep))
            .ignore();
        self.run::<()>("add_hour", &pipe)
    }

    fn hours(&self, from: i64, to: i64) -> Result<Vec<HourStats>, StoreError> {
        let starts: Vec<i64> = self.by_score("hours", from, to, "hours")?;
        let mut out = Vec::with_capacity(starts.len());
        for chunk in starts.chunks(200) {
            let mut pipe = redis::pipe();
            for h in chunk {
                pipe.cmd("HVALS").arg(self.redis.key(&format!("hour:{h}")));
            }
            let parts: Vec<Vec<String>> = self.run("hours", &pipe)?;
            for (h, vals) in chunk.iter().zip(parts) {
                // Every instance's share of the hour, summed.
                let mut sum: Option<HourStats> = None;
                for v in vals {
                    let one: HourStats = serde_json::from_str(&v)
                        .map_err(|e| StoreError::new("decode", format!("hour {h}: {e}")))?;
                    match &mut sum {
                        Some(s) => s.merge(&one),
                        None => sum = Some(one),
                    }
                }
                out.extend(sum);
            }
        }
        Ok(out)
    }

    fn get_cursor(&self, feed: &str) -> Result<Option<i64>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(self.redis.key(&format!("cursor:{feed}")));
        let (v,): (Option<i64>,) = self.run("get_cursor", &pipe)?;
        Ok(v)
    }

    fn put_cursor(&self, feed: &str, cursor: i64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.redis.key(&format!("cursor:{feed}")))
            .arg(cursor)
            .ignore();
        self.run::<()>("put_cursor", &pipe)
    }

    fn get_feed_state(&self, feed: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.redis.key(&format!("feed:{feed}")));
        let (v,): (Option<Vec<u8>>,) = self.run("get_feed_state", &pipe)?;
        Ok(v)
    }

    fn put_feed_state(&self, feed: &str, state: &[u8]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.redis.key(&format!("feed:{feed}")))
            .arg(state)
            .ignore();
        self.run::<()>("put_feed_state", &pipe)
    }

    /// Every write was acknowledged by Redis when it returned; durability beyond that is the
    /// server's AOF policy (see the README), so there is nothing to wait for here.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

fn decode(s: &str) -> Result<Incident, StoreError> {
    serde_json::from_str::<StoredIncident>(s)
        .map(StoredIncident::into_incident)
        .map_err(|e| StoreError::new("decode", e))
}
