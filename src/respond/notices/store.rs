//! [`NoticeStore`]: notices as JSON by id, on one of the backends (`redb.rs`, `memory.rs`,
//! `redis.rs`), each a [`Backend`].

use super::{Notice, NoticeError, StoreError};
use crate::respond::redis::{Blocking, RedisLock};
use std::path::Path;
use std::sync::Arc;

/// One place notices are kept: JSON bytes by id, a persisted counter and, when the store is
/// shared by several instances, the lock that serialises changes across them.
pub(super) trait Backend: Send + Sync {
    /// The bytes of notice `id`.
    fn get(&self, id: &str) -> Result<Option<Vec<u8>>, NoticeError>;
    /// Store (insert or replace); durable when this returns.
    fn put(&self, id: &str, bytes: &[u8]) -> Result<(), NoticeError>;
    /// Every notice, in id order.
    fn all(&self) -> Result<Vec<(String, Vec<u8>)>, NoticeError>;
    /// The next number for manual notice ids (persisted).
    fn next_seq(&self) -> Result<u64, NoticeError>;
    /// The cluster-wide lock, for a shared store (`None`: the local mutex is enough).
    fn shared_lock(&self) -> Result<Option<RedisLock>, NoticeError> {
        Ok(None)
    }
}

/// Where notices are kept: JSON values keyed by id, in a `redb` file, in memory or in Redis.
pub struct NoticeStore {
    backend: Box<dyn Backend>,
}

impl NoticeStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<NoticeStore, NoticeError> {
        Ok(NoticeStore {
            backend: Box::new(super::redb::RedbNotices::open(path)?),
        })
    }

    /// The notices of namespace `ns`, shared through Redis.
    pub fn redis(db: Arc<Blocking>, ns: &str) -> NoticeStore {
        NoticeStore {
            backend: Box::new(super::redis::RedisNotices::new(db, ns)),
        }
    }

    /// A store in memory (tests, drills).
    pub fn memory() -> NoticeStore {
        NoticeStore {
            backend: Box::new(super::memory::MemoryNotices::default()),
        }
    }

    /// The cluster-wide lock (Redis only): changes to notices are serialised across instances.
    pub(super) fn shared_lock(&self) -> Result<Option<RedisLock>, NoticeError> {
        self.backend.shared_lock()
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<Notice, NoticeError> {
        serde_json::from_slice(bytes).map_err(|source| NoticeError::Storage {
            op: "decode",
            source: Box::new(StoreError::Decode {
                id: id.to_string(),
                source,
            }),
        })
    }

    /// One notice.
    pub fn get(&self, id: &str) -> Result<Option<Notice>, NoticeError> {
        self.backend
            .get(id)?
            .map(|b| Self::decode(id, &b))
            .transpose()
    }

    /// Store (insert or replace) a notice; durable when this returns (redb commits are fsynced).
    pub fn put(&self, n: &Notice) -> Result<(), NoticeError> {
        let bytes = serde_json::to_vec(n).map_err(|e| NoticeError::Storage {
            op: "encode",
            source: Box::new(StoreError::Encode(e)),
        })?;
        self.backend.put(&n.id, &bytes)
    }

    /// Every notice, in id order.
    pub fn all(&self) -> Result<Vec<Notice>, NoticeError> {
        self.backend
            .all()?
            .iter()
            .map(|(id, b)| Self::decode(id, b))
            .collect()
    }

    /// The next number for manual notice ids (persisted).
    pub(super) fn next_seq(&self) -> Result<u64, NoticeError> {
        self.backend.next_seq()
    }
}
