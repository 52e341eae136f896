//! The trained side of the router: multinomial logistic regression (softmax) on hashed
//! character 1–3-grams of the normalised text (the rumor model's features), trained on an
//! office's past cases (`huiying cases train HISTORY.jsonl --out rules/routing/model.bin`).
//!
//! File: `HYROUTE1`, the header length (u32 LE), a JSON header (labels, bits, biases, what it
//! was trained on), then the weights, one row of `2^bits` little-endian f32 per label.

use crate::detect::rumor_model::features::{for_each_gram, vector};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"HYROUTE1";

/// Where the router looks for a trained model, under the rules directory.
pub const MODEL_PATH: &str = "routing/model.bin";

/// A trained department classifier.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Labels (department ids), in weight-row order.
    pub labels: Vec<String>,
    bits: u8,
    bias: Vec<f32>,
    weights: Vec<f32>,
    /// What it was trained on (file, examples).
    pub trained_on: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    labels: Vec<String>,
    bits: u8,
    bias: Vec<f32>,
    trained_on: String,
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct TrainSettings {
    /// Hash buckets: `2^bits`.
    pub bits: u8,
    /// Passes over the data.
    pub epochs: u32,
    /// Learning rate of the first pass (decays as 1/√epoch).
    pub rate: f32,
    /// L2 penalty per step.
    pub l2: f32,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            bits: 16,
            epochs: 40,
            rate: 0.5,
            l2: 1e-5,
        }
    }
}

fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum.max(f32::MIN_POSITIVE);
    }
}

impl Classifier {
    /// Train on (normalised text, label) pairs. Deterministic: the order of each pass comes
    /// from a stable hash of the example's index and the pass.
    pub fn train(
        examples: &[(String, String)],
        s: TrainSettings,
        trained_on: String,
    ) -> Classifier {
        let mut labels: Vec<String> = examples.iter().map(|(_, l)| l.clone()).collect();
        labels.sort();
        labels.dedup();
        let dim = 1usize << s.bits;
        let k = labels.len();
        let mut c = Classifier {
            labels,
            bits: s.bits,
            bias: vec![0.0; k],
            weights: vec![0.0; k * dim],
            trained_on,
        };
        let data: Vec<(Vec<(u32, f32)>, usize)> = examples
            .iter()
            .filter_map(|(t, l)| {
                let y = c.labels.iter().position(|x| x == l)?;
                Some((vector(t, s.bits), y))
            })
            .collect();
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut z = vec![0.0f32; k];
        for epoch in 0..s.epochs {
            order.sort_by_key(|i| crate::stable_hash(format!("{i}:{epoch}").as_bytes()));
            let rate = s.rate / ((epoch + 1) as f32).sqrt();
            for &i in &order {
                let (x, y) = &data[i];
                for (j, zj) in z.iter_mut().enumerate() {
                    let row = &c.weights[j * dim..(j + 1) * dim];
                    *zj = c.bias[j] + x.iter().map(|(b, v)| row[*b as usize] * v).sum::<f32>();
                }
                softmax(&mut z);
                for (j, p) in z.iter().enumerate() {
                    let g = p - if j == *y { 1.0 } else { 0.0 };
                    c.bias[j] -= rate * g;
                    let row = &mut c.weights[j * dim..(j + 1) * dim];
                    for (b, v) in x {
                        let w = &mut row[*b as usize];
                        *w -= rate * (g * v + s.l2 * *w);
                    }
                }
            }
        }
        c
    }

    /// The most likely label of a normalised text and its probability (`None` for an empty
    /// text).
    pub fn predict(&self, normalized: &str) -> Option<(&str, f32)> {
        let dim = 1usize << self.bits;
        let mut z = self.bias.clone();
        let n = for_each_gram(normalized, self.bits, |b| {
            for (j, zj) in z.iter_mut().enumerate() {
                *zj += self.weights[j * dim + b as usize];
            }
        });
        if n == 0 {
            return None;
        }
        // The features are scaled by 1/√n, as in training; the bias is not.
        let scale = 1.0 / (n as f32).sqrt();
        for (zj, b) in z.iter_mut().zip(&self.bias) {
            *zj = b + (*zj - b) * scale;
        }
        softmax(&mut z);
        let (j, p) = z.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        Some((self.labels.get(j)?.as_str(), *p))
    }

    /// Write the model file (atomically).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let header = Header {
            labels: self.labels.clone(),
            bits: self.bits,
            bias: self.bias.clone(),
            trained_on: self.trained_on.clone(),
        };
        let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        let mut out = Vec::with_capacity(12 + json.len() + self.weights.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("bin.tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(tmp, path)
    }

    /// Read a model file; what is wrong with it is said.
    pub fn load(path: &Path) -> Result<Classifier, String> {
        let p = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("{p}: {e}"))?;
        Self::from_bytes(&bytes).map_err(|e| format!("{p}: {e}"))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Classifier, String> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err("not a huiying routing model (bad magic)".into());
        }
        let hlen = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let body = bytes
            .get(12..12usize.saturating_add(hlen))
            .ok_or("truncated header")?;
        let h: Header = serde_json::from_slice(body).map_err(|e| format!("header: {e}"))?;
        if !(8..=20).contains(&h.bits) {
            return Err(format!("bits {} out of range 8..=20", h.bits));
        }
        if h.labels.is_empty() || h.bias.len() != h.labels.len() {
            return Err(format!(
                "{} labels but {} biases",
                h.labels.len(),
                h.bias.len()
            ));
        }
        let want = h.labels.len() * (1usize << h.bits) * 4;
        let w = &bytes[12 + hlen..];
        if w.len() != want {
            return Err(format!(
                "weights: {} bytes, expected {want} (truncated or wrong bits)",
                w.len()
            ));
        }
        let weights = w
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>();
        if weights.iter().chain(&h.bias).any(|v| !v.is_finite()) {
            return Err("weights are not finite".into());
        }
        Ok(Classifier {
            labels: h.labels,
            bits: h.bits,
            bias: h.bias,
            weights,
            trained_on: h.trained_on,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (t, l) in [
            ("小区停水了", "water"),
            ("自来水发黄", "water"),
            ("水压太低", "water"),
            ("物业不管电梯", "housing"),
            ("物业费乱收", "housing"),
            ("电梯坏了一周", "housing"),
        ] {
            v.push((t.to_string(), l.to_string()));
        }
        v
    }

    #[test]
    fn it_learns_separable_examples_and_survives_a_round_trip() {
        let c = Classifier::train(&examples(), TrainSettings::default(), "unit".into());
        assert_eq!(c.predict("停水三天了").map(|p| p.0), Some("water"));
        assert_eq!(c.predict("物业电梯").map(|p| p.0), Some("housing"));
        assert!(c.predict("").is_none());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.bin");
        c.save(&path).expect("save");
        let d = Classifier::load(&path).expect("load");
        assert_eq!(d.predict("水压低"), c.predict("水压低"));
        assert_eq!(d.trained_on, "unit");
    }

    #[test]
    fn broken_files_are_refused_with_the_reason() {
        let c = Classifier::train(&examples(), TrainSettings::default(), "unit".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.bin");
        c.save(&path).expect("save");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
        let e = Classifier::load(&path).expect_err("truncated");
        assert!(e.contains("truncated or wrong bits"), "{e}");
        std::fs::write(&path, b"not a model").expect("write");
        assert!(Classifier::load(&path)
            .expect_err("magic")
            .contains("bad magic"));
    }
}
