//! JSON Lines files: read line by line (bounded memory), as raw items for the pipeline's
//! workers to parse, optionally paced to event time.

use crate::ingest::{Item, Lines};
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

/// Read `r` in batches of up to `batch` lines and hand each batch to `submit` (one
/// [`Item::Lines`]), which returns false to stop. Returns the number of lines read.
pub fn read_batches<R: BufRead>(
    mut r: R,
    batch: usize,
    speed: Speed,
    mut submit: impl FnMut(Vec<Item>) -> bool,
) -> std::io::Result<u64> {
    let batch = batch.max(1);
    let mut line_no = 0u64;
    // A batch's lines are read straight into one buffer, sized as the last batch was (up to
    // 1 MiB: a batch holding one huge line does not size the next).
    let mut lines = Lines::with_capacity(batch, 0);
    let mut pace: Option<(i64, Instant)> = None;
    loop {
        let kept = lines.len();
        if !lines.read_line(&mut r, line_no + 1)? {
            break;
        }
        line_no += 1;
        if lines.len() == kept {
            continue;
        }
        if let Speed::Times(x) = speed {
            if let Some(ts) = lines.last().and_then(peek_ts) {
                let (t0, w0) = *pace.get_or_insert((ts, Instant::now()));
                let due = w0 + Duration::from_secs_f64(((ts - t0).max(0) as f64 / 1000.0) / x);
                let now = Instant::now();
                if due > now {
                    // What came before this line goes now; this one waits for its time.
                    if kept > 0 {
                        let this = lines.split_off_last();
                        if !submit(vec![Item::Lines(std::mem::replace(&mut lines, this))]) {
                            return Ok(line_no);
                        }
                    }
                    std::thread::sleep(due - now);
                }
            }
        }
        if lines.len() >= batch {
            let fresh = Lines::with_capacity(batch, lines.bytes().min(1 << 20));
            if !submit(vec![Item::Lines(std::mem::replace(&mut lines, fresh))]) {
                return Ok(line_no);
            }
        }
    }
    if !lines.is_empty() {
        submit(vec![Item::Lines(lines)]);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every batch's lines, as (line number, text), and each batch's size.
    fn read(input: &str, batch: usize, speed: Speed) -> (Vec<(u64, String)>, Vec<usize>) {
        let (mut lines, mut sizes) = (Vec::new(), Vec::new());
        let n = read_batches(std::io::Cursor::new(input), batch, speed, |items| {
            assert_eq!(items.len(), 1, "one buffer of lines per batch");
            sizes.push(items.iter().flat_map(Item::lines).count());
            for (line, bytes) in items.iter().flat_map(Item::lines) {
                lines.push((line, String::from_utf8(bytes.to_vec()).expect("utf-8")));
            }
            true
        })
        .expect("read");
        assert_eq!(n as usize, input.lines().count(), "lines read");
        (lines, sizes)
    }

    #[test]
    fn lines_keep_their_numbers_without_line_ends_or_blank_lines() {
        let input =
            "{\"a\":1}\r\n\n   \t\n{\"b\":\"两字\"}\n\r\n{\"c\":3}\n{\"d\":4}\r\n\n{\"e\":5}";
        let (lines, sizes) = read(input, 2, Speed::Max);
        let want: Vec<(u64, String)> = [
            (1, "{\"a\":1}"),
            (4, "{\"b\":\"两字\"}"),
            (6, "{\"c\":3}"),
            (7, "{\"d\":4}"),
            (9, "{\"e\":5}"),
        ]
        .iter()
        .map(|(n, t)| (*n, t.to_string()))
        .collect();
        assert_eq!(lines, want);
        assert_eq!(sizes, vec![2, 2, 1], "batches of two, the rest last");
        // Nothing but blank lines: no batch at all.
        let (lines, sizes) = read("\n \n\r\n", 2, Speed::Max);
        assert!(lines.is_empty() && sizes.is_empty());
    }

    #[test]
    fn a_paced_replay_sends_what_is_due_before_it_waits_and_loses_no_line() {
        // The third line is due 50 ms of event time after the first: at 1× the reader waits
        // for it, having sent the two before it; every line arrives once, in order.
        let input = "{\"id\":\"1\",\"ts\":1000}\n{\"id\":\"2\",\"ts\":1000}\n{\"id\":\"3\",\"ts\":1050}\n{\"id\":\"4\",\"ts\":1050}\n";
        let t0 = Instant::now();
        let (lines, sizes) = read(input, 10, Speed::Times(1.0));
        assert!(
            t0.elapsed() >= Duration::from_millis(50),
            "paced to event time"
        );
        let ids: Vec<u64> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert_eq!(lines[2].1, "{\"id\":\"3\",\"ts\":1050}");
        assert_eq!(sizes.iter().sum::<usize>(), 4);
    }
}
