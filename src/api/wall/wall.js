// huiying wall display. Plain script, no libraries, nothing from the internet: everything comes
// from this engine. Live over /api/stream?stats=true; the rest is polled. Nothing needs a click.
"use strict";

const STALE_MS = 15000; // three missed `stats` steps
const POLL_MS = 5000;
const FLASH_MS = 20000;
const MAX_NOTICES = 4;
const MAX_ROWS = 5; // accounts listed per notice before the amplifiers are folded
const TOKEN_KEY = "huiying.token";

const I18N = {
  zh: {
    title: "态势墙", rate: "全网提及 / 分钟", open: "活跃事件", updated: "最后更新",
    stale: "数据中断", authNeeded: "需要登录", incidents: "活跃事件", bySeverity: "按严重程度排序", none: "暂无活跃事件",
    map: "各省活跃事件", rumors: "谣言监测", noRumors: "暂无传播中的谣言", fanout: "通报发布",
    noNotices: "暂无通报", feeds: "数据源", emergency: "突发", rumor: "谣言", emerging: "新动向",
    authors: "人", mentions: "条", perMin: "条/分", more: (n) => `另有 ${n} 起`,
    age: (m) => (m < 1 ? "刚刚" : m < 60 ? `${m} 分钟` : `${Math.floor(m / 60)} 小时 ${m % 60} 分`),
    other: "其他", claim: (t) => `网传「${t}」`, quote: (t) => `「${t}」`, colon: "：", rebuttal: "辟谣",
    purpose: { update: "更新", all_clear: "解除" }, noticeStale: "⚠ 已与事件现状不符",
    staleFollowed: "⚠ 已与事件现状不符，更新通告待审批",
    why: "为何标记", whyKnown: "与已辟谣说法相同", whySpreading: (n) => `${n} 条催促扩散`,
    whyEnquiry: (n) => `${n} 条求证`, whyCorrection: (n) => `${n} 条质疑为假`,
    whyCascade: (n) => `转发链 ${n} 条`, whyScored: "模型评分高", lastMin: "条/近1分钟",
    split: (e, r, g) => `突发 ${e} · 谣言 ${r}` + (g ? ` · 新动向 ${g}` : ""), sev: (s) => `${s} 级`,
    legend: ["1 级", "2 级", "3 级", "4 级", "5 级"], noRegion: "未定位",
    rebutWho: "待值班员审批", rebutDraftWho: "待值班员起草辟谣", rumorAge: (m) => `已传播 ${m} 分钟`, openPage: "打开 ↗",
    rebutNone: "未辟谣", rebutDraft: "辟谣待审批", rebutRun: "辟谣发布中", rebutDone: "已辟谣",
    rebutKnown: "已有官方辟谣",
    notice: { draft: "待审批", held: "待自动发布", approved: "已批准", publishing: "发布中", done: "已完成", rejected: "已驳回" },
    held: (t) => `自动批准，${t} 发布，可取消`,
    job: { pending: "待发布", attempting: "发布中", retry: "重试中", done: "已发布", failed: "失败", check_failed: "无法核实" },
    checkFailed: (n) => `⚠ ${n} 条无法核实是否已发出，请人工查看`, waitLimit: "等额度至",
    approvals: (a, n) => `审批 ${a}/${n}`, lead: "主发", co: "联发", amp: "转发",
    amps: (n) => `转发账号 ${n} 个`,
    respondOff: "发布模块未启用", forbidden: "无权查看", httpOnly: "未配置外部数据源 · 经 HTTP 接口接收", httpRecent: (n) => `${n} 条/分`,
    timeline: "首要事件进程", after: (m) => `+${m} 分`,
    steps: { opened: "发现", drafted: "起草", approved: "批准", firstPost: "首发", lastPost: "最后发布" }, connected: "已连接",
    disconnected: "已断开", lag: "延迟", ago: (s) => (s < 60 ? `${s} 秒前` : `${Math.floor(s / 60)} 分钟前`),
    reconnects: "重连", langSwitch: "EN",
    cases: "民生诉求", casesHint: "办理中 · 超期按部门", casesOff: "诉求办理未启用",
    caseKpi: { open: "办理中", overdue: "超期", urgent: "紧急", received_today: "今日受理", answered_today: "今日答复", satisfaction: "满意率" },
    caseOpen: (n) => `${n} 件`, caseLate: (n) => `超期 ${n}`, deptMore: (n) => `另有 ${n} 个部门`,
    noCases: "暂无办理中的诉求",
    weekBest: "本周最佳", weekWorst: "待改进", moreNotices: (n) => `另有 ${n} 条通报`,
    waiting: (m) => (m < 1 ? "刚提交" : `已等 ${m < 60 ? `${m} 分钟` : `${Math.floor(m / 60)} 小时 ${m % 60} 分`}`), act: "值班员审批 ↗",
    moreRumors: (n) => `另有 ${n} 条谣言`, moreFeeds: (n) => `另有 ${n} 个数据源`, publishedAt: (t) => `${t} 发布`,
  },
  en: {
    title: "Situation wall", rate: "Mentions / min", open: "Active incidents", updated: "Last update",
    stale: "STALE", authNeeded: "LOGIN NEEDED", incidents: "Active incidents", bySeverity: "by severity", none: "No active incidents",
    map: "Active incidents by province", rumors: "Rumor watch", noRumors: "No rumor spreading",
    fanout: "Notice fan-out", noNotices: "No notices", feeds: "Feeds", emergency: "Emergency",
    rumor: "Rumor", emerging: "Emerging", authors: "authors", mentions: "posts", perMin: "/min",
    more: (n) => `${n} more`,
    age: (m) => (m < 1 ? "just now" : m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`),
    other: "Other", claim: (t) => `Claim: "${t}"`, quote: (t) => `"${t}"`, colon: ": ", rebuttal: "Rebuttal",
    purpose: { update: "Update", all_clear: "All clear" }, noticeStale: "⚠ No longer matches the incident",
    staleFollowed: "⚠ No longer matches the incident; an update awaits approval",
    why: "Flagged for", whyKnown: "matches a debunked claim", whySpreading: (n) => `${n} urging to share`,
    whyEnquiry: (n) => `${n} asking if true`, whyCorrection: (n) => `${n} calling it false`,
    whyCascade: (n) => `cascade of ${n}`, whyScored: "scorer", lastMin: "in the last min",
    split: (e, r, g) => `${e} emergency · ${r} rumor` + (g ? ` · ${g} emerging` : ""), sev: (s) => `sev ${s}`,
    legend: ["sev 1", "sev 2", "sev 3", "sev 4", "sev 5"], noRegion: "no region",
    rebutWho: "operators: approve", rebutDraftWho: "operators: draft a rebuttal", rumorAge: (m) => `spreading ${m} min`, openPage: "open ↗",
    rebutNone: "Not rebutted", rebutDraft: "Rebuttal awaiting approval", rebutRun: "Rebuttal publishing",
    rebutDone: "Rebutted", rebutKnown: "Official rebuttal exists",
    notice: { draft: "awaiting approval", held: "held", approved: "approved", publishing: "publishing", done: "done", rejected: "rejected" },
    held: (t) => `approved by policy: publishes at ${t} unless cancelled`,
    job: { pending: "pending", attempting: "posting", retry: "retrying", done: "posted", failed: "failed", check_failed: "unverified" },
    checkFailed: (n) => `⚠ ${n} post(s) could not be checked: look on the platform`, waitLimit: "limit until",
    approvals: (a, n) => `approvals ${a}/${n}`, lead: "lead", co: "co-publisher", amp: "repost",
    amps: (n) => `${n} reposting accounts`,
    respondOff: "Respond stage off", forbidden: "Not permitted", httpOnly: "No feed configured · posts via the HTTP API", httpRecent: (n) => `${n}/min`,
    timeline: "Top incident", after: (m) => `+${m} min`,
    steps: { opened: "Detected", drafted: "Drafted", approved: "Approved", firstPost: "First post", lastPost: "Last post" }, connected: "connected",
    disconnected: "disconnected", lag: "lag", ago: (s) => (s < 60 ? `${s} s ago` : `${Math.floor(s / 60)} min ago`),
    reconnects: "reconnects", langSwitch: "中文",
    cases: "Citizens' requests", casesHint: "open · overdue by department", casesOff: "Citizens' requests off",
    caseKpi: { open: "open", overdue: "overdue", urgent: "urgent", received_today: "in today", answered_today: "answered today", satisfaction: "satisfied" },
    caseOpen: (n) => `${n} open`, caseLate: (n) => `${n} late`, deptMore: (n) => `${n} more departments`,
    noCases: "No open requests",
    weekBest: "Best this week", weekWorst: "Needs attention", moreNotices: (n) => `${n} more notices`,
    waiting: (m) => (m < 1 ? "just in" : `waiting ${m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`}`), act: "operators: approve ↗",
    moreRumors: (n) => `${n} more rumors`, moreFeeds: (n) => `${n} more feeds`, publishedAt: (t) => `published ${t}`,
  },
};

const params = new URLSearchParams(location.search);
const lang = params.get("lang") === "en" ? "en" : "zh";
const T = I18N[lang];

// Auth: a `#token=…` in the address is kept for this tab only and removed from the address bar;
// without one the same-origin session cookie is used.
function keepToken() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (!m) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}
keepToken();
// A token typed into the address bar of an open wall changes only the fragment: start over.
window.addEventListener("hashchange", () => {
  if (keepToken()) location.reload();
});
const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(path) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(path, { headers, credentials: "same-origin", cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  // Refused (no session, expired or wrong token): say so on the screen, not only in a console.
  if (r.status === 401) document.body.dataset.auth = "refused";
  else if (r.ok) delete document.body.dataset.auth;
  if (!r.ok) {
    const e = new Error(`${path}: ${r.status}`);
    e.code = r.status === 403 ? "forbidden" : body.error;
    e.status = r.status;
    throw e;
  }
  return body;
}

const state = {
  incidents: new Map(), // id → incident
  seenAt: new Map(), // id → when the wall first saw it open (flash)
  series: {}, // id → per-minute rates
  totals: {}, // id → [mentions, authors], sampled with `series`
  stepMs: 5000,
  rate: [],
  tiles: [],
  provinces: new Map(), // 2-digit prefix → tile
  categories: {},
  notices: [], // [{notice, jobs}]
  noticeByIncident: new Map(),
  respondOff: false,
  accounts: new Map(), // id → {name, platform}, from /api/wall/labels
  feeds: [],
  cases: null, // /api/cases/summary, or "off" / "forbidden"
  week: null, // /api/evaluation/summary: the week's best and worst departments
  lastMsg: 0,
  wsOpen: false,
  stats: 0,
  summaries: 0,
  loadedAt: Date.now(),
};
// Read by the browser tests (what the wall holds is what it shows; nothing secret).
window.wallState = state;

const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : String(Math.round(n * 10) / 10));
const hhmmss = (d) => d.toLocaleTimeString("zh-CN", { hour12: false });

