//! The demo drill: background chatter, then a rainstorm and waterlogging burst in one district,
//! then a rumor cascade with enquiry replies and a known debunked claim. It repeats every ten
//! minutes in another district, so a newcomer sees incidents open within a minute.
//!
//! The generator is a pure function of a seed and elapsed time, so tests can drive it with
//! any clock.

use crate::normalize::{Author, Mention};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Length of one drill cycle.
pub const CYCLE_MS: i64 = 600_000;

/// (district as people write it, city or province that disambiguates it)
const PLACES: [(&str, &str); 4] = [
    ("海淀区", "北京"),
    ("浦东新区", "上海"),
    ("天河区", "广州"),
    ("武侯区", "成都"),
];

const CHATTER: [&str; 16] = [
    "今天{p}天气不错，适合出去走走",
    "{p}这家火锅真好吃，排队一小时也值",
    "周末去{p}看展，人好多",
    "早高峰地铁好挤，{p}站根本上不去",
    "{p}新开了一家咖啡店，推荐！",
    "这部剧的流量洪水般涌来，热搜又爆了",
    "下班路上看到{p}的晚霞，太美了",
    "{p}的房价又涨了吗",
    "Great weekend in {p}, the food is amazing",
    "Anyone know a good gym near {p}?",
    "孩子开学了，{p}的学校门口堵车",
    "{p}图书馆周末开放到几点？",
    "这个视频火爆全网，笑死我了",
    "大火收汁，这道红烧肉就做好了",
    "{p}马拉松报名开始了",
    "今天的晚饭：炸鸡配可乐",
];

const STORM: [&str; 8] = [
    "{c}{p}暴雨，路口积水已经没过膝盖了",
    "{p}大暴雨！小区地库进水，车被淹了",
    "{c}{p}这雨太大了，地下通道积水，有人被困，求救援",
    "{p}暴雨红色预警，路上全是积水，公交停运",
    "{c}{p}内涝严重，看海模式开启",
    "{p}下暴雨了，地铁站进水，大家注意安全",
    "Heavy rainstorm in {p}, streets flooded, cars under water",
    "{c}{p}积水太深了，有老人被困在车里，救命",
];

/// Citizens' requests to the office's account (the cases stage takes them in): (second of the
/// cycle, author, text). The first two are one problem from two citizens; the third a plea for
/// help during the storm (linked to its incident); the last a suggestion.
const REQUESTS: [(i64, &str, &str); 4] = [
    (
        20_000,
        "citizen-a",
        "@北京发布 {c}{p}幸福小区门口的路灯坏了一个多月了，晚上很黑，请尽快维修",
    ),
    (
        24_000,
        "citizen-b",
        "@北京发布 {c}{p}幸福小区路灯坏了一个月，晚上太黑了，希望尽快修好",
    ),
    (
        60_000,
        "citizen-c",
        "@北京发布 求助！{c}{p}地下车库进水了，有老人被困在里面出不来",
    ),
    (
        100_000,
        "citizen-d",
        "@北京发布 建议{c}{p}实验小学门口早高峰增派交警疏导，太堵了",
    ),
];

const RUMOR_ROOT: &str = "网传明天{c}全城停水三天，赶紧储水，速转！";
const RUMOR_COPY: [&str; 3] = [
    "紧急扩散：明天{c}全城停水三天，赶紧储水！",
    "网传{c}明天全城停水三天，大家赶紧储水，速转",
    "听说明天{c}全城要停水三天，赶紧储水吧，扩散",
];
const RUMOR_REPLY: [&str; 4] = [
    "真的吗？",
    "求证，有人知道吗",
    "是真的吗？官方怎么没说",
    "真的假的，{c}自来水公司回应一下",
];
const CLAIM: [&str; 2] = [
    "吃碘盐能防辐射，赶紧去超市抢盐，速转！",
    "网传碘盐防辐射，超市的盐都被抢光了，真的吗",
];

/// The drill generator.
pub struct Drill {
    rng: StdRng,
    start_ms: i64,
    emitted_ms: i64,
    seq: u64,
    /// Background mentions per second.
    pub chatter_per_sec: f64,
}

impl Drill {
    /// A drill starting at `start_ms` (event time), seeded for repeatability.
    pub fn new(seed: u64, start_ms: i64) -> Self {
        Drill {
            rng: StdRng::seed_from_u64(seed),
            start_ms,
            emitted_ms: start_ms,
            seq: 0,
            chatter_per_sec: 20.0,
        }
    }

    fn mention(
        &mut self,
        ts: i64,
        text: String,
        author: String,
        repost_of: Option<String>,
        reply_to: Option<String>,
    ) -> Mention {
        self.seq += 1;
        Mention {
            id: format!("demo-{}-{}", self.start_ms, self.seq),
            ts,
            text,
            author: Some(Author {
                id: author,
                name: None,
                followers: Some(self.rng.random_range(10..50_000)),
                verified: false,
            }),
            repost_of,
            reply_to,
            region: None,
            lang: None,
            source: Some("demo".into()),
            official: false,
            to: None,
            thread: None,
        }
    }

