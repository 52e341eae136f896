//! Vocabulary for the generator. Every entry is plain text without `"`, `\` or control
//! characters (a unit test checks it), so lines need no JSON escaping in the common case.
//!
//! Everyday chatter is chosen to hit NO category keyword, rumor cue or known claim of `rules/`
//! (e.g. no 台风天, 大风, 大雾, 中暑, 流感, 人挤人, 追尾, 听说, 据说, 真的假的, 扩散); only the
//! emergency and rumor templates carry those.

/// A vocabulary entry with its length in characters (computed at compile time: counting
/// characters at run time was a quarter of the generator's time).
#[derive(Debug, Clone, Copy)]
pub struct W {
    /// The text.
    pub s: &'static str,
    /// Its length in characters.
    pub chars: usize,
}

impl W {
    /// An entry for `s`.
    pub const fn new(s: &'static str) -> W {
        W {
            s,
            chars: char_count(s),
        }
    }
}

/// Characters in `s` (a `const fn`: UTF-8 bytes that do not continue a character).
pub const fn char_count(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] & 0xC0 != 0x80 {
            n += 1;
        }
        i += 1;
    }
    n
}

macro_rules! words {
    ($($s:literal),* $(,)?) => {
        &[$(W::new($s)),*]
    };
}

/// Regions (names and aliases of the gazetteer), most talked-about first: the generator draws
/// them Zipf-like, so big cities dominate and districts form a long tail.
pub const REGIONS: &[W] = words![
    "北京",
    "上海",
    "广州",
    "深圳",
    "成都",
    "武汉",
    "杭州",
    "重庆",
    "南京",
    "西安",
    "海淀区",
    "浦东",
    "天河",
    "西湖区",
    "朝阳区",
    "长沙",
    "郑州",
    "苏州",
    "天津",
    "青岛",
    "浦东新区",
    "天河区",
    "南山区",
    "福田区",
    "武侯区",
    "锦江区",
    "洪山区",
    "武昌区",
    "余杭区",
    "滨江区",
    "东城区",
    "西城区",
    "丰台区",
    "昌平区",
    "徐汇区",
    "静安区",
    "闵行区",
    "黄浦区",
    "越秀区",
    "海珠区",
    "番禺区",
    "宝安区",
    "龙岗区",
    "青羊区",
    "双流区",
    "江汉区",
    "汉阳区",
    "拱墅区",
    "玄武区",
    "江宁区",
    "渝中区",
    "沙坪坝区",
    "雁塔区",
    "碑林区",
    "岳麓区",
    "天心区",
    "金水区",
    "二七区",
    "姑苏区",
    "吴中区",
    "滨海新区",
    "市南区",
    "崂山区",
    "济南",
    "历下区",
    "沈阳",
    "大连",
    "哈尔滨",
    "长春",
    "石家庄",
    "太原",
    "合肥",
    "蜀山区",
    "福州",
    "厦门",
    "思明区",
    "南昌",
    "南宁",
    "昆明",
    "贵阳",
    "兰州",
    "西宁",
    "银川",
    "乌鲁木齐",
    "拉萨",
    "呼和浩特",
    "海口",
    "三亚",
    "东莞",
    "佛山",
    "顺德区",
    "珠海",
    "宁波",
    "温州",
    "无锡",
    "常州",
    "徐州",
    "洛阳",
    "宜昌",
    "襄阳",
    "绵阳",
    "桂林",
    "大理",
    "丽江",
    "香港",
    "澳门",
    "河南",
    "四川",
    "广东",
    "浙江",
    "湖北",
    "湖南",
];

/// English region names of the gazetteer.
pub const REGIONS_EN: &[W] = words![
    "beijing",
    "shanghai",
    "guangzhou",
    "shenzhen",
    "chengdu",
    "wuhan",
    "hangzhou",
    "chongqing",
    "nanjing",
    "xian",
    "tianjin",
    "suzhou",
    "changsha",
    "zhengzhou",
    "qingdao",
    "xiamen",
    "kunming",
    "hong kong",
    "macau",
    "harbin",
    "dalian",
    "shenyang",
    "hefei",
    "fuzhou",
    "nanning",
    "guilin",
    "sanya",
    "haikou",
    "lanzhou",
    "urumqi",
];

