//! Cases shared by the instances of a fleet: hashes `{NS:cases}:cases`, `:cases_index`,
//! `:cases_contacts`, counters `{NS:cases}:seq:<day>`, and the lock `{NS:cases}:lock` that
//! serialises changes across instances. A case and its index entries are written in one
//! `MULTI`/`EXEC` (all keys share the hash tag, so one cluster slot).

use super::{Backend, CaseStoreError, Table};
use crate::respond::redis::{Blocking, RedisLock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The cases of one namespace.
pub(super) struct RedisCases {
    db: Arc<Blocking>,
    tag: String,
}

impl RedisCases {
    /// The cases of namespace `ns` on `db`.
    pub(super) fn new(db: Arc<Blocking>, ns: &str) -> RedisCases {
        RedisCases {
            db,
            tag: format!("{{{ns}:cases}}"),
        }
    }

    fn key(&self, t: Table) -> String {
        format!("{}:{}", self.tag, t.as_str())
    }
}

fn redis_err(op: &'static str) -> impl Fn(::redis::RedisError) -> CaseStoreError {
    move |source| CaseStoreError::Redis { op, source }
}

impl Backend for RedisCases {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, CaseStoreError> {
        self.db
            .run(|c| ::redis::cmd("HGET").arg(self.key(table)).arg(key).query(c))
            .map_err(redis_err("read"))
    }

    fn put_all(&self, writes: &[(Table, String, Vec<u8>)]) -> Result<(), CaseStoreError> {
        self.db
            .run(|c| {
                let mut p = ::redis::pipe();
                p.atomic();
                for (t, k, v) in writes {
                    p.cmd("HSET")
                        .arg(self.key(*t))
                        .arg(k)
                        .arg(v.as_slice())
                        .ignore();
                }
                p.query::<()>(c)
            })
            .map_err(redis_err("write"))
    }

    fn all(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, CaseStoreError> {
        let all: BTreeMap<String, Vec<u8>> = self
            .db
            .run(|c| ::redis::cmd("HGETALL").arg(self.key(table)).query(c))
            .map_err(redis_err("read"))?;
        Ok(all.into_iter().collect())
    }

    fn next_seq(&self, name: &str) -> Result<u64, CaseStoreError> {
        self.db
            .run(|c| {
                ::redis::cmd("INCR")
                    .arg(format!("{}:seq:{name}", self.tag))
                    .query(c)
            })
            .map_err(redis_err("write"))
    }

    fn shared_lock(&self) -> Result<Option<RedisLock>, CaseStoreError> {
        RedisLock::acquire(
            &self.db,
            &format!("{}:lock", self.tag),
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .map_err(redis_err("lock"))?
        .map(Some)
        .ok_or(CaseStoreError::Locked)
    }
}
