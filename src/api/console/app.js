// huiying operator console. Plain DOM, no framework, no inline script (the CSP forbids it).
// Every request goes to the engine's own JSON API with the session cookie; state-changing
// requests carry the session's CSRF token in X-CSRF-Token.
"use strict";

const T = {
  zh: {
    console: "值班台", incidents: "事件", notices: "通报", accounts: "账号", audit: "审计日志",
    admin: "管理", wall: "大屏", paused: "发布已暂停", logout: "退出", login: "登录",
    user: "用户名", password: "密码", kind: "类型", all: "全部", emergency: "突发事件",
    rumor: "谣言", category: "类别", region: "地区", filter: "筛选", severity: "级别",
    authors: "作者数", opened: "开始", none: "暂无", state: "状态", st_draft: "草稿",
    st_approved: "已批准", st_publishing: "发布中", st_done: "已完成", st_rejected: "已驳回",
    st_held: "待自动发布", publish_now: "立即发布", cancel_publish: "取消发布",
    src_official: "官方数据源", src_verified: (n) => `${n} 名认证作者`,
    held_rule: (src, at) => `已按策略自动批准（可信来源：${src}），将于 ${at} 自动发布；任何值班员可取消或立即发布`,
    approvals: "审批", created: "创建", notice: "通报", approve: "批准", reject: "驳回",
    reason: "驳回理由", preview: "各平台预览", fanout: "分发进度", account: "账号",
    action: "动作", post: "帖子", error: "错误", no_jobs: "批准后开始分发",
    pause: "暂停发布", resume: "恢复发布", platform: "平台", quota: "剩余额度",
    last_post: "最近发布", failures: "失败", time: "时间", actor: "操作人", detail: "详情",
    users_tokens: "用户与令牌", name: "名称", role: "角色", create_token: "创建令牌",
    reload_rules: "重新加载规则", reload_users: "重新加载用户文件", open: "查看",
    close_incident: "关闭事件", merge_into: "并入事件", samples: "样本", terms: "关键词",
    emerging: "新动向", dismiss: "忽略并静默", mute_hours: "静默小时数", dismissed: "已忽略",
    promote_to: "提升为类别关键词", promote_help: "类别编号，如 collapse", promoted: "已写入规则",
    two_person: "需两名不同值班员批准（双人规则）", one_person: "需一名值班员批准",
    approved_by: "已批准", edit: "修改文本", save: "保存", revoke: "吊销",
    token_once: "新令牌（只显示这一次）：", chars: "字", lead: "首发", co: "同步发布",
    amp: "转发", j_pending: "等待", j_attempting: "发送中", j_done: "已发布",
    j_failed: "失败", j_retry: "重试", j_check_failed: "无法核实", done: "完成",
    wait_limit: "等待额度至", check_failed_note: "条发布无法核实是否已发出：请到平台上查看，勿盲目重发", login_failed: "登录失败",
    expired: "会话已过期，请重新登录", forbidden: "权限不足", mentions: "提及数",
    merged: "已合并", closed: "已关闭", merge_help: "目标事件编号",
    overlaps: "与本事件共享提及的事件（可能是同一事件）", shared: (n) => `共享 ${n} 条提及`,
    merge_one: (c) => `一键合并（${c}）`, its_notices: "本事件的通告", no_notices: "尚无通告",
    why_flagged: "为何标记", why_known: "与已辟谣说法相同", why_spreading: (n) => `${n} 条催促扩散`,
    why_enquiry: (n) => `${n} 条求证`, why_correction: (n) => `${n} 条质疑为假`,
    why_cascade: (n) => `转发链 ${n} 条`, why_scored: "模型评分高", no_region: "（未定位）",
    alert: "值班提醒", enable_alerts: "开启桌面提醒", alerts_on: "桌面提醒已开启",
    role_viewer: "只读", role_operator: "值班员", role_admin: "管理员", role_department: "承办部门",
    role_ingest: "接入",
    p_notice: "首发通告", p_update: "更新通告", p_all_clear: "解除通告", stale: "已过时",
    stale_note: "本通告已与事件现状不符", incident: "事件", follows: "接续", followed_by: "后续", users: "用户", tokens: "令牌",
    audit_down: "审计日志无法写入：操作被拒绝，发布已暂停，恢复写入后自动继续",
    cases: "诉求", cs_received: "待受理", cs_accepted: "已受理", cs_assigned: "已转办",
    cs_in_progress: "办理中", cs_answered: "已答复", cs_closed: "已办结",
    ck_help: "求助", ck_complaint: "投诉", ck_report: "举报", ck_inquiry: "咨询",
    ck_suggestion: "建议", ck_praise: "表扬", department: "部门", overdue_only: "只看超期",
    export_csv: "导出 CSV", case_no: "编号", request: "诉求", requesters: "诉求人", due: "期限",
    left: (d) => `剩 ${d}`, late: (d) => `超期 ${d}`, urgent: "紧急", unassigned: "待分派",
    linked_incident: "关联事件", history: "办理记录", replies: "回复与邮件",
    contacts: "联系方式（仅办理人员可见，不上大屏）", accept: "受理", assign: "转办",
    choose_dept: "选择部门", start: "开始办理", send_back: "退回", why: "理由（必填）",
    answer: "答复", answer_hint: "答复内容：批准后发给每一位诉求人", submit_answer: "提交答复",
    approve_answer: "批准答复", pending_answer: "待批准的答复", written_by: "撰写",
    not_yours: "须由撰写人以外的值班员批准", close_case: "办结", reopen: "重新办理",
    rate_ok: "记为满意", rate_bad: "记为不满意", satisfaction: "满意度",
    sat_satisfied: "满意", sat_dissatisfied: "不满意", channel: "渠道",
    ch_platform: (a) => `平台（${a}）`, ch_api: "表单/热线", ch_open311: "Open311",
    answer_text: "答复", returned_by: "曾退回", reopened: "重新办理次数", minutes: "分钟",
    hours: "小时", days: "天", address: "地址", media: "附件",
    ca_receive: "收到", ca_join: "合并诉求人", ca_accept: "受理", ca_assign: "转办",
    ca_start: "开始办理", ca_return: "退回", ca_draft_answer: "拟写答复", ca_answer: "答复",
    ca_approve_answer: "批准答复", ca_close: "办结", ca_reopen: "重新办理", ca_rate: "评价",
    ca_link: "关联事件", ca_remind: "到期提醒", ca_escalate: "督办升级", ca_follow_up: "追问",
    ca_no_rating: "未评价", ca_import: "导入",
    is_open: "进行中", is_closed: "已关闭", is_merged: "已合并",
    a_post: "发布", a_repost: "转发", a_reply: "回复", a_comment: "评论", a_mail: "邮件",
    other: "其他",
    w_ack: "受理回复", w_answer: "答复", w_mail: "邮件",
    evaluation: "绩效", from: "从", to: "到", report_html: "报告 HTML", report_csv: "CSV",
    opinion_report: "舆情报告（近 24 小时）",
    departments: "部门", rank: "名次", received: "收到", on_time: "按时答复", overdue: "超期",
    returned: "退回", service: "服务力", overall: "综合", trend: "变化", addressed: "@诉求",
    reply_share: "答复率", interaction: "互动力", note: "备注", silent: "聋哑",
    approval: "认同度", previous: "上期", period: "期间", worst_overdue: "超期最久",
    ack_median: "受理中位", answer_median: "答复中位", figures: "各项指标", posts: "发布",
    reach: "传播力", notices_posted: "通报已转发/计划", engagement: "每条互动", public_share: "公共服务内容占比", quiet_days: "未发布天数",
  },
  en: {
    console: "Console", incidents: "Incidents", notices: "Notices", accounts: "Accounts",
    audit: "Audit log", admin: "Admin", wall: "Wall", paused: "Publishing paused",
    logout: "Log out", login: "Log in", user: "User", password: "Password", kind: "Kind",
    all: "All", emergency: "Emergency", rumor: "Rumor", category: "Category", region: "Region",
    filter: "Filter", severity: "Severity", authors: "Authors", opened: "Opened", none: "None",
    state: "State", st_draft: "Draft", st_approved: "Approved", st_publishing: "Publishing",
    st_done: "Done", st_rejected: "Rejected", approvals: "Approvals", created: "Created",
    st_held: "Held", publish_now: "Publish now", cancel_publish: "Cancel",
    src_official: "an official feed", src_verified: (n) => `${n} verified authors`,
    held_rule: (src, at) => `Approved by policy (trusted source: ${src}); publishes automatically at ${at} unless an operator cancels it or publishes it now`,
    notice: "Notice", approve: "Approve", reject: "Reject", reason: "Reason",
    preview: "Preview per platform", fanout: "Fan-out", account: "Account", action: "Action",
    post: "Post", error: "Error", no_jobs: "Fan-out starts once approved", pause: "Pause publishing",
    resume: "Resume publishing", platform: "Platform", quota: "Quota left", last_post: "Last post",
    failures: "Failures", time: "Time", actor: "Actor", detail: "Detail",
    users_tokens: "Users and tokens", name: "Name", role: "Role", create_token: "Create token",
    reload_rules: "Reload rules", reload_users: "Reload users file", open: "Open",
    close_incident: "Close incident", merge_into: "Merge into", samples: "Samples",
    emerging: "Emerging", dismiss: "Dismiss and mute", mute_hours: "hours muted", dismissed: "Dismissed",
    promote_to: "Promote to category keywords", promote_help: "category id, e.g. collapse", promoted: "Written into the rules",
    terms: "Terms", two_person: "Needs two different operators (two-person rule)",
    one_person: "Needs one operator", approved_by: "Approved by", edit: "Edit text",
    save: "Save", revoke: "Revoke", token_once: "New token (shown only once):", chars: "chars",
    lead: "lead", co: "co-publisher", amp: "amplifier", j_pending: "pending",
    j_attempting: "sending", j_done: "posted", j_failed: "failed", j_retry: "retrying",
    j_check_failed: "unverified", wait_limit: "waiting for limit until",
    check_failed_note: "post(s) could not be checked: look on the platform whether they exist; do not resend blindly",
    done: "Done", login_failed: "Login failed", expired: "Session expired: log in again",
    forbidden: "Not allowed for your role", mentions: "Mentions", merged: "Merged",
    closed: "Closed", merge_help: "target incident id",
    overlaps: "Incidents sharing mentions with this one (likely the same event)", shared: (n) => `${n} mentions shared`,
    merge_one: (c) => `Merge (${c})`, its_notices: "Its notices", no_notices: "No notice yet",
    why_flagged: "Flagged for", why_known: "matches a debunked claim", why_spreading: (n) => `${n} urging to share`,
    why_enquiry: (n) => `${n} asking if true`, why_correction: (n) => `${n} calling it false`,
    why_cascade: (n) => `cascade of ${n}`, why_scored: "scorer", no_region: "(no region)",
    alert: "Alert", enable_alerts: "Enable desktop alerts", alerts_on: "Desktop alerts on",
    role_viewer: "viewer", role_operator: "operator", role_admin: "admin", role_department: "department",
    role_ingest: "ingest",
    p_notice: "First notice", p_update: "Update", p_all_clear: "All clear", stale: "stale",
    stale_note: "This notice no longer matches its incident", incident: "Incident", follows: "follows", followed_by: "followed by", users: "User", tokens: "Token",
    audit_down: "The audit log cannot be written: actions are refused and publishing is paused until it can",
    cases: "Requests", cs_received: "received", cs_accepted: "accepted", cs_assigned: "assigned",
    cs_in_progress: "in progress", cs_answered: "answered", cs_closed: "closed",
    ck_help: "help", ck_complaint: "complaint", ck_report: "report", ck_inquiry: "inquiry",
    ck_suggestion: "suggestion", ck_praise: "praise", department: "Department",
    overdue_only: "Overdue only", export_csv: "Export CSV", case_no: "No.", request: "Request",
    requesters: "Requesters", due: "Due", left: (d) => `${d} left`, late: (d) => `${d} overdue`,
    urgent: "urgent", unassigned: "unassigned", linked_incident: "Linked incident",
    history: "History", replies: "Replies and e-mails",
    contacts: "Contact details (staff only, never on the wall)", accept: "Accept",
    assign: "Transfer", choose_dept: "Choose a department", start: "Start", send_back: "Send back",
    why: "Reason (required)", answer: "Answer",
    answer_hint: "The answer: sent to every requester once approved", submit_answer: "Submit answer",
    approve_answer: "Approve answer", pending_answer: "Answer awaiting approval",
    written_by: "written by", not_yours: "Must be approved by an operator who did not write it",
    close_case: "Close", reopen: "Reopen", rate_ok: "Record satisfied",
    rate_bad: "Record dissatisfied", satisfaction: "Satisfaction", sat_satisfied: "satisfied",
    sat_dissatisfied: "dissatisfied", channel: "Channel", ch_platform: (a) => `platform (${a})`,
    ch_api: "form / hotline", ch_open311: "Open311", answer_text: "Answer",
    returned_by: "Sent back by", reopened: "Reopened", minutes: "min", hours: "h", days: "d",
    address: "Address", media: "Attachments",
    ca_receive: "received", ca_join: "requester joined", ca_accept: "accepted", ca_assign: "transferred",
    ca_start: "started", ca_return: "sent back", ca_draft_answer: "answer drafted", ca_answer: "answered",
    ca_approve_answer: "answer approved", ca_close: "closed", ca_reopen: "reopened", ca_rate: "rated",
    ca_link: "linked to incident", ca_remind: "reminder", ca_escalate: "escalated", ca_follow_up: "follow-up",
    ca_no_rating: "no rating", ca_import: "imported",
    is_open: "open", is_closed: "closed", is_merged: "merged",
    a_post: "post", a_repost: "repost", a_reply: "reply", a_comment: "comment", a_mail: "e-mail",
    other: "Other",
    w_ack: "acknowledgement", w_answer: "answer", w_mail: "e-mail",
    evaluation: "Evaluation", from: "From", to: "To", report_html: "HTML report", report_csv: "CSV",
    opinion_report: "Public-opinion report (last 24 h)",
    departments: "Departments", rank: "Rank", received: "Received", on_time: "On time",
    overdue: "Overdue", returned: "Returned", service: "Service", overall: "Overall",
    trend: "Trend", addressed: "Addressed", reply_share: "Answered", interaction: "Interaction",
    note: "Note", silent: "silent", approval: "Approval", previous: "Previous", period: "Period",
    worst_overdue: "Longest overdue", ack_median: "Median to accept",
    answer_median: "Median to answer", figures: "Figures", posts: "Posts", reach: "Reach",
    notices_posted: "Notices posted / planned", engagement: "Reactions per post", public_share: "Public-service share", quiet_days: "Days without a post",
  },
};

