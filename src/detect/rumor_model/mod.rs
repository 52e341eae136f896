//! The trained rumor scorer: logistic regression over a cascade, so a rumor opens as early as
//! the evidence allows and not when a count of cue words passes a bar.
//!
//! A cascade (an original post and the reposts and replies after it) scores
//! `σ(b + w_orig·x_orig + w_repost·mean(x_repost) + w_cascade·z(cascade))`, where `x` are the
//! hashed character 1–3-grams of a post's own text ([`features`]) and `z` the standardised
//! cascade features (distinct authors, enquiry / correction / spreading reposts and their
//! ratios, spread velocity, the original's numbers, links, marks and cues). The model is linear,
//! so the analysis workers compute each post's two dot products once (`PostSignals`) and the
//! engine keeps only sums per cascade: scoring a new post costs a few dozen flops.
//!
//! - `mod.rs`: [`RumorModel`], scoring, the file format (`rules/models/rumor.bin`).
//! - `features.rs`: n-gram hashing, per-post signals, cascade counts.
//! - `train.rs`: `huiying train rumor`: rows, the solver, cross-validation, the threshold.

pub mod features;
pub mod train;

pub use features::{CascadeStats, PostSignals, CASCADE_FEATURES, CASCADE_FEATURE_NAMES};

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a rule set's rumor model lives, relative to the rules directory.
pub const MODEL_PATH: &str = "models/rumor.bin";

const MAGIC: &[u8; 8] = b"HYRUMOR1";

/// What a model file says about itself (stored as JSON in its header).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// Format version of the weights (bumped when features change).
    pub version: u32,
    /// What it was trained on (file, events, rows) and when.
    pub trained_on: String,
    /// The cross-validated figures measured when it was trained.
    pub cv: Vec<CvPoint>,
    /// Median post at which cross-validated rumors were flagged.
    pub cv_median_flag_post: Option<f64>,
    /// Regularisation and training settings.
    pub settings: String,
}

/// One point of the early-detection curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CvPoint {
    /// Flags counted only when made by this post of the cascade.
    pub by_post: u32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Feature version the engine computes.
pub const FEATURE_VERSION: u32 = 1;

/// A trained rumor model.
#[derive(Debug, Clone, PartialEq)]
pub struct RumorModel {
    /// 2^bits hash buckets per text part.
    pub bits: u8,
    /// Per hash bucket, the weight of the original post's n-gram and of the reposts' mean
    /// n-gram vector, side by side: a post is scored both ways from one memory line per gram.
    pub w_text: Vec<[f32; 2]>,
    /// Weights of the standardised cascade features, their means and standard deviations.
    pub w_cascade: [f32; CASCADE_FEATURES],
    pub mean: [f32; CASCADE_FEATURES],
    pub std: [f32; CASCADE_FEATURES],
    pub bias: f32,
    /// A cascade is a rumor when its probability reaches this.
    pub threshold: f32,
    /// Posts (original included) a cascade needs before it can be flagged.
    pub min_posts: u32,
    pub info: ModelInfo,
}

/// Why a model file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Format { path: String, what: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    info: ModelInfo,
    bits: u8,
    w_cascade: Vec<f32>,
    mean: Vec<f32>,
    std: Vec<f32>,
    bias: f32,
    threshold: f32,
    min_posts: u32,
    checksum: String,
}

impl RumorModel {
    /// A model with every weight zero (probability 0.5 for everything): a start for tests and
    /// hand-made models.
    pub fn blank(bits: u8) -> RumorModel {
        RumorModel {
            bits,
            w_text: vec![[0.0; 2]; 1 << bits],
            w_cascade: [0.0; CASCADE_FEATURES],
            mean: [0.0; CASCADE_FEATURES],
            std: [1.0; CASCADE_FEATURES],
            bias: 0.0,
            threshold: 0.5,
            min_posts: 1,
            info: ModelInfo {
                version: FEATURE_VERSION,
                trained_on: String::new(),
                cv: Vec::new(),
                cv_median_flag_post: None,
                settings: String::new(),
            },
        }
    }

    /// The probability that the cascade is a rumor.
    pub fn probability(&self, c: &CascadeStats) -> f32 {
        let z = self.logit(c);
        1.0 / (1.0 + (-z).exp())
    }

    /// The model's logit for a cascade.
    pub fn logit(&self, c: &CascadeStats) -> f32 {
        let f = features::standardise(&c.features(), &self.mean, &self.std);
        let mut z = self.bias + c.mean_repost_score();
        if let Some((o, _)) = &c.original {
            z += o.as_original;
        }
        for (w, x) in self.w_cascade.iter().zip(f) {
            z += w * x;
        }
        z
    }

    /// Whether the cascade is flagged now.
    pub fn flags(&self, c: &CascadeStats) -> bool {
        c.posts >= self.min_posts && self.probability(c) >= self.threshold
    }

