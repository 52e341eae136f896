//! Near-duplicate texts: a MinHash sketch of a post's character bigrams, for finding the
//! copy-paste variants of one claim. Copies that add, drop or change a character ("明天起要停水",
//! "停水3天") share most bigrams, so their sketches agree in most places; a SimHash of words
//! flipped too many bits on such edits of short posts.

/// Minimum hashes per sketch.
pub const SKETCH_LEN: usize = 32;
/// Bands of [`BAND_ROWS`] minimum hashes each: two sketches sharing one band are compared.
pub const BANDS: usize = 16;
const BAND_ROWS: usize = SKETCH_LEN / BANDS;
/// Fewer bigrams than this: too little text to call two posts the same claim.
pub const MIN_BIGRAMS: usize = 4;

/// A MinHash sketch (estimates the Jaccard similarity of two texts' bigram sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch(pub [u32; SKETCH_LEN]);

#[inline]
fn mix(x: u64, seed: u64) -> u32 {
    let mut z = x ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// The sketch of `text` (normalised) without the phrases in `skip` (rumor cue words, which
/// every rumor shares), over the bigrams of its letters and digits; none when it has fewer than
/// [`MIN_BIGRAMS`].
pub fn sketch<'a>(text: &str, skip: impl IntoIterator<Item = &'a str>) -> Option<Sketch> {
    let mut t = text.to_string();
    for s in skip {
        if !s.is_empty() && t.contains(s) {
            t = t.replace(s, " ");
        }
    }
    let chars: Vec<char> = t.chars().filter(|c| c.is_alphanumeric()).collect();
    if chars.len() < MIN_BIGRAMS + 1 {
        return None;
    }
    let mut grams: Vec<u64> = chars
        .windows(2)
        .map(|w| (u64::from(w[0] as u32) << 32) | u64::from(w[1] as u32))
        .collect();
    grams.sort_unstable();
    grams.dedup();
    if grams.len() < MIN_BIGRAMS {
        return None;
    }
    let mut mins = [u32::MAX; SKETCH_LEN];
    for g in grams {
        for (i, m) in mins.iter_mut().enumerate() {
            let h = mix(g, i as u64 + 1);
            if h < *m {
                *m = h;
            }
        }
    }
    Some(Sketch(mins))
}

/// The estimated Jaccard similarity of two sketches (the share of equal minimum hashes).
pub fn similarity(a: &Sketch, b: &Sketch) -> f64 {
    let same = a.0.iter().zip(&b.0).filter(|(x, y)| x == y).count();
    same as f64 / SKETCH_LEN as f64
}

/// The band keys of a sketch: (band, hash of its rows).
pub fn bands(s: &Sketch) -> [(u8, u64); BANDS] {
    let mut out = [(0u8, 0u64); BANDS];
    for (i, o) in out.iter_mut().enumerate() {
        let mut h = 0u64;
        for r in 0..BAND_ROWS {
            h = (h << 32) | u64::from(s.0[i * BAND_ROWS + r]);
        }
        *o = (i as u8, h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_with_small_edits_are_similar_and_others_are_not() {
        let base = "紧急扩散：明天起全市停水三天，请大家提前储水，告诉家人！";
        let cues = ["紧急扩散", "告诉家人"];
        let s = |t: &str| sketch(t, cues).expect("enough text");
        let a = s(base);
        for copy in [
            "紧急扩散：明天起全市要停水三天，请大家提前储水，告诉家人！",
            "紧急扩散：明天起全市停水3天，请大家提前储水，告诉家人！",
            "紧急扩散:明天全市停水三天,请大家提前储水",
            "紧急扩散：明天起全市停水三天，请大家提前存水，告诉家人！",
        ] {
            let sim = similarity(&a, &s(copy));
            assert!(sim >= 0.6, "{copy}: {sim}");
        }
        for other in [
            "今天天气不错，适合出去跑步，公园里人很多",
            "紧急扩散：某小学门口有人贩子抢孩子，告诉家人！",
        ] {
            let sim = similarity(&a, &s(other));
            assert!(sim < 0.3, "{other}: {sim}");
        }
        assert_eq!(similarity(&a, &s(base)), 1.0);
        assert!(
            sketch("紧急扩散！！", cues).is_none(),
            "cue words alone are no claim"
        );
    }

    #[test]
    fn equal_sketches_share_every_band() {
        let a = sketch("明天起全市停水三天", []).expect("sketch");
        assert_eq!(bands(&a), bands(&a.clone()));
    }
}