function applyLanguage() {
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  document.title = (lang === "en" ? "huiying · " : "回应 · ") + T.title;
  for (const e of document.querySelectorAll("[data-i18n]")) {
    const v = T[e.dataset.i18n];
    if (typeof v === "string") e.textContent = v;
  }
  const other = new URLSearchParams(location.search);
  if (lang === "en") other.delete("lang");
  else other.set("lang", "en");
  const q = other.toString();
  $("lang").href = location.pathname + (q ? "?" + q : "");
  $("lang").textContent = T.langSwitch;
  const legend = $("legend");
  legend.replaceChildren();
  T.legend.forEach((label, i) => {
    const s = el("span", `sev-${i + 1}`);
    s.append(el("i"), label);
    legend.append(s);
  });
}

// ---- rendering ------------------------------------------------------------------------------

function spark(svg, values) {
  const w = 200, h = 40;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  if (!values || values.length < 2) return;
  const max = Math.max(1, ...values);
  const dx = w / (values.length - 1);
  const pts = values.map((v, i) => `${(i * dx).toFixed(1)},${(h - (v / max) * (h - 3) - 1.5).toFixed(1)}`);
  const ns = "http://www.w3.org/2000/svg";
  const area = document.createElementNS(ns, "polygon");
  area.setAttribute("points", `0,${h} ${pts.join(" ")} ${w},${h}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(area, line);
}

function newSpark(cls) {
  const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  s.setAttribute("class", cls || "spark");
  return s;
}

const catName = (id) => (state.categories[id] ? state.categories[id][lang] : id === "other" ? T.other : id);

// An emerging incident: the terms that burst (no category names it).
const emergingGist = (inc) => `${T.emerging}：${(inc.top_terms || []).slice(0, 3).join(" · ")}`;

// What a rumor claims: its first post as people wrote it (trimmed by the engine at a word
// boundary), else its most frequent terms (never the rebuttal, which says the opposite).
function claimGist(inc) {
  // The post already says 网传 …: quoted as written, not 网传「网传 …」.
  if (inc.headline) return T.quote(inc.headline);
  const terms = (inc.top_terms || []).slice(0, 5).join(" ");
  return T.claim(terms || catName(inc.category));
}

// Why a rumor was flagged: a known debunked claim, the cues in its cascade, the scorer.
function whyFlagged(inc) {
  const w = inc.why || {};
  const parts = [];
  if (inc.rebuttal) parts.push(T.whyKnown);
  if (w.spreading) parts.push(T.whySpreading(w.spreading));
  if (w.enquiry) parts.push(T.whyEnquiry(w.enquiry));
  if (w.correction) parts.push(T.whyCorrection(w.correction));
  if (w.posts) parts.push(T.whyCascade(w.posts));
  if (w.scored) parts.push(T.whyScored);
  return parts.length ? `${T.why}${T.colon}${parts.join(" · ")}` : "";
}

// One snapshot per card: the counts that came with the latest rates (`stats`), else the
// incident's own; and the posts of the last minute (never more than it has).
function counts(inc) {
  const t = state.totals[inc.id];
  return t ? { mentions: Math.max(t[0], 0), authors: Math.max(t[1], 0) } : { mentions: inc.mentions, authors: inc.authors };
}

function lastMinute(inc) {
  const s = state.series[inc.id];
  if (!s || !s.length) return undefined;
  const steps = Math.max(1, Math.round(60000 / state.stepMs));
  const n = s.slice(-steps).reduce((a, v) => a + (v * state.stepMs) / 60000, 0);
  return Math.min(Math.round(n), counts(inc).mentions);
}

// The headline of the official rebuttal of a known claim.
function rebuttalHead(inc) {
  if (!inc.rebuttal) return "";
  return (lang === "en" ? inc.rebuttal.en : inc.rebuttal.zh).split(/[：:。.;；]/)[0];
}

function regionLabel(region) {
  if (!region) return T.noRegion;
  const tile = state.provinces.get(region.code.slice(0, 2));
  const en = tile ? tile.en.replaceAll("\u00ad", "") : "";
  if (lang === "en") {
    if (region.name_en) return region.name_en;
    if (!tile) return region.name;
    return region.code.endsWith("0000") ? en : `${region.name}, ${en}`;
  }
  if (!tile || region.code.endsWith("0000")) return region.name;
  return `${tile.short} · ${region.name}`;
}

// A wall never scrolls: drop items from the end of `list` while `panel` overflows; `onTrim(n)`
// is told how many were dropped (it may add a "n more" line, which is measured too).
function fit(panel, list, onTrim) {
  let dropped = 0;
  onTrim(0);
  while (panel.scrollHeight > panel.clientHeight + 1 && list.lastElementChild) {
    list.lastElementChild.remove();
    dropped += 1;
    onTrim(dropped);
  }
}

function ranked() {
  return [...state.incidents.values()].sort(
    (a, b) => b.severity - a.severity || b.authors - a.authors || b.opened_at - a.opened_at,
  );
}

function renderIncidents(now) {
  const list = $("incidents");
  const all = ranked();
  list.replaceChildren();
  for (const inc of all.slice(0, 40)) {
    const li = el("li", `inc sev-${inc.severity} kind-${inc.kind}`);
    li.dataset.id = inc.id;
    li.dataset.kind = inc.kind;
    li.dataset.category = inc.category;
    li.dataset.region = inc.region ? inc.region.code : "";
    li.dataset.severity = inc.severity;
    const seen = state.seenAt.get(inc.id);
    if (seen !== undefined && now - seen < FLASH_MS) {
      li.classList.add("new");
      // Re-rendered every second: a negative delay keeps the flash in phase.
      li.style.animationDelay = `-${now - seen}ms`;
    }
    li.append(el("div", "sev", String(inc.severity)));
    const body = el("div", "body");
    const title = el("div", "title");
    if (inc.kind === "emerging") {
      // No rule names it: the words that burst say what it is.
      title.append(el("span", "cat", emergingGist(inc)));
      if (inc.region) title.append(el("span", "region", regionLabel(inc.region)));
    } else if (inc.kind === "rumor") {
      title.append(el("span", "cat", claimGist(inc)));
      if (inc.region) title.append(el("span", "region", regionLabel(inc.region)));
    } else {
      // The primary category, then the related ones it also lists (内涝 · 暴雨).
      const cats = [inc.category, ...(inc.categories || []).filter((c) => c !== inc.category)];
      title.append(el("span", "cat", cats.map(catName).join(" · ")), el("span", "region", regionLabel(inc.region)));
    }
    const meta = el("div", "meta");
    meta.append(el("span", `kind-tag kind-${inc.kind}`, T[inc.kind]));
    const age = Math.max(0, Math.floor((now - inc.first_seen) / 60000));
    const c = counts(inc);
    const parts = [
      [T.age(age), ""],
      [String(c.authors), " " + T.authors],
      [String(c.mentions), " " + T.mentions],
    ];
    parts.forEach(([v, unit], i) => {
      if (i) meta.append(" · ");
      const b = el("b", "", v);
      b.className = ["age", "authors", "mentions"][i];
      meta.append(b, unit);
    });
    body.append(title, meta);
    const sp = newSpark("spark");
    li.append(body, sp);
    list.append(li);
    spark(sp, state.series[inc.id]);
  }
  $("incidents-empty").classList.toggle("show", all.length === 0);
  const hidden = Math.max(0, all.length - 40);
  fit($("incidents-panel"), list, (n) => {
    $("incidents-more").textContent = n + hidden > 0 ? T.more(n + hidden) : "";
  });
  const e = all.filter((i) => i.kind === "emergency").length;
  const r = all.filter((i) => i.kind === "rumor").length;
  $("open-count").textContent = String(all.length);
  $("open-split").textContent = T.split(e, r, all.length - e - r);
}

// Shrink a tile's name until it fits its tile (never below 55 %); only when the tile size
// changed since the last fit.
function fitTileNames(map) {
  const key = `${map.clientWidth}x${map.clientHeight}`;
  const resized = map.dataset.fitted !== key;
  map.dataset.fitted = key;
  for (const name of map.querySelectorAll(".tile .name")) {
    // A count appearing takes room: shrink again; a resize starts over.
    if (resized) name.style.fontSize = "";
    if (name.scrollWidth <= name.clientWidth) continue;
    let scale = parseFloat(name.style.fontSize) || 1;
    while (name.scrollWidth > name.clientWidth && scale > 0.55) {
      scale -= 0.05;
      name.style.fontSize = `${scale.toFixed(2)}em`;
    }
  }
}

// The top incident's timeline strip: opened, first notice drafted, approved, first and last
// post, each with its time and how long after the opening.
function renderTimeline() {
  const box = $("timeline");
  const tl = state.timeline;
  const inc = tl && state.incidents.get(tl.incident_id);
  if (!tl || !inc) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const cats = [inc.category, ...(inc.categories || []).filter((c) => c !== inc.category)];
  const what = inc.kind === "rumor" ? claimGist(inc)
    : inc.kind === "emerging" ? emergingGist(inc)
    : `${cats.map(catName).join(" · ")} · ${regionLabel(inc.region)}`;
  const steps = [
    ["opened", tl.opened_at], ["drafted", tl.drafted_at], ["approved", tl.approved_at],
    ["firstPost", tl.first_post_at], ["lastPost", tl.last_post_at],
  ];
  box.replaceChildren(el("div", "what", `${T.timeline} · ${what}`), ...steps.map(([k, at]) => {
    const s = el("div", at ? "step reached" : "step");
    s.dataset.step = k;
    s.append(el("div", "label", T.steps[k]), el("div", "at", at ? hhmm(new Date(at)) : "—"));
    if (at && k !== "opened") s.append(el("div", "after", T.after(Math.max(0, Math.round((at - tl.opened_at) / 60000)))));
    return s;
  }));
}

function hhmm(d) {
  return hhmmss(d).slice(0, 5);
}

function renderMap() {
  const map = $("map");
  if (!map.childElementCount && state.tiles.length) {
    const cols = Math.max(...state.tiles.map((t) => t.col)) + 1;
    const rows = Math.max(...state.tiles.map((t) => t.row)) + 1;
    map.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    map.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
    for (const t of state.tiles) {
      const d = el("div", "tile");
      d.dataset.code = t.code;
      d.style.gridColumn = String(t.col + 1);
      d.style.gridRow = String(t.row + 1);
      d.title = t.zh;
      // Whole words only: no soft hyphen ("Heilong-jiang"); a long name gets a smaller font.
      d.append(el("span", "name", lang === "en" ? t.en.replaceAll("\u00ad", "") : t.short), el("span", "n"));
      map.append(d);
    }
  }
  const by = new Map();
  for (const inc of state.incidents.values()) {
    if (!inc.region) continue;
    const p = inc.region.code.slice(0, 2);
    const cur = by.get(p) || { n: 0, sev: 0 };
    cur.n += 1;
    cur.sev = Math.max(cur.sev, inc.severity);
    by.set(p, cur);
  }
  for (const d of map.children) {
    const hit = by.get(d.dataset.code.slice(0, 2));
    d.className = hit ? `tile active sev-${hit.sev}` : "tile";
    d.dataset.count = hit ? String(hit.n) : "0";
    d.querySelector(".n").textContent = hit ? String(hit.n) : "";
  }
  fitTileNames(map);
}

function rebuttalStatus(inc) {
  const n = state.noticeByIncident.get(inc.id);
  if (n) {
    if (n.state === "done") return ["done", T.rebutDone];
    if (n.state === "publishing" || n.state === "approved") return ["run", T.rebutRun];
    if (n.state === "draft" || n.state === "held") return ["wait", T.rebutDraft];
  }
  if (inc.rebuttal) return ["known", T.rebutKnown];
  return ["none", T.rebutNone];
}

function renderRumors() {
  const list = $("rumors");
  list.replaceChildren();
  const rumors = ranked().filter((i) => i.kind === "rumor");
  for (const inc of rumors.slice(0, 20)) {
    const li = el("li", "rumor");
    li.dataset.id = inc.id;
    li.append(el("div", "claim", claimGist(inc)));
    const [cls, label] = rebuttalStatus(inc);
    const st = el("div", "status");
    st.append(el("span", `badge ${cls}`, label));
    li.append(st);
    // Who must act, since when, and where: a rebuttal waiting for approval links to its notice,
    // an unanswered rumor to its incident page (where the rebuttal is drafted).
    if (cls === "wait" || cls === "none" || cls === "known") {
      const n = state.noticeByIncident.get(inc.id);
      const line = el("div", "act-line");
      const mins = Math.max(0, Math.floor((Date.now() - (inc.opened_at || Date.now())) / 60000));
      line.append(cls === "wait" ? T.rebutWho : T.rebutDraftWho, ` · ${T.rumorAge(mins)} · `);
      const go = el("a", "act", T.openPage);
      go.href = n && n.id && cls === "wait"
        ? `/console#notice=${encodeURIComponent(n.id)}`
        : `/console#incident=${encodeURIComponent(inc.id)}`;
      line.append(go);
      li.append(line);
    }
    const c = counts(inc);
    const recent = lastMinute(inc);
    const spread = el("div", "spread");
    spread.append(el("span", "counts", `${c.authors} ${T.authors} · ${c.mentions} ${T.mentions}` +
      (recent !== undefined ? ` · ${recent} ${T.lastMin}` : "") + ` · ${regionLabel(inc.region)}`));
    const sp = newSpark("spark rumor-spark");
    spread.append(sp);
    li.append(spread);
    spark(sp, state.series[inc.id]);
    const why = whyFlagged(inc);
    if (why) li.append(el("div", "why", why));
    if (inc.rebuttal) li.append(el("div", "rebut", `${T.rebuttal}${T.colon}${rebuttalHead(inc)}`));
    list.append(li);
  }
  $("rumors-empty").classList.toggle("show", rumors.length === 0);
  const beyond = Math.max(0, rumors.length - 20);
  fit($("rumors-panel"), list, (n) => {
    $("rumors-more").textContent = n + beyond > 0 ? T.moreRumors(n + beyond) : "";
  });
}