/// Everyday chatter clauses, by topic.
pub const WEATHER: &[W] = words![
    "今天天气真不错",
    "出太阳了赶紧晒被子",
    "早上有点凉记得多穿一件",
    "下了点小雨空气清新多了",
    "这几天有点闷热",
    "降温了大家注意保暖",
    "天气预报说周末是晴天",
    "今天的晚霞好美啊",
    "出门忘带伞了有点尴尬",
    "风有点凉但是很舒服",
    "今天空气质量还可以",
    "又是阴天什么时候放晴",
    "秋高气爽适合出去走走",
    "春天来了花都开了",
    "傍晚下了一阵小雨",
    "紫外线有点强记得涂防晒",
    "这天气适合睡懒觉",
    "晚上凉快多了出去散步",
];

pub const FOOD: &[W] = words![
    "中午吃了一碗牛肉面",
    "楼下新开的奶茶店排了好长的队",
    "周末和朋友去吃了火锅",
    "这家小龙虾味道一般般",
    "早餐煎饼果子加两个蛋",
    "晚上自己做了番茄炒蛋",
    "外卖又迟到了半个小时",
    "这家烤鸭真的名不虚传",
    "减肥第三天还是没忍住吃了炸鸡",
    "食堂今天的红烧肉不错",
    "想吃麻辣烫了",
    "新买的咖啡豆有点酸",
    "妈妈包的饺子最好吃",
    "夜宵来一份烧烤",
    "这家店的酸菜鱼量很足",
    "试了一下网红蛋糕感觉一般",
    "奶茶三分糖去冰",
    "周末去早茶吃了虾饺和凤爪",
    "路边摊的臭豆腐太香了",
    "今天的便当是咖喱饭",
];

pub const COMMUTE: &[W] = words![
    "早高峰地铁又满员了",
    "今天路上有点堵迟到了五分钟",
    "公交车等了二十分钟才来",
    "骑共享单车上班还挺舒服",
    "二号线今天居然有座位",
    "打车排队排了五十多号",
    "高架上堵成停车场",
    "末班地铁赶上了",
    "换乘通道走了好久",
    "开车上班找车位太难了",
    "今天地铁运行很顺利",
    "通勤一个半小时真的累",
    "坐错方向多坐了三站",
    "早上的公交司机很热心",
    "新开的地铁线路方便多了",
];

pub const SHOPPING: &[W] = words![
    "双十一的快递终于到了",
    "买的衣服尺码不太合适要退货",
    "超市今天鸡蛋打折",
    "直播间抢到了便宜的护肤品",
    "新手机用起来很流畅",
    "商场周年庆人好多",
    "网购的书包装有点破",
    "买了一个新的电饭煲",
    "逛了一下午什么都没买",
    "这个月又超支了",
    "优惠券叠加下来很划算",
    "快递小哥送货很准时",
    "二手平台淘到一个好东西",
    "给爸妈买了按摩椅",
];

pub const ENTERTAINMENT: &[W] = words![
    "昨晚追剧追到两点",
    "这部电影的结局太意外了",
    "周末去看了演唱会",
    "新出的综艺还挺好笑",
    "单曲循环了一整天",
    "这个游戏的新版本很好玩",
    "主角的演技真的在线",
    "剧情有点拖沓但是画面很美",
    "今晚有球赛一起看吗",
    "主队终于赢了",
    "博物馆的新展览值得一看",
    "在家看了一整天的纪录片",
    "小说更新太慢了",
    "偶像的新歌好听哭了",
    "相声专场笑得肚子疼",
    "周末去公园放风筝",
];

