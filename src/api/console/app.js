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
    two_person: "需两名不同值班员批准（双人规则）", one_person: "需一名值班员批准",
    approved_by: "已批准", edit: "修改文本", save: "保存", revoke: "吊销",
    token_once: "新令牌（只显示这一次）：", chars: "字", lead: "首发", co: "同步发布",
    amp: "转发", j_pending: "等待", j_attempting: "发送中", j_done: "已发布",
    j_failed: "失败", j_retry: "重试", j_check_failed: "无法核实", done: "完成",
    wait_limit: "等待额度至", check_failed_note: "条发布无法核实是否已发出：请到平台上查看，勿盲目重发", login_failed: "登录失败",
    expired: "会话已过期，请重新登录", forbidden: "权限不足", mentions: "提及数",
    merged: "已合并", closed: "已关闭", merge_help: "目标事件编号", users: "用户", tokens: "令牌",
    audit_down: "审计日志无法写入：操作被拒绝，发布已暂停，恢复写入后自动继续",
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
    terms: "Terms", two_person: "Needs two different operators (two-person rule)",
    one_person: "Needs one operator", approved_by: "Approved by", edit: "Edit text",
    save: "Save", revoke: "Revoke", token_once: "New token (shown only once):", chars: "chars",
    lead: "lead", co: "co-publisher", amp: "amplifier", j_pending: "pending",
    j_attempting: "sending", j_done: "posted", j_failed: "failed", j_retry: "retrying",
    j_check_failed: "unverified", wait_limit: "waiting for limit until",
    check_failed_note: "post(s) could not be checked: look on the platform whether they exist; do not resend blindly",
    done: "Done", login_failed: "Login failed", expired: "Session expired: log in again",
    forbidden: "Not allowed for your role", mentions: "Mentions", merged: "Merged",
    closed: "Closed", merge_help: "target incident id", users: "User", tokens: "Token",
    audit_down: "The audit log cannot be written: actions are refused and publishing is paused until it can",
  },
};

let lang = localStorage.getItem("huiying.lang") || "zh";
let me = null;
let page = "incidents";
let currentNotice = null;
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

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-placeholder]")) {
    e.placeholder = t(e.dataset.i18nPlaceholder);
  }
  $("lang").textContent = lang === "zh" ? "English" : "中文";
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
  $("whoami").textContent = `${me.user} · ${me.role}`;
  $("whoami").dataset.role = me.role;
  $("tab-admin").hidden = me.role !== "admin";
  show(location.hash.slice(1) || "incidents");
}

// ---- pages ---------------------------------------------------------------------------------

const loaders = {
  incidents: loadIncidents, notices: loadNotices, accounts: loadAccounts,
  audit: loadAudit, admin: loadAdmin,
};

function show(name) {
  if (!loaders[name]) name = "incidents";
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
    const a = await api("GET", "/api/accounts").catch(() => null);
    $("paused-badge").hidden = !(a && a.paused);
    // Audit first: while the audit log refuses writes nothing changes and nothing is sent.
    const h = await fetch("/healthz", { cache: "no-store" }).then((r) => r.json()).catch(() => null);
    const au = h && h.audit;
    $("audit-banner").hidden = !(au && (!au.writable || au.dispatcher_paused));
  });
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
    el("td", {}, categoryLabel(i)),
    el("td", {}, regionName(i.region)),
    el("td", {}, i.authors),
    el("td", {}, fmtTime(i.opened_at)),
    el("td", {}, el("button", { type: "button", onclick: () => act(() => openIncident(i.id)) }, t("open")))));
  $("incidents").replaceChildren(...rows);
  $("incidents-empty").hidden = rows.length > 0;
}

function authorName(a) {
  if (!a) return "";
  return `@${a.name || a.id}${a.verified ? " ✔" : ""}`;
}

// The primary category, then the related ones the incident also lists (flood (+rainstorm)).
function categoryLabel(i) {
  const more = (i.categories || []).filter((c) => c !== i.category);
  return more.length ? `${i.category} (+${more.join(", ")})` : i.category;
}

function regionName(r) {
  return r ? (r.name || r.code || "") : "";
}

