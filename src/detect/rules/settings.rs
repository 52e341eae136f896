//! The global settings of a rule set: the `[window]`, `[emergency]` and `[rumor]` sections of
//! `detection.toml`, with their defaults.

use serde::Deserialize;

/// Window and spike settings (`detection.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSettings {
    /// Width of one counting bucket.
    pub bucket_secs: u32,
    /// Detection window (a multiple of the bucket).
    pub window_secs: u32,
    /// How far behind the newest event time a mention may arrive and still count in its bucket.
    pub allowed_lateness_secs: u32,
    /// `incident.updated` is emitted at most this often per incident.
    pub update_interval_secs: u32,
    /// The slow window that catches events building up over an hour (0 turns it off).
    pub long_window_secs: u32,
    /// Bucket width of the slow window.
    pub long_bucket_secs: u32,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            bucket_secs: 10,
            window_secs: 300,
            allowed_lateness_secs: 30,
            update_interval_secs: 60,
            long_window_secs: 3600,
            long_bucket_secs: 300,
        }
    }
}

/// Emergency spike settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergencySettings {
    /// Distinct authors in the window needed to open an incident.
    pub min_authors: u32,
    /// Poisson upper-tail probability under the baseline below which the window is a spike.
    pub alpha: f64,
    /// An open incident counts as still active while the tail probability is below this.
    pub close_alpha: f64,
    /// Close after this long without activity.
    pub quiet_secs: u32,
    /// The same for an incident without a place: time is all that ties its mentions to one
    /// event, so after a lull the next burst of its words is another event.
    pub quiet_secs_no_region: u32,
    /// How long after a report its reposts and replies that name no category still count
    /// for the report's categories (echoes); 0 counts no echoes.
    pub echo_horizon_secs: u32,
    /// Half-life of the EWMA baseline.
    pub baseline_half_life_secs: u32,
    /// Floor of the baseline for a (category, region) key, distinct authors per hour.
    pub prior_per_hour: f64,
    /// Floor for mentions with no region (they all share one key per category).
    pub prior_per_hour_no_region: f64,
}

impl Default for EmergencySettings {
    fn default() -> Self {
        EmergencySettings {
            min_authors: 5,
            alpha: 1e-6,
            close_alpha: 1e-3,
            quiet_secs: 900,
            quiet_secs_no_region: 300,
            echo_horizon_secs: 3600,
            baseline_half_life_secs: 3600,
            prior_per_hour: 0.5,
            prior_per_hour_no_region: 6.0,
        }
    }
}

/// Rumor (claim group) settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RumorSettings {
    /// Window in which distinct spreading/asking authors are counted.
    pub window_secs: u32,
    /// Distinct authors needed to open a rumor incident (known claims open at once).
    pub min_authors: u32,
    /// Close after this long without a new mention in the claim group.
    pub quiet_secs: u32,
    /// Estimated Jaccard similarity of two posts' character bigrams (cue words left out) from
    /// which they are copies of one claim.
    pub near_duplicate_similarity: f64,
    /// With a rumor model: how long a cascade with no incident is kept after its last post
    /// (slow cascades, reposts hours or days apart, are still scored).
    pub cascade_idle_secs: u32,
    /// Claim groups (cascades and copy-paste clusters) held at most: the memory bound. A full
    /// table drops its longest idle sixteenth (without an incident) to make room.
    pub max_groups: u32,
}

impl Default for RumorSettings {
    fn default() -> Self {
        RumorSettings {
            window_secs: 1800,
            min_authors: 5,
            quiet_secs: 1800,
            near_duplicate_similarity: 0.6,
            cascade_idle_secs: 7 * 24 * 3600,
            max_groups: 50_000,
        }
    }
}

/// Emerging-incident settings (`[emerging]`): bursts of terms no rule names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergingSettings {
    /// Detect emerging incidents at all.
    pub enabled: bool,
    /// Width of a term-counting bucket.
    pub bucket_secs: u32,
    /// Window in which a term's distinct authors are counted (a multiple of the bucket).
    pub window_secs: u32,
    /// Distinct authors of a term in the window needed to open.
    pub min_authors: u32,
    /// Poisson upper-tail probability under the term's baseline below which it bursts.
    pub alpha: f64,
    /// Floor of every term's baseline, distinct authors per hour (a never-seen term's prior).
    pub prior_per_hour: f64,
    /// Half-life of the terms' EWMA baselines.
    pub baseline_half_life_secs: u32,
    /// Event time from the first mention before anything may open (the baselines learn).
    pub warmup_secs: u32,
    /// Close after this long with no term of the incident bursting.
    pub quiet_secs: u32,
    /// How long the terms of a closed emerging incident are muted (the tail of the same burst
    /// must not reopen it; an operator's dismissal mutes for as long as they choose).
    pub mute_secs: u32,
    /// Terms followed exactly (by author) at most; beyond it new ones wait for room.
    pub max_candidates: u32,
    /// A term whose recent mentions mostly hit a rule (a category, a cue, a known claim) is
    /// the rules' business: it opens nothing here.
    pub max_rule_share: f64,
    /// A bursting term joins a group of bursting terms (or an open emerging incident) when
    /// this share of its recent mentions (or of the group's, when fewer) are the group's.
    pub group_overlap: f64,
    /// Whether the names of places (海淀, 淀区, haidian) are terms like any other. On (the
    /// default), a place suddenly named by many is a burst; off, a place never bursts nor
    /// groups a burst posted there (measured on the dev burst sets: off loses the one
    /// Chinese event of six found, and changes nothing else).
    pub place_terms: bool,
    /// Terms that never open anything (in addition to the built-in stop lists).
    pub stop_terms: Vec<String>,
}

impl Default for EmergingSettings {
    fn default() -> Self {
        EmergingSettings {
            enabled: true,
            bucket_secs: 60,
            window_secs: 600,
            min_authors: 6,
            alpha: 1e-9,
            prior_per_hour: 1.0,
            baseline_half_life_secs: 6 * 3600,
            warmup_secs: 1800,
            quiet_secs: 900,
            mute_secs: 3600,
            max_candidates: 4096,
            max_rule_share: 0.5,
            group_overlap: 0.2,
            place_terms: true,
            stop_terms: Vec::new(),
        }
    }
}

/// Global settings of a rule set.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Windows and buckets.
    pub window: WindowSettings,
    /// Emergency spikes.
    pub emergency: EmergencySettings,
    /// Rumors (claim groups).
    pub rumor: RumorSettings,
    /// Emerging incidents (bursts no rule names).
    pub emerging: EmergingSettings,
}
