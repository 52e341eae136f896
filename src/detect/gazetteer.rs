//! The gazetteer of Chinese regions and the resolution of the region names a mention contains.
//!
//! A name may stand for several regions (there are many 朝阳区 and 鼓楼区). It is resolved by a
//! co-mentioned ancestor (朝阳区 with 北京 → 110105); without one it stays unresolved, so the
//! mention is not pinned to a city it may not be about.

use ahash::AHashMap;
use jieba_rs::Jieba;
use serde::Serialize;

/// Characters of context on each side of a short region name given to the segmenter.
const CONTEXT_CHARS: usize = 8;

/// Administrative level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// 省级: provinces, municipalities, autonomous regions, SARs.
    Province,
    /// 地级: prefecture-level cities, leagues, autonomous prefectures.
    City,
    /// 县级: districts, counties, county-level cities, banners.
    District,
}

/// One region.
#[derive(Debug, Clone)]
pub struct Region {
    /// 6-digit division code.
    pub code: String,
    /// Official name.
    pub name: String,
    /// Level.
    pub level: Level,
    /// Index of the parent region.
    pub parent: Option<u32>,
    /// Short forms people write.
    pub aliases: Vec<String>,
    /// English names (lower case), matched in English text.
    pub en: Vec<String>,
    /// English display name: pinyin with the official suffix ("Haidian District"); empty when
    /// the gazetteer has none.
    pub name_en: String,
}

/// `{code, name}` as it appears in incidents and API answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RegionRef {
    /// 6-digit code.
    pub code: String,
    /// Official name.
    pub name: String,
    /// English display name with its province ("Haidian District, Beijing"); empty in records
    /// written before English names existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_en: String,
}

/// A region filter as a request gives it: none (or blank), or a 6-digit code; else what is
/// wrong, naming the field (`region`).
pub fn check_region_filter(r: Option<&str>) -> Result<Option<String>, String> {
    match r.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if r.len() == 6 && r.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(r.into())),
        Some(r) => Err(format!(
            "region: {r:?} is not a 6-digit division code (110108)"
        )),
    }
}

/// Whether the region code `filter` covers `code`: `110000` every region in province 11,
/// `110100` every one in city 1101, a district code itself (API filters, alert rules).
pub fn code_covers(filter: &str, code: &str) -> bool {
    let f = filter.trim_end_matches("00");
    !f.is_empty() && code.starts_with(f)
}

/// All regions, indexed by code and by name.
#[derive(Debug, Clone, Default)]
pub struct Gazetteer {
    regions: Vec<Region>,
    by_code: AHashMap<String, u32>,
    by_name: AHashMap<String, Vec<u32>>,
    /// Per region, its English name with its province ([`Gazetteer::english_name`]), built
    /// once: `region_ref` runs on the engine thread for every emergency mention.
    english: Vec<String>,
}