const JOB_CLASS = { pending: "pending", retry: "active", attempting: "active", done: "done", failed: "failed", check_failed: "failed" };

function postLink(account, job) {
  if (!job.platform_post_id) return null;
  // Weibo's status page needs only the post id; other platforms' addresses depend on the
  // instance, which the API does not expose.
  if (account && account.platform === "weibo") return `https://m.weibo.cn/detail/${encodeURIComponent(job.platform_post_id)}`;
  return null;
}

function renderFanout() {
  const box = $("fanout");
  box.replaceChildren();
  if (state.respondOff) {
    $("fanout-empty").textContent = state.respondOff === "forbidden" ? T.forbidden : T.respondOff;
    $("fanout-empty").classList.add("show");
    return;
  }
  $("fanout-empty").textContent = T.noNotices;
  $("fanout-empty").classList.toggle("show", state.notices.length === 0);
  for (const { notice, jobs } of state.notices) {
    const card = el("div", `notice sev-${notice.severity}`);
    card.dataset.id = notice.id;
    card.dataset.incident = notice.incident_id;
    card.dataset.state = notice.state;
    const head = el("div", "head");
    const inc = state.incidents.get(notice.incident_id);
    const what = notice.kind === "rumor"
      ? `${T.rebuttal}${T.colon}${inc && inc.rebuttal ? rebuttalHead(inc) : inc ? claimGist(inc) : catName(notice.category)}`
      : `${catName(notice.category)} · ${regionLabel(notice.region)}`;
    const purpose = notice.purpose && notice.purpose !== "notice" ? `${T.purpose[notice.purpose]} · ` : "";
    head.append(el("span", "what", purpose + what), el("span", "state", T.notice[notice.state] || notice.state));
    card.append(head);
    // A notice its incident outgrew: say so, and that an update follows it.
    if (notice.stale) card.append(el("div", "stale", notice.superseded_by ? T.staleFollowed : T.noticeStale));
    if (notice.state === "done" && notice.updated_at) {
      card.append(el("div", "approvals published", T.publishedAt(hhmmss(new Date(notice.updated_at)))));
    }
    if (notice.state === "draft") {
      // Who must act, for how long it has waited, and where.
      const line = el("div", "approvals", T.approvals(notice.approvals, notice.required_approvals));
      if (notice.created_at) {
        line.append(` · ${T.waiting(Math.floor((Date.now() - notice.created_at) / 60000))} · `);
      }
      const go = el("a", "act", T.act);
      go.href = `/console#notice=${encodeURIComponent(notice.id)}`;
      line.append(go);
      card.append(line);
    }
    if (notice.state === "held" && notice.hold_until) {
      card.append(el("div", "approvals held", T.held(hhmmss(new Date(notice.hold_until)))));
    }
    if (notice.check_failed) card.append(el("div", "check-failed", T.checkFailed(notice.check_failed)));
    const rows = el("div", "jobs");
    const plan = notice.plan || { lead: "", co_publishers: [], amplifiers: [] };
    const roleOf = (id) => (id === plan.lead ? T.lead : plan.amplifiers.includes(id) ? T.amp : T.co);
    let entries = jobs.length
      ? jobs.map((j) => [j.account_id, j])
      : [plan.lead, ...plan.co_publishers, ...plan.amplifiers].filter(Boolean).map((id) => [id, null]);
    // Many amplifiers: one summary row for those not failed; failures stay named.
    let folded = [];
    if (entries.length > MAX_ROWS) {
      const fold = ([id, job]) => plan.amplifiers.includes(id) && !(job && JOB_CLASS[job.state] === "failed");
      folded = entries.filter(fold);
      entries = entries.filter((e) => !fold(e));
    }
    for (const [id, job] of entries) {
      const acct = state.accounts.get(id);
      const row = el("div", "job");
      row.dataset.account = id;
      row.dataset.state = job ? job.state : "pending";
      const name = el("span", "acct", acct ? acct.name : id);
      name.append(el("small", "", roleOf(id)));
      const kind = job ? JOB_CLASS[job.state] || "pending" : "pending";
      const st = el("span", `st st-${kind}`);
      const label = T.job[job ? job.state : "pending"] || (job && job.state);
      const link = job && job.state === "done" ? postLink(acct, job) : null;
      if (link) {
        const a = el("a", "", `${label} ↗`);
        a.href = link;
        st.append(a);
      } else if (job && job.state === "done" && job.platform_post_id) {
        st.append(`${label} #${job.platform_post_id}`);
      } else if (job && JOB_CLASS[job.state] === "failed") {
        st.append(label);
      } else if (job && job.waiting_for_limit_until) {
        const d = new Date(job.waiting_for_limit_until);
        const p = (n) => String(n).padStart(2, "0");
        st.append(`${label} · ${T.waitLimit} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`);
      } else {
        st.append(label);
      }
      row.append(name, st);
      rows.append(row);
    }
    if (folded.length) {
      const row = el("div", "job");
      row.dataset.account = "amplifiers";
      const name = el("span", "acct", T.amps(folded.length));
      const counts = new Map();
      for (const [, job] of folded) {
        const k = job ? job.state : "pending";
        counts.set(k, (counts.get(k) || 0) + 1);
      }
      const st = el("span", "st st-pending");
      st.textContent = [...counts].map(([k, n]) => `${T.job[k] || k} ${n}`).join(" · ");
      row.append(name, st);
      rows.append(row);
    }
    card.append(rows);
    box.append(card);
  }
  // Cards the server did not send (it sends the first few) and cards the panel had no room
  // for: both are said, never dropped silently.
  const unsent = Math.max(0, (state.noticesTotal || 0) - state.notices.length);
  fit(box, box, (n) => {
    $("fanout-more").textContent = n + unsent > 0 ? T.moreNotices(n + unsent) : "";
  });
}