let lang = localStorage.getItem("huiying.lang") || "zh";
let me = null;
let page = "incidents";
let currentNotice = null;
let currentIncident = null;
let currentCase = null;
let departments = null; // [{id, name_zh, name_en}] from /api/departments
// The version of the notice on screen: an approval names what was read (409 if it changed).
let currentVersion = 0;
let timer = null;

const $ = (id) => document.getElementById(id);
const t = (k) => (T[lang] && T[lang][k]) || T.zh[k] || k;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e[k] = v;
  }
  for (const k of kids) {
    if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

// `node.replaceChildren` without the absent parts (it would print null and undefined).
function setKids(node, ...kids) {
  node.replaceChildren(...kids.filter((k) => k !== null && k !== undefined));
}

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-placeholder]")) {
    e.placeholder = t(e.dataset.i18nPlaceholder);
  }
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  bellLabel();
}

function bellLabel() {
  const bell = $("enable-alerts");
  const on = "Notification" in window && Notification.permission === "granted";
  bell.textContent = t(on ? "alerts_on" : "enable_alerts");
  bell.disabled = on;
}

function toast(msg, bad) {
  const b = $("toast");
  b.textContent = msg;
  b.className = bad ? "bad" : "";
  b.hidden = false;
  clearTimeout(toast.h);
  toast.h = setTimeout(() => { b.hidden = true; }, 4000);
}

