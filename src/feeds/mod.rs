//! Feeds: where mentions come from. Each feed is a tokio task that parses what it receives and
//! pushes [`Mention`]s into the one bounded ingest queue; when the queue is full the feed waits
//! (back-pressure reaches its socket), and nothing is dropped silently.

pub mod config;
pub mod demo;
pub mod file;
pub mod health;
pub mod http;
pub mod jetstream;
pub mod jsonl;
pub mod mastodon;
pub mod websocket;
pub mod weibo;

pub use config::{FeedConfig, FeedKind};

use crate::ingest::{Ingest, Item};
use crate::normalize::Mention;
use crate::store::Store;
use std::sync::Arc;

/// The stage: one task per configured feed, the demo drill when asked, and the tick that moves
/// event time on when every feed is quiet.
pub fn start(
    feeds: &[FeedConfig],
    demo: bool,
    cx: &crate::stage::Context,
) -> Result<crate::stage::Handle, String> {
    let mut tasks = Vec::new();
    for f in feeds {
        let ingest = Ingest::new(f.name.clone(), cx.ingest.clone(), true).official(f.official);
        tasks.push(spawn(f.clone(), ingest, cx)?);
    }
    if demo {
        let ingest = Ingest::new("demo", cx.ingest.clone(), true);
        tasks.push(tokio::spawn(demo::run(ingest, cx.cancel.clone())));
    }
    let (tx, c) = (cx.ingest.clone(), cx.cancel.clone());
    tasks.push(tokio::spawn(async move {
        let mut iv = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = c.cancelled() => break,
                _ = iv.tick() => {
                    let now = chrono::Utc::now().timestamp_millis();
                    if tx.send(Item::Tick(now)).await.is_err() { break; }
                }
            }
        }
    }));
    Ok(crate::stage::Handle::new("feeds", tasks))
}

fn spawn(
    f: FeedConfig,
    ingest: Ingest,
    cx: &crate::stage::Context,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let token = f.token().map_err(|e| e.to_string())?;
    let health = cx.feeds.register(&f.name, f.kind.as_str());
    let cancel = cx.cancel.clone();
    Ok(match f.kind {
        FeedKind::Generic => tokio::spawn(websocket::run(
            websocket::Generic { url: f.url.clone() },
            token,
            ingest,
            health,
            f.ws_options(),
            cancel,
        )),
        FeedKind::Mastodon => tokio::spawn(mastodon::run(
            f,
            token,
            cx.store.clone(),
            ingest,
            health,
            cancel,
        )),
        FeedKind::Jetstream => {
            tokio::spawn(jetstream::run(f, cx.store.clone(), ingest, health, cancel))
        }
        FeedKind::Weibo => tokio::spawn(weibo::run(
            f,
            token,
            cx.store.clone(),
            ingest,
            health,
            Arc::new(crate::clock::SystemClock),
            cancel,
        )),
        FeedKind::File => tokio::spawn(file::run(f.name, f.url, ingest, cancel)),
    })
}

/// A feed's stored resume state (read off the async threads). A failure is logged and reads as
/// none: the feed then starts without it.
pub(crate) async fn load_state(store: &Arc<dyn Store>, feed: &str) -> Option<Vec<u8>> {
    let (st, name) = (store.clone(), feed.to_string());
    match tokio::task::spawn_blocking(move || st.get_feed_state(&name)).await {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => {
            tracing::warn!(feed = %feed, error = %e, "Cannot read the feed's stored state; starting without it.");
            None
        }
        Err(e) => {
            tracing::warn!(feed = %feed, error = %e, "Cannot read the feed's stored state; starting without it.");
            None
        }
    }
}

/// Write a feed's resume state; a failure is logged (the next write may succeed).
pub(crate) async fn save_state(store: Arc<dyn Store>, feed: String, state: Vec<u8>) -> bool {
    let name = feed.clone();
    match tokio::task::spawn_blocking(move || store.put_feed_state(&name, &state)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(feed = %feed, error = %e, "Cannot store the feed's state.");
            false
        }
        Err(e) => {
            tracing::warn!(feed = %feed, error = %e, "Cannot store the feed's state.");
            false
        }
    }
}

/// Mentions parsed from one payload, and the rejected elements with their index.
pub type Payload = (Vec<Mention>, Vec<(usize, crate::normalize::RejectReason)>);

/// Parse an HTTP body: one mention object or an array of them.
/// Returns the mentions and the reasons of the rejected elements (with their index).
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, crate::normalize::RejectReason> {
    use crate::normalize::{parse_mention, RejectReason};
    if is_array(bytes) {
        let s =
            std::str::from_utf8(bytes).map_err(|e| RejectReason::InvalidUtf8(e.valid_up_to()))?;
        parse_array(s)
    } else {
        parse_mention(bytes).map(|m| (vec![m], Vec::new()))
    }
}

/// [`parse_payload`] of text already known to be UTF-8: a websocket text frame, which the
/// websocket layer has validated (validating it again took a third of the feed task's time at
/// 150k mentions/s).
pub fn parse_payload_str(s: &str) -> Result<Payload, crate::normalize::RejectReason> {
    if is_array(s.as_bytes()) {
        parse_array(s)
    } else {
        crate::normalize::mention::parse_mention_str(s).map(|m| (vec![m], Vec::new()))
    }
}

fn is_array(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

fn parse_array(s: &str) -> Result<Payload, crate::normalize::RejectReason> {
    use crate::normalize::mention::parse_mention_str;
    use crate::normalize::RejectReason;
    // Each element kept as its own JSON text (borrowed, no tree of values) and parsed straight
    // into a mention, as a line is.
    let arr: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(s).map_err(|e| RejectReason::InvalidJson(e.to_string()))?;
    let mut ok = Vec::with_capacity(arr.len());
    let mut bad = Vec::new();
    for (i, v) in arr.iter().enumerate() {
        match parse_mention_str(v.get()) {
            Ok(m) => ok.push(m),
            Err(e) => bad.push((i, e)),
        }
    }
    Ok((ok, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frames_text_reads_as_the_same_bytes_posted() {
        let long = format!(
            r#"{{"id":"1","ts":5,"text":"{}"}}"#,
            "长".repeat(crate::normalize::mention::MAX_LINE_BYTES)
        );
        for s in [
            r#"{"id":"1","ts":5,"text":"暴雨"}"#,
            r#"  [{"id":"1","ts":5,"text":"x"},{"id":"2"},7]"#,
            r#"[]"#,
            "{oops",
            "[{oops",
            "",
            long.as_str(),
        ] {
            let (a, b) = (parse_payload_str(s), parse_payload(s.as_bytes()));
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "{}",
                s.chars().take(30).collect::<String>()
            );
        }
        // Bytes that are not UTF-8 are refused with their offset (only the bytes path sees them).
        assert!(matches!(
            parse_payload(b"[\xff]"),
            Err(crate::normalize::RejectReason::InvalidUtf8(1))
        ));
    }
}
