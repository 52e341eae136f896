//! The linked-account matrix (`rules/matrix/*.toml`): which official accounts exist, on which
//! platform, for which region and function, with which rate-limit profile and where their token
//! comes from; and the links that say who speaks for which category. [`Matrix::plan`] turns an
//! incident into a fan-out [`Plan`]: the lead, the co-publishers and the amplifiers.
//!
//! Pure data and pure functions: nothing here talks to a platform. The format and the planning
//! rules are documented in `rules/README.md` ("`matrix/`").
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Matrix`] and its look-ups |
//! | `model.rs` | [`Platform`], [`AccountId`], [`TokenSource`], [`NamedProfile`], [`Account`], [`Link`], [`Plan`] |
//! | `load.rs` | [`Matrix::load`]: parsing and validation |
//! | `plan.rs` | [`Matrix::plan`] |

mod load;
mod model;
mod plan;
#[cfg(test)]
mod tests;

pub use model::*;

use crate::detect::gazetteer::RegionRef;
use ahash::AHashMap;
use std::sync::Arc;

/// The validated matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    default_region: RegionRef,
    /// Codes from the default region up to its province.
    default_chain: Vec<String>,
    /// The lead of a plan in the default region when nothing more specific applies.
    default_lead: usize,
    accounts: Vec<Account>,
    by_id: AHashMap<Arc<str>, usize>,
    /// Accounts per region code, sorted by id.
    by_region: AHashMap<String, Vec<usize>>,
    /// For each region with a publicity account: the nearest ancestor region with one.
    publicity_parent: Vec<(String, Option<String>)>,
    profiles: Vec<NamedProfile>,
    links: AHashMap<String, Link>,
    star: Option<Link>,
    /// Reverse of `amplifies`: who reposts account i's posts.
    amplified_by: Vec<Vec<usize>>,
}

impl Matrix {
    /// An account by id.
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.by_id.get(id).map(|i| &self.accounts[*i])
    }

    /// Every account, in file order.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Every profile, in file order.
    pub fn profiles(&self) -> &[NamedProfile] {
        &self.profiles
    }

    /// The region of incidents that have none.
    pub fn default_region(&self) -> &RegionRef {
        &self.default_region
    }

    /// The link that applies to a category: its own, else `*`.
    pub fn link(&self, category: &str) -> Option<&Link> {
        self.links.get(category).or(self.star.as_ref())
    }
}
