//! The audit log: every action on a notice (draft, edit, approve, reject, publish attempt,
//! success, failure, pause, resume…) as one line of an append-only, hash-chained JSON Lines file.
//!
//! # Format
//!
//! One record per line, fields in this order:
//!
//! ```text
//! {"seq":1,"at":1767225600000,"actor":"op:li","action":"draft","notice":"n-42","detail":{…},
//!  "prev":"0000…0000","hash":"9f2c…"}
//! ```
//!
//! - `seq` counts from 1 and equals the line number;
//! - `at` is the time of the action in Unix milliseconds (an input: the caller's clock);
//! - `notice` is the notice the action is about, or `null` (pause, resume);
//! - `detail` is a JSON object;
//! - `prev` is the hex SHA-256 of the previous line's bytes (without its newline), 64 zeros for
//!   the first record;
//! - `hash` is the hex SHA-256 of the record's canonical bytes *without* the `hash` field: the
//!   line up to `prev` exactly as written here, with the keys of `detail` (and of every object
//!   inside it) sorted and no whitespace. A line must be in exactly that canonical form.
//!
//! # Guarantees
//!
//! - **Write-through.** [`AuditLog::append`] writes the whole line and `fdatasync`s before it
//!   returns: when an action is reported (to the operator, to the API, to the dispatcher), its
//!   record is on disk. A failed write is rolled back (the file is truncated to its previous
//!   length); if even that, or the sync, fails, the log refuses further appends until it is
//!   reopened, since its state on disk is no longer known.
//! - **Crash-consistent.** A crash can only leave a torn *last* line (no trailing newline). Such a
//!   line was never acknowledged, so nothing reported is lost by dropping it: [`verify`] reports it
//!   distinctly ([`VerifyError::Incomplete`], "incomplete last line", not tampering) and
//!   [`AuditLog::open`] truncates it away with a warning.
//! - **Tamper-evident, not tamper-proof.** Editing a field, deleting, inserting or reordering lines
//!   is detected by [`verify`] at the first line where the chain breaks. But whoever can rewrite the
//!   whole file can recompute every hash, and deleting the *last* records leaves a valid, shorter
//!   chain. Against that, anchor the chain elsewhere: `huiying audit verify` prints the head (the
//!   hash of the last line); keep it somewhere the log's writers cannot change (a ticket, a
//!   printed report, another system's log) and later check that the log still contains it
//!   (`huiying audit verify --anchor HASH`, [`verify_anchored`]).
//! - **One writer.** [`AuditLog::open`] takes an exclusive advisory lock on the file; a second
//!   writer (another process) gets [`AuditError::Locked`]. [`verify`] only reads.
//! - [`AuditLog::open`] verifies the whole chain and refuses to append to a broken one.
//!
//! A cluster shares one chain in Redis instead of the file ([`AuditLog::shared`]);
//! `huiying audit export` writes it out as the same JSON Lines ([`export_shared`]).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`AuditLog`] (validates and chains records) over a `Sink`, and [`AuditError`] |
//! | `record.rs` | [`Record`], [`AuditAction`], canonical bytes and hashes |
//! | `verify.rs` | [`verify`], [`verify_anchored`], [`read_all`], [`verify_command`], the incremental check of [`AuditLog::tail`] |
//! | `status.rs` | [`AuditStatus`]: writable or not, the dispatcher waiting for it, the gauges |
//! | `file.rs` | the JSON Lines file: lock, recovery of a torn line, write-through appends |
//! | `redis.rs` | the chain shared by a cluster, and [`export_shared`] |
//! | `tests.rs` | the file log's guarantees |

mod file;
mod record;
mod redis;
mod status;
#[cfg(test)]
mod tests;
mod verify;

pub use record::{AuditAction, Record, GENESIS};
pub use status::AuditStatus;

/// The audit log as the stages share it (appends are serialised).
pub type SharedAudit = std::sync::Arc<std::sync::Mutex<AuditLog>>;
pub use redis::export_shared;
pub use verify::{
    read_all, verify, verify_anchored, verify_command, Problem, TailView, VerifyError,
    VerifyReport, MAX_TAIL,
};

use record::line_hash;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the log cannot be opened or appended to.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An I/O error on the log file.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The existing log does not verify: nothing is appended to a tampered log.
    #[error("audit log {}: refusing to append to a log that does not verify: {source}", path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: VerifyError,
    },
    /// Another writer holds the log.
    #[error("audit log {}: in use by another process", .0.display())]
    Locked(PathBuf),
    /// An earlier write or sync failed and could not be rolled back; reopen the log.
    #[error("audit log {}: an earlier write failed; reopen the log", .0.display())]
    Poisoned(PathBuf),
    /// The record is not acceptable (empty actor or action, `detail` not an object).
    #[error("audit record: {0}")]
    Invalid(String),
    /// Redis failed (the log shared by a cluster): nothing was appended.
    #[error("audit log redis: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// The record cannot be encoded.
    #[error("audit record: cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where the chain is kept: the file (`file.rs`) or the cluster's Redis list (`redis.rs`).
