//! A record: its fields, its canonical bytes and its hash.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

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
pub(super) fn write_canonical(v: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
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

/// Hex SHA-256 of a line (without its newline): the `prev` of the next record.
pub(super) fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}
