//! Notices shared by the instances of a cluster: hash `{NS:notices}:all` (id → JSON), counter
//! `{NS:notices}:seq`, and the lock `{NS:notices}:lock` that serialises changes cluster-wide.

use super::store::Backend;
use super::{NoticeError, StoreError};
use crate::respond::redis::{Blocking, RedisLock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The notices of one namespace.
pub(super) struct RedisNotices {
    db: Arc<Blocking>,
    tag: String,
}

impl RedisNotices {
    /// The notices of namespace `ns` on `db`.
    pub(super) fn new(db: Arc<Blocking>, ns: &str) -> RedisNotices {
        RedisNotices {
            db,
            tag: format!("{{{ns}:notices}}"),
        }
    }
}

/// Wrap a Redis error of operation `op`.
fn redis_err(op: &'static str) -> impl Fn(redis::RedisError) -> NoticeError {
    move |e| NoticeError::Storage {
        op,
        source: Box::new(StoreError::Redis(e)),
    }
}

impl Backend for RedisNotices {
    fn get(&self, id: &str) -> Result<Option<Vec<u8>>, NoticeError> {
        self.db
            .run(|c| {
                redis::cmd("HGET")
                    .arg(format!("{}:all", self.tag))
                    .arg(id)
                    .query(c)
            })
            .map_err(redis_err("read"))
    }

    fn put(&self, id: &str, bytes: &[u8]) -> Result<(), NoticeError> {
        self.db
            .run(|c| {
                redis::cmd("HSET")
                    .arg(format!("{}:all", self.tag))
                    .arg(id)
                    .arg(bytes)
                    .query::<i64>(c)
            })
            .map(|_| ())
            .map_err(redis_err("write"))
    }

    fn all(&self) -> Result<Vec<(String, Vec<u8>)>, NoticeError> {
        let all: BTreeMap<String, Vec<u8>> = self
            .db
            .run(|c| {
                redis::cmd("HGETALL")
                    .arg(format!("{}:all", self.tag))
                    .query(c)
            })
            .map_err(redis_err("read"))?;
        Ok(all.into_iter().collect())
    }

    fn next_seq(&self) -> Result<u64, NoticeError> {
        self.db
            .run(|c| redis::cmd("INCR").arg(format!("{}:seq", self.tag)).query(c))
            .map_err(redis_err("write"))
    }

    fn shared_lock(&self) -> Result<Option<RedisLock>, NoticeError> {
        RedisLock::acquire(
            &self.db,
            &format!("{}:lock", self.tag),
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .map_err(redis_err("lock"))?
        .map(Some)
        .ok_or_else(|| NoticeError::Storage {
            op: "lock",
            source: Box::new(StoreError::Locked),
        })
    }
}