// A held notice: why it was trusted and when it goes out.
function heldRule(n) {
  const s = n.trusted_source || {};
  const src = s === "official_feed" ? t("src_official")
    : s.verified_authors ? t("src_verified")(s.verified_authors) : "";
  return t("held_rule")(src, fmtTime(n.hold_until));
}

function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getMonth() + 1}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me && me.csrf) headers["X-CSRF-Token"] = me.csrf;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401 && path !== "/api/login") {
    showLogin(path === "/api/me" ? "" : t("expired"));
    throw new ApiError(401, data);
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

async function act(fn) {
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return;
    toast(e.status === 403 && e.code === "forbidden" ? t("forbidden") : e.message, true);
  }
}

// ---- login ---------------------------------------------------------------------------------

function showLogin(msg) {
  me = null;
  clearInterval(timer);
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("enable-alerts").hidden = true;
  $("whoami").textContent = "";
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("login-user").focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  try {
    me = await api("POST", "/api/login", {
      user: $("login-user").value, password: $("login-pass").value,
    });
    $("login-pass").value = "";
    enter();
  } catch (e) {
    $("login-error").textContent = `${t("login_failed")}: ${e.message}`;
  }
}

function enter() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("enable-alerts").hidden = me.role === "department";
  $("whoami").textContent = `${me.user} · ${t(`role_${me.role}`)}`;
  $("whoami").dataset.role = me.role;
  $("tab-admin").hidden = me.role !== "admin";
  // A department user works on its own cases and nothing else.
  const dept = me.role === "department";
  for (const b of document.querySelectorAll("#nav button")) {
    if (b.id !== "tab-admin") b.hidden = dept && b.dataset.page !== "cases";
  }
  $("wall-link").hidden = dept;
  if (!dept) loadLabels().then(() => refresh());
  // Its own department only: no department filter.
  $("fc-department").closest("label").hidden = dept;
  fromHash();
}

// The page the address names: a tab (`#notices`), or one notice or case (`#notice=ID`,
// `#case=ID`, as the wall links them).
function fromHash() {
  const dept = me && me.role === "department";
  const deep = location.hash.match(/^#(notice|case|incident)=(.+)$/);
  if (deep && (deep[1] === "case" || !dept)) {
    const id = decodeURIComponent(deep[2]);
    if (deep[1] === "notice") currentNotice = id;
    else if (deep[1] === "incident") currentIncident = id;
    else currentCase = id;
    show({ notice: "notices", incident: "incidents", case: "cases" }[deep[1]]);
    return;
  }
  show(dept ? "cases" : location.hash.slice(1) || "incidents");
}

// ---- pages ---------------------------------------------------------------------------------

const loaders = {
  incidents: loadIncidents, notices: loadNotices, cases: loadCases, evaluation: loadEvaluation,
  accounts: loadAccounts,
  audit: loadAudit, admin: loadAdmin,
};

function show(name) {
  if (!loaders[name]) name = "incidents";
  if (name === "evaluation") evaluationData = null;
  page = name;
  history.replaceState(null, "", `#${name}`);
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== `page-${name}`;
  for (const b of document.querySelectorAll("#nav button")) {
    b.classList.toggle("active", b.dataset.page === name);
  }
  refresh();
  clearInterval(timer);
  // Live enough for a duty desk, light enough for the engine: one poll of the page every 2 s.
  timer = setInterval(refresh, 2000);
}

function refresh() {
  act(async () => {
    await loaders[page]();
    if (me && me.role === "department") return;
    const a = await api("GET", "/api/accounts").catch(() => null);
    $("paused-badge").hidden = !(a && a.paused);
    // Audit first: while the audit log refuses writes nothing changes and nothing is sent.
    const h = await fetch("/healthz", { cache: "no-store" }).then((r) => r.json()).catch(() => null);
    const au = h && h.audit;
    $("audit-banner").hidden = !(au && (!au.writable || au.dispatcher_paused));
    await pollAlerts();
  });
}

// ---- alerts for the people on duty (值班提醒) ------------------------------------------------
// The alerts raised since this page opened: a banner with the link, a browser notification (when
// allowed) and a short tone, once each.

let alertsSince = Date.now();
const alertsShown = new Set();

async function pollAlerts() {
  const v = await api("GET", `/api/alerts?since=${alertsSince}`).catch(() => null);
  if (!v || !v.alerts) return;
  for (const a of v.alerts) {
    alertsSince = Math.max(alertsSince, a.at);
    if (alertsShown.has(a.id)) continue;
    alertsShown.add(a.id);
    const title = lang === "en" ? a.title_en : a.title_zh;
    const link = a.link.includes("#") ? `/console${a.link.slice(a.link.indexOf("#"))}` : a.link;
    const banner = $("alert-banner");
    banner.replaceChildren(el("b", {}, `${t("alert")}: `), title, " ",
      el("a", { href: link, class: "alert-link" }, t("open")),
      el("button", { type: "button", class: "small", onclick: () => { banner.hidden = true; } }, "×"));
    banner.dataset.alert = a.id;
    banner.hidden = false;
    if ("Notification" in window && Notification.permission === "granted") {
      const n = new Notification(`${t("alert")} · 回应`, { body: title, tag: a.id });
      n.onclick = () => { window.focus(); location.hash = link.slice(link.indexOf("#")); };
    }
    beep();
  }
}

function beep() {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    for (const [f, at] of [[880, 0], [660, 0.25]]) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      g.gain.value = 0.15;
      o.connect(g).connect(ctx.destination);
      o.start(ctx.currentTime + at);
      o.stop(ctx.currentTime + at + 0.2);
    }
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  } catch (e) {
    // No audio device: the banner and the notification remain.
  }
}

