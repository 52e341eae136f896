//! Reading a log back: checking every line and the chain, anchors, `huiying audit verify`.

use super::record::{line_hash, Record, GENESIS};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
    /// The log is shorter than what was already verified: records were removed or the log
    /// was replaced.
    #[error(
        "the log is shorter than the {verified} records already verified: records were removed \
         or the log was replaced"
    )]
    Shrunk {
        /// Records verified before.
        verified: u64,
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
            VerifyError::Broken { .. }
                | VerifyError::AnchorNotFound { .. }
                | VerifyError::Shrunk { .. }
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

/// State after reading a log from the start.
pub(super) struct Scan {
    pub(super) records: u64,
    pub(super) head: String,
    /// Bytes up to and including the last complete line's newline.
    pub(super) valid_len: u64,
    /// Set when the last line is torn: (line number, its length).
    pub(super) torn: Option<(u64, u64)>,
    anchor_seen: bool,
}

/// Read and check every line. A torn last line is returned in `Scan::torn`, not as an error.
pub(super) fn scan(
    r: impl BufRead,
    path: &Path,
    anchor: Option<&str>,
) -> Result<Scan, VerifyError> {
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

/// Most records [`super::AuditLog::tail`] returns, and keeps in memory.
pub const MAX_TAIL: usize = 1000;

/// The incremental check behind `/api/audit`: how far the log is verified (records, head,
/// bytes of the file) and the newest records, so that each call reads and checks only what was
/// appended since the last one. Records verified once are not read again: rewriting them is
/// found by `huiying audit verify`, and a log that shrank by [`VerifyError::Shrunk`].
#[derive(Debug)]
pub(super) struct Tail {
    pub(super) records: u64,
    head: String,
    /// Bytes of the file verified (unused for Redis, which reads by index).
    pub(super) offset: u64,
    recent: VecDeque<Record>,
    /// Records checked since the log was opened.
    checked: u64,
}

/// The newest records of a log, as [`super::AuditLog::tail`] returns them.
#[derive(Debug, Clone)]
pub struct TailView {
    /// Records in the log (all verified).
    pub total: u64,
    /// Records read and checked by this call (only the ones appended since the last).
    pub checked: u64,
    /// The newest records, newest first.
    pub records: Vec<Record>,
}

impl Tail {
    pub(super) fn new() -> Tail {
        Tail {
            records: 0,
            head: GENESIS.to_string(),
            offset: 0,
            recent: VecDeque::new(),
            checked: 0,
        }
    }

    /// Check the record after the verified ones (`bytes` of the file, newline included).
    pub(super) fn push(&mut self, line: &[u8], bytes: u64) -> Result<(), VerifyError> {
        let line_no = self.records + 1;
        let rec = check_line(line, line_no, &self.head).map_err(|problem| VerifyError::Broken {
            line: line_no,
            problem,
        })?;
        self.records = line_no;
        self.head = line_hash(line);
        self.offset += bytes;
        self.checked += 1;
        if self.recent.len() == MAX_TAIL {
            self.recent.pop_front();
        }
        self.recent.push_back(rec);
        Ok(())
    }

    pub(super) fn checked(&self) -> u64 {
        self.checked
    }

    /// The newest `limit` records (at most [`MAX_TAIL`]), newest first.
    pub(super) fn newest(&self, limit: usize) -> Vec<Record> {
        self.recent.iter().rev().take(limit).cloned().collect()
    }
}

/// Read and check the lines of the file at `path` after those `t` verified. A torn last line
/// (a crash's, dropped when the log is opened) is left for later.
pub(super) fn read_file_since(path: &Path, t: &mut Tail) -> Result<(), VerifyError> {
    let io = |e| VerifyError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = File::open(path).map_err(io)?;
    if f.metadata().map_err(io)?.len() < t.offset {
        return Err(VerifyError::Shrunk {
            verified: t.records,
        });
    }
    f.seek(SeekFrom::Start(t.offset)).map_err(io)?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(());
        }
        buf.pop();
        t.push(&buf, n as u64)?;
    }
}

/// Every record of a verified log, in order.
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