pub const LIFE: &[W] = words![
    "加班到九点终于下班了",
    "周一又开始上班了",
    "孩子今天开学了",
    "家里的猫又把花盆推倒了",
    "早睡早起身体好",
    "健身房打卡第十天",
    "下午开了三个会",
    "周末带狗狗去公园玩",
    "考试终于结束了",
    "今天的工作效率很高",
    "给自己放个假",
    "楼上又在装修",
    "搬家累得腰酸背痛",
    "报了一个游泳班",
    "小区的桂花开了好香",
    "和老同学聚了聚",
];

/// All chatter topics.
pub const TOPICS: &[&[W]] = &[WEATHER, FOOD, COMMUTE, SHOPPING, ENTERTAINMENT, LIFE];

/// Short interjections between clauses.
pub const FILLERS: &[W] = words![
    "哈哈哈",
    "绝了",
    "好开心",
    "有点累",
    "无语",
    "太难了",
    "开心",
    "羡慕",
    "冲鸭",
    "笑死",
    "救命好好笑",
    "yyds",
    "还行吧",
    "哎",
    "emmm",
    "就这样吧",
    "加油",
];

/// Phrases placing a clause in a region.
pub const REGION_PREFIX: &[W] = words!["在", "今天在", "刚到", "人在", "坐标", "路过"];

pub const SEPARATORS: &[W] = words!["，", "。", "！", "~", "，", "，", "。", " "];

pub const EMOJI: &[W] = words![
    "😂", "👍", "😭", "🙏", "❤️", "🔥", "😅", "🤣", "☀️", "🌧️", "🍜", "🚇", "🎉", "😍", "[doge]",
    "[微笑]", "[哈哈]", "[允悲]",
];

pub const LINKS: &[W] = words![
    "https://t.cn/A6x",
    "http://t.cn/R2k",
    "https://weibo.com/ttarticle/p/show?id=23094",
    "https://m.example.com/news/",
    "https://b23.tv/",
];

pub const HASHTAGS: &[W] = words![
    "#周末去哪儿#",
    "#今日份快乐#",
    "#打工人#",
    "#美食分享#",
    "#城市随拍#",
    "#追剧日常#",
    "#通勤vlog#",
    "#好物分享#",
];

/// Everyday English chatter.
pub const EN_CHATTER: &[W] = words![
    "just had the best noodles in town",
    "the subway was packed this morning",
    "finally the weekend is here",
    "anyone know a good coffee place nearby",
    "watched a great movie last night",
    "traffic on the ring road is slow today",
    "the weather is lovely this afternoon",
    "my package arrived two days early",
    "work meeting ran over again",
    "trying the new dumpling place tonight",
    "the concert was amazing",
    "so tired after the gym",
    "visiting friends this weekend",
    "the city looks beautiful at night",
    "learning to cook hot pot at home",
];

/// Emergency categories with sentences that carry their keywords, and a relative weight.
/// `{}` marks where the region goes (it may be left out).
pub struct Emergency {
    pub weight: u32,
    pub zh: &'static [W],
    pub en: &'static [W],
}