function stateBadge(state, prefix) {
  return el("span", { class: `state s-${state}`, "data-state": state }, t(`${prefix}${state}`));
}

async function loadIncidents() {
  const q = new URLSearchParams();
  for (const f of ["kind", "category", "region"]) {
    const v = $(`f-${f}`).value.trim();
    if (v) q.set(f, v);
  }
  const data = await api("GET", `/api/incidents?${q}`);
  const rows = data.incidents.map((i) => el("tr", { "data-incident": i.id },
    el("td", {}, el("span", { class: `sev sev${i.severity}` }, i.severity)),
    el("td", {}, t(i.kind)),
    el("td", {}, categoryLabel(i), i.headline ? el("div", { class: "headline" }, i.headline) : null),
    el("td", {}, regionName(i.region) || t("no_region")),
    el("td", {}, i.authors),
    el("td", {}, fmtTime(i.opened_at)),
    el("td", {}, el("button", { type: "button", onclick: () => act(() => openIncident(i.id)) }, t("open")))));
  $("incidents").replaceChildren(...rows);
  $("incidents-empty").hidden = rows.length > 0;
  if (currentIncident) {
    const id = currentIncident;
    currentIncident = null;
    await openIncident(id);
  }
}

// A link to a console page (`#notice=ID`, `#incident=ID`).
function pageLink(kind, id, text) {
  return el("a", { href: `#${kind}=${encodeURIComponent(id)}`, class: `link-${kind}` }, text || id);
}

function purposeLabel(n) {
  return n.purpose && n.purpose !== "notice" ? t(`p_${n.purpose}`) : t("p_notice");
}

function authorName(a) {
  if (!a) return "";
  return `@${a.name || a.id}${a.verified ? " ✔" : ""}`;
}

// The primary category, then the related ones the incident also lists (flood (+rainstorm)).
// Names for the rules' categories and the matrix's accounts (the wall's labels), loaded once.
let labels = { categories: {}, accounts: {} };

async function loadLabels() {
  const v = await api("GET", "/api/wall/summary").catch(() => null);
  if (v && v.labels) labels = v.labels;
}

function catName(id) {
  const c = labels.categories && labels.categories[id];
  return c ? (lang === "en" ? c.en : c.zh) : id === "other" ? t("other") : id;
}

function accountName(id) {
  const a = labels.accounts && labels.accounts[id];
  return a && a.name ? a.name : id;
}

// Why a rumor was flagged (the cascade's cues, a known claim, the scorer).
function whyLine(i) {
  const w = i.why;
  if (i.kind !== "rumor" || (!w && !i.rebuttal)) return null;
  const parts = [];
  if (i.rebuttal) parts.push(t("why_known"));
  if (w && w.spreading) parts.push(t("why_spreading")(w.spreading));
  if (w && w.enquiry) parts.push(t("why_enquiry")(w.enquiry));
  if (w && w.correction) parts.push(t("why_correction")(w.correction));
  if (w && w.posts) parts.push(t("why_cascade")(w.posts));
  if (w && w.scored) parts.push(t("why_scored"));
  return el("p", { class: "why" }, `${t("why_flagged")}: ${parts.join(" · ")}`);
}

// Dismiss (its terms muted for the hours given) or promote (its terms become a category's
// keywords in rules/, checked and audited by the server) an emerging incident.
function emergingActions(i, box) {
  const id = encodeURIComponent(i.id);
  const hours = el("input", { id: "mute-hours", type: "number", min: "1", max: "720", value: "24", size: "4",
    title: t("mute_hours"), "aria-label": t("mute_hours") });
  const cat = el("input", { id: "promote-category", size: "14", placeholder: t("promote_help") });
  return el("div", { class: "actions emerging-actions" },
    hours,
    el("button", { type: "button", id: "dismiss-incident",
      onclick: () => act(async () => {
        await api("POST", `/api/incidents/${id}/dismiss`, { mute_hours: Number(hours.value) });
        toast(t("dismissed"));
        box.hidden = true;
        await loadIncidents();
      }) }, t("dismiss")),
    cat,
    el("button", { type: "button", id: "promote-incident",
      onclick: () => act(async () => {
        const r = await api("POST", `/api/incidents/${id}/promote`, { category: cat.value.trim() });
        toast(`${t("promoted")}: ${(r.added || []).join("、")}`);
      }) }, t("promote_to")));
}

function categoryLabel(i) {
  // An emerging incident names no category: its terms say what it is.
  if (i.kind === "emerging") return (i.top_terms || []).slice(0, 3).join(" · ");
  const more = (i.categories || []).filter((c) => c !== i.category);
  return more.length ? `${catName(i.category)} (+${more.map(catName).join(", ")})` : catName(i.category);
}

function regionName(r) {
  if (!r) return "";
  if (lang === "en" && r.name_en) return r.name_en;
  return r.name || r.code || "";
}

// A case's region: `region_name` / `region_name_en` from the API, else the code.
function caseRegion(c) {
  return (lang === "en" && c.region_name_en) || c.region_name || c.region || "";
}

async function openIncident(id) {
  const i = await api("GET", `/api/incidents/${encodeURIComponent(id)}`);
  const box = $("incident-detail");
  const samples = (i.samples || []).map((m) => el("li", {},
    el("span", { class: "muted" }, `${fmtTime(m.ts)} ${authorName(m.author)} `), m.text));
  const target = el("input", { id: "merge-target", placeholder: t("merge_help"), size: 24 });
  const operator = me.role === "operator" || me.role === "admin";
  // The same event seen twice: merge the newer incident into the older with one click.
  const overlaps = (i.overlaps || []).map((o) => {
    const older = o.opened_at <= i.opened_at;
    const [into, from] = older ? [o.id, i.id] : [i.id, o.id];
    return el("li", { "data-overlap": o.id },
      `${catName(o.category)} · ${regionName(o.region)} · ${t("severity")} ${o.severity} · `,
      el("code", {}, o.id), ` · ${t("shared")(o.shared)} `,
      operator ? el("button", { type: "button", class: "merge-overlap",
        onclick: () => act(async () => {
          await api("POST", "/api/incidents/merge", { into, from });
          toast(t("merged"));
          box.hidden = true;
          await loadIncidents();
        }) }, t("merge_one")(catName(o.category))) : null);
  });
  const notices = await api("GET", `/api/notices?incident_id=${encodeURIComponent(id)}`).catch(() => ({ notices: [] }));
  const noticeRows = (notices.notices || []).map((n) => el("li", { "data-notice": n.id },
    pageLink("notice", n.id, `${purposeLabel(n)} · ${t("st_" + n.state)}`), ` · ${fmtTime(n.created_at)}`,
    n.stale ? el("span", { class: "stale" }, ` ⚠ ${t("stale")}: ${n.stale}`) : null));
  setKids(box,
    el("h2", {}, `${t(i.kind)} · ${categoryLabel(i)} · ${regionName(i.region)} `,
      el("code", {}, i.id), " ", el("span", { class: "state", "data-state": i.state }, t(`is_${i.state}`))),
    el("p", {}, `${t("severity")} ${i.severity} · ${t("authors")} ${i.authors} · ${t("mentions")} ${i.mentions} · ${t("opened")} ${fmtTime(i.opened_at)}`),
    i.headline ? el("p", { class: "headline" }, `“${i.headline}”`) : null,
    whyLine(i),
    el("p", {}, `${t("terms")}: ${(i.top_terms || []).join("、")}`),
    operator ? el("div", { class: "actions" },
      el("button", { type: "button", id: "close-incident", class: "danger",
        onclick: () => act(async () => {
          await api("POST", `/api/incidents/${encodeURIComponent(id)}/close`, {});
          toast(t("closed"));
          box.hidden = true;
          await loadIncidents();
        }) }, t("close_incident")),
      target,
      el("button", { type: "button", id: "merge-incident",
        onclick: () => act(async () => {
          await api("POST", "/api/incidents/merge", { into: target.value.trim(), from: id });
          toast(t("merged"));
          box.hidden = true;
          await loadIncidents();
        }) }, t("merge_into"))) : null,
    operator && i.kind === "emerging" && i.state === "open" ? emergingActions(i, box) : null,
    overlaps.length ? el("div", { class: "overlaps" }, el("h3", {}, t("overlaps")), el("ul", {}, ...overlaps)) : null,
    el("h3", {}, t("its_notices")),
    noticeRows.length ? el("ul", { id: "incident-notices" }, ...noticeRows) : el("p", { class: "muted" }, t("no_notices")),
    el("h3", {}, t("samples")),
    el("ul", { class: "samples" }, ...samples));
  box.hidden = false;
}

