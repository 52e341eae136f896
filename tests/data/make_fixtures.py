#!/usr/bin/env python3
"""Writes the small scenario files of tests/data (deterministic: same output every run).

    python3 tests/data/make_fixtures.py

Each scenario is a JSON Lines file in the generic mention format; the expected incidents are in
the test code (tests/it/replay.rs), not generated here.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1_795_833_158_000  # 2026-11-28 10:32:38 +08:00

CHATTER = [
    "今天{p}天气不错，适合出去走走",
    "{p}这家火锅真好吃，排队一小时也值",
    "周末去{p}看展，人好多",
    "早高峰地铁好挤",
    "这部剧的流量洪水般涌来，热搜又爆了",
    "大火收汁，这道红烧肉就做好了",
    "这个视频火爆全网，笑死我了",
    "Great weekend in {p}, the food is amazing",
]
PLACES = ["海淀", "朝阳", "浦东", "天河", "武侯", "西湖"]


def chatter(rng, ts, n, prefix):
    out = []
    for i in range(n):
        out.append({
            "id": f"{prefix}-c{i}",
            "ts": ts + i * 997,
            "author": f"user{rng.randrange(3000)}",
            "text": rng.choice(CHATTER).replace("{p}", rng.choice(PLACES)),
        })
    return out


def write(name, rows):
    rows.sort(key=lambda r: (r.get("ts", 0), str(r["id"])))
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def flood_haidian():
    """Chatter, a rainstorm/waterlogging burst in 北京海淀区 from 30 distinct authors, a rumor
    cascade (root + reposts + enquiry replies), and one known debunked claim."""
    rng = random.Random(1)
    rows = chatter(rng, T0, 300, "fh")
    storm = [
        "北京海淀区暴雨，路口积水已经没过膝盖了",
        "海淀区大暴雨！小区地库进水，车被淹了",
        "北京海淀这雨太大了，地下通道积水，有人被困",
        "海淀暴雨红色预警，路上全是积水",
        "北京海淀區內澇嚴重，看海模式開啟",  # traditional characters
        "海淀区下暴雨了，地铁站进水，大家注意安全",
    ]
    for i in range(30):
        rows.append({
            "id": f"fh-s{i}",
            "ts": T0 + 60_000 + i * 4_000,
            "author": {"id": f"storm{i}", "name": f"市民{i}", "followers": 100 + i},
            "text": storm[i % len(storm)],
        })
    root = {"id": "fh-r0", "ts": T0 + 120_000, "author": "rumorroot",
            "text": "网传明天北京全城停水三天，赶紧储水，速转！"}
    rows.append(root)
    for i in range(12):
        kind = i % 3
        r = {"id": f"fh-r{i + 1}", "ts": T0 + 125_000 + i * 5_000, "author": f"rumor{i}"}
        if kind == 0:
            r.update(text="", repost_of="fh-r0")
        elif kind == 1:
            r.update(text="真的吗？有人知道吗", reply_to="fh-r0")
        else:
            r.update(text="求证，是真的吗", reply_to="fh-r0")
        rows.append(r)
    rows.append({"id": "fh-k1", "ts": T0 + 200_000, "author": "salt1",
                 "text": "吃碘盐能防辐射，赶紧去超市抢盐，速转！"})
    write("flood_haidian.jsonl", rows)


def spam_single_author():
    """One author posting about a fire 200 times in two minutes: opens nothing."""
    rng = random.Random(2)
    rows = chatter(rng, T0, 50, "sp")
    for i in range(200):
        rows.append({"id": f"sp-f{i}", "ts": T0 + 10_000 + i * 600, "author": "spammer",
                     "text": f"朝阳区着火了！大火！浓烟滚滚 #{i}"})
    write("spam_single_author.jsonl", rows)


def bad_lines():
    """Good mentions (an English fire burst) interleaved with every kind of bad line."""
    lines = []
    for i in range(12):
        lines.append(json.dumps({"id": f"bl-{i}", "ts": T0 + i * 5_000, "author": f"a{i}",
                                 "text": "House fire on Main Street, firefighters on scene, people trapped"}))
        if i == 2:
            lines.append("this is not json")
        if i == 4:
            lines.append(json.dumps({"text": "no id", "ts": T0}))
        if i == 6:
            lines.append(json.dumps({"id": "t", "text": "bad time", "created_at": "yesterday"}))
        if i == 8:
            lines.append(json.dumps({"id": "big", "ts": T0, "text": "x" * 70_000}))
        if i == 10:
            lines.append(json.dumps({"id": "nt", "ts": T0}))
    with open(os.path.join(HERE, "bad_lines.jsonl"), "wb") as f:
        for i, l in enumerate(lines):
            f.write(l.encode() + b"\n")
            if i == 5:
                f.write(b'{"id":"u","ts":1,"text":"\xff\xfe"}\n')


if __name__ == "__main__":
    flood_haidian()
    spam_single_author()
    bad_lines()
