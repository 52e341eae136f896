//! The hook through which several engine instances act as one fleet (see
//! `store::redis::shared`).
//!
//! The engine stays synchronous and owns its state. Two moments need the fleet: opening an
//! incident (rare: one round trip to agree on the id, so a burst seen by two instances opens
//! one incident) and counting an emergency mention or a mention of a followed emerging term
//! (frequent: only buffered here, merged in
//! Redis every ~100 ms by a task off the engine thread, whose answers come back as
//! [`crate::ingest::Item::Fleet`]). Without a coordinator (the embedded default and
//! `huiying replay`) the engine does exactly what it did alone.

/// A counted mention, as the engine hands it to the coordinator: of an emergency window, or of
/// a term the emerging detector follows.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// The shared key of the window: `em|{category}|{region code or -}` (emergency) or
    /// `eg|{term}` (emerging).
    pub key: &'a str,
    /// Event-time bucket index of the mention.
    pub bucket: i64,
    /// The engine's newest bucket index.
    pub head: i64,
    /// Buckets in the window.
    pub buckets: usize,
    /// Width of a bucket (ms).
    pub bucket_ms: i64,
    /// The author's stable hash.
    pub author: u64,
}

/// Distinct authors of one window key over the whole fleet, read from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCount {
    /// The shared key (`em|{category}|{region code or -}` or `eg|{term}`).
    pub key: String,
    /// The newest bucket index of the window that was counted.
    pub head: i64,
    /// Distinct authors in that window, every instance together.
    pub authors: u64,
}

/// What the engine asks of the fleet. Called on the engine thread only.
pub trait Coordinator: Send {
    /// Agree on the id of an incident about to open under `key`: the first instance's
    /// proposal wins and every later one adopts it. Must answer quickly (fall back to
    /// `proposed` when the fleet cannot be reached).
    fn claim_open(&mut self, key: &str, proposed: &str) -> String;
    /// The incident `id` under `key` closed here: the key may open a new incident later.
    fn release(&mut self, key: &str, id: &str);
    /// Count a mention in a fleet-wide window (buffered, never a round trip).
    fn record(&mut self, hit: Hit<'_>);
}

/// The shared key of an emergency window.
pub fn emergency_key(category: &str, region: Option<&str>) -> String {
    format!("em|{category}|{}", region.unwrap_or("-"))
}

/// The fleet-wide claim key of an emergency incident: `em|{group}|{region code or -}`. One
/// incident per group and place (see `rules/categories.toml`), so two instances opening
/// `flood` and `rainstorm` in one district agree on one id. An ungrouped category is its own
/// group: its claim key is its window key, as before groups existed.
pub fn incident_key(group: &str, region: Option<&str>) -> String {
    format!("em|{group}|{}", region.unwrap_or("-"))
}

/// Category and region code of an emergency key (the inverse of [`emergency_key`]).
pub fn parse_emergency_key(key: &str) -> Option<(&str, Option<&str>)> {
    let rest = key.strip_prefix("em|")?;
    let (cat, region) = rest.rsplit_once('|')?;
    Some((cat, (region != "-").then_some(region)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emergency_keys_round_trip() {
        for (c, r) in [("fire", Some("110108")), ("flood", None)] {
            let k = emergency_key(c, r);
            assert_eq!(parse_emergency_key(&k), Some((c, r)), "{k}");
        }
        assert_eq!(parse_emergency_key("ru|claim|x"), None);
    }
}