async function loadNotices() {
  // The detail first: showing a notice moves a finished fan-out to `done`, which the list shows.
  if (currentNotice) await openNotice(currentNotice);
  const st = $("f-state").value;
  const data = await api("GET", `/api/notices${st ? `?state=${st}` : ""}`);
  // Newest first: what needs a person now is at the top; kind, category (id or name) and region
  // (a code covers everything under it) narrow the list.
  const kind = $("fn-kind").value;
  const cat = $("fn-category").value.trim().toLowerCase();
  const region = $("fn-region").value.trim().replace(/(00)+$/, "");
  const newest = data.notices.slice().sort((a, b) => b.created_at - a.created_at)
    .filter((n) => !kind || n.kind === kind)
    .filter((n) => !cat || n.category.toLowerCase() === cat || catName(n.category).toLowerCase().includes(cat))
    .filter((n) => !region || (n.region && n.region.code.startsWith(region)));
  const rows = newest.map((n) => el("tr", { "data-notice": n.id },
    el("td", {}, stateBadge(n.state, "st_")),
    el("td", {}, el("span", { class: `sev sev${n.severity}` }, n.severity)),
    el("td", {}, catName(n.category),
      n.purpose && n.purpose !== "notice" ? el("span", { class: `purpose p-${n.purpose}` }, ` ${purposeLabel(n)}`) : null,
      n.stale ? el("span", { class: "stale", title: n.stale }, ` ⚠ ${t("stale")}`) : null),
    el("td", {}, regionName(n.region)),
    el("td", {}, `${n.approvals.length}/${n.required_approvals}`),
    el("td", {}, `${fmtTime(n.created_at)} ${n.created_by}`),
    el("td", {}, el("button", { type: "button", class: "open-notice",
      onclick: () => act(() => openNotice(n.id)) }, t("open")))));
  $("notices").replaceChildren(...rows);
  $("notices-empty").hidden = rows.length > 0;
}

function preview(account, at, roleName, editable) {
  const text = el("div", { class: "text" }, at.text);
  const edit = el("textarea", { rows: 4, hidden: true, value: at.text });
  const save = el("button", { type: "button", hidden: true }, t("save"));
  const editBtn = el("button", { type: "button", class: "small" }, t("edit"));
  editBtn.addEventListener("click", () => {
    edit.hidden = !edit.hidden;
    save.hidden = edit.hidden;
  });
  save.addEventListener("click", () => act(async () => {
    await api("POST", `/api/notices/${currentNotice}/edit`, { account, text: edit.value });
    await openNotice(currentNotice);
  }));
  return el("div", { class: `card p-${at.platform}`, "data-account": account },
    el("div", { class: "card-head" }, el("b", {}, accountName(account)), ` · ${at.platform} · ${at.lang} · ${roleName}`),
    text,
    el("div", { class: "muted" }, `${[...at.text].length} ${t("chars")}`),
    me.role === "viewer" || !editable ? null : editBtn, edit, save);
}

async function openNotice(id) {
  currentNotice = id;
  const n = await api("GET", `/api/notices/${encodeURIComponent(id)}`);
  currentVersion = n.version || 0;
  $("notice-detail").hidden = false;
  $("nd-id").textContent = n.id;
  $("nd-state").replaceChildren(stateBadge(n.state, "st_"));
  setKids($("nd-meta"),
    el("span", { class: `purpose p-${n.purpose || "notice"}` }, purposeLabel(n)), " · ",
    `${t(n.kind)} · ${catName(n.category)} · ${t("severity")} ${n.severity} · ${regionName(n.region)} · ${t("created")} ${fmtTime(n.created_at)} ${n.created_by} · ${t("incident")} `,
    n.incident_id.startsWith("manual-") ? n.incident_id : pageLink("incident", n.incident_id),
    n.follows ? el("span", {}, ` · ${t("follows")} `, pageLink("notice", n.follows)) : null,
    n.superseded_by ? el("span", {}, ` · ${t("followed_by")} `, pageLink("notice", n.superseded_by)) : null);
  const stale = $("nd-stale");
  stale.hidden = !n.stale;
  stale.textContent = n.stale ? `⚠ ${t("stale_note")}: ${n.stale}` : "";
  const held = n.state === "held";
  $("nd-rule").textContent = held ? heldRule(n)
    : n.required_approvals >= 2 ? t("two_person") : t("one_person");
  $("nd-rule").classList.toggle("held", held);
  $("approve").textContent = held ? t("publish_now") : t("approve");
  $("reject").textContent = held ? t("cancel_publish") : t("reject");
  $("nd-approvals").replaceChildren(el("p", { id: "approval-count" },
    `${t("approvals")} ${n.approvals.length}/${n.required_approvals}: `,
    n.approvals.map((a) => `${a.actor} (${fmtTime(a.at)})`).join(", ")));
  const draft = n.state === "draft";
  const canAct = (draft || held) && me.role !== "viewer";
  $("approve").disabled = !canAct || (draft && (n.approvals.some((a) => a.actor === me.user)
    || n.created_by === me.user || (n.editors || []).includes(me.user)));
  $("reject").disabled = !canAct;
  const roles = {};
  roles[n.plan.lead] = t("lead");
  for (const c of n.plan.co_publishers) roles[c] = t("co");
  for (const a of n.plan.amplifiers) roles[a] = t("amp");
  // Only a draft's text can change: no edit button once approved, held or published.
  const cards = Object.entries(n.texts).map(([acc, at]) => preview(acc, at, roles[acc] || "", n.state === "draft"));
  // Keep an open editor open across the 2 s refresh.
  if (!document.querySelector("#nd-previews textarea:not([hidden])")) {
    $("nd-previews").replaceChildren(...cards);
  }
  const jobs = n.jobs_status || [];
  const unchecked = $("nd-check-failed");
  unchecked.hidden = !n.check_failed;
  unchecked.textContent = n.check_failed ? `⚠ ${n.check_failed} ${t("check_failed_note")}` : "";
  $("fanout").replaceChildren(...jobs.map((j) => el("tr", { "data-job": j.id, "data-state": j.state },
    el("td", {}, accountName(j.account_id), " ", el("span", { class: "muted" }, roles[j.account_id] || "")),
    el("td", {}, t(`a_${j.action}`)),
    el("td", {}, el("span", { class: `state s-${j.state}` }, t(`j_${j.state}`)),
      j.waiting_for_limit_until
        ? el("span", { class: "muted wait-limit" }, ` ${t("wait_limit")} ${fmtTime(j.waiting_for_limit_until)}`)
        : null),
    el("td", {}, j.platform_post_id || ""),
    el("td", { class: "error" }, j.last_error || ""))));
  $("fanout-empty").hidden = jobs.length > 0;
}

