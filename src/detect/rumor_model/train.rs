//! Training the rumor model (`huiying train rumor`): labelled cascades → rows at several points
//! of each cascade's life → L2-regularised logistic regression (full-batch Adam, deterministic)
//! → cross-validated early-detection curve → the probability threshold that maximises
//! out-of-fold F1 of flags made by the 100th post → the final model on every event.
//!
//! The cross-validation scores each held-out cascade post by post with the same
//! [`CascadeStats`] and [`RumorModel::flags`] the engine uses, so its curve is what the engine
//! does on such data.

use super::features::{own_text, standardise, vector, CascadeStats, PostSignals, CASCADE_FEATURES};
use super::{CvPoint, ModelInfo, RumorModel, FEATURE_VERSION};
use crate::detect::analyze::Cues;
use ahash::AHashMap;

/// One labelled post, as the command reads it (text already normalised).
#[derive(Debug, Clone)]
pub struct LabelledPost {
    /// The cascade (event) it belongs to.
    pub event: String,
    /// Whether the event is a rumor.
    pub rumor: bool,
    pub ts: i64,
    pub author: u64,
    /// Normalised text.
    pub text: String,
    /// The cascade's original post (not a repost or reply).
    pub original: bool,
    /// Rumor cues the rules find in it.
    pub cues: Cues,
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// 2^bits hash buckets per text part.
    pub bits: u8,
    /// Inverse regularisation strength (as in liblinear: larger fits harder).
    pub c: f64,
    /// Full-batch iterations.
    pub iterations: u32,
    /// Folds of the cross-validation (0: none).
    pub folds: u32,
    /// Posts a cascade needs before it can be flagged.
    pub min_posts: u32,
    /// Posts of a cascade looked at.
    pub max_posts: u32,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            bits: 16,
            c: 4.0,
            iterations: 300,
            folds: 5,
            min_posts: 2,
            max_posts: 100,
        }
    }
}

/// Points of a cascade's life at which training rows are taken.
const ROW_POINTS: [u32; 7] = [2, 3, 5, 10, 20, 50, 100];
/// Points of the early-detection curve.
pub const CURVE_POINTS: [u32; 5] = [5, 10, 20, 50, 100];

/// A cascade: its posts in time order.
#[derive(Debug, Clone)]
pub struct Cascade {
    pub event: String,
    pub rumor: bool,
    pub posts: Vec<LabelledPost>,
}

/// Group posts into cascades (in order of first appearance; posts keep their input order).
pub fn cascades(posts: Vec<LabelledPost>) -> Vec<Cascade> {
    let mut index: AHashMap<String, usize> = AHashMap::new();
    let mut out: Vec<Cascade> = Vec::new();
    for p in posts {
        let i = *index.entry(p.event.clone()).or_insert_with(|| {
            out.push(Cascade {
                event: p.event.clone(),
                rumor: p.rumor,
                posts: Vec::new(),
            });
            out.len() - 1
        });
        out[i].posts.push(p);
    }
    out
}

struct Row {
    /// Sparse features: original text in [0, n), mean repost text in [n, 2n).
    sparse: Vec<(u32, f32)>,
    cascade: [f32; CASCADE_FEATURES],
    y: f32,
}

fn rows_of(c: &Cascade, s: &TrainSettings) -> Vec<Row> {
    let n = 1u32 << s.bits;
    let mut stats = CascadeStats::default();
    let mut orig: Vec<(u32, f32)> = Vec::new();
    let mut rep: AHashMap<u32, f32> = AHashMap::new();
    let mut out = Vec::new();
    let last = (c.posts.len() as u32).min(s.max_posts);
    for (i, p) in c.posts.iter().take(s.max_posts as usize).enumerate() {
        let own = own_text(&p.text);
        let sig = PostSignals::shape(own);
        let is_orig = p.original && stats.original.is_none();
        stats.add(p.ts, p.author, &sig, p.cues, is_orig);
        if sig.nontrivial {
            if is_orig {
                orig = vector(own, s.bits);
            } else {
                for (b, v) in vector(own, s.bits) {
                    *rep.entry(b).or_insert(0.0) += v;
                }
            }
        }
        let k = i as u32 + 1;
        if ROW_POINTS.contains(&k) || (k == last && k < 100 && k >= s.min_posts) {
            let mut sparse = orig.clone();
            if stats.nontrivial > 0 {
                let inv = 1.0 / stats.nontrivial as f32;
                let mut r: Vec<(u32, f32)> = rep.iter().map(|(b, v)| (b + n, v * inv)).collect();
                r.sort_unstable_by_key(|x| x.0);
                sparse.extend(r);
            }
            out.push(Row {
                sparse,
                cascade: stats.features(),
                y: if c.rumor { 1.0 } else { 0.0 },
            });
        }
    }
    out
}

