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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was done. The known actions have variants; [`AuditAction::Other`] carries any other
/// (lower-case, `snake_case` by convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditAction {
    /// A notice was drafted (by hand or from an incident).
    Draft,
    /// A draft was edited.
    Edit,
    /// An operator approved (or the policy auto-approved) a notice.
    Approve,
    /// An operator rejected a notice.
    Reject,
    /// A post is about to be sent to a platform (written before the call).
    PublishAttempt,
    /// The platform accepted a post.
    PublishOk,
    /// A post failed (retryable or permanent: see `detail`).
    PublishFailed,
    /// All publishing was paused.
    Pause,
    /// Publishing resumed.
    Resume,
    /// Any other action.
    Other(String),
}

impl AuditAction {
    /// The name written in the log.
    pub fn as_str(&self) -> &str {
        match self {
            AuditAction::Draft => "draft",
            AuditAction::Edit => "edit",
            AuditAction::Approve => "approve",
            AuditAction::Reject => "reject",
            AuditAction::PublishAttempt => "publish_attempt",
            AuditAction::PublishOk => "publish_ok",
            AuditAction::PublishFailed => "publish_failed",
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::Other(s) => s,
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of the log, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 1 (= line number).
    pub seq: u64,
    /// When the action happened, Unix milliseconds.
    pub at: i64,
    /// Who did it (an operator, `system`, `policy`, `dispatcher`…).
    pub actor: String,
    /// What was done ([`AuditAction::as_str`]).
    pub action: String,
    /// The notice concerned, if any.
    pub notice: Option<String>,
    /// Details (a JSON object).
    pub detail: Value,
    /// Hex SHA-256 of the previous line, [`GENESIS`] for the first.
    pub prev: String,
    /// Hex SHA-256 of this record's canonical bytes without this field.
    pub hash: String,
}

impl Record {
    /// The canonical bytes the `hash` covers: the record without `hash`, keys in field order,
    /// `detail`'s keys sorted, no whitespace.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"at\":");
        out.extend_from_slice(self.at.to_string().as_bytes());
        out.extend_from_slice(b",\"actor\":");
        serde_json::to_writer(&mut out, &self.actor)?;
        out.extend_from_slice(b",\"action\":");
        serde_json::to_writer(&mut out, &self.action)?;
        out.extend_from_slice(b",\"notice\":");
        serde_json::to_writer(&mut out, &self.notice)?;
        out.extend_from_slice(b",\"detail\":");
        write_canonical(&self.detail, &mut out)?;
        out.extend_from_slice(b",\"prev\":");
        serde_json::to_writer(&mut out, &self.prev)?;
        out.push(b'}');
        Ok(out)
    }

    /// Hex SHA-256 of [`Record::canonical_bytes`].
    pub fn compute_hash(&self) -> Result<String, serde_json::Error> {
        Ok(hex::encode(Sha256::digest(self.canonical_bytes()?)))
    }

    /// The line as written (canonical bytes with `hash` appended), without the newline.
    pub fn line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = self.canonical_bytes()?;
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"hash\":");
        serde_json::to_writer(&mut out, &self.hash)?;
        out.push(b'}');
        Ok(out)
    }
}

/// JSON with object keys sorted (at every depth) and no whitespace, whatever serde_json's
/// map order feature is.
fn write_canonical(v: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                if let Some(x) = m.get(k) {
                    write_canonical(x, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out)?;
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other)?,
    }
    Ok(())
}

fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// What is wrong with a line (see [`VerifyError::Broken`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The line is empty.
    EmptyLine,
    /// The line is not a record (not JSON, a field missing, unknown or of the wrong type).
    Malformed(String),
    /// `hash` does not match the content: the record was edited.
    HashMismatch,
    /// The hash matches but the line is not in canonical form (spacing, key order, escapes).
    NotCanonical,
    /// `seq` is not the line number: a record was deleted, or lines were reordered.
    SeqMismatch {
        /// The seq this line must have.
        expected: u64,
        /// The seq it has.
        found: u64,
    },
    /// `prev` is not the hash of the previous line: a line before was altered or replaced.
    PrevMismatch,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::EmptyLine => f.write_str("empty line"),
            Problem::Malformed(m) => write!(f, "not an audit record: {m}"),
            Problem::HashMismatch => {
                f.write_str("hash does not match the record's content: the record was edited")
            }
            Problem::NotCanonical => f.write_str(
                "the record is not in canonical form: the line was rewritten by something else",
            ),
            Problem::SeqMismatch { expected, found } if found > expected => write!(
                f,
                "expected seq {expected}, found {found}: a record before this line was deleted, \
                 or lines were reordered"
            ),
            Problem::SeqMismatch { expected, found } => write!(
                f,
                "expected seq {expected}, found {found}: lines were reordered or duplicated"
            ),
            Problem::PrevMismatch => f.write_str(
                "prev is not the hash of the previous line: the chain was altered before this line",
            ),
        }
    }
}

/// Why a log does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The chain is broken at `line` (1-based): tampering or corruption.
    #[error("line {line}: {problem}")]
    Broken {
        /// The first bad line.
        line: u64,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The last line has no newline: a write torn by a crash (not tampering). The `intact`
    /// records before it verify.
    #[error(
        "line {line}: incomplete last line ({bytes} bytes without a newline): a write torn by a \
         crash, not tampering; the {intact} records before it verify"
    )]
    Incomplete {
        /// The torn line.
        line: u64,
        /// Its length.
        bytes: u64,
        /// Records before it, all valid.
        intact: u64,
    },
    /// The chain verifies but does not contain the anchored head: the log was rewritten or
    /// records were removed from its end.
    #[error(
        "anchor {anchor} not found in the {records} records: the log was rewritten or records \
         were removed from its end"
    )]
    AnchorNotFound {
        /// The anchored head.
        anchor: String,
        /// Records in the log.
        records: u64,
    },
}

impl VerifyError {
    /// The 1-based line concerned, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            VerifyError::Broken { line, .. } | VerifyError::Incomplete { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// True for an edited, deleted, reordered or malformed record (or a missing anchor); false
    /// for a torn last line or an I/O error.
    pub fn is_tampering(&self) -> bool {
        matches!(
            self,
            VerifyError::Broken { .. } | VerifyError::AnchorNotFound { .. }
        )
    }

    /// The message located at `file:line: …` (for the command line).
    pub fn located(&self, file: &Path) -> String {
        let f = file.display();
        match self {
            VerifyError::Broken { line, problem } => format!("{f}:{line}: {problem}"),
            VerifyError::Incomplete {
                line,
                bytes,
                intact,
            } => format!(
                "{f}:{line}: incomplete last line ({bytes} bytes without a newline): a write torn \
                 by a crash, not tampering; the {intact} records before it verify"
            ),
            VerifyError::Io { source, .. } => format!("{f}: {source}"),
            other => format!("{f}: {other}"),
        }
    }
}

/// A verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// Hex SHA-256 of the last line ([`GENESIS`] for an empty log): the `prev` of the next record,
    /// and the value to anchor elsewhere.
    pub head: String,
}

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
    /// The record cannot be encoded.
    #[error("audit record: cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// State after reading a log from the start.
struct Scan {
    records: u64,
    head: String,
    /// Bytes up to and including the last complete line's newline.
    valid_len: u64,
    /// Set when the last line is torn: (line number, its length).
    torn: Option<(u64, u64)>,
    anchor_seen: bool,
}