// ---- citizens' requests (诉求) -----------------------------------------------------------------

const operatorRole = () => me && (me.role === "operator" || me.role === "admin");

function deptName(id, names) {
  if (!id) return t("unassigned");
  if (names) return lang === "en" ? names.en : names.zh;
  const d = (departments || []).find((x) => x.id === id);
  return d ? (lang === "en" ? d.name_en : d.name_zh) : id;
}

function span(ms) {
  const m = Math.max(0, Math.round(ms / 60000));
  if (m < 60) return `${m} ${t("minutes")}`;
  if (m < 48 * 60) return `${Math.floor(m / 60)} ${t("hours")}`;
  return `${Math.floor(m / 1440)} ${t("days")}`;
}

// The deadline that runs now: to accept while received, to answer until answered.
function dueCell(c) {
  const due = c.state === "received" ? c.accept_due : c.answer_due;
  if (!due || c.state === "answered" || c.state === "closed") return el("span", { class: "muted" }, due ? fmtTime(due) : "");
  const left = due - Date.now();
  return el("span", { class: c.overdue || left < 0 ? "late" : "due", title: fmtTime(due) },
    c.overdue || left < 0 ? t("late")(span(-left)) : t("left")(span(left)));
}

function kindsLabel(c) {
  return (c.kinds || []).map((k) => t(`ck_${k}`)).join("、");
}

async function loadDepartments() {
  if (departments) return;
  const d = await api("GET", "/api/departments");
  departments = d.departments;
  const sel = $("fc-department");
  for (const x of departments) sel.append(el("option", { value: x.id, "data-dept": x.id }, deptName(x.id)));
}

async function loadCases() {
  await loadDepartments();
  if (currentCase) await openCase(currentCase);
  const q = new URLSearchParams();
  for (const f of ["state", "kind", "department", "region"]) {
    const v = $(`fc-${f}`).value.trim();
    if (v) q.set(f, v);
  }
  if ($("fc-overdue").checked) q.set("overdue", "true");
  $("case-export").href = `/api/cases/export.csv?${q}`;
  const data = await api("GET", `/api/cases?${q}`);
  const rows = data.cases.map((c) => el("tr", { "data-case": c.id, "data-state": c.state, class: c.overdue ? "overdue" : "" },
    el("td", {}, el("code", {}, c.id), c.urgent ? el("span", { class: "urgent" }, ` ${t("urgent")}`) : null),
    el("td", {}, stateBadge(c.state, "cs_")),
    el("td", {}, kindsLabel(c)),
    el("td", {}, deptName(c.department, c.department_name)),
    el("td", {}, caseRegion(c)),
    el("td", { class: "case-text" }, c.title || c.text),
    el("td", {}, c.requesters.length),
    el("td", {}, dueCell(c)),
    el("td", {}, el("button", { type: "button", class: "open-case",
      onclick: () => act(() => openCase(c.id)) }, t("open")))));
  $("cases").replaceChildren(...rows);
  $("cases-empty").hidden = rows.length > 0;
}

function caseAction(path, body) {
  return act(async () => {
    const c = await api("POST", `/api/cases/${encodeURIComponent(currentCase)}/${path}`,
      Object.assign({ version: openCase.version }, body || {}));
    toast(`${c.id} · ${t(`cs_${c.state}`)}`);
    // Done: what was typed for it is not kept.
    $("case-detail").dataset.case = "";
    await openCase(c.id);
    await loadCases();
  });
}

// What the person on screen may do to case `c` now (the engine checks the same again).
function caseActions(c) {
  const box = el("div", { class: "actions", id: "case-actions" });
  const add = (...k) => box.append(...k);
  const open = !["answered", "closed"].includes(c.state);
  const btn = (id, label, cls, fn) => el("button", { type: "button", id, class: cls || "", onclick: fn }, label);
  if (operatorRole()) {
    if (c.state === "received") add(btn("case-accept", t("accept"), "primary", () => caseAction("accept")));
    if (["accepted", "assigned"].includes(c.state)) {
      const sel = el("select", { id: "case-dept" }, el("option", { value: "" }, t("choose_dept")),
        ...(departments || []).map((d) => el("option", { value: d.id }, deptName(d.id))));
      add(sel, btn("case-assign", t("assign"), "", () => {
        if (sel.value) caseAction("assign", { department: sel.value });
      }));
    }
    if (c.pending_answer) {
      const mine = c.pending_answer.by === me.user;
      const b = btn("case-approve", t("approve_answer"), "primary", () => caseAction("approve"));
      b.disabled = mine;
      if (mine) b.title = t("not_yours");
      add(b);
    }
    if (c.state === "answered") {
      add(btn("case-close", t("close_case"), "", () => caseAction("close")),
        btn("case-rate-ok", t("rate_ok"), "small", () => caseAction("rate", { rating: "satisfied" })),
        btn("case-rate-bad", t("rate_bad"), "small danger", () => caseAction("rate", { rating: "dissatisfied" })));
    }
    if (!open) {
      const why = el("input", { id: "case-reopen-reason", placeholder: t("why"), size: 18 });
      add(why, btn("case-reopen", t("reopen"), "danger", () => {
        if (why.value.trim()) caseAction("reopen", { reason: why.value.trim() });
      }));
    }
  }
  const mayWork = me.role !== "viewer" && ["assigned", "in_progress"].includes(c.state);
  if (mayWork) {
    if (c.state === "assigned") add(btn("case-start", t("start"), "", () => caseAction("start")));
    const why = el("input", { id: "case-return-reason", placeholder: t("why"), size: 18 });
    add(why, btn("case-return", t("send_back"), "danger", () => {
      if (why.value.trim()) caseAction("return", { reason: why.value.trim() });
    }));
  }
  return { box, mayWork };
}