function renderFeeds(now) {
  const list = $("feeds");
  list.replaceChildren();
  if (!state.feeds.length) {
    const li = el("li");
    // No feed configured: say where data comes from, and whether any came in the last minute.
    const recent = Math.round(state.rate.slice(-1)[0] || 0);
    li.dataset.feed = "http";
    li.append(el("span", recent > 0 ? "dot up" : "dot idle"), el("span", "", T.httpOnly),
      el("span", "detail", T.httpRecent(recent)));
    list.append(li);
    return;
  }
  for (const f of state.feeds) {
    const li = el("li");
    li.dataset.feed = f.name;
    li.dataset.connected = String(f.connected);
    const bits = [f.connected ? T.connected : T.disconnected];
    if (f.last_message_at) bits.push(T.ago(Math.max(0, Math.round((now - f.last_message_at) / 1000))));
    if (f.connected && f.lag_ms) bits.push(`${T.lag} ${(f.lag_ms / 1000).toFixed(1)} s`);
    if (f.reconnects) bits.push(`${T.reconnects} ${f.reconnects}`);
    li.append(el("span", f.connected ? "dot up" : "dot"), el("span", "", `${f.name} (${f.kind})`),
      el("span", "detail", bits.join(" · ")));
    list.append(li);
  }
  fit($("feeds-panel"), list, (n) => {
    $("feeds-more").textContent = n > 0 ? T.moreFeeds(n) : "";
  });
}