/// Read and check every line. A torn last line is returned in `Scan::torn`, not as an error.
fn scan(r: impl BufRead, path: &Path, anchor: Option<&str>) -> Result<Scan, VerifyError> {
    let mut r = r;
    let mut s = Scan {
        records: 0,
        head: GENESIS.to_string(),
        valid_len: 0,
        torn: None,
        anchor_seen: false,
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(|e| VerifyError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if n == 0 {
            return Ok(s);
        }
        let line_no = s.records + 1;
        if buf.last() != Some(&b'\n') {
            s.torn = Some((line_no, n as u64));
            return Ok(s);
        }
        buf.pop();
        check_line(&buf, line_no, &s.head).map_err(|problem| VerifyError::Broken {
            line: line_no,
            problem,
        })?;
        s.records = line_no;
        s.head = line_hash(&buf);
        s.valid_len += n as u64;
        if anchor == Some(s.head.as_str()) {
            s.anchor_seen = true;
        }
    }
}

fn check_line(line: &[u8], line_no: u64, prev_head: &str) -> Result<Record, Problem> {
    if line.is_empty() {
        return Err(Problem::EmptyLine);
    }
    let rec: Record =
        serde_json::from_slice(line).map_err(|e| Problem::Malformed(e.to_string()))?;
    let hash = rec
        .compute_hash()
        .map_err(|e| Problem::Malformed(e.to_string()))?;
    if hash != rec.hash {
        return Err(Problem::HashMismatch);
    }
    match rec.line() {
        Ok(canon) if canon == line => {}
        Ok(_) => return Err(Problem::NotCanonical),
        Err(e) => return Err(Problem::Malformed(e.to_string())),
    }
    if rec.seq != line_no {
        return Err(Problem::SeqMismatch {
            expected: line_no,
            found: rec.seq,
        });
    }
    if rec.prev != prev_head {
        return Err(Problem::PrevMismatch);
    }
    Ok(rec)
}

fn open_read(path: &Path) -> Result<BufReader<File>, VerifyError> {
    File::open(path)
        .map(|f| BufReader::with_capacity(1 << 16, f))
        .map_err(|e| VerifyError::Io {
            path: path.to_path_buf(),
            source: e,
        })
}

/// Verify the whole log at `path`: the first bad line, or the number of records and the head.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let s = scan(open_read(path)?, path, None)?;
    if let Some((line, bytes)) = s.torn {
        return Err(VerifyError::Incomplete {
            line,
            bytes,
            intact: s.records,
        });
    }
    Ok(VerifyReport {
        records: s.records,
        head: s.head,
    })
}

/// [`verify`], and check that the chain contains a head recorded earlier (`anchor`, the hash of
/// a line as printed by `huiying audit verify`).
pub fn verify_anchored(path: &Path, anchor: &str) -> Result<VerifyReport, VerifyError> {
    let anchor = anchor.trim().to_ascii_lowercase();
    let s = scan(open_read(path)?, path, Some(&anchor))?;
    if let Some((line, bytes)) = s.torn {
        return Err(VerifyError::Incomplete {
            line,
            bytes,
            intact: s.records,
        });
    }
    if !s.anchor_seen && anchor != GENESIS {
        return Err(VerifyError::AnchorNotFound {
            anchor,
            records: s.records,
        });
    }
    Ok(VerifyReport {
        records: s.records,
        head: s.head,
    })
}

/// Every record of a verified log (for the API's audit trail), in order.
pub fn read_all(path: &Path) -> Result<Vec<Record>, VerifyError> {
    let mut r = open_read(path)?;
    let mut out = Vec::new();
    let mut head = GENESIS.to_string();
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(|e| VerifyError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if n == 0 {
            return Ok(out);
        }
        let line = out.len() as u64 + 1;
        if buf.last() != Some(&b'\n') {
            return Err(VerifyError::Incomplete {
                line,
                bytes: n as u64,
                intact: out.len() as u64,
            });
        }
        buf.pop();
        let rec = check_line(&buf, line, &head)
            .map_err(|problem| VerifyError::Broken { line, problem })?;
        head = line_hash(&buf);
        out.push(rec);
    }
}