impl Gazetteer {
    /// Build the indexes.
    pub fn new(regions: Vec<Region>, by_code: AHashMap<String, u32>) -> Self {
        let mut by_name: AHashMap<String, Vec<u32>> = AHashMap::new();
        for (i, r) in regions.iter().enumerate() {
            for n in std::iter::once(&r.name).chain(&r.aliases).chain(&r.en) {
                let v = by_name.entry(n.to_lowercase()).or_default();
                if !v.contains(&(i as u32)) {
                    v.push(i as u32);
                }
            }
        }
        let english = (0..regions.len())
            .map(|i| {
                let r = &regions[i];
                if r.name_en.is_empty() {
                    return String::new();
                }
                let mut top = i;
                while let Some(p) = regions[top].parent {
                    top = p as usize;
                }
                let province = &regions[top].name_en;
                if top == i || province.is_empty() {
                    r.name_en.clone()
                } else {
                    format!("{}, {}", r.name_en, province)
                }
            })
            .collect();
        Gazetteer {
            regions,
            by_code,
            by_name,
            english,
        }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether there are no regions.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Region by index.
    pub fn get(&self, i: u32) -> &Region {
        &self.regions[i as usize]
    }

    /// `{code, name}` of region `i`.
    pub fn region_ref(&self, i: u32) -> RegionRef {
        let r = self.get(i);
        RegionRef {
            code: r.code.clone(),
            name: r.name.clone(),
            name_en: self.english_name(i).to_string(),
        }
    }

    /// English name of region `i` with its province after a comma ("Haidian District,
    /// Beijing"; a province alone: "Beijing"). Empty when the gazetteer has no English name.
    pub fn english_name(&self, i: u32) -> &str {
        self.english.get(i as usize).map_or("", String::as_str)
    }

    /// Index of a region by its code.
    pub fn by_code(&self, code: &str) -> Option<u32> {
        self.by_code.get(code).copied()
    }

    /// Candidate regions for a name or alias.
    pub fn by_name(&self, name: &str) -> &[u32] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `anc` is `i` or one of its ancestors.
    pub fn is_ancestor_or_self(&self, anc: u32, mut i: u32) -> bool {
        loop {
            if i == anc {
                return true;
            }
            match self.get(i).parent {
                Some(p) => i = p,
                None => return false,
            }
        }
    }

    /// Whether the short region name at bytes `start..end` of `text` stands as a word of its
    /// own. jieba segments the name with up to eight characters of context on each side; no
    /// word may straddle either end of the name, and a two-character name must also be one
    /// word (or begin one: 北京 in 北京大学, 海淀 in 海淀区). A word that begins before the name
    /// counts as a boundary when what precedes the name in it is a region name itself (兰州 in
    /// 甘肃兰州). So 天全 in 明天|全天, 道真 in 知道|真相, 山东 in 中山|东路 and 巴马 in 奥巴马
    /// do not count. A short form that is itself a word keeps counting (花都 in 花都谢了):
    /// those are for the generator's stoplist.
    pub fn stands_as_word(&self, jieba: &Jieba, text: &str, start: usize, end: usize) -> bool {
        let from = text[..start]
            .char_indices()
            .rev()
            .nth(CONTEXT_CHARS - 1)
            .map_or(0, |(i, _)| i);
        let to = text[end..]
            .char_indices()
            .nth(CONTEXT_CHARS)
            .map_or(text.len(), |(i, _)| end + i);
        let window = &text[from..to];
        let (s, e) = (start - from, end - from);
        let two_chars = text[start..end].chars().count() <= 2;
        let mut started = false;
        for tok in jieba.cut(window, true) {
            let (ts, te) = (tok.byte_start, tok.byte_end);
            if !started {
                if te <= s {
                    continue;
                }
                // The word covering the name's first character.
                if ts < s && self.by_name(&window[ts..s]).is_empty() {
                    return false;
                }
                if te >= e {
                    return true;
                }
                if two_chars {
                    return false;
                }
                started = true;
            }
            if te == e {
                return true;
            }
            if te > e {
                return false;
            }
        }
        false
    }

    /// Resolve the region names found in a text (each hit a list of candidates and whether the
    /// name is also an everyday word, in text order) into regions, most specific first (ties:
    /// first in text). A weak name resolves only with a co-mentioned ancestor. `explicit` is the
    /// mention's own `region` field (a code or a name); when it resolves it comes first.
    pub fn resolve(&self, hits: &[(&[u32], bool)], explicit: Option<&str>) -> Vec<u32> {
        let mut resolved: Vec<u32> = Vec::new();
        let in_context = |cand: u32, own: usize| {
            hits.iter()
                .enumerate()
                .filter(|(j, _)| *j != own)
                .any(|(_, (other, _))| {
                    other
                        .iter()
                        .any(|o| *o != cand && self.is_ancestor_or_self(*o, cand))
                })
        };
        for (i, (cands, weak)) in hits.iter().enumerate() {
            let pick = if cands.len() == 1 && !weak {
                Some(cands[0])
            } else {
                let fitting: Vec<u32> = cands
                    .iter()
                    .copied()
                    .filter(|c| in_context(*c, i))
                    .collect();
                if fitting.len() == 1 {
                    Some(fitting[0])
                } else {
                    None
                }
            };
            if let Some(p) = pick {
                if !resolved.contains(&p) {
                    resolved.push(p);
                }
            }
        }
        // Most specific first; stable, so text order breaks ties.
        resolved.sort_by_key(|r| std::cmp::Reverse(self.get(*r).level));
        if let Some(e) = explicit.and_then(|e| self.resolve_explicit(e, hits)) {
            resolved.retain(|r| *r != e);
            resolved.insert(0, e);
        }
        resolved
    }

    fn resolve_explicit(&self, e: &str, hits: &[(&[u32], bool)]) -> Option<u32> {
        let e = e.trim();
        if e.len() == 6 && e.bytes().all(|b| b.is_ascii_digit()) {
            return self.by_code(e);
        }
        let cands = self.by_name(&e.to_lowercase());
        match cands {
            [] => None,
            [one] => Some(*one),
            many => {
                let fitting: Vec<u32> = many
                    .iter()
                    .copied()
                    .filter(|c| {
                        hits.iter().any(|h| {
                            h.0.iter()
                                .any(|o| o != c && self.is_ancestor_or_self(*o, *c))
                        })
                    })
                    .collect();
                (fitting.len() == 1).then(|| fitting[0])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_filter_is_a_six_digit_code() {
        assert_eq!(
            check_region_filter(Some("110108")),
            Ok(Some("110108".into()))
        );
        assert_eq!(check_region_filter(None), Ok(None));
        assert!(check_region_filter(Some("1101")).is_err());
        assert!(check_region_filter(Some("11010x")).is_err());
    }
}