// 民生诉求: six counts, then the departments with open requests, most overdue first.
function renderCases() {
  const kpis = $("cases-kpis");
  const list = $("cases-depts");
  const empty = $("cases-empty");
  const more = $("cases-more");
  const c = state.cases;
  kpis.replaceChildren();
  list.replaceChildren();
  more.textContent = "";
  $("cases-panel").dataset.state = typeof c === "string" ? c : c ? "on" : "loading";
  if (!c || typeof c === "string") {
    empty.textContent = c === "forbidden" ? T.forbidden : c === "off" ? T.casesOff : "";
    empty.classList.toggle("show", !!c);
    return;
  }
  for (const k of ["open", "overdue", "urgent", "received_today", "answered_today", "satisfaction"]) {
    const v = c[k];
    const box = el("div", "case-kpi");
    box.dataset.kpi = k;
    if (k === "overdue" && v > 0) box.classList.add("bad");
    if (k === "urgent" && v > 0) box.classList.add("warn");
    const shown = k === "satisfaction" ? (v === null || v === undefined ? "—" : `${Math.round(v * 100)}%`) : String(v ?? 0);
    box.append(el("div", "v", shown), el("div", "l", T.caseKpi[k]));
    kpis.append(box);
  }
  const week = $("cases-week");
  week.replaceChildren();
  const w = state.week;
  if (w && (w.best || []).length) {
    const name = (d) => `${lang === "en" ? d.en : d.zh} ${Math.round(d.overall)}`;
    week.append(el("span", "best", `${T.weekBest}: ${w.best.map(name).join(" · ")}`));
    if ((w.worst || []).length) week.append(el("span", "worst", `${T.weekWorst}: ${w.worst.map(name).join(" · ")}`));
  }
  const depts = c.open_by_department || [];
  for (const d of depts) {
    const li = el("li");
    li.dataset.department = d.id;
    li.append(el("span", "name", lang === "en" ? d.en : d.zh), el("span", "n", T.caseOpen(d.open)),
      el("span", d.overdue ? "late bad" : "late", T.caseLate(d.overdue)));
    list.append(li);
  }
  empty.textContent = T.noCases;
  empty.classList.toggle("show", depts.length === 0);
  fit($("cases-panel"), list, (n) => {
    more.textContent = n ? T.deptMore(n) : "";
  });
}

