//! Where each endpoint's polling stands: the newest id fetched (`since_id`) and, while a burst
//! larger than a page is being paged back, the walk down with `max_id`. Kept in the store as the
//! feed's state (JSON), so a restart goes on where it stopped: no item twice, none skipped.
//!
//! A poll asks for the items newer than `since`. A full page means there may be more between
//! `since` and the page's oldest item: the next request of that endpoint asks for the same
//! `since` with `max_id` just below that oldest item (Weibo's `max_id` is inclusive), and so on
//! until a page is not full. Only then does `since` move up to the newest id of the walk's first
//! page. Items newer than that wait for the next poll after the walk.

use super::api::Endpoint;
use serde::{Deserialize, Serialize};

/// One endpoint's position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every item up to this id has been fetched (none: nothing yet).
    #[serde(default)]
    pub since: Option<u64>,
    /// A walk down a burst in progress.
    #[serde(default)]
    pub walk: Option<Walk>,
}

/// Paging back through a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    /// The newest id of the walk's first page: `since` once the walk ends.
    pub top: u64,
    /// The `max_id` of the next page.
    pub next_max: u64,
}

/// What a page held, for moving the cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageSeen {
    /// The newest item id in the page (within the asked range).
    pub newest: Option<u64>,
    /// The oldest.
    pub oldest: Option<u64>,
    /// The page had as many items as asked for: there may be more below it.
    pub full: bool,
    /// An item older than the first start's look-back was met: nothing further down is wanted.
    pub below_floor: bool,
}

impl Cursor {
    /// `(since_id, max_id)` of the next request.
    pub fn query(&self) -> (Option<u64>, Option<u64>) {
        (self.since, self.walk.map(|w| w.next_max))
    }

    /// Whether the id is in the range the last query asked for (a server that sends more is
    /// not trusted with it).
    pub fn wants(&self, id: u64) -> bool {
        let (since, max) = self.query();
        since.is_none_or(|s| id > s) && max.is_none_or(|m| id <= m)
    }

    /// Whether a walk is in progress.
    pub fn walking(&self) -> bool {
        self.walk.is_some()
    }

    /// Move on after a page that held `p`.
    pub fn advance(&mut self, p: &PageSeen) {
        let top = self.walk.map(|w| w.top).or(p.newest);
        let floor = self.since.unwrap_or(0);
        match p.oldest {
            // More may lie between `since` and this page's oldest item.
            Some(o) if p.full && !p.below_floor && o.saturating_sub(1) > floor => {
                self.walk = Some(Walk {
                    top: top.unwrap_or(o),
                    next_max: o - 1,
                });
            }
            _ => {
                if let Some(t) = top {
                    self.since = Some(self.since.map_or(t, |s| s.max(t)));
                }
                self.walk = None;
            }
        }
    }
}

/// The feed's state in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// `statuses/mentions`.
    #[serde(default)]
    pub mentions: Cursor,
    /// `comments/to_me`.
    #[serde(default)]
    pub comments: Cursor,
    /// Items older than this (unix ms) are not delivered: the first start less the look-back.
    #[serde(default)]
    pub floor_ms: Option<i64>,
}

impl State {
    /// The cursor of `ep`.
    pub fn cursor(&self, ep: Endpoint) -> &Cursor {
        match ep {
            Endpoint::Mentions => &self.mentions,
            Endpoint::Comments => &self.comments,
        }
    }

    /// The cursor of `ep`, to move.
    pub fn cursor_mut(&mut self, ep: Endpoint) -> &mut Cursor {
        match ep {
            Endpoint::Mentions => &mut self.mentions,
            Endpoint::Comments => &mut self.comments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[u64], full: bool) -> PageSeen {
        PageSeen {
            newest: ids.iter().copied().max(),
            oldest: ids.iter().copied().min(),
            full,
            below_floor: false,
        }
    }

    /// A burst of 7 items above `since` = 10, pages of 3: walks 21..19, 18..16, then 15 (not
    /// full) ends it at since = 21; the next poll asks above 21 with no max_id.
    #[test]
    fn a_burst_is_walked_down_then_since_moves_up() {
        let mut c = Cursor {
            since: Some(10),
            walk: None,
        };
        assert_eq!(c.query(), (Some(10), None));
        c.advance(&page(&[21, 20, 19], true));
        assert_eq!(c.query(), (Some(10), Some(18)));
        assert!(c.walking() && c.wants(18) && !c.wants(19) && !c.wants(10));
        c.advance(&page(&[18, 17, 16], true));
        assert_eq!(c.query(), (Some(10), Some(15)));
        c.advance(&page(&[15], false));
        assert_eq!(c.query(), (Some(21), None));
        assert!(!c.walking());
        // An empty page changes nothing.
        c.advance(&page(&[], false));
        assert_eq!(c.query(), (Some(21), None));
    }

    #[test]
    fn walk_edges() {
        // A full page ending right above `since`: nothing can lie below it.
        let mut c = Cursor {
            since: Some(10),
            walk: None,
        };
        c.advance(&page(&[13, 12, 11], true));
        assert_eq!(
            c,
            Cursor {
                since: Some(13),
                walk: None
            }
        );
        // A full page reaching below the look-back ends the walk.
        let mut c = Cursor::default();
        c.advance(&PageSeen {
            below_floor: true,
            ..page(&[30, 29], true)
        });
        assert_eq!(c.query(), (Some(30), None));
        // The first page of a first start walks down without since.
        let mut c = Cursor::default();
        c.advance(&page(&[30, 29], true));
        assert_eq!(c.query(), (None, Some(28)));
        c.advance(&page(&[], false));
        assert_eq!(c.query(), (Some(30), None));
    }

    #[test]
    fn state_round_trips() {
        let mut s = State {
            floor_ms: Some(5),
            ..State::default()
        };
        s.cursor_mut(Endpoint::Comments)
            .advance(&page(&[9, 8], true));
        let back: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.cursor(Endpoint::Comments).query(), (None, Some(7)));
        let empty: State = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, State::default());
    }
}
