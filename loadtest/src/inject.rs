//! Scenario injections as mentions: an emergency burst by distinct authors, a rumor post with
//! reposts and enquiry replies, posts repeating a known debunked claim. Every injected mention
//! has a numeric id in its own range, so the driver can tell which injection an incident came
//! from by the ids assigned to it.

use crate::scenario::{Inject, InjectKind};

/// First id of injected mentions; injection `k`, mention `j` is `INJ_BASE + k·INJ_SPAN + j`.
pub const INJ_BASE: u64 = 9_000_000_000_000_000;
/// Ids reserved per injection.
pub const INJ_SPAN: u64 = 1_000_000;

/// Which injection (and which of its mentions) an id belongs to.
pub fn injection_of(seq: u64) -> Option<(usize, u64)> {
    let rel = seq.checked_sub(INJ_BASE)?;
    Some(((rel / INJ_SPAN) as usize, rel % INJ_SPAN))
}

/// One injected mention, before it is stamped and sent.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Numeric id.
    pub seq: u64,
    /// Milliseconds from the start of the run.
    pub at_ms: u64,
    /// Author handle.
    pub author: String,
    /// Text.
    pub text: String,
    /// Reposted mention id.
    pub repost_of: Option<u64>,
    /// Replied-to mention id.
    pub reply_to: Option<u64>,
}

// A district the generator never names, so background posts cannot have opened its incident
// before the injection (the 2023 floods hit 密云 hard).
const FLOOD: &[&str] = &[
    "北京密云区路口积水严重，车被淹了，水已经没过车顶",
    "密云区这边暴雨积水太深了，车被淹了好几辆，大家别过来",
    "北京密云区下沉式立交桥积水严重，有车被困",
    "密云区小区地库进水了，积水已经到膝盖",
];
// A story that matches no known claim, so only the cascade can make it an incident.
const RUMOR_ROOT: &str = "网传顺义区下周起全区停水一个月，大家赶紧囤水，速转！";
const RUMOR_REPOST: &[&str] = &["速转！", "紧急扩散", "家里有老人的注意", "转发"];
const RUMOR_ASK: &[&str] = &[
    "真的吗？求证",
    "有人能证实吗？真的假的",
    "求官方辟谣，真的要停水吗？",
    "真的吗？我们小区没通知啊",
];
// A known claim (rules/claims.toml: cotton-meat-floss) the generator never repeats.
const CLAIM: &[&str] = &[
    "肉松是棉花做的，大家别给孩子买了",
    "听说棉花肉松又出现了，家里有孩子的注意",
    "棉花做的肉松流入超市了，大家小心",
];

/// The mentions of injection `k`, in send order.
pub fn plan(k: usize, inj: &Inject) -> Vec<Planned> {
    let base = INJ_BASE + k as u64 * INJ_SPAN;
    let n = u64::from(inj.mentions);
    let start = (inj.at_secs * 1000.0) as u64;
    let span = (inj.over_secs * 1000.0) as u64;
    let at = |j: u64| start + if n > 1 { span * j / (n - 1) } else { 0 };
    let author = |j: u64| format!("inj{k}-a{j}");
    let texts = |default: &[&str]| -> Vec<String> {
        if inj.texts.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            inj.texts.clone()
        }
    };
    match inj.kind {
        InjectKind::Emergency | InjectKind::Claim => {
            let t = texts(if inj.kind == InjectKind::Claim {
                CLAIM
            } else {
                FLOOD
            });
            (0..n)
                .map(|j| Planned {
                    seq: base + j,
                    at_ms: at(j),
                    author: author(j),
                    text: t[j as usize % t.len()].clone(),
                    repost_of: None,
                    reply_to: None,
                })
                .collect()
        }
        InjectKind::Rumor => {
            let root = texts(&[RUMOR_ROOT]).swap_remove(0);
            (0..n)
                .map(|j| {
                    let (text, repost_of, reply_to) = if j == 0 {
                        (root.clone(), None, None)
                    } else if j % 3 == 0 {
                        // Enquiry replies: people asking whether it is true.
                        (
                            RUMOR_ASK[(j as usize / 3) % RUMOR_ASK.len()].to_string(),
                            None,
                            Some(base),
                        )
                    } else {
                        let c = RUMOR_REPOST[j as usize % RUMOR_REPOST.len()];
                        (format!("{c}//@inj{k}-a0:{root}"), Some(base), None)
                    };
                    Planned {
                        seq: base + j,
                        at_ms: at(j),
                        author: author(j),
                        text,
                        repost_of,
                        reply_to,
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_back_and_rumors_cascade() {
        let inj = Inject {
            name: "r".into(),
            kind: InjectKind::Rumor,
            at_secs: 2.0,
            over_secs: 9.0,
            mentions: 10,
            texts: vec![],
            expect_category: None,
            expect_region: None,
        };
        let p = plan(3, &inj);
        assert_eq!(p.len(), 10);
        assert_eq!(p[0].at_ms, 2000);
        assert_eq!(p[9].at_ms, 11_000);
        assert_eq!(injection_of(p[7].seq), Some((3, 7)));
        assert_eq!(injection_of(42), None);
        let replies = p.iter().filter(|m| m.reply_to == Some(p[0].seq)).count();
        let reposts = p.iter().filter(|m| m.repost_of == Some(p[0].seq)).count();
        assert_eq!((replies, reposts), (3, 6));
        let authors: std::collections::HashSet<_> = p.iter().map(|m| &m.author).collect();
        assert_eq!(authors.len(), 10, "distinct authors");
    }
}
