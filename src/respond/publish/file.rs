//! A file sink for drills: every post is one JSON line appended to a file.
//!
//! ```json
//! {"post_id":"file-1","idempotency_key":"n1:acc:post","account":"bj_fabu","action":"post","target":null,"text":"…","language":"zh","visibility":null,"ts":1780000000000}
//! ```
//!
//! **Guarantee: exactly once per idempotency key**, across restarts. On open the file is read and
//! its keys loaded into a set; a post whose key is already there returns the earlier `post_id`
//! without writing. A line is written with one `write` and `fdatasync`ed before `publish` returns,
//! so a post reported done survives a crash. A torn last line (a crash in the middle of a write,
//! so never reported done) is cut off on open; any other line that is not a record makes `open`
//! fail rather than risk a duplicate. One process writes a file at a time.

use super::{
    match_key, now_ms, ErrorKind, PostRequest, Posted, PublishError, Publisher, FIND_RECENT_SKEW_MS,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    post_id: String,
    idempotency_key: String,
    account: String,
    action: String,
    target: Option<String>,
    text: String,
    language: Option<String>,
    visibility: Option<String>,
    ts: i64,
}

struct State {
    file: File,
    /// Bytes of complete lines.
    len: u64,
    /// Key → post id.
    by_key: HashMap<String, String>,
    /// (time, match key of the text, post id), in file order.
    recent: Vec<(i64, String, String)>,
}

/// Appends posts to a JSON Lines file, idempotent by key. Clones share the file (a drill sink
/// for every account).
#[derive(Clone)]
pub struct FilePublisher {
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FilePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePublisher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave a half-updated set: the file and the set are
    // updated after the write succeeded.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FilePublisher {
    /// Open (or create) `path`, loading the keys already in it.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<FilePublisher> {
        let path = path.as_ref().to_path_buf();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                bytes = bytes.len() - complete,
                "File sink: cutting off a torn last line (a write interrupted by a crash)."
            );
            file.set_len(complete as u64)?;
            file.sync_data()?;
        }
        let mut by_key = HashMap::new();
        let mut recent = Vec::new();
        for (n, raw) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line: Line = serde_json::from_slice(raw).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {}: not a post record: {e}", path.display(), n + 1),
                )
            })?;
            recent.push((line.ts, match_key(&line.text, false), line.post_id.clone()));
            by_key.entry(line.idempotency_key).or_insert(line.post_id);
        }
        Ok(FilePublisher {
            path,
            state: Arc::new(Mutex::new(State {
                file,
                len: complete as u64,
                by_key,
                recent,
            })),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Posts in the file.
    pub fn len(&self) -> usize {
        lock(&self.state).recent.len()
    }

    /// Whether the file has no post.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn posted(post_id: String) -> Posted {
    Posted {
        post_id,
        url: None,
        rate_remaining: None,
        rate_reset_at: None,
    }
}

/// Append one post (blocking; runs on the blocking pool).
fn append(state: &Mutex<State>, req: &PostRequest) -> Result<Posted, PublishError> {
    let mut st = lock(state);
    if let Some(id) = st.by_key.get(&req.idempotency_key) {
        return Ok(posted(id.clone()));
    }
    let ts = now_ms();
    let line = Line {
        post_id: format!("file-{}", st.recent.len() + 1),
        idempotency_key: req.idempotency_key.clone(),
        account: req.account_handle.clone(),
        action: req.action.name().to_string(),
        target: req.action.target().map(str::to_string),
        text: req.text.clone(),
        language: req.language.clone(),
        visibility: req.visibility.clone(),
        ts,
    };
    let mut bytes = serde_json::to_vec(&line)
        .map_err(|e| PublishError::new(ErrorKind::Rejected, format!("file sink: {e}")))?;
    bytes.push(b'\n');
    let written = st.file.write_all(&bytes).and_then(|()| st.file.sync_data());
    if let Err(e) = written {
        // Cut off whatever part of the line reached the file, so the next line starts clean.
        let len = st.len;
        let _ = st.file.set_len(len);
        return Err(PublishError::new(
            ErrorKind::Server,
            format!("file sink {}: {e}", line.post_id),
        ));
    }
    st.len += bytes.len() as u64;
    st.recent
        .push((ts, match_key(&line.text, false), line.post_id.clone()));
    st.by_key.insert(line.idempotency_key, line.post_id.clone());
    Ok(posted(line.post_id))
}

impl Publisher for FilePublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        let state = Arc::clone(&self.state);
        let req = req.clone();
        tokio::task::spawn_blocking(move || append(&state, &req))
            .await
            .map_err(|e| {
                PublishError::new(ErrorKind::Uncertain, format!("file sink task failed: {e}"))
            })?
    }

    async fn find_recent(
        &self,
        text: &str,
        _in_reply_to: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<Posted>, PublishError> {
        let want = match_key(text, false);
        let floor = since_ms.saturating_sub(FIND_RECENT_SKEW_MS);
        let st = lock(&self.state);
        Ok(st
            .recent
            .iter()
            .rev()
            .take_while(|(ts, _, _)| *ts >= floor)
            .find(|(_, key, _)| *key == want)
            .map(|(_, _, id)| posted(id.clone())))
    }

    fn platform(&self) -> &'static str {
        "file"
    }

    fn idempotency_window(&self) -> Option<std::time::Duration> {
        None
    }
}