pub const EMERGENCIES: &[Emergency] = &[
    Emergency {
        weight: 20,
        zh: words![
            "暴雨下得好大路上全是积水",
            "又是暴雨，小区门口积水到膝盖了",
            "突降暴雨，地下车库进水了",
            "下暴雨了，路口积水车都开不过去",
            "这场暴雨太猛了，好几条路被淹",
        ],
        en: words![
            "heavy rain and flooding on the main road",
            "streets flooded after the downpour"
        ],
    },
    Emergency {
        weight: 10,
        zh: words![
            "路口积水好深",
            "地铁站进水了大家绕行",
            "河水涨得厉害，洪水快漫上来了",
            "车被淹了只能推着走"
        ],
        en: words![
            "flash flood warning for the area",
            "our street is flooded again"
        ],
    },
    Emergency {
        weight: 12,
        zh: words![
            "对面楼着火了，浓烟滚滚",
            "着火了着火了，消防车已经到了",
            "小区有一户起火了，火势不小",
            "前面一家店着火了黑烟滚滚",
        ],
        en: words![
            "apartment fire on our block, firefighters on scene",
            "a house fire down the street"
        ],
    },
    Emergency {
        weight: 8,
        zh: words![
            "刚才地震了吧，楼在晃",
            "有震感！床在摇",
            "地震了，大家都跑下楼了",
            "感觉到地震了，吊灯一直在晃"
        ],
        en: words![
            "did anyone else feel that earthquake",
            "strong earthquake just now"
        ],
    },
    Emergency {
        weight: 12,
        zh: words![
            "整栋楼都停电了",
            "突然停电了，电梯也停了",
            "小区停电停水一下午了",
            "大面积停电，红绿灯都不亮了"
        ],
        en: words![
            "power outage in our whole neighborhood",
            "we lost power an hour ago"
        ],
    },
    Emergency {
        weight: 12,
        zh: words![
            "前面发生车祸了，两辆车相撞",
            "高架上出车祸了，堵了好长",
            "路口有车祸，一辆电动车被撞",
            "刚看到一起车祸，救护车来了"
        ],
        en: words![
            "car crash at the intersection, avoid the area",
            "bad car accident on the highway"
        ],
    },
    Emergency {
        weight: 5,
        zh: words![
            "工地附近发生爆炸，巨响",
            "听到一声巨响，好像是爆炸",
            "餐馆燃气爆炸了"
        ],
        en: words![
            "huge explosion heard downtown",
            "gas explosion near the market"
        ],
    },
    Emergency {
        weight: 4,
        zh: words!["老房子坍塌了", "路面塌陷出现一个大坑", "工地的墙倒塌了"],
        en: words!["building collapse reported near the station"],
    },
    Emergency {
        weight: 4,
        zh: words![
            "闻到刺鼻气味，好像是燃气泄露",
            "化工厂那边有毒气体泄漏",
            "楼道里燃气泄露了"
        ],
        en: words!["gas leak in the building, everyone out"],
    },
    Emergency {
        weight: 4,
        zh: words![
            "学校食堂疑似食物中毒，好多学生上吐下泻",
            "吃了野生菌中毒了",
            "公司聚餐后集体腹泻"
        ],
        en: words!["food poisoning at the school canteen"],
    },
    Emergency {
        weight: 4,
        zh: words!["山体滑坡了，道路中断", "发生泥石流，村口的路被冲毁"],
        en: words!["landslide blocked the mountain road"],
    },
    Emergency {
        weight: 3,
        zh: words![
            "老人走失了，穿灰色外套",
            "孩子不见了，请大家帮忙留意",
            "有个小孩落水了"
        ],
        en: words!["missing child last seen near the park"],
    },
    Emergency {
        weight: 3,
        zh: words![
            "冰雹砸下来了，好吓人",
            "狂风把广告牌都吹倒了",
            "寒潮来了，道路结冰"
        ],
        en: words![
            "hailstorm smashed car windows",
            "a tornado touched down nearby"
        ],
    },
];

/// Follow-up clauses for emergency posts (boosters, help requests, plain commentary).
pub const EMERGENCY_TAIL: &[W] = words![
    "大家注意安全",
    "有人被困",
    "有人受伤了",
    "已经打119了",
    "救护车来了",
    "请求支援",
    "千万别往那边走",
    "希望没人受伤",
    "现场一片混乱",
    "消防员辛苦了",
    "太吓人了",
    "求助，谁能帮帮忙",
];

/// Rumor cue phrases: spreading (before the claim) and enquiry/correction (after it).
pub const RUMOR_SPREAD: &[W] = words![
    "网传",
    "紧急扩散！",
    "速转！",
    "朋友圈都在传",
    "群里都在传",
    "刚刚收到消息"
];
pub const RUMOR_ASK: &[W] = words![
    "真的吗？",
    "求证",
    "是真的吗",
    "有人知道吗？",
    "求官方辟谣",
    "是否属实？"
];
pub const RUMOR_DENY: &[W] = words![
    "辟谣：",
    "别信，是谣言",
    "官方辟谣了",
    "假消息，不信谣不传谣"
];

