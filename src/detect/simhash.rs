//! 64-bit SimHash over tokens, for finding copy-paste variants of the same claim.

/// SimHash of a token sequence (each token weight 1). An empty sequence hashes to 0.
pub fn simhash<'a>(tokens: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut v = [0i32; 64];
    let mut any = false;
    for t in tokens {
        any = true;
        let h = crate::stable_hash(t.as_bytes());
        for (bit, slot) in v.iter_mut().enumerate() {
            if h >> bit & 1 == 1 {
                *slot += 1;
            } else {
                *slot -= 1;
            }
        }
    }
    if !any {
        return 0;
    }
    v.iter().enumerate().fold(
        0u64,
        |acc, (bit, s)| if *s > 0 { acc | 1 << bit } else { acc },
    )
}

/// The features of a token list: every token and every character bigram inside it, so that
/// short texts that differ in one word still share most features.
pub fn features<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        out.push(t.to_string());
        let chars: Vec<char> = t.chars().collect();
        if chars.len() > 2 {
            for w in chars.windows(2) {
                out.push(w.iter().collect());
            }
        }
    }
    out
}

/// Hamming distance between two hashes.
pub fn distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// The 8 bands of 8 bits used to find candidates: two hashes within distance 7 share a band.
pub fn bands(h: u64) -> [(u8, u8); 8] {
    let mut out = [(0u8, 0u8); 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (i as u8, (h >> (i * 8)) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_duplicates_are_close_and_others_far() {
        // Copies of one rumor (cue words already removed) against an unrelated post.
        let a = [
            "明天",
            "北京",
            "全城",
            "停水",
            "三天",
            "赶紧",
            "储水",
            "自来水公司",
            "通知",
        ];
        let b = [
            "明天",
            "北京",
            "全城",
            "停水",
            "三天",
            "大家",
            "赶紧",
            "储水",
            "自来水公司",
            "通知",
        ];
        let c = [
            "今天",
            "天气",
            "不错",
            "适合",
            "跑步",
            "公园",
            "人多",
            "周末",
            "咖啡店",
        ];
        let h = |t: &[&str]| simhash(features(t.iter().copied()).iter().map(String::as_str));
        let (ha, hb, hc) = (h(&a), h(&b), h(&c));
        assert_eq!(distance(ha, h(&a)), 0);
        assert!(
            distance(ha, hb) < distance(ha, hc),
            "{} vs {}",
            distance(ha, hb),
            distance(ha, hc)
        );
        assert!(
            distance(ha, hc) > 20,
            "unrelated texts are far apart: {}",
            distance(ha, hc)
        );
        assert_eq!(simhash(Vec::<&str>::new()), 0);
        assert_eq!(bands(0x0102_0304_0506_0708)[0], (0, 8));
    }
}
