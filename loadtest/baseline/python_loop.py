"""The usual Python monitoring loop, for comparison with `huiying replay` (issue 19).

What an office's script typically does with a stream of posts: `json.loads` each line, lower-case
the text, scan it with an Aho-Corasick automaton (pyahocorasick) over the project's own
patterns (the category keywords, exclusions and boosters, the rumor cues, the known claims'
phrases and the request cues of `rules/`; no regions), and cut the posts that hit into words
with jieba, counting hits and words; two processes, as two cores. It detects nothing (no
windows, no baselines, no cascades, no incidents): huiying does all of that in its replay.

    python3 -m venv venv && venv/bin/pip install pyahocorasick==2.1.0 jieba==0.42.1
    venv/bin/python loadtest/baseline/python_loop.py real1m.jsonl rules

Prints the lines, the posts that hit, the words counted and mentions per second (timed from the
first line read, after both processes loaded jieba's dictionary and built the automaton).

同一批数据上的“常见 Python 监测脚本”：逐行 json 解析、pyahocorasick 关键词匹配、命中后 jieba
分词，两个进程；只计数，不做任何检测。
"""

import json
import multiprocessing as mp
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

CHUNK = 5000


def patterns(rules: Path) -> list[str]:
    """Every pattern string of the rules that are not regions, lower-cased, each once."""
    out: set[str] = set()

    def add(xs):
        out.update(s.lower() for s in xs if isinstance(s, str) and s.strip())

    with open(rules / "categories.toml", "rb") as f:
        for c in tomllib.load(f).get("category", []):
            for k in ("keywords", "exclude", "boosters"):
                add(c.get(k, []))
    with open(rules / "rumor.toml", "rb") as f:
        d = tomllib.load(f)
        for k in ("enquiry", "correction", "spreading"):
            add(d.get(k, []))
    with open(rules / "claims.toml", "rb") as f:
        for c in tomllib.load(f).get("claim", []):
            add(c.get("phrases", []))
    with open(rules / "requests.toml", "rb") as f:
        for r in tomllib.load(f).get("request", []):
            add(r.get("cues", []))
    return sorted(out)


AUTOMATON = None


def init(pats: list[str]) -> None:
    global AUTOMATON
    import ahocorasick
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    a = ahocorasick.Automaton()
    for i, p in enumerate(pats):
        a.add_word(p, i)
    a.make_automaton()
    AUTOMATON = a


def work(lines: list[bytes]) -> tuple[int, int, Counter]:
    import jieba

    hits = 0
    words: Counter = Counter()
    for line in lines:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        text = str(m.get("text", "")).lower()
        if any(True for _ in AUTOMATON.iter(text)):
            hits += 1
            words.update(w for w in jieba.lcut(text) if len(w) >= 2)
    return len(lines), hits, words


def chunks(path: str):
    buf = []
    with open(path, "rb") as f:
        for line in f:
            buf.append(line)
            if len(buf) >= CHUNK:
                yield buf
                buf = []
    if buf:
        yield buf


def main() -> None:
    path = sys.argv[1]
    rules = Path(sys.argv[2] if len(sys.argv) > 2 else "rules")
    pats = patterns(rules)
    with mp.Pool(2, initializer=init, initargs=(pats,)) as pool:
        # Both processes ready (dictionary loaded, automaton built) before the clock starts.
        pool.map(time.sleep, [0.5, 0.5])
        start = time.perf_counter()
        lines = hits = 0
        words: Counter = Counter()
        for n, h, w in pool.imap(work, chunks(path)):
            lines += n
            hits += h
            words.update(w)
        secs = time.perf_counter() - start
    print(f"patterns {len(pats)}  lines {lines}  hit {hits}  words {len(words)}")
    print(f"wall {secs:.2f} s  mentions/s {lines / secs:.0f}")


if __name__ == "__main__":
    main()
