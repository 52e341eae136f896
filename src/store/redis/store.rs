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
//!
//! The trait is blocking (called from `spawn_blocking` threads): each call runs its commands
//! as one pipeline on the shared connection through the runtime's [`Handle`].

use super::Redis;
use crate::incidents::{Incident, IncidentState};
use crate::store::{Store, StoreError, StoredIncident};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// How long a closed incident stays readable by default (`[redis] closed_retention_days`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

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
        let mut pipe = redis::pipe();
        for i in incidents {
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