/// `huiying audit verify FILE [--anchor HASH]`: prints `FILE: ok — N records, head H` on `out`
/// and returns 0; or prints the first problem as `FILE:LINE: …` on `err` and returns 1 for a
/// broken chain (tampering or corruption) or a missing anchor, 3 for an incomplete last line
/// only (a crash, not tampering), 2 when the file cannot be read.
pub fn verify_command(
    file: &Path,
    anchor: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let r = match anchor {
        Some(a) => verify_anchored(file, a),
        None => verify(file),
    };
    // Output errors (a closed pipe) cannot change the verdict.
    match r {
        Ok(rep) => {
            let _ = writeln!(
                out,
                "{}: ok — {} records, head {} (keep this hash elsewhere; check it later with \
                 --anchor)",
                file.display(),
                rep.records,
                rep.head
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "{}", e.located(file));
            match e {
                VerifyError::Io { .. } => 2,
                VerifyError::Incomplete { .. } => 3,
                _ => 1,
            }
        }
    }
}

/// The open log, ready to append. One per file (see the module docs).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// The local file (`None` when the log is shared through Redis).
    file: Option<File>,
    shared: Option<SharedSink>,
    seq: u64,
    head: String,
    /// Bytes of valid records in the file.
    file_len: u64,
    poisoned: bool,
    truncated: Option<u64>,
}

impl AuditLog {
    /// Open (or create) the log at `path`, verify its chain and recover the last `seq` and head.
    /// A torn last line (a crash during an append) is truncated away with a warning; any other
    /// break is [`AuditError::Broken`] and nothing will be appended.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |e| AuditError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        if !existed {
            // Make the new directory entry durable too.
            #[cfg(unix)]
            if let Some(d) = dir {
                File::open(d).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        let s =
            scan(BufReader::with_capacity(1 << 16, &file), path, None).map_err(|e| match e {
                VerifyError::Io { source, .. } => io(source),
                other => AuditError::Broken {
                    path: path.to_path_buf(),
                    source: other,
                },
            })?;
        let mut truncated = None;
        if let Some((line, bytes)) = s.torn {
            tracing::warn!(
                file = %path.display(),
                line,
                bytes,
                "Audit log: dropping an incomplete last line (a write torn by a crash; it was never acknowledged)."
            );
            file.set_len(s.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
            truncated = Some(bytes);
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Some(file),
            shared: None,
            seq: s.records,
            head: s.head,
            file_len: s.valid_len,
            poisoned: false,
            truncated,
        })
    }

