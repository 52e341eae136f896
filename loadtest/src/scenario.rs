//! `scenarios/<name>/scenario.toml`: the traffic (rate profile, generator mix), the injections
//! and, for `fanout-300`, the publishing drill. Errors name the file and line.

use huiying::detect::diagnostics::line_at;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What can be wrong with a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or a field of the wrong type.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Which wire format the feed server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// The generic format: a JSON array of mentions per frame.
    Generic,
    /// Mastodon streaming: one `update` frame per status.
    Mastodon,
}

/// How the target rate evolves.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Profile {
    /// `rate` mentions/s throughout.
    Steady {
        /// Mentions per second.
        rate: f64,
    },
    /// From `from` to `to` over `ramp_secs`, then `to`.
    Ramp {
        /// Starting rate.
        from: f64,
        /// Final rate.
        to: f64,
        /// Duration of the ramp.
        ramp_secs: f64,
    },
    /// `rate`, with `burst_rate` for `burst_secs` every `every_secs` (from `every_secs` on).
    Burst {
        /// Base rate.
        rate: f64,
        /// Rate during a burst.
        burst_rate: f64,
        /// Period of the bursts.
        every_secs: f64,
        /// Length of a burst.
        burst_secs: f64,
    },
}

impl Profile {
    /// Target rate at `t` seconds.
    pub fn rate(&self, t: f64) -> f64 {
        match *self {
            Profile::Steady { rate } => rate,
            Profile::Ramp {
                from,
                to,
                ramp_secs,
            } => {
                if t >= ramp_secs || ramp_secs <= 0.0 {
                    to
                } else {
                    from + (to - from) * t / ramp_secs
                }
            }
            Profile::Burst {
                rate,
                burst_rate,
                every_secs,
                burst_secs,
            } => {
                let phase = t % every_secs;
                if t >= every_secs && phase < burst_secs {
                    burst_rate
                } else {
                    rate
                }
            }
        }
    }

    /// Mentions due in `[0, t]` (the integral of the rate; exact for each shape).
    pub fn due(&self, t: f64) -> f64 {
        match *self {
            Profile::Steady { rate } => rate * t,
            Profile::Ramp {
                from,
                to,
                ramp_secs,
            } => {
                let r = t.min(ramp_secs.max(0.0));
                let ramp = if ramp_secs > 0.0 {
                    from * r + (to - from) * r * r / (2.0 * ramp_secs)
                } else {
                    0.0
                };
                ramp + to * (t - r).max(0.0)
            }
            Profile::Burst {
                rate,
                burst_rate,
                every_secs,
                burst_secs,
            } => {
                let extra = burst_rate - rate;
                let full = (t / every_secs).floor();
                let phase = t - full * every_secs;
                // Bursts start at every multiple of the period except 0.
                let bursts = (full - 1.0).max(0.0) * burst_secs
                    + if full >= 1.0 {
                        phase.min(burst_secs)
                    } else {
                        0.0
                    };
                rate * t + extra * bursts
            }
        }
    }

    fn peak(&self) -> f64 {
        match *self {
            Profile::Steady { rate } => rate,
            Profile::Ramp { from, to, .. } => from.max(to),
            Profile::Burst {
                rate, burst_rate, ..
            } => rate.max(burst_rate),
        }
    }
}

/// What an injection looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectKind {
    /// Many distinct authors report one emergency in one region.
    Emergency,
    /// A rumor post, reposted, with enquiry replies ("真的吗？").
    Rumor,
    /// Posts repeating a known, debunked claim of `rules/claims.toml`.
    Claim,
}

/// One scenario injection.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// A short name for the report.
    pub name: String,
    /// Kind.
    pub kind: InjectKind,
    /// When the first mention goes out (seconds from the start).
    pub at_secs: f64,
    /// Over how many seconds its mentions are spread.
    #[serde(default = "default_over")]
    pub over_secs: f64,
    /// Mentions (each by a distinct author).
    #[serde(default = "default_mentions")]
    pub mentions: u32,
    /// Texts, used in turn. Emergency defaults to a flood in 密云区; rumor to a made-up story;
    /// claim to the cotton-meat-floss claim.
    #[serde(default)]
    pub texts: Vec<String>,
    /// The category the incident should have (checked, reported).
    #[serde(default)]
    pub expect_category: Option<String>,
    /// The region code the incident should have.
    #[serde(default)]
    pub expect_region: Option<String>,
}

fn default_over() -> f64 {
    20.0
}

fn default_mentions() -> u32 {
    30
}

/// `[fanout]`: approve notices to a generated matrix of accounts and watch them go out.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fanout {
    /// Accounts in the matrix (one lead, the rest amplify it).
    pub accounts: u32,
    /// Notices approved one after the other (the second meets limiters the first used).
    #[serde(default = "one")]
    pub notices: u32,
    /// The accounts' profile (Mastodon shape): posts, and reposts, per hour each.
    pub per_hour: u32,
    /// Seconds after the start before the first notice is drafted.
    #[serde(default)]
    pub at_secs: f64,
}

fn one() -> u32 {
    1
}