/// Fit the weights on `cascades` (no threshold yet).
fn fit(cascades: &[&Cascade], s: &TrainSettings) -> RumorModel {
    let rows: Vec<Row> = cascades.iter().flat_map(|c| rows_of(c, s)).collect();
    let n = 1usize << s.bits;
    let mut mean = [0f64; CASCADE_FEATURES];
    let mut sq = [0f64; CASCADE_FEATURES];
    for r in &rows {
        for i in 0..CASCADE_FEATURES {
            mean[i] += f64::from(r.cascade[i]);
            sq[i] += f64::from(r.cascade[i]).powi(2);
        }
    }
    let m = rows.len().max(1) as f64;
    let mut meanf = [0f32; CASCADE_FEATURES];
    let mut stdf = [1f32; CASCADE_FEATURES];
    for i in 0..CASCADE_FEATURES {
        let mu = mean[i] / m;
        let var = (sq[i] / m - mu * mu).max(0.0);
        meanf[i] = mu as f32;
        stdf[i] = if var > 1e-12 { var.sqrt() as f32 } else { 1.0 };
    }
    let z: Vec<[f32; CASCADE_FEATURES]> = rows
        .iter()
        .map(|r| standardise(&r.cascade, &meanf, &stdf))
        .collect();
    // Parameters: 2n sparse weights, then the cascade weights, then the bias.
    let dim = 2 * n + CASCADE_FEATURES + 1;
    let mut w = vec![0f64; dim];
    let mut g = vec![0f64; dim];
    let mut m1 = vec![0f64; dim];
    let mut m2 = vec![0f64; dim];
    // Mean log loss + λ/2 |w|², λ = 1 / (C · rows): liblinear's objective divided by rows.
    let lambda = 1.0 / (s.c * m);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    for t in 1..=s.iterations {
        g.iter_mut().for_each(|x| *x = 0.0);
        for (r, zr) in rows.iter().zip(&z) {
            let mut score = w[dim - 1];
            for (b, v) in &r.sparse {
                score += w[*b as usize] * f64::from(*v);
            }
            for i in 0..CASCADE_FEATURES {
                score += w[2 * n + i] * f64::from(zr[i]);
            }
            let p = 1.0 / (1.0 + (-score).exp());
            let d = (p - f64::from(r.y)) / m;
            for (b, v) in &r.sparse {
                g[*b as usize] += d * f64::from(*v);
            }
            for i in 0..CASCADE_FEATURES {
                g[2 * n + i] += d * f64::from(zr[i]);
            }
            g[dim - 1] += d;
        }
        // Learning rate decays so the last iterations settle.
        let lr = 0.05 / (1.0 + f64::from(t) / 100.0);
        for j in 0..dim {
            let gj = g[j] + if j + 1 < dim { lambda * w[j] } else { 0.0 };
            m1[j] = b1 * m1[j] + (1.0 - b1) * gj;
            m2[j] = b2 * m2[j] + (1.0 - b2) * gj * gj;
            let mh = m1[j] / (1.0 - b1.powi(t as i32));
            let vh = m2[j] / (1.0 - b2.powi(t as i32));
            w[j] -= lr * mh / (vh.sqrt() + eps);
        }
    }
    let mut w_cascade = [0f32; CASCADE_FEATURES];
    for i in 0..CASCADE_FEATURES {
        w_cascade[i] = w[2 * n + i] as f32;
    }
    RumorModel {
        w_text: (0..n).map(|i| [w[i] as f32, w[n + i] as f32]).collect(),
        w_cascade,
        mean: meanf,
        std: stdf,
        bias: w[dim - 1] as f32,
        min_posts: s.min_posts,
        ..RumorModel::blank(s.bits)
    }
}