    /// The text weights as the file keeps them: every original weight, then every repost one.
    fn text_weights_in_file_order(&self) -> impl Iterator<Item = f32> + '_ {
        let part = |i: usize| self.w_text.iter().map(move |w| w[i]);
        part(0).chain(part(1))
    }

    fn weights_checksum(&self) -> String {
        let mut bytes = Vec::with_capacity(self.w_text.len() * 8);
        for w in self.text_weights_in_file_order() {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        format!("{:016x}", crate::stable_hash(&bytes))
    }

    /// Write the model: magic, header length (u32 LE), JSON header, then both weight tables as
    /// little-endian f32.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let header = Header {
            info: self.info.clone(),
            bits: self.bits,
            w_cascade: self.w_cascade.to_vec(),
            mean: self.mean.to_vec(),
            std: self.std.to_vec(),
            bias: self.bias,
            threshold: self.threshold,
            min_posts: self.min_posts,
            checksum: self.weights_checksum(),
        };
        let json = serde_json::to_vec_pretty(&header).map_err(std::io::Error::other)?;
        let mut out = Vec::with_capacity(16 + json.len() + self.w_text.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        for w in self.text_weights_in_file_order() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("bin.tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(tmp, path)
    }

    /// Read a model file, checking its size, version and checksum.
    pub fn load(path: &Path) -> Result<RumorModel, ModelError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: p.clone(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|what| ModelError::Format { path: p, what })
    }

    fn from_bytes(bytes: &[u8]) -> Result<RumorModel, String> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err("not a huiying rumor model (bad magic)".into());
        }
        let hlen = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let body = bytes
            .get(12..12 + hlen)
            .ok_or("truncated header".to_string())?;
        let h: Header =
            serde_json::from_slice(body).map_err(|e| format!("header: {e} (field or syntax)"))?;
        if h.info.version != FEATURE_VERSION {
            return Err(format!(
                "feature version {} (this build computes version {FEATURE_VERSION}): retrain with `huiying train rumor`",
                h.info.version
            ));
        }
        if !(8..=24).contains(&h.bits) {
            return Err(format!("bits {} out of range 8..=24", h.bits));
        }
        let n = 1usize << h.bits;
        let weights = &bytes[12 + hlen..];
        if weights.len() != n * 8 {
            return Err(format!(
                "weights: {} bytes, expected {} (truncated or wrong bits)",
                weights.len(),
                n * 8
            ));
        }
        let arr = |v: &Vec<f32>, name: &str| -> Result<[f32; CASCADE_FEATURES], String> {
            <[f32; CASCADE_FEATURES]>::try_from(v.as_slice())
                .map_err(|_| format!("{name}: {} values, expected {CASCADE_FEATURES}", v.len()))
        };
        let std = arr(&h.std, "std")?;
        if std
            .iter()
            .any(|s| s.is_nan() || *s <= 0.0 || !s.is_finite())
        {
            return Err("std: every value must be positive".into());
        }
        if !(0.0..=1.0).contains(&h.threshold) {
            return Err(format!("threshold {} out of 0..=1", h.threshold));
        }
        let f32_at = |i: usize| {
            let c = &weights[4 * i..4 * i + 4];
            f32::from_le_bytes([c[0], c[1], c[2], c[3]])
        };
        let m = RumorModel {
            bits: h.bits,
            w_text: (0..n).map(|i| [f32_at(i), f32_at(n + i)]).collect(),
            w_cascade: arr(&h.w_cascade, "w_cascade")?,
            mean: arr(&h.mean, "mean")?,
            std,
            bias: h.bias,
            threshold: h.threshold,
            min_posts: h.min_posts.max(1),
            info: h.info,
        };
        if m.weights_checksum() != h.checksum {
            return Err("weights do not match the header's checksum (corrupt file)".into());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::analyze::Cues;

    fn tiny() -> RumorModel {
        let bits = 10;
        RumorModel {
            w_text: (0..1 << bits)
                .map(|i| [(i % 5) as f32 * 0.1, (i % 3) as f32 * -0.1])
                .collect(),
            w_cascade: [0.5; CASCADE_FEATURES],
            bias: -1.0,
            threshold: 0.6,
            min_posts: 3,
            ..RumorModel::blank(bits)
        }
    }

    #[test]
    fn a_model_survives_a_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("models/rumor.bin");
        let m = tiny();
        m.save(&p).unwrap();
        assert_eq!(RumorModel::load(&p).unwrap(), m);

        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let e = RumorModel::load(&p).unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains("rumor.bin"), "{e}");

        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = RumorModel::load(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        std::fs::write(&p, b"hello").unwrap();
        let e = RumorModel::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
    }

    #[test]
    fn scoring_needs_min_posts_and_grows_with_evidence() {
        let m = tiny();
        let mut c = CascadeStats::default();
        let s = PostSignals {
            as_original: 0.3,
            ..Default::default()
        };
        c.add(0, 1, &s, Cues::default(), true);
        assert!(!m.flags(&c), "one post is below min_posts");
        let p1 = m.probability(&c);
        let ask = Cues(Cues::ENQUIRY);
        for i in 0..4 {
            c.add(
                60_000 * (i + 1),
                10 + i as u64,
                &PostSignals::default(),
                ask,
                false,
            );
        }
        assert!(m.probability(&c) > p1);
        assert_eq!(c.posts, 5);
        assert_eq!(c.authors(), 5);
        assert_eq!(c.enquiry, 4);
    }
}