/// A scenario.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (the folder's, by convention).
    pub name: String,
    /// One sentence for the report.
    pub description: String,
    /// Seconds of traffic (a `--duration` flag bounds it, e.g. for the soak).
    pub duration_secs: f64,
    /// Wire format.
    #[serde(default = "generic")]
    pub feed: FeedFormat,
    /// Rate profile; absent: no background traffic.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Generator seed.
    #[serde(default = "seed")]
    pub seed: u64,
    /// Distinct background authors.
    #[serde(default = "authors")]
    pub authors: u32,
    /// Share of background originals reporting an emergency (real traffic: a trickle; 0.05 %).
    #[serde(default = "emergency_share")]
    pub emergency_share: f64,
    /// Share of background originals spreading a rumor (0.02 %).
    #[serde(default = "rumor_share")]
    pub rumor_share: f64,
    /// Injections.
    #[serde(default)]
    pub inject: Vec<Inject>,
    /// The publishing drill.
    #[serde(default)]
    pub fanout: Option<Fanout>,
    /// Seconds to wait after the traffic for the engine to drain and events to arrive.
    #[serde(default = "drain")]
    pub drain_secs: f64,
    /// The scenario's folder (set on load).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn generic() -> FeedFormat {
    FeedFormat::Generic
}
fn seed() -> u64 {
    42
}
fn authors() -> u32 {
    500_000
}
fn emergency_share() -> f64 {
    0.0005
}
fn rumor_share() -> f64 {
    0.0002
}
fn drain() -> f64 {
    10.0
}

impl Scenario {
    /// Load `dir/scenario.toml`.
    pub fn load(dir: &Path) -> Result<Scenario, ScenarioError> {
        let path = dir.join("scenario.toml");
        let src = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        let mut s = Scenario::parse(&src, &path)?;
        s.dir = dir.to_path_buf();
        Ok(s)
    }

    /// Parse a scenario's text (`path` only names it in errors).
    pub fn parse(src: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(src).map_err(|e| ScenarioError::Parse {
            path: path.to_path_buf(),
            line: e.span().map(|sp| line_at(src, sp.start)).unwrap_or(0),
            message: e.message().trim().to_string(),
        })?;
        let invalid = |message: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if !(s.duration_secs > 0.0 && s.duration_secs.is_finite()) {
            return Err(invalid(format!(
                "duration_secs must be positive, not {}",
                s.duration_secs
            )));
        }
        if let Some(p) = &s.profile {
            let peak = p.peak();
            if !(peak > 0.0 && peak.is_finite()) || p.rate(0.0) < 0.0 {
                return Err(invalid(format!("profile: bad rates in {p:?}")));
            }
            if let Profile::Burst {
                every_secs,
                burst_secs,
                ..
            } = p
            {
                if !(*every_secs > 0.0 && *burst_secs >= 0.0 && burst_secs <= every_secs) {
                    return Err(invalid(
                        "profile: burst needs 0 <= burst_secs <= every_secs and every_secs > 0"
                            .into(),
                    ));
                }
            }
        }
        for (what, x) in [
            ("emergency_share", s.emergency_share),
            ("rumor_share", s.rumor_share),
        ] {
            if !(0.0..=0.5).contains(&x) {
                return Err(invalid(format!("{what} must be within 0..0.5, not {x}")));
            }
        }
        for (i, inj) in s.inject.iter().enumerate() {
            if inj.mentions == 0 || inj.at_secs < 0.0 || inj.over_secs < 0.0 {
                return Err(invalid(format!(
                    "inject[{i}] ({}): needs mentions > 0 and non-negative times",
                    inj.name
                )));
            }
        }
        if let Some(f) = &s.fanout {
            if f.accounts < 2 || f.per_hour == 0 || f.notices == 0 {
                return Err(invalid(
                    "fanout: needs accounts >= 2, per_hour > 0 and notices > 0".into(),
                ));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_is_the_integral_of_the_rate() {
        let profiles = [
            Profile::Steady { rate: 100.0 },
            Profile::Ramp {
                from: 10.0,
                to: 110.0,
                ramp_secs: 10.0,
            },
            Profile::Burst {
                rate: 10.0,
                burst_rate: 50.0,
                every_secs: 4.0,
                burst_secs: 1.0,
            },
        ];
        for p in profiles {
            // Riemann sum with a fine step against the closed form.
            let (mut sum, dt) = (0.0, 1e-4);
            let mut t = 0.0;
            while t < 15.0 {
                sum += p.rate(t + dt / 2.0) * dt;
                t += dt;
            }
            let due = p.due(15.0);
            assert!((sum - due).abs() < 0.5, "{p:?}: {sum} vs {due}");
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let src = "name = \"x\"\ndescription = \"d\"\nduration_secs = \"long\"\n";
        let e = Scenario::parse(src, Path::new("s/scenario.toml")).expect_err("bad type");
        assert!(e.to_string().starts_with("s/scenario.toml:3:"), "{e}");
        let src = "name = \"x\"\ndescription = \"d\"\nduration_secs = 5\n[profile]\nkind = \"burst\"\nrate = 1\nburst_rate = 5\nevery_secs = 1\nburst_secs = 2\n";
        let e = Scenario::parse(src, Path::new("s.toml")).expect_err("burst longer than period");
        assert!(e.to_string().contains("burst_secs"), "{e}");
    }
}