/// The probability after each post of a cascade (scored online, as the engine does).
pub fn online_probabilities(model: &RumorModel, c: &Cascade, max_posts: u32) -> Vec<f32> {
    let mut stats = CascadeStats::default();
    let mut out = Vec::new();
    for p in c.posts.iter().take(max_posts as usize) {
        let sig = PostSignals::of(&p.text, model);
        let is_orig = p.original && stats.original.is_none();
        stats.add(p.ts, p.author, &sig, p.cues, is_orig);
        out.push(if stats.posts >= model.min_posts {
            model.probability(&stats)
        } else {
            0.0
        });
    }
    out
}

/// Out-of-fold online probabilities of every cascade, and the label.
pub struct CvResult {
    pub scored: Vec<(bool, Vec<f32>)>,
}

/// The first post (1-based) at which the probabilities reach `thr`.
fn flag_at(probs: &[f32], thr: f32) -> Option<u32> {
    probs.iter().position(|p| *p >= thr).map(|i| i as u32 + 1)
}

/// Precision, recall, F1 of flags made by post `by` at threshold `thr`.
pub fn prf(scored: &[(bool, Vec<f32>)], thr: f32, by: u32) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0f64, 0f64, 0f64);
    for (y, probs) in scored {
        let flagged = flag_at(probs, thr).is_some_and(|k| k <= by);
        match (flagged, *y) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let r = if tp + fneg > 0.0 {
        tp / (tp + fneg)
    } else {
        0.0
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

/// Median post of the flags of true rumors at `thr`.
pub fn median_flag(scored: &[(bool, Vec<f32>)], thr: f32) -> Option<f64> {
    let mut v: Vec<u32> = scored
        .iter()
        .filter(|(y, _)| *y)
        .filter_map(|(_, p)| flag_at(p, thr))
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        f64::from(v[n / 2])
    } else {
        (f64::from(v[n / 2 - 1]) + f64::from(v[n / 2])) / 2.0
    })
}

/// Cross-validate over events (fold by a stable hash of the event id).
pub fn cross_validate(cs: &[Cascade], s: &TrainSettings) -> CvResult {
    let folds = s.folds.max(2);
    let fold_of = |c: &Cascade| (crate::stable_hash(c.event.as_bytes()) % u64::from(folds)) as u32;
    let mut scored = vec![(false, Vec::new()); cs.len()];
    for f in 0..folds {
        let train: Vec<&Cascade> = cs.iter().filter(|c| fold_of(c) != f).collect();
        let model = fit(&train, s);
        for (i, c) in cs.iter().enumerate() {
            if fold_of(c) == f {
                scored[i] = (c.rumor, online_probabilities(&model, c, s.max_posts));
            }
        }
    }
    CvResult { scored }
}

/// The threshold that maximises F1 of flags by the last post (ties: the higher threshold).
pub fn best_threshold(scored: &[(bool, Vec<f32>)], by: u32) -> f32 {
    let mut best = (0.0f64, 0.5f32);
    for i in 5..=95 {
        let thr = i as f32 / 100.0;
        let (_, _, f) = prf(scored, thr, by);
        if f >= best.0 {
            best = (f, thr);
        }
    }
    best.1
}

/// Train: cross-validate (when asked), pick the threshold, fit on everything.
pub fn train(cs: &[Cascade], s: &TrainSettings, trained_on: String) -> RumorModel {
    let mut threshold = 0.5;
    let mut cv = Vec::new();
    let mut median = None;
    if s.folds >= 2 {
        let r = cross_validate(cs, s);
        threshold = best_threshold(&r.scored, s.max_posts);
        for by in CURVE_POINTS {
            let (precision, recall, f1) = prf(&r.scored, threshold, by);
            cv.push(CvPoint {
                by_post: by,
                precision,
                recall,
                f1,
            });
        }
        median = median_flag(&r.scored, threshold);
    }
    let all: Vec<&Cascade> = cs.iter().collect();
    let mut m = fit(&all, s);
    m.threshold = threshold;
    m.info = ModelInfo {
        version: FEATURE_VERSION,
        trained_on,
        cv,
        cv_median_flag_post: median,
        settings: format!(
            "logistic regression, L2 C={}, {} full-batch Adam iterations, 2^{} buckets per text part, rows at posts {:?}, {}-fold CV over events, min_posts {}",
            s.c, s.iterations, s.bits, ROW_POINTS, s.folds, s.min_posts
        ),
    };
    m
}