function renderRate() {
  const last = state.rate.length ? state.rate[state.rate.length - 1] : null;
  $("rate").textContent = last === null ? "—" : fmt(last);
  spark($("rate-spark"), state.rate);
}

function renderClock(now) {
  $("clock").textContent = hhmmss(new Date(now));
  // Stale: neither the stream nor the summary answered for three `stats` steps.
  const stale = !state.lastMsg || now - state.lastMsg > STALE_MS;
  const everLive = state.lastMsg > 0 || now - state.loadedAt > STALE_MS;
  const mode = stale ? (everLive ? "stale" : "connecting") : "live";
  document.body.dataset.stream = mode;
  $("updated").textContent = state.lastMsg ? hhmmss(new Date(state.lastMsg)) : "—";
}

let dirty = true;
function renderAll() {
  const now = Date.now();
  renderTimeline();
  renderIncidents(now);
  renderMap();
  renderRumors();
  renderFanout();
  renderFeeds(now);
  renderCases();
  renderRate();
  renderClock(now);
  dirty = false;
}

// ---- data -----------------------------------------------------------------------------------

function upsert(inc, fresh) {
  if (inc.state && inc.state !== "open") {
    state.incidents.delete(inc.id);
    state.seenAt.delete(inc.id);
    return;
  }
  if (!state.incidents.has(inc.id) && fresh) state.seenAt.set(inc.id, Date.now());
  state.incidents.set(inc.id, inc);
}