async function openCase(id) {
  currentCase = id;
  const c = await api("GET", `/api/cases/${encodeURIComponent(id)}`);
  openCase.version = c.version;
  const box = $("case-detail");
  // Keep what the person is typing or choosing across the 2 s refresh (same case only).
  const kept = {};
  let focused = null;
  if (box.dataset.case === id) {
    for (const f of box.querySelectorAll("input[id], select[id], textarea[id]")) kept[f.id] = f.value;
    if (document.activeElement && box.contains(document.activeElement)) focused = document.activeElement.id;
  }
  box.dataset.case = id;
  box.dataset.version = String(c.version);
  const ch = c.channel || {};
  const channel = ch.via === "platform" ? t("ch_platform")(ch.account) : t(`ch_${ch.via || "api"}`);
  const { box: actions, mayWork } = caseActions(c);
  const contacts = Object.entries(c.contacts || {});
  const answerForm = mayWork ? el("div", { class: "answer-form" },
    el("label", {}, t("answer_hint")),
    el("textarea", { id: "case-answer", rows: 4 }),
    el("button", { type: "button", id: "case-submit-answer", class: "primary",
      onclick: () => {
        const text = $("case-answer").value.trim();
        if (text) caseAction("answer", { text });
      } }, t("submit_answer"))) : null;
  box.replaceChildren(...[
    el("h2", {}, `${t("request")} `, el("code", {}, c.id), " ", stateBadge(c.state, "cs_"),
      c.urgent ? el("span", { class: "urgent" }, ` ${t("urgent")}`) : null),
    el("p", { id: "cd-meta" }, `${kindsLabel(c)} · ${deptName(c.department, c.department_name)} · ${caseRegion(c)} · ${t("channel")} ${channel} · ${t("due")} `, dueCell(c)),
    c.title ? el("h3", {}, c.title) : null,
    el("blockquote", { id: "cd-text" }, c.text),
    c.address ? el("p", {}, `${t("address")}: ${c.address}`) : null,
    (c.media || []).length ? el("p", {}, `${t("media")}: `, ...c.media.map((u) => el("a", { href: u, rel: "noopener noreferrer", target: "_blank" }, u, " "))) : null,
    c.incident_id ? el("p", {}, `${t("linked_incident")}: `, el("code", {}, c.incident_id)) : null,
    (c.returned_by || []).length ? el("p", { class: "muted" }, `${t("returned_by")}: ${c.returned_by.map((d) => deptName(d)).join("、")}`) : null,
    c.answer ? el("p", { id: "cd-answer" }, el("b", {}, `${t("answer_text")}: `), c.answer) : null,
    c.satisfaction ? el("p", {}, `${t("satisfaction")}: ${t(`sat_${c.satisfaction}`)}`) : null,
    c.pending_answer ? el("div", { id: "cd-pending", class: "pending" },
      el("b", {}, `${t("pending_answer")} (${t("written_by")} ${c.pending_answer.by}, ${fmtTime(c.pending_answer.at)})`),
      el("p", {}, c.pending_answer.text)) : null,
    actions,
    answerForm,
    el("h3", {}, `${t("requesters")} (${c.requesters.length})`),
    el("ul", { id: "cd-requesters" }, ...c.requesters.map((r) => el("li", {},
      el("span", { class: "muted" }, `${fmtTime(r.at)} `), r.handle))),
    contacts.length ? el("div", { id: "cd-contacts", class: "contacts" }, el("h3", {}, t("contacts")),
      el("ul", {}, ...contacts.map(([h, k]) => el("li", {}, `${h}: ${[k.name, k.email, k.phone].filter(Boolean).join(" · ")}`)))) : null,
    el("h3", {}, t("history")),
    el("table", { class: "list", id: "cd-history" }, el("tbody", {}, ...c.history.slice().reverse().map((e) => el("tr", { "data-action": e.action },
      el("td", {}, fmtTime(e.at)), el("td", {}, e.actor), el("td", {}, t(`ca_${e.action}`)), el("td", { class: "muted" }, e.detail))))),
    (c.replies || []).length ? el("h3", {}, t("replies")) : null,
    (c.replies || []).length ? el("table", { class: "list", id: "cd-replies" }, el("tbody", {}, ...c.replies.map((j) => el("tr", { "data-state": j.state },
      el("td", {}, t(`w_${j.what}`)), el("td", {}, accountName(j.account)), el("td", {}, j.to || ""),
      el("td", {}, el("span", { class: `state s-${j.state}` }, t(`j_${j.state}`))),
      el("td", {}, j.post_id || ""), el("td", { class: "error" }, j.error || ""))))) : null,
  ].filter(Boolean));
  for (const [fid, v] of Object.entries(kept)) {
    const f = document.getElementById(fid);
    if (f && box.contains(f)) f.value = v;
  }
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  box.hidden = false;
}

// ---- evaluation (绩效) ---------------------------------------------------------------------

const score = (v) => (v === null || v === undefined ? "—" : v.toFixed(1));
const share = (n, d) => (d ? `${Math.round((100 * n) / d)}%` : "—");
let evaluationData = null;

function evaluationQuery() {
  const q = new URLSearchParams();
  if ($("fe-from").value) q.set("from", $("fe-from").value);
  if ($("fe-to").value) q.set("to", $("fe-to").value);
  return q;
}

async function loadEvaluation(force) {
  const q = evaluationQuery();
  // Scoring reads every case: once a minute is enough (the filter and the tab load it at once).
  const key = q.toString();
  if (!force && evaluationData && evaluationData.key === key && Date.now() - evaluationData.at < 60000) return;
  const e = await api("GET", `/api/evaluation?${q}`);
  evaluationData = { key, at: Date.now() };
  for (const f of ["html", "csv"]) {
    const fq = new URLSearchParams(q);
    fq.set("format", f);
    $(`evaluation-${f}`).href = `/api/evaluation?${fq}`;
  }
  $("evaluation-period").textContent = `${t("period")}: ${fmtTime(e.period.from)} – ${fmtTime(e.period.to)}`;
  const open = (u) => el("button", { type: "button", class: "small open-unit", onclick: () => showUnit(u) }, t("open"));
  $("evaluation-departments").replaceChildren(...e.departments.map((u) => el("tr", {
    "data-unit": u.id, class: u.silent ? "silent" : "" },
  el("td", {}, u.rank || "—"),
  el("td", {}, lang === "en" ? u.name_en : u.name_zh),
  el("td", {}, u.service.received),
  el("td", {}, share(u.service.answered_on_time, u.service.received)),
  el("td", { class: u.service.overdue ? "late" : "" }, u.service.overdue),
  el("td", {}, u.service.returned),
  el("td", {}, u.approval.satisfaction_rate === null ? "—" : `${Math.round(u.approval.satisfaction_rate * 100)}%`),
  el("td", {}, score(u.scores.service)),
  el("td", { class: "overall" }, score(u.scores.overall)),
  el("td", {}, u.trend === null ? "—" : `${u.trend > 0 ? "+" : ""}${u.trend.toFixed(1)}`),
  el("td", {}, open(u)))));
  $("evaluation-accounts").replaceChildren(...e.accounts.map((u) => el("tr", {
    "data-unit": u.id, class: u.silent ? "silent" : "" },
  el("td", {}, u.rank ? `${u.rank}/${u.peers}` : "—"),
  el("td", {}, u.name_zh, " ", el("span", { class: "muted" }, u.name_en)),
  el("td", {}, u.reach && u.reach.read ? u.reach.posts : "—"),
  el("td", {}, score(u.scores.reach)),
  el("td", {}, u.interaction ? u.interaction.addressed : 0),
  el("td", {}, u.interaction ? share(u.interaction.answered, u.interaction.addressed) : "—"),
  el("td", {}, score(u.scores.interaction)),
  el("td", {}, score(u.scores.service)),
  el("td", { class: "overall" }, score(u.scores.overall)),
  el("td", {}, u.silent ? `${t("silent")}: ${u.silent_reason}` : ""),
  el("td", {}, open(u)))));
}