async function openIncident(id) {
  const i = await api("GET", `/api/incidents/${encodeURIComponent(id)}`);
  const box = $("incident-detail");
  const samples = (i.samples || []).map((m) => el("li", {},
    el("span", { class: "muted" }, `${fmtTime(m.ts)} ${authorName(m.author)} `), m.text));
  const target = el("input", { id: "merge-target", placeholder: t("merge_help"), size: 24 });
  const operator = me.role === "operator" || me.role === "admin";
  box.replaceChildren(
    el("h2", {}, `${t(i.kind)} · ${categoryLabel(i)} · ${regionName(i.region)} `,
      el("code", {}, i.id), " ", el("span", { class: "state" }, i.state)),
    el("p", {}, `${t("severity")} ${i.severity} · ${t("authors")} ${i.authors} · ${t("mentions")} ${i.mentions} · ${t("opened")} ${fmtTime(i.opened_at)}`),
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
    el("h3", {}, t("samples")),
    el("ul", { class: "samples" }, ...samples));
  box.hidden = false;
}

async function loadNotices() {
  // The detail first: showing a notice moves a finished fan-out to `done`, which the list shows.
  if (currentNotice) await openNotice(currentNotice);
  const st = $("f-state").value;
  const data = await api("GET", `/api/notices${st ? `?state=${st}` : ""}`);
  const rows = data.notices.map((n) => el("tr", { "data-notice": n.id },
    el("td", {}, stateBadge(n.state, "st_")),
    el("td", {}, el("span", { class: `sev sev${n.severity}` }, n.severity)),
    el("td", {}, n.category),
    el("td", {}, regionName(n.region)),
    el("td", {}, `${n.approvals.length}/${n.required_approvals}`),
    el("td", {}, `${fmtTime(n.created_at)} ${n.created_by}`),
    el("td", {}, el("button", { type: "button", class: "open-notice",
      onclick: () => act(() => openNotice(n.id)) }, t("open")))));
  $("notices").replaceChildren(...rows);
  $("notices-empty").hidden = rows.length > 0;
}

function preview(account, at, roleName) {
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
    el("div", { class: "card-head" }, el("b", {}, account), ` · ${at.platform} · ${at.lang} · ${roleName}`),
    text,
    el("div", { class: "muted" }, `${[...at.text].length} ${t("chars")}`),
    me.role === "viewer" ? null : editBtn, edit, save);
}

async function openNotice(id) {
  currentNotice = id;
  const n = await api("GET", `/api/notices/${encodeURIComponent(id)}`);
  currentVersion = n.version || 0;
  $("notice-detail").hidden = false;
  $("nd-id").textContent = n.id;
  $("nd-state").replaceChildren(stateBadge(n.state, "st_"));
  $("nd-meta").textContent = `${t(n.kind)} · ${n.category} · ${t("severity")} ${n.severity} · ${regionName(n.region)} · ${t("created")} ${fmtTime(n.created_at)} ${n.created_by}`;
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
  const cards = Object.entries(n.texts).map(([acc, at]) => preview(acc, at, roles[acc] || ""));
  // Keep an open editor open across the 2 s refresh.
  if (!document.querySelector("#nd-previews textarea:not([hidden])")) {
    $("nd-previews").replaceChildren(...cards);
  }
  const jobs = n.jobs_status || [];
  const unchecked = $("nd-check-failed");
  unchecked.hidden = !n.check_failed;
  unchecked.textContent = n.check_failed ? `⚠ ${n.check_failed} ${t("check_failed_note")}` : "";
  $("fanout").replaceChildren(...jobs.map((j) => el("tr", { "data-job": j.id, "data-state": j.state },
    el("td", {}, j.account_id, " ", el("span", { class: "muted" }, roles[j.account_id] || "")),
    el("td", {}, j.action),
    el("td", {}, el("span", { class: `state s-${j.state}` }, t(`j_${j.state}`)),
      j.waiting_for_limit_until
        ? el("span", { class: "muted wait-limit" }, ` ${t("wait_limit")} ${fmtTime(j.waiting_for_limit_until)}`)
        : null),
    el("td", {}, j.platform_post_id || ""),
    el("td", { class: "error" }, j.last_error || ""))));
  $("fanout-empty").hidden = jobs.length > 0;
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
  $("incident-filter").addEventListener("submit", (e) => { e.preventDefault(); act(loadIncidents); });
  $("notice-filter").addEventListener("submit", (e) => { e.preventDefault(); act(loadNotices); });
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