// Everything the wall shows comes from one answer (all a public wall may read); a viewer's
// wall also keeps the stream open for live updates between polls.
async function pollSummary() {
  try {
    const v = await api("/api/wall/summary");
    state.lastMsg = Date.now();
    const labels = v.labels || {};
    state.categories = labels.categories || {};
    state.accounts = new Map(Object.entries(labels.accounts || {}));
    const ids = new Set(v.incidents.map((i) => i.id));
    for (const id of [...state.incidents.keys()]) {
      if (!ids.has(id)) {
        state.incidents.delete(id);
        state.seenAt.delete(id);
      }
    }
    // After the first answer, an incident the wall has not seen flashes.
    for (const inc of v.incidents) upsert(inc, state.summaries > 0);
    state.summaries += 1;
    if (!state.wsOpen && v.stats) {
      state.rate = v.stats.mentions_per_min || [];
      state.series = v.stats.incidents || {};
      state.totals = v.stats.totals || {};
      state.stepMs = v.stats.step_ms || state.stepMs;
    }
    state.feeds = v.feeds || [];
    if (v.respond !== "on" || !v.notices) {
      state.respondOff = "off";
      state.notices = [];
      state.noticeByIncident = new Map();
    } else {
      state.respondOff = false;
      const ids = v.notices.notice_of || {};
      state.noticeByIncident = new Map(
        Object.entries(v.notices.by_incident || {}).map(([id, st]) => [id, { state: st, id: ids[id] }]));
      state.notices = (v.notices.current || []).map((n) => ({ notice: n, jobs: n.jobs || [] }));
      state.noticesTotal = v.notices.total || 0;
    }
    state.timeline = v.notices && v.notices.timeline ? v.notices.timeline : null;
    dirty = true;
  } catch (e) {
    if (e.code === "forbidden") {
      state.respondOff = "forbidden";
      state.notices = [];
      dirty = true;
    }
    console.warn("summary", e);
  }
}