// One department's or account's figures, as the API names them.
function showUnit(u) {
  const s = u.service;
  const hours = (x) => (x === null || x === undefined ? "—" : `${(x / 3600).toFixed(1)} h`);
  const rows = [
    [t("received"), s.received], [t("accept"), `${s.accepted} (${share(s.accepted_on_time, s.received)} ${t("on_time")})`],
    [t("answer"), `${s.answered} (${share(s.answered_on_time, s.received)} ${t("on_time")})`],
    [t("overdue"), s.overdue], [t("returned"), s.returned], [t("reopen"), s.reopened],
    [t("ack_median"), hours(s.ack_secs.median)], [t("answer_median"), `${hours(s.answer_secs.median)} (p90 ${hours(s.answer_secs.p90)})`],
    [t("satisfaction"), `${u.approval.satisfied}/${u.approval.rated}`],
    [t("service"), score(u.scores.service)], [t("interaction"), score(u.scores.interaction)],
    [t("approval"), score(u.scores.approval)], [t("overall"), score(u.scores.overall)],
    [t("previous"), score(u.previous.overall)],
  ];
  if (u.reach && u.reach.planned) {
    rows.push([t("notices_posted"), `${u.reach.fanned_out}/${u.reach.planned}`]);
  }
  if (u.reach && u.reach.read) {
    const r = u.reach;
    rows.push([t("posts"), r.posts], [t("engagement"), r.engagement_per_post === null ? "—" : r.engagement_per_post.toFixed(1)],
      [t("public_share"), r.public_service_share === null ? "—" : `${Math.round(r.public_service_share * 100)}%`],
      [t("quiet_days"), r.quiet_days === null ? "—" : r.quiet_days], [t("reach"), score(u.scores.reach)]);
  }
  const box = $("evaluation-detail");
  box.replaceChildren(
    el("h2", {}, `${u.name_zh} `, el("span", { class: "muted" }, u.name_en)),
    el("table", { class: "list", id: "unit-figures" }, el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, String(v)))))),
    ...(u.worst_overdue.length ? [el("h3", {}, t("worst_overdue")), el("ul", {}, ...u.worst_overdue.map((o) =>
      el("li", {}, el("code", {}, o.id), ` ${fmtTime(o.due)} · ${hours(o.late_secs)}`)))] : []));
  box.hidden = false;
}

async function loadAccounts() {
  const data = await api("GET", "/api/accounts");
  $("paused-badge").hidden = !data.paused;
  $("accounts").replaceChildren(...data.accounts.map((a) => el("tr", { "data-account": a.id },
    el("td", {}, a.name, " ", el("span", { class: "muted" }, a.handle)),
    el("td", {}, a.platform),
    el("td", {}, regionName(a.region)),
    el("td", {}, (a.remaining || []).map((r) => `${r.kind} ${r.now} (${r.per_hour}/h)`
      + (r.waiting_until ? ` ${t("wait_limit")} ${fmtTime(r.waiting_until)}` : "")).join(" · ")),
    el("td", {}, a.last_post ? `${fmtTime(a.last_post.at)} ${a.last_post.post_id || ""}` : ""),
    el("td", { class: a.failures.length ? "error" : "" }, a.failures.length))));
}

async function loadAudit() {
  const data = await api("GET", "/api/audit?limit=200");
  $("audit").replaceChildren(...data.records.map((r) => el("tr", {},
    el("td", {}, r.seq), el("td", {}, fmtTime(r.at)), el("td", {}, r.actor),
    el("td", {}, r.action), el("td", {}, r.notice || ""),
    el("td", { class: "mono" }, JSON.stringify(r.detail)))));
}

async function loadAdmin() {
  const data = await api("GET", "/api/admin/users");
  const rows = [
    ...data.users.map((u) => el("tr", {}, el("td", {}, t("users")), el("td", {}, u.name), el("td", {}, u.role), el("td", {}))),
    ...data.tokens.map((k) => el("tr", {}, el("td", {}, t("tokens")), el("td", {}, k.name), el("td", {}, k.role),
      el("td", {}, el("button", { type: "button", class: "small danger",
        onclick: () => act(async () => {
          await api("POST", `/api/admin/tokens/${encodeURIComponent(k.name)}/revoke`, {});
          await loadAdmin();
        }) }, t("revoke"))))),
  ];
  $("principals").replaceChildren(...rows);
}

// ---- wiring --------------------------------------------------------------------------------

function wire() {
  // Browsers ask for permission only after a click.
  $("enable-alerts").addEventListener("click", () => {
    if ("Notification" in window) Notification.requestPermission().then(bellLabel);
    beep();
  });
  bellLabel();
  window.addEventListener("hashchange", () => { if (me) fromHash(); });
  $("login-form").addEventListener("submit", onLogin);
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("huiying.lang", lang);
    translate();
    if (me) refresh();
  });
  $("logout").addEventListener("click", () => act(async () => {
    await api("POST", "/api/logout", {});
    showLogin("");
  }));
  for (const b of document.querySelectorAll("#nav button")) {
    b.addEventListener("click", () => show(b.dataset.page));
  }
  $("incident-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    // The opinion report of the region filtered on (a 6-digit code), over the last 24 hours.
    const q = new URLSearchParams({ format: "html" });
    const r = $("f-region").value.trim();
    if (/^\d{6}$/.test(r)) q.set("region", r);
    $("opinion-html").href = `/api/reports/opinion?${q}`;
    act(loadIncidents);
  });
  $("notice-filter").addEventListener("submit", (e) => { e.preventDefault(); act(loadNotices); });
  $("case-filter").addEventListener("submit", (e) => { e.preventDefault(); act(loadCases); });
  $("evaluation-filter").addEventListener("submit", (e) => { e.preventDefault(); act(() => loadEvaluation(true)); });
  $("approve").addEventListener("click", () => act(async () => {
    await api("POST", `/api/notices/${currentNotice}/approve`, { version: currentVersion });
    await openNotice(currentNotice);
  }));
  $("reject").addEventListener("click", () => act(async () => {
    await api("POST", `/api/notices/${currentNotice}/reject`, { reason: $("reject-reason").value });
    await openNotice(currentNotice);
  }));
  $("pause").addEventListener("click", () => act(async () => {
    await api("POST", "/api/publishing/pause", {});
    await loadAccounts();
  }));
  $("resume").addEventListener("click", () => act(async () => {
    await api("POST", "/api/publishing/resume", {});
    await loadAccounts();
  }));
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(async () => {
      const r = await api("POST", "/api/admin/tokens", { name: $("token-name").value, role: $("token-role").value });
      const p = $("new-token");
      p.replaceChildren(t("token_once"), " ", el("code", {}, r.token));
      p.hidden = false;
      await loadAdmin();
    });
  });
  $("reload-rules").addEventListener("click", () => act(async () => {
    const r = await api("POST", "/api/admin/rules/reload", {});
    toast(`${t("done")}: ${r.patterns}`);
  }));
  $("reload-users").addEventListener("click", () => act(async () => {
    await api("POST", "/api/admin/users/reload", {});
    await loadAdmin();
  }));
}

async function boot() {
  translate();
  wire();
  try {
    me = await api("GET", "/api/me");
    if (!me.csrf) {
      // A bearer token in a browser is not a session: log in.
      showLogin("");
      return;
    }
    enter();
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
  }
}

document.addEventListener("DOMContentLoaded", boot);