trait Sink: Send + std::fmt::Debug {
    /// Refuse appends once the sink's state is unknown (a failed write that was not rolled back).
    fn check(&self) -> Result<(), AuditError> {
        Ok(())
    }
    /// Hash `rec` (chained after the head the log knows, or the shared head) and store it
    /// durably; return it as stored.
    fn append(&mut self, rec: Record) -> Result<Record, AuditError>;
    /// Read and check the records stored after those `t` verified.
    fn read_since(&self, t: &mut verify::Tail) -> Result<(), VerifyError>;
}

/// The open log, ready to append. One per file (see the module docs).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    sink: Box<dyn Sink>,
    seq: u64,
    head: String,
    truncated: Option<u64>,
    status: Arc<AuditStatus>,
    tail: verify::Tail,
}

impl AuditLog {
    /// Open (or create) the log at `path`, verify its chain and recover the last `seq` and head.
    /// A torn last line (a crash during an append) is truncated away with a warning; any other
    /// break is [`AuditError::Broken`] and nothing will be appended.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let (sink, scan, truncated) = file::FileSink::open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            sink: Box::new(sink),
            seq: scan.records,
            head: scan.head,
            truncated,
            status: Arc::default(),
            tail: verify::Tail::new(),
        })
    }

    /// The log of namespace `ns` shared by a cluster through Redis: one chain, appended under a
    /// cluster-wide lock. `huiying audit export` writes it out as a file that
    /// `huiying audit verify` checks.
    pub fn shared(
        db: Arc<crate::respond::redis::Blocking>,
        ns: &str,
    ) -> Result<AuditLog, AuditError> {
        let sink = redis::RedisSink::new(db, ns);
        let (seq, head) = sink.head()?;
        Ok(AuditLog {
            path: PathBuf::from(format!("redis:{ns}:audit")),
            sink: Box::new(sink),
            seq,
            head,
            truncated: None,
            status: Arc::default(),
            tail: verify::Tail::new(),
        })
    }

    /// Append one record and make it durable (`fdatasync`) before returning it. A storage
    /// failure marks the log unwritable ([`AuditStatus::writable`]) until an append succeeds.
    pub fn append(
        &mut self,
        at: i64,
        actor: &str,
        action: AuditAction,
        notice: Option<&str>,
        detail: Value,
    ) -> Result<Record, AuditError> {
        let r = (|| {
            self.sink.check()?;
            if self.status.injected() {
                return Err(AuditError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other("write refused (injected failure)"),
                });
            }
            if actor.trim().is_empty() {
                return Err(AuditError::Invalid("empty actor".into()));
            }
            if action.as_str().trim().is_empty() {
                return Err(AuditError::Invalid("empty action".into()));
            }
            let detail = match detail {
                Value::Null => Value::Object(Default::default()),
                d @ Value::Object(_) => d,
                _ => return Err(AuditError::Invalid("detail must be a JSON object".into())),
            };
            let rec = Record {
                seq: self.seq + 1,
                at,
                actor: actor.to_string(),
                action: action.as_str().to_string(),
                notice: notice.map(str::to_string),
                detail,
                prev: self.head.clone(),
                hash: String::new(),
            };
            let rec = self.sink.append(rec)?;
            self.seq = rec.seq;
            self.head = line_hash(&rec.line()?);
            Ok(rec)
        })();
        match &r {
            Ok(_) => self.status.set_writable(true),
            Err(AuditError::Invalid(_) | AuditError::Encode(_)) => {}
            Err(_) => self.status.set_writable(false),
        }
        r
    }

    /// Records in the log.
    pub fn len(&self) -> u64 {
        self.seq
    }

    /// True when the log has no records.
    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }

    /// Hex SHA-256 of the last line ([`GENESIS`] when empty): the value to anchor elsewhere.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log takes writes (and whether the dispatcher waits for it), readable
    /// without this log's lock.
    pub fn status(&self) -> Arc<AuditStatus> {
        Arc::clone(&self.status)
    }

    /// The newest `limit` records (at most [`MAX_TAIL`]), newest first, as stored: the file
    /// (or the Redis list) is read from where the last call stopped and only the records
    /// appended since are checked ([`TailView::checked`]); the first call checks them all.
    pub fn tail(&mut self, limit: usize) -> Result<TailView, VerifyError> {
        let before = self.tail.checked();
        self.sink.read_since(&mut self.tail)?;
        Ok(TailView {
            total: self.tail.records,
            checked: self.tail.checked() - before,
            records: self.tail.newest(limit.min(MAX_TAIL)),
        })
    }

    /// Bytes of a torn last line that [`AuditLog::open`] dropped, if it did.
    pub fn truncated_on_open(&self) -> Option<u64> {
        self.truncated
    }
}
