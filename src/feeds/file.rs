//! A JSON Lines file read once, line by line, as a live feed (drills): each line parsed as a
//! mention and queued; bad lines are counted as rejects of the feed and skipped.

use crate::ingest::Ingest;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

/// Read `path` to its end (or until `cancel`), queueing every mention.
pub async fn run(name: String, path: String, ingest: Ingest, cancel: CancellationToken) {
    let file = match tokio::fs::File::open(&path).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(feed = %name, error = %e, "Cannot open the feed file.");
            return;
        }
    };
    let mut lines = tokio::io::BufReader::new(file).lines();
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => break,
            l = lines.next_line() => l,
        };
        match line {
            Ok(Some(l)) if l.trim().is_empty() => {}
            Ok(Some(l)) => match crate::normalize::parse_mention(l.as_bytes()) {
                Ok(m) => {
                    if !ingest.send(m).await {
                        break;
                    }
                }
                Err(e) => ingest.rejected(e.as_str()),
            },
            Ok(None) => break,
            Err(e) => {
                tracing::error!(feed = %name, error = %e, "Feed file read error.");
                ingest.rejected("invalid_utf8");
                break;
            }
        }
    }
}