/// Subjects and predicates of made-up rumors (combined per run into a fixed set of stories,
/// so that many authors repeat near-identical text, as rumors do).
pub const RUMOR_SUBJECT: &[W] = words![
    "某小区的自来水",
    "地铁二号线",
    "市中心的商场",
    "明天全市",
    "某连锁超市",
    "第一人民医院",
    "某知名奶茶品牌",
    "高速收费站",
    "市里的中小学",
    "某外卖平台",
];
pub const RUMOR_PREDICATE: &[W] = words![
    "下周开始停运整整一个月",
    "要关门停业整顿半年",
    "全部停课放假一周",
    "被查出严重问题负责人已被带走",
    "要涨价一倍从下月开始",
    "出了大事官方一直在瞒着",
    "免费发放大米和食用油凭身份证领取",
    "晚上要实行交通管制全部封路",
];

/// Details that make a story read like a message passed on (two per story).
pub const RUMOR_DETAIL: &[W] = words![
    "，消息是从内部人士那里传出来的",
    "，我亲戚就在那边上班",
    "，大家赶紧提前做好准备",
    "，现在去还来得及",
    "，家里有老人孩子的注意了",
    "，已经有好几个群在说这件事了",
    "，通知明天就会发出来",
    "，附近的朋友都收到消息了",
];

/// Known claims of `rules/claims.toml` (some rumor posts repeat them).
pub const KNOWN_CLAIMS: &[W] = words![
    "吃碘盐能防辐射，赶紧去超市买",
    "塑料紫菜又出现了，大家别买",
    "香蕉致癌，千万别给孩子吃",
    "地震局预测今晚有大地震",
    "自来水被投毒了，别喝",
    "人造鸡蛋流入市场，鸡蛋能弹起来",
];

/// English rumor cues and claims.
pub const EN_RUMOR: &[W] = words![
    "is this true? they say the metro will close for a month",
    "please share: schools closed all next week",
    "can anyone confirm the bridge is shut tonight",
    "fake news, the mall is not closing",
];

/// Repost comments (Weibo-style, before `//@author:`).
pub const REPOST_COMMENT: &[W] = words![
    "转发微博",
    "mark",
    "同感",
    "哈哈哈",
    "说得对",
    "太真实了",
    "支持",
    "转",
    "马住",
    "学到了",
    "好家伙",
    "🙏",
];

/// Reply openers.
pub const REPLY_OPENER: &[W] = words!["回复", "同意楼上", "我也是", "你说的对", "哈哈", "确实"];

/// Bodies of replies to a rumor (after an enquiry or correction cue).
pub const RUMOR_REPLY: &[W] = words![
    "我朋友也转了这个",
    "官方还没有发通知吧",
    "感觉不太靠谱",
    "有没有住附近的说一下",
    "等官方消息吧",
    "别乱传了",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<W> {
        let mut v: Vec<W> = Vec::new();
        for list in [
            REGIONS,
            REGIONS_EN,
            FILLERS,
            REGION_PREFIX,
            SEPARATORS,
            EMOJI,
            LINKS,
            HASHTAGS,
            EN_CHATTER,
            EMERGENCY_TAIL,
            RUMOR_SPREAD,
            RUMOR_ASK,
            RUMOR_DENY,
            RUMOR_SUBJECT,
            RUMOR_PREDICATE,
            RUMOR_DETAIL,
            KNOWN_CLAIMS,
            EN_RUMOR,
            REPOST_COMMENT,
            REPLY_OPENER,
            RUMOR_REPLY,
        ] {
            v.extend_from_slice(list);
        }
        for t in TOPICS {
            v.extend_from_slice(t);
        }
        for e in EMERGENCIES {
            v.extend_from_slice(e.zh);
            v.extend_from_slice(e.en);
        }
        v
    }

    #[test]
    fn vocabulary_needs_no_json_escaping() {
        for w in all() {
            let s = w.s;
            assert_eq!(w.chars, s.chars().count());
            assert!(
                !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20),
                "{s:?} needs escaping"
            );
            assert!(!s.is_empty());
        }
    }
}
