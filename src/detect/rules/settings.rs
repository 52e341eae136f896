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
}

impl Default for RumorSettings {
    fn default() -> Self {
        RumorSettings {
            window_secs: 1800,
            min_authors: 5,
            quiet_secs: 1800,
            near_duplicate_similarity: 0.6,
            cascade_idle_secs: 7 * 24 * 3600,
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
}