// The 民生诉求 board: counts only, readable by whoever may read the wall.
async function pollWeek() {
  try {
    state.week = await api("/api/evaluation/summary");
  } catch (e) {
    state.week = null;
  }
  dirty = true;
}

async function pollCases() {
  try {
    state.cases = await api("/api/cases/summary");
  } catch (e) {
    // Not built into this engine or switched off: say so; anything else keeps the last counts.
    if (e.code === "forbidden") state.cases = "forbidden";
    else if (e.status === 404 || e.status === 503) state.cases = "off";
  }
  dirty = true;
}

function connect(attempt) {
  const t = token();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${proto}//${location.host}/api/stream?stats=true` + (t ? `&access_token=${encodeURIComponent(t)}` : "");
  const ws = new WebSocket(url);
  ws.onopen = () => {
    attempt = 0;
    state.wsOpen = true;
    pollSummary();
  };
  ws.onmessage = (m) => {
    let v;
    try {
      v = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    state.lastMsg = Date.now();
    if (v.event === "stats") {
      state.stats += 1;
      document.body.dataset.stats = String(state.stats);
      state.rate = v.mentions_per_min || [];
      state.series = v.incidents || {};
      state.totals = v.totals || {};
      state.stepMs = v.step_ms || state.stepMs;
    } else if (v.event && v.event.startsWith("incident.") && v.incident) {
      upsert(v.incident, v.event === "incident.opened");
      if (v.event === "incident.opened") pollSummary();
    }
    dirty = true;
  };
  ws.onclose = () => {
    state.wsOpen = false;
    dirty = true;
    // Back off up to 10 s; the header turns red by itself once the data is stale.
    const delay = Math.min(10000, 500 * 2 ** Math.min(attempt, 5));
    setTimeout(() => connect(attempt + 1), delay);
  };
}

async function start() {
  applyLanguage();
  try {
    const tiles = await api("/wall/china-tiles.json");
    state.tiles = tiles.tiles;
    for (const t of tiles.tiles) state.provinces.set(t.code.slice(0, 2), t);
  } catch (e) {
    console.warn("wall assets", e);
  }
  await pollSummary();
  pollCases();
  pollWeek();
  connect(0);
  setInterval(pollSummary, POLL_MS);
  setInterval(pollCases, POLL_MS);
  setInterval(pollWeek, 60000);
  // Ages, the clock and staleness move every second even without data.
  setInterval(() => {
    dirty = true;
  }, 1000);
  const frame = () => {
    if (dirty) renderAll();
    requestAnimationFrame(frame);
  };
  renderAll();
  requestAnimationFrame(frame);
}

start();
