//! The log as a JSON Lines file: an exclusive advisory lock (one writer), a torn last line
//! truncated away on open, every append written whole and `fdatasync`ed before it returns.

use super::verify::{read_file_since, scan, Scan, Tail, VerifyError};
use super::{AuditError, Record, Sink};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

/// The open, locked file.
#[derive(Debug)]
pub(super) struct FileSink {
    path: PathBuf,
    file: File,
    /// Bytes of valid records in the file.
    file_len: u64,
    poisoned: bool,
}

impl FileSink {
    /// Open (or create) and lock the file, verify its chain, and drop a torn last line (whose
    /// length is returned).
    pub(super) fn open(path: &Path) -> Result<(FileSink, Scan, Option<u64>), AuditError> {
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
        let sink = FileSink {
            path: path.to_path_buf(),
            file,
            file_len: s.valid_len,
            poisoned: false,
        };
        Ok((sink, s, truncated))
    }
}

impl Sink for FileSink {
    fn read_since(&self, t: &mut Tail) -> Result<(), VerifyError> {
        read_file_since(&self.path, t)
    }

    fn check(&self) -> Result<(), AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned(self.path.clone()));
        }
        Ok(())
    }

    fn append(&mut self, mut rec: Record) -> Result<Record, AuditError> {
        rec.hash = rec.compute_hash()?;
        let mut line = rec.line()?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            // Roll back a partial write so the file stays a valid chain.
            if self.file.set_len(self.file_len).is_err() {
                self.poisoned = true;
            }
            return Err(AuditError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the page cache state is unknown: stop here.
            self.poisoned = true;
            return Err(AuditError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        self.file_len += line.len() as u64;
        Ok(rec)
    }
}
