//! The engine's input: [`Item`] (a mention, raw or parsed, a tick of event time, deletions,
//! fleet-wide window counts, operator changes) and [`Ingest`], the sending end of the bounded
//! ingest queue that the feeds, `POST /api/mentions` and the Redis sync share.

use crate::incidents::coord::FleetCount;
use crate::incidents::Control;
use crate::normalize::Mention;
use std::time::Instant;

/// One unit of input.
#[derive(Debug)]
pub enum Item {
    /// Raw JSON lines (replay), a batch of them in one buffer; parsed by the workers.
    Lines(Lines),
    /// An already parsed mention (websocket, HTTP, demo), with its arrival instant.
    Parsed(Box<Mention>, Instant),
    /// Live mode: event time advances to this (ms) even if no mention arrives.
    Tick(i64),
    /// Mentions deleted at the source (by id).
    Delete(Vec<String>),
    /// Distinct authors per emergency key over every instance (from the Redis sync task).
    Fleet(Vec<FleetCount>),
    /// An operator's change to incident state (console, API).
    Control(Control),
}

/// Lines of a JSON Lines file read in one buffer (a batch's lines cost one allocation, not one
/// each, and are copied once, from the reader's buffer).
#[derive(Debug, Default)]
pub struct Lines {
    bytes: Vec<u8>,
    /// Each line's number in the file (1-based) and where it ends in `bytes`.
    ends: Vec<(u64, usize)>,
}

impl Lines {
    /// Empty, with room for `lines` lines of `bytes` bytes in all.
    pub fn with_capacity(lines: usize, bytes: usize) -> Self {
        Lines {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(lines),
        }
    }

    /// Append line number `line` by reading up to and including the next `\n` of `r` (which
    /// is dropped, with a `\r` before it); `Ok(false)` at the end of `r`. A line of nothing but
    /// white space is read and not kept.
    pub fn read_line(&mut self, r: &mut impl std::io::BufRead, line: u64) -> std::io::Result<bool> {
        let start = self.bytes.len();
        if r.read_until(b'\n', &mut self.bytes)? == 0 {
            return Ok(false);
        }
        while self.bytes.len() > start && matches!(self.bytes.last(), Some(b'\n' | b'\r')) {
            self.bytes.pop();
        }
        if self.bytes[start..].iter().all(|b| b.is_ascii_whitespace()) {
            self.bytes.truncate(start);
        } else {
            self.ends.push((line, self.bytes.len()));
        }
        Ok(true)
    }

    /// The last line kept, if any.
    pub fn last(&self) -> Option<&[u8]> {
        let (_, end) = *self.ends.last()?;
        let start = self.ends.len().checked_sub(2).map_or(0, |i| self.ends[i].1);
        Some(&self.bytes[start..end])
    }

    /// The last line taken out into a batch of its own.
    pub fn split_off_last(&mut self) -> Lines {
        let Some((line, end)) = self.ends.pop() else {
            return Lines::default();
        };
        let start = self.ends.last().map_or(0, |&(_, e)| e);
        Lines {
            bytes: self.bytes.split_off(start),
            ends: vec![(line, end - start)],
        }
    }

    /// Lines kept.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no line is kept.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Each line's number and bytes (without the newline), in file order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(line, end)| {
            let b = &self.bytes[start..end];
            start = end;
            (line, b)
        })
    }
}

impl Item {
    /// The raw lines this item holds (none unless it is [`Item::Lines`]).
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        match self {
            Item::Lines(l) => Some(l),
            _ => None,
        }
        .into_iter()
        .flat_map(Lines::iter)
    }
}

/// Mentions in a batch of items (a batch of lines counts its lines).
pub fn mentions_in(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| match i {
            Item::Lines(l) => l.len(),
            Item::Parsed(..) => 1,
            _ => 0,
        })
        .sum()
}

/// The sending end of the ingest queue, with the feed's name for metrics.
#[derive(Clone)]
pub struct Ingest {
    /// Feed name (a metric label).
    pub feed: String,
    tx: tokio::sync::mpsc::Sender<Item>,
    live: bool,
    official: bool,
    platform_verified: bool,
}

impl Ingest {
    /// An ingest handle for `feed`. In live mode a timestamp from the future is clamped to now.
    pub fn new(feed: impl Into<String>, tx: tokio::sync::mpsc::Sender<Item>, live: bool) -> Self {
        Ingest {
            feed: feed.into(),
            tx,
            live,
            official: false,
            platform_verified: true,
        }
    }

    /// Mark every mention of this feed as official (`official = true` in its `[[feeds]]`
    /// section): what an office's opt-in automatic approval trusts.
    pub fn official(mut self, official: bool) -> Self {
        self.official = official;
        self
    }

    /// Whether the input's `author.verified` is the platform's word (feeds) or only a claim
    /// (`POST /api/mentions`: cleared, so an ingest token cannot make verified authors).
    pub fn platform_verified(mut self, yes: bool) -> Self {
        self.platform_verified = yes;
        self
    }

    /// Queue one mention, waiting while the queue is full. False once the pipeline is gone.
    pub async fn send(&self, mut m: Mention) -> bool {
        m.official = self.official;
        if !self.platform_verified {
            if let Some(a) = m.author.as_mut() {
                a.verified = false;
            }
        }
        if self.live {
            let now = chrono::Utc::now().timestamp_millis();
            if m.ts > now + 1_000 {
                m.ts = now;
            }
        }
        crate::metrics::global().accepted(&self.feed, 1);
        let item = Item::Parsed(Box::new(m), Instant::now());
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(item)) => {
                crate::metrics::global()
                    .backpressure
                    .with_label_values(&[&self.feed])
                    .inc();
                self.tx.send(item).await.is_ok()
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Tell the pipeline that mentions were deleted at the source.
    pub async fn delete(&self, ids: &[String]) -> bool {
        self.tx.send(Item::Delete(ids.to_vec())).await.is_ok()
    }

    /// Count a rejected input of this feed.
    pub fn rejected(&self, reason: &str) {
        crate::metrics::global().rejected(&self.feed, reason);
    }
}
