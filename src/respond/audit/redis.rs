//! The log shared by the instances of a cluster, in Redis, and its export as a file.

use super::record::{line_hash, Record, GENESIS};
use super::verify::{Tail, VerifyError};
use super::{AuditError, Sink};
use crate::respond::redis::{Blocking, RedisLock};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The audit chain in Redis: list `{NS:audit}:log` (one line per record, as in the file), hash
/// `{NS:audit}:head` (`seq`, `head`), lock `{NS:audit}:lock`. An append takes the lock, reads
/// the head, and pushes the line and the new head in one `MULTI`, so the instances of a cluster
/// write one unbroken chain.
#[derive(Debug)]
pub(super) struct RedisSink {
    db: Arc<Blocking>,
    tag: String,
}

impl RedisSink {
    /// The log of namespace `ns` on `db`.
    pub(super) fn new(db: Arc<Blocking>, ns: &str) -> RedisSink {
        RedisSink {
            db,
            tag: format!("{{{ns}:audit}}"),
        }
    }

    /// The shared `seq` and head.
    pub(super) fn head(&self) -> Result<(u64, String), AuditError> {
        let (seq, head): (Option<u64>, Option<String>) = self
            .db
            .run(|c| {
                redis::cmd("HMGET")
                    .arg(format!("{}:head", self.tag))
                    .arg("seq")
                    .arg("head")
                    .query(c)
            })
            .map_err(AuditError::Redis)?;
        Ok((
            seq.unwrap_or(0),
            head.unwrap_or_else(|| GENESIS.to_string()),
        ))
    }
}

impl Sink for RedisSink {
    /// `LRANGE` from the first record not yet verified, 1,000 at a time.
    fn read_since(&self, t: &mut Tail) -> Result<(), VerifyError> {
        let key = format!("{}:log", self.tag);
        let io = |e: ::redis::RedisError| VerifyError::Io {
            path: PathBuf::from(format!("redis:{key}")),
            source: std::io::Error::other(e.to_string()),
        };
        let len: u64 = self
            .db
            .run(|c| redis::cmd("LLEN").arg(&key).query(c))
            .map_err(io)?;
        if len < t.records {
            return Err(VerifyError::Shrunk {
                verified: t.records,
            });
        }
        while t.records < len {
            let end = (t.records + 1000).min(len) - 1;
            let lines: Vec<Vec<u8>> = self
                .db
                .run(|c| {
                    redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(t.records)
                        .arg(end)
                        .query(c)
                })
                .map_err(io)?;
            if lines.is_empty() {
                break;
            }
            for l in &lines {
                t.push(l, 0)?;
            }
        }
        Ok(())
    }

    fn append(&mut self, mut rec: Record) -> Result<Record, AuditError> {
        let _lock = RedisLock::acquire(
            &self.db,
            &format!("{}:lock", self.tag),
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .map_err(AuditError::Redis)?
        .ok_or_else(|| AuditError::Invalid("the shared audit log is locked".into()))?;
        let (seq, head) = self.head()?;
        rec.seq = seq + 1;
        rec.prev = head;
        rec.hash = rec.compute_hash()?;
        let line = rec.line()?;
        let new_head = line_hash(&line);
        self.db
            .run(|c| {
                redis::pipe()
                    .atomic()
                    .cmd("RPUSH")
                    .arg(format!("{}:log", self.tag))
                    .arg(line.as_slice())
                    .ignore()
                    .cmd("HSET")
                    .arg(format!("{}:head", self.tag))
                    .arg("seq")
                    .arg(rec.seq)
                    .arg("head")
                    .arg(&new_head)
                    .ignore()
                    .query::<()>(c)
            })
            .map_err(AuditError::Redis)?;
        Ok(rec)
    }
}

/// `huiying audit export URL --namespace NS`: write the shared log (Redis) to `out` as the same
/// JSON Lines as the file, for `huiying audit verify`. Returns the number of records.
pub fn export_shared(db: &Blocking, ns: &str, out: &mut dyn Write) -> Result<u64, AuditError> {
    let key = format!("{{{ns}:audit}}:log");
    let len: u64 = db
        .run(|c| redis::cmd("LLEN").arg(&key).query(c))
        .map_err(AuditError::Redis)?;
    let mut n = 0u64;
    while n < len {
        let end = (n + 1000).min(len) - 1;
        let lines: Vec<Vec<u8>> = db
            .run(|c| redis::cmd("LRANGE").arg(&key).arg(n).arg(end).query(c))
            .map_err(AuditError::Redis)?;
        if lines.is_empty() {
            break;
        }
        for l in &lines {
            out.write_all(l)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| AuditError::Io {
                    path: PathBuf::from("-"),
                    source: e,
                })?;
        }
        n += lines.len() as u64;
    }
    Ok(n)
}
