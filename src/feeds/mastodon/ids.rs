//! Status ids: their order, the highest seen, and the mention ids recently delivered.

use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};

/// Recently delivered mention ids remembered, to not send one twice.
const RECENT_IDS: usize = 20_000;

/// Order two ids: numerically if both are decimal (Mastodon's ids), else as strings.
pub(super) fn id_cmp(a: &str, b: &str) -> Ordering {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if num(a) && num(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// Keep the larger id in `slot`.
pub(super) fn bump(slot: &mut Option<String>, id: &str) {
    if slot
        .as_deref()
        .is_none_or(|cur| id_cmp(id, cur) == Ordering::Greater)
    {
        *slot = Some(id.to_string());
    }
}

/// A bounded set of recently delivered mention ids (oldest forgotten first).
#[derive(Debug, Default)]
pub(super) struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    /// False if `id` is already in.
    pub(super) fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

/// The `id` of a JSON object, string or number.
pub(super) fn value_id(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = Recent::default();
        for i in 0..RECENT_IDS + 10 {
            assert!(r.insert(&i.to_string()));
        }
        assert!(!r.insert(&(RECENT_IDS + 9).to_string()));
        assert!(r.insert("0"), "the oldest ids are forgotten");
        assert!(r.set.len() <= RECENT_IDS);
    }
}