    /// Append one record and make it durable (`fdatasync`) before returning it.
    pub fn append(
        &mut self,
        at: i64,
        actor: &str,
        action: AuditAction,
        notice: Option<&str>,
        detail: Value,
    ) -> Result<Record, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned(self.path.clone()));
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
        let mut rec = Record {
            seq: self.seq + 1,
            at,
            actor: actor.to_string(),
            action: action.as_str().to_string(),
            notice: notice.map(str::to_string),
            detail,
            prev: self.head.clone(),
            hash: String::new(),
        };
        if let Some(sh) = &self.shared {
            let rec = sh.append(rec)?;
            self.seq = rec.seq;
            self.head = line_hash(&rec.line()?);
            return Ok(rec);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(AuditError::Poisoned(self.path.clone()));
        };
        rec.hash = rec.compute_hash()?;
        let mut line = rec.line()?;
        let head = line_hash(&line);
        line.push(b'\n');
        if let Err(e) = file.write_all(&line) {
            // Roll back a partial write so the file stays a valid chain.
            if file.set_len(self.file_len).is_err() {
                self.poisoned = true;
            }
            return Err(AuditError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        if let Err(e) = file.sync_data() {
            // After a failed fsync the page cache state is unknown: stop here.
            self.poisoned = true;
            return Err(AuditError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        self.seq = rec.seq;
        self.head = head;
        self.file_len += line.len() as u64;
        Ok(rec)
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

    /// Bytes of a torn last line that [`AuditLog::open`] dropped, if it did.
    pub fn truncated_on_open(&self) -> Option<u64> {
        self.truncated
    }

    /// The log of namespace `ns` shared by a cluster through Redis: one chain, appended under a
    /// cluster-wide lock (see [`SharedSink`]). `huiying audit export` writes it out as a file
    /// that `huiying audit verify` checks.
    pub fn shared(
        db: std::sync::Arc<crate::respond::redis::Blocking>,
        ns: &str,
    ) -> Result<AuditLog, AuditError> {
        let sh = SharedSink {
            db,
            tag: format!("{{{ns}:audit}}"),
        };
        let (seq, head) = sh.head()?;
        Ok(AuditLog {
            path: PathBuf::from(format!("redis:{ns}:audit")),
            file: None,
            shared: Some(sh),
            seq,
            head,
            file_len: 0,
            poisoned: false,
            truncated: None,
        })
    }
}

/// The audit chain in Redis: list `{NS:audit}:log` (one line per record, as in the file), hash
/// `{NS:audit}:head` (`seq`, `head`), lock `{NS:audit}:lock`. An append takes the lock, reads
/// the head, and pushes the line and the new head in one `MULTI`, so the instances of a cluster
/// write one unbroken chain.
#[derive(Debug)]
struct SharedSink {
    db: std::sync::Arc<crate::respond::redis::Blocking>,
    tag: String,
}

fn shared_err(e: redis::RedisError) -> AuditError {
    AuditError::Io {
        path: PathBuf::from("redis"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl SharedSink {
    fn head(&self) -> Result<(u64, String), AuditError> {
        let (seq, head): (Option<u64>, Option<String>) = self
            .db
            .run(|c| {
                redis::cmd("HMGET")
                    .arg(format!("{}:head", self.tag))
                    .arg("seq")
                    .arg("head")
                    .query(c)
            })
            .map_err(shared_err)?;
        Ok((
            seq.unwrap_or(0),
            head.unwrap_or_else(|| GENESIS.to_string()),
        ))
    }

    fn append(&self, mut rec: Record) -> Result<Record, AuditError> {
        let _lock = crate::respond::redis::RedisLock::acquire(
            &self.db,
            &format!("{}:lock", self.tag),
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(5),
        )
        .map_err(shared_err)?
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
            .map_err(shared_err)?;
        Ok(rec)
    }
}

/// `huiying audit export URL --namespace NS`: write the shared log (Redis) to `out` as the same
/// JSON Lines as the file, for `huiying audit verify`. Returns the number of records.
pub fn export_shared(
    db: &crate::respond::redis::Blocking,
    ns: &str,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let key = format!("{{{ns}:audit}}:log");
    let len: u64 = db
        .run(|c| redis::cmd("LLEN").arg(&key).query(c))
        .map_err(shared_err)?;
    let mut n = 0u64;
    while n < len {
        let end = (n + 1000).min(len) - 1;
        let lines: Vec<Vec<u8>> = db
            .run(|c| redis::cmd("LRANGE").arg(&key).arg(n).arg(end).query(c))
            .map_err(shared_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("audit.jsonl");
        (d, p)
    }

    fn write_n(p: &Path, n: u64) -> AuditLog {
        let mut log = AuditLog::open(p).expect("open");
        for i in 0..n {
            log.append(
                1_000 + i as i64,
                "op:li",
                AuditAction::Approve,
                Some("n-1"),
                json!({"i": i, "b": {"z": 1, "a": [1, "二"]}}),
            )
            .expect("append");
        }
        log
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .expect("read")
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(p: &Path, l: &[String]) {
        let mut s = l.join("\n");
        s.push('\n');
        std::fs::write(p, s).expect("write");
    }

    #[test]
    fn appends_chain_and_reopen_continues() {
        let (_d, p) = tmp();
        let log = write_n(&p, 3);
        assert_eq!(log.len(), 3);
        let head = log.head().to_string();
        drop(log);
        let mut log = AuditLog::open(&p).expect("reopen");
        assert_eq!(log.len(), 3);
        assert_eq!(log.head(), head);
        let r = log
            .append(5_000, "system", AuditAction::Pause, None, Value::Null)
            .expect("append");
        assert_eq!(r.seq, 4);
        assert_eq!(r.prev, head);
        assert_eq!(r.detail, json!({}));
        let rep = verify(&p).expect("verifies");
        assert_eq!(rep.records, 4);
        assert_eq!(rep.head, log.head());
        let all = read_all(&p).expect("read_all");
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].prev, GENESIS);
        assert_eq!(all[3], r);
    }

    #[test]
    fn first_record_shape() {
        let (_d, p) = tmp();
        let mut log = AuditLog::open(&p).expect("open");
        let r = log
            .append(
                7,
                "op:wang",
                AuditAction::Draft,
                Some("n-9"),
                json!({"b": 2, "a": 1}),
            )
            .expect("append");
        let l = lines(&p);
        assert_eq!(l.len(), 1);
        assert!(
            l[0].starts_with(
                r#"{"seq":1,"at":7,"actor":"op:wang","action":"draft","notice":"n-9","detail":{"a":1,"b":2},"prev":"0000"#
            ),
            "{}",
            l[0]
        );
        assert!(l[0].ends_with(&format!(r#","hash":"{}"}}"#, r.hash)));
    }

    #[test]
    fn canonical_sorts_nested_keys() {
        let mut out = Vec::new();
        write_canonical(
            &json!({"b": {"y": 1, "x": [ {"d":1,"c":2} ]}, "a": null}),
            &mut out,
        )
        .expect("canonical");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"a":null,"b":{"x":[{"c":2,"d":1}],"y":1}}"#
        );
    }

    #[test]
    fn edited_field_is_detected_at_its_line() {
        let (_d, p) = tmp();
        drop(write_n(&p, 5));
        let mut l = lines(&p);
        l[2] = l[2].replace("\"actor\":\"op:li\"", "\"actor\":\"op:xx\"");
        write_lines(&p, &l);
        let e = verify(&p).expect_err("tampered");
        assert_eq!(e.line(), Some(3));
        assert!(e.is_tampering());
        assert!(matches!(
            e,
            VerifyError::Broken {
                problem: Problem::HashMismatch,
                ..
            }
        ));
        // And the log refuses to append.
        assert!(matches!(AuditLog::open(&p), Err(AuditError::Broken { .. })));
    }

    #[test]
    fn rehashed_edit_breaks_the_next_line() {
        let (_d, p) = tmp();
        drop(write_n(&p, 4));
        let mut l = lines(&p);
        let mut r: Record = serde_json::from_str(&l[1]).expect("record");
        r.actor = "op:mallory".into();
        r.hash = r.compute_hash().expect("hash");
        l[1] = String::from_utf8(r.line().expect("line")).expect("utf-8");
        write_lines(&p, &l);
        let e = verify(&p).expect_err("tampered");
        assert_eq!(e.line(), Some(3));
        assert!(matches!(
            e,
            VerifyError::Broken {
                problem: Problem::PrevMismatch,
                ..
            }
        ));
    }

    #[test]
    fn deleted_and_swapped_lines() {
        let (_d, p) = tmp();
        drop(write_n(&p, 5));
        let orig = lines(&p);
        let mut l = orig.clone();
        l.remove(1);
        write_lines(&p, &l);
        let e = verify(&p).expect_err("deleted");
        assert_eq!(e.line(), Some(2));
        assert!(
            matches!(
                e,
                VerifyError::Broken {
                    problem: Problem::SeqMismatch {
                        expected: 2,
                        found: 3
                    },
                    ..
                }
            ),
            "{e}"
        );
        let mut l = orig.clone();
        l.swap(2, 3);
        write_lines(&p, &l);
        let e = verify(&p).expect_err("swapped");
        assert_eq!(e.line(), Some(3));
        assert!(e.is_tampering());
    }

    #[test]
    fn extra_field_whitespace_and_garbage() {
        let (_d, p) = tmp();
        drop(write_n(&p, 2));
        let orig = lines(&p);
        let mut l = orig.clone();
        l[1] = l[1].replacen('{', "{\"extra\":1,", 1);
        write_lines(&p, &l);
        let e = verify(&p).expect_err("extra field");
        assert!(matches!(
            e,
            VerifyError::Broken {
                line: 2,
                problem: Problem::Malformed(_)
            }
        ));
        let mut l = orig.clone();
        l[1] = l[1].replacen(",\"at\"", ", \"at\"", 1);
        write_lines(&p, &l);
        let e = verify(&p).expect_err("spacing");
        assert!(matches!(
            e,
            VerifyError::Broken {
                line: 2,
                problem: Problem::NotCanonical
            }
        ));
        let mut l = orig;
        l.insert(1, String::new());
        write_lines(&p, &l);
        let e = verify(&p).expect_err("empty line");
        assert!(matches!(
            e,
            VerifyError::Broken {
                line: 2,
                problem: Problem::EmptyLine
            }
        ));
    }

    #[test]
    fn torn_last_line_is_distinct_and_open_truncates_it() {
        let (_d, p) = tmp();
        drop(write_n(&p, 3));
        let good = std::fs::read(&p).expect("read");
        let mut torn = good.clone();
        torn.extend_from_slice(b"{\"seq\":4,\"at\":12");
        std::fs::write(&p, &torn).expect("write");
        let e = verify(&p).expect_err("torn");
        assert!(!e.is_tampering());
        assert!(
            matches!(
                e,
                VerifyError::Incomplete {
                    line: 4,
                    bytes: 16,
                    intact: 3
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("incomplete last line"));
        let mut log = AuditLog::open(&p).expect("open repairs");
        assert_eq!(log.truncated_on_open(), Some(16));
        assert_eq!(log.len(), 3);
        assert_eq!(std::fs::read(&p).expect("read"), good);
        log.append(1, "system", AuditAction::Resume, None, json!({}))
            .expect("append after repair");
        assert_eq!(verify(&p).expect("ok").records, 4);
    }

    #[test]
    fn anchors() {
        let (_d, p) = tmp();
        let log = write_n(&p, 3);
        let anchor = log.head().to_string();
        drop(log);
        let mut log = AuditLog::open(&p).expect("open");
        log.append(9, "op:li", AuditAction::Reject, Some("n-2"), json!({}))
            .expect("append");
        drop(log);
        assert_eq!(verify_anchored(&p, &anchor).expect("anchored").records, 4);
        // Rewrite the whole file from scratch with different content: the chain verifies, the
        // anchor does not.
        std::fs::remove_file(&p).expect("rm");
        let mut log = AuditLog::open(&p).expect("open");
        for _ in 0..4 {
            log.append(1, "op:mallory", AuditAction::Approve, None, json!({}))
                .expect("append");
        }
        drop(log);
        assert!(verify(&p).is_ok());
        let e = verify_anchored(&p, &anchor).expect_err("rewritten");
        assert!(matches!(e, VerifyError::AnchorNotFound { records: 4, .. }));
    }

    #[test]
    fn second_writer_is_refused_and_bad_input_rejected() {
        let (_d, p) = tmp();
        let mut log = AuditLog::open(&p).expect("open");
        assert!(matches!(AuditLog::open(&p), Err(AuditError::Locked(_))));
        assert!(matches!(
            log.append(1, " ", AuditAction::Edit, None, json!({})),
            Err(AuditError::Invalid(_))
        ));
        assert!(matches!(
            log.append(1, "a", AuditAction::Edit, None, json!([1])),
            Err(AuditError::Invalid(_))
        ));
        let r = log
            .append(
                1,
                "a",
                AuditAction::Other("recover_uncertain".into()),
                None,
                json!({}),
            )
            .expect("custom action");
        assert_eq!(r.action, "recover_uncertain");
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn empty_log_verifies() {
        let (_d, p) = tmp();
        drop(AuditLog::open(&p).expect("open"));
        let r = verify(&p).expect("ok");
        assert_eq!(r.records, 0);
        assert_eq!(r.head, GENESIS);
        assert!(matches!(
            verify(&p.with_extension("missing")),
            Err(VerifyError::Io { .. })
        ));
    }
}