    /// Everything the drill says between the last call and `now_ms`, in event-time order.
    pub fn advance(&mut self, now_ms: i64) -> Vec<Mention> {
        let mut out = Vec::new();
        let step = 100;
        while self.emitted_ms + step <= now_ms {
            let t = self.emitted_ms + step;
            self.emitted_ms = t;
            self.tick(t, &mut out);
        }
        out
    }

    fn tick(&mut self, t: i64, out: &mut Vec<Mention>) {
        let since = t - self.start_ms;
        let cycle = since / CYCLE_MS;
        let in_cycle = since % CYCLE_MS;
        let (district, city) = PLACES[(cycle as usize) % PLACES.len()];
        // Chatter: Poisson-ish by coin flips per 100 ms.
        let expected = self.chatter_per_sec / 10.0;
        let n = expected.floor() as usize + usize::from(self.rng.random_bool(expected.fract()));
        for _ in 0..n {
            let (p, _) = PLACES[self.rng.random_range(0..PLACES.len())];
            let tpl = CHATTER[self.rng.random_range(0..CHATTER.len())];
            let text = tpl.replace("{p}", p.trim_end_matches('区'));
            let author = format!("u{}", self.rng.random_range(0..5_000));
            out.push(self.mention(t, text, author, None, None));
        }
        // The storm: 15 s to 105 s of each cycle, about one mention a second from new authors.
        if (15_000..105_000).contains(&in_cycle) && self.rng.random_bool(0.12) {
            let tpl = STORM[self.rng.random_range(0..STORM.len())];
            let text = tpl.replace("{c}", city).replace("{p}", district);
            let author = format!("storm-{cycle}-{}", self.rng.random_range(0..100_000));
            out.push(self.mention(t, text, author, None, None));
        }
        // The rumor: a root post at 40 s, then reposts, enquiry replies and copies until 130 s.
        let root_id = format!("demo-rumor-{}-{cycle}", self.start_ms);
        if in_cycle == 40_000 {
            self.seq += 1;
            out.push(Mention {
                id: root_id.clone(),
                ts: t,
                text: RUMOR_ROOT.replace("{c}", city),
                author: Some(Author {
                    id: format!("rumor-root-{cycle}"),
                    ..Author::default()
                }),
                repost_of: None,
                reply_to: None,
                region: None,
                lang: None,
                source: Some("demo".into()),
                official: false,
                to: None,
                thread: None,
            });
        }
        if (41_000..130_000).contains(&in_cycle) && self.rng.random_bool(0.1) {
            let author = format!("rumor-{cycle}-{}", self.rng.random_range(0..100_000));
            let kind = self.rng.random_range(0..10);
            let m = if kind < 5 {
                self.mention(t, "转发微博".into(), author, Some(root_id), None)
            } else if kind < 8 {
                let text =
                    RUMOR_REPLY[self.rng.random_range(0..RUMOR_REPLY.len())].replace("{c}", city);
                self.mention(t, text, author, None, Some(root_id))
            } else {
                let text =
                    RUMOR_COPY[self.rng.random_range(0..RUMOR_COPY.len())].replace("{c}", city);
                self.mention(t, text, author, None, None)
            };
            out.push(m);
        }
        // Citizens' requests, as Weibo mentions of 北京发布 (acknowledged on the drill sink).
        for (at, who, tpl) in REQUESTS {
            if in_cycle == at {
                self.seq += 1;
                out.push(Mention {
                    id: format!(
                        "weibo:{}{:04}{cycle:03}",
                        self.start_ms % 1_000_000,
                        self.seq % 10_000
                    ),
                    ts: t,
                    text: tpl.replace("{c}", city).replace("{p}", district),
                    author: Some(Author {
                        id: format!("{who}-{cycle}"),
                        ..Author::default()
                    }),
                    repost_of: None,
                    reply_to: None,
                    region: None,
                    lang: None,
                    source: Some("weibo".into()),
                    official: false,
                    to: None,
                    thread: None,
                });
            }
        }
        // A known debunked claim at 70 s.
        if in_cycle == 70_000 || in_cycle == 72_000 {
            let text = CLAIM[usize::from(in_cycle == 72_000)].to_string();
            let author = format!("claim-{cycle}-{in_cycle}");
            out.push(self.mention(t, text, author, None, None));
        }
    }
}

/// Play the drill into `ingest` on the wall clock until `cancel`.
pub async fn run(ingest: crate::ingest::Ingest, cancel: tokio_util::sync::CancellationToken) {
    let mut drill = Drill::new(2026, chrono::Utc::now().timestamp_millis());
    let mut iv = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = iv.tick() => {
                for m in drill.advance(chrono::Utc::now().timestamp_millis()) {
                    if !ingest.send(m).await { return; }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_drill_and_time_ordered() {
        let mut a = Drill::new(7, 0);
        let mut b = Drill::new(7, 0);
        let (x, y) = (a.advance(150_000), b.advance(150_000));
        assert_eq!(x, y);
        assert!(x.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(x.iter().any(|m| m.text.contains("暴雨")));
        assert!(x.iter().any(|m| m.reply_to.is_some()));
        let ids: std::collections::HashSet<_> = x.iter().map(|m| &m.id).collect();
        assert_eq!(ids.len(), x.len(), "ids are unique");
        let requests = x.iter().filter(|m| m.text.starts_with("@北京发布")).count();
        assert_eq!(requests, 4, "citizens' requests to the office");
    }
}
