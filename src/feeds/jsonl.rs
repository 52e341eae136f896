//! JSON Lines files: read line by line (bounded memory), as raw items for the pipeline's
//! workers to parse, optionally paced to event time.

use crate::ingest::Item;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline takes it.
    Max,
    /// N times real time, paced by the mentions' event times.
    Times(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() => Ok(Speed::Times(x)),
            _ => Err(format!(
                "speed must be `max` or a positive number, not {s:?}"
            )),
        }
    }
}

/// Read `r` in batches of up to `batch` lines and hand each batch to `submit`, which returns
/// false to stop. Returns the number of lines read.
pub fn read_batches<R: BufRead>(
    mut r: R,
    batch: usize,
    speed: Speed,
    mut submit: impl FnMut(Vec<Item>) -> bool,
) -> std::io::Result<u64> {
    let mut line_no = 0u64;
    let mut items = Vec::with_capacity(batch);
    let mut pace: Option<(i64, Instant)> = None;
    // One scratch buffer for every line; each line is then copied once into an allocation of
    // its exact size (reading straight into a fresh `Vec` regrew it several times per line).
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if let Speed::Times(x) = speed {
            if let Some(ts) = peek_ts(&buf) {
                let (t0, w0) = *pace.get_or_insert((ts, Instant::now()));
                let due = w0 + Duration::from_secs_f64(((ts - t0).max(0) as f64 / 1000.0) / x);
                let now = Instant::now();
                if due > now {
                    if !items.is_empty() && !submit(std::mem::take(&mut items)) {
                        return Ok(line_no);
                    }
                    std::thread::sleep(due - now);
                }
            }
        }
        items.push(Item::Raw {
            line: line_no,
            bytes: buf.to_vec(),
        });
        if items.len() >= batch && !submit(std::mem::replace(&mut items, Vec::with_capacity(batch)))
        {
            return Ok(line_no);
        }
    }
    if !items.is_empty() {
        submit(items);
    }
    Ok(line_no)
}

/// The `ts` of a line, cheaply (only for pacing; the workers parse properly).
fn peek_ts(line: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct T {
        ts: Option<i64>,
        created_at: Option<String>,
    }
    let t: T = serde_json::from_slice(line).ok()?;
    t.ts.or_else(|| {
        t.created_at
            .and_then(|c| crate::normalize::mention::parse_time(&c))
    })
}
