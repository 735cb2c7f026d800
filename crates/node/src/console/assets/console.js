// Cairn's console: polls this member's JSON endpoints (the CLI's reads)
// once a second and draws the visible page. No framework, no build step;
// every string from the cluster goes in through textContent.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const CLUSTER_PAGES = ["cluster", "chunks", "repairs", "upgrade"];
const PAGES = [...CLUSTER_PAGES, "chaos"];

let me = null;          // /api/whoami
let lastOk = 0;         // when the visible page last read fine (ms)
let busy = false;

function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.setAttribute("class", v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({ error: `${path}: HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return body;
}

function showError(msg) {
  const e = document.getElementById("error");
  e.hidden = !msg;
  e.textContent = msg ? `Could not read: ${msg} (retrying every second; showing the last data read)` : "";
}

function when(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "-";
}

function dash(v) {
  return v === null || v === undefined ? "-" : v;
}

// A horizontal bar: `pct` of `width` filled with class `cls`.
function bar(pct, cls, width, label) {
  const w = width || 160;
  const p = Math.max(0, Math.min(100, pct || 0));
  return el("svg:svg", { width: w, height: 14, class: "bar", "data-pct": pct === null ? "" : p },
    el("svg:rect", { class: "track", x: 0, y: 1, width: w, height: 12, rx: 2 }),
    el("svg:rect", { class: cls, x: 0, y: 1, width: (w * p / 100).toFixed(1), height: 12, rx: 2 }),
    el("svg:text", { x: 4, y: 11 }, label === undefined ? `${p.toFixed(0)}%` : label));
}

// ---- Cluster ----------------------------------------------------------

async function drawCluster() {
  const c = await get("/api/cluster");
  fill(document.querySelector("#members tbody"), c.members.map(m => m.error
    ? el("tr", { class: "failed" }, el("td", {}, "-"), el("td", {}, m.endpoint), el("td", { colspan: 6 }, `unreachable: ${m.error}`))
    : el("tr", { "data-id": m.id, class: m.role === "leader" ? "leader" : null },
        el("td", {}, m.id), el("td", {}, m.endpoint), el("td", { class: "role" }, m.role), el("td", {}, m.term),
        el("td", {}, m.last_log), el("td", {}, m.applied), el("td", {}, dash(m.lag)), el("td", {}, m.digest))));
  fill(document.querySelector("#leaders tbody"), c.leaders.slice().reverse().map(l =>
    el("tr", {}, el("td", {}, when(l.at_ms)), el("td", {}, l.term),
      el("td", {}, l.leader === null ? "none (election)" : l.leader), el("td", {}, l.reason))));
  drawCommits(c.commits);
}

function drawCommits(samples) {
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].at_ms - samples[i - 1].at_ms) / 1000;
    if (dt > 0) rates.push({ at: samples[i].at_ms, v: Math.max(0, samples[i].commit_index - samples[i - 1].commit_index) / dt });
  }
  const now = rates.length ? rates[rates.length - 1].v : null;
  document.getElementById("commit-rate").textContent = now === null ? "-" : `${now.toFixed(1)} entries/s`;
  const svg = document.getElementById("commit-chart");
  const W = 480, H = 90, top = Math.max(1, ...rates.map(r => r.v));
  const pts = rates.map((r, i) => `${(i / Math.max(1, rates.length - 1) * (W - 40) + 40).toFixed(1)},${(H - 14 - r.v / top * (H - 24)).toFixed(1)}`);
  svg.replaceChildren(
    el("svg:text", { x: 0, y: 12 }, `${top.toFixed(0)}/s`),
    el("svg:text", { x: 0, y: H - 14 }, "0"),
    el("svg:line", { x1: 40, y1: H - 14, x2: W, y2: H - 14, stroke: "#ccd" }),
    el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: "#4a77b4", "stroke-width": 2 }),
    el("svg:text", { x: 40, y: H - 1 }, `last ${rates.length} s`));
}

// ---- Chunks -----------------------------------------------------------

async function drawChunks() {
  const [chunks, topo] = await Promise.all([get("/api/read/chunks"), get("/api/read/topology")]);
  // Slot use is the leader scheduler's; a console without it still draws the tree.
  const sched = await get("/api/sched/status").catch(() => null);
  const slots = new Map((sched ? sched.slots : []).map(s => [s.cid, s]));
  const load = document.getElementById("cluster-load");
  load.replaceChildren(chunks.cluster_load_pct === null ? "no chunk reports space yet"
    : el("span", {}, bar(chunks.cluster_load_pct, chunks.cluster_load_mode, 240, `${chunks.cluster_load_pct.toFixed(1)}% used`),
        " ", el("span", { class: `mode ${chunks.cluster_load_mode}` }, chunks.cluster_load_mode)));

  const kids = new Map();
  for (const n of topo) {
    const p = n.parent || 0;
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(n);
  }
  const byBrick = new Map();
  for (const c of chunks.chunks) {
    const b = c.brick || 0;
    if (!byBrick.has(b)) byBrick.set(b, []);
    byBrick.get(b).push(c);
  }
  const placed = new Set(topo.filter(n => n.kind === "brick").map(n => n.id));
  const node = n => el("div", { class: n.kind, id: `topo-${n.id}` },
    el("div", { class: "label" }, n.name === n.kind ? n.kind : `${n.kind} ${n.name}`),
    (kids.get(n.id) || []).map(node),
    n.kind === "brick" ? (byBrick.get(n.id) || []).map(c => chunkRow(c, slots.get(c.cid))) : []);
  const unplaced = chunks.chunks.filter(c => !placed.has(c.brick || 0));
  document.getElementById("tree").replaceChildren(
    ...(kids.get(0) || []).map(node),
    unplaced.length ? el("div", { class: "zone" }, el("div", { class: "label" }, "not in the topology"),
      unplaced.map(c => chunkRow(c, slots.get(c.cid)))) : "");
}

function chunkRow(c, slot) {
  const used = slot ? slot.used.reduce((a, b) => a + b, 0) : 0;
  const limit = slot ? slot.limit.reduce((a, b) => a + b, 0) : 0;
  return el("div", { class: `chunk ${c.alive}`, id: `chunk-${c.cid}`, "data-cid": c.cid, "data-session": c.alive, "data-state": c.state },
    el("span", { class: "name" }, `chunk ${c.cid} `, el("small", {}, [c.name, c.hostname].find(n => n && n !== `chunk${c.cid}`) || "")),
    c.load_pct === null ? el("span", {}, "no space report") : bar(c.load_pct, c.load_mode, 200, `${c.load_pct.toFixed(1)}% ${c.load_mode}`),
    el("span", { class: `session ${c.alive}` }, c.alive),
    el("span", { class: "state" }, c.state),
    el("span", { class: "slots", title: "copy slots in use / limit (recover and migrate, src and dst)" }, slot ? `slots ${used}/${limit}` : "slots -"),
    el("span", { class: c.failslow ? "failslow" : "" }, c.failslow ? "failslow" : ""));
}

// ---- Repairs ----------------------------------------------------------

function card(label, value, warn) {
  return el("div", { class: warn ? "card warn" : "card" }, el("b", {}, value), label);
}

function pidLink(pid) {
  return el("a", { href: "#repairs", onclick: () => explain(pid) }, pid);
}

async function drawRepairs() {
  const s = await get("/api/sched/status");
  document.getElementById("sched-summary").replaceChildren(
    card("extents", s.extents), card("missing a replica", s.degraded, s.degraded > 0),
    card("with none alive", s.lost, s.lost > 0),
    card("recover queued", s.recover_queued), card("migrate queued", s.migrate_queued),
    card("parked", s.parked), card("finished", s.finished), card("failed", s.failed, s.failed > 0),
    card("recover", s.recover_paused ? "paused" : "on", s.recover_paused),
    card("migrate", s.migrate_paused ? "paused" : "on", s.migrate_paused));
  for (const which of ["recover", "migrate"]) {
    const b = document.getElementById(`act-${which}`);
    const paused = s[`${which}_paused`];
    b.textContent = `${paused ? "Resume" : "Pause"} ${which}`;
    b.dataset.action = paused ? "resume" : "pause";
  }
  fill(document.querySelector("#running tbody"), s.running.map(r =>
    el("tr", { "data-pid": r.pid, "data-id": r.id },
      el("td", {}, r.id), el("td", {}, r.kind), el("td", {}, pidLink(r.pid)), el("td", {}, r.src), el("td", {}, r.dst),
      el("td", {}, r.replace), el("td", {}, r.owner), el("td", {}, r.mode), el("td", {}, r.elapsed),
      el("td", { class: "progress" }, bar(r.progress_pct, "done", 140, r.progress_pct === null ? "no report yet" : `${r.progress_pct}%`)),
      el("td", {}, r.eta))));
  fill(document.querySelector("#recent tbody"), s.recent.map(r =>
    el("tr", { class: r.result === "failed" ? "failed" : null, "data-pid": r.pid },
      el("td", {}, r.id), el("td", {}, r.kind), el("td", {}, pidLink(r.pid)), el("td", {}, r.src), el("td", {}, r.dst),
      el("td", {}, r.mode), el("td", {}, r.result), el("td", {}, r.took), el("td", {}, when(r.ended_ms)))));
}

async function explain(pid) {
  document.getElementById("explain-pid").value = pid;
  const out = document.getElementById("explain");
  out.textContent = `explaining extent ${pid}...`;
  try {
    out.textContent = (await get(`/api/sched/explain/${encodeURIComponent(pid)}`)).text;
  } catch (e) {
    out.textContent = e.message;
  }
}

// ---- Upgrade ----------------------------------------------------------

async function drawUpgrade() {
  const u = await get("/api/upgrade/status");
  document.getElementById("upgrade-summary").replaceChildren(
    card("this binary", u.version), card("session lease", `${u.lease_ms / 1000} s`),
    card("hold", u.hold ? "ON" : "off", u.hold));
  const hold = document.getElementById("act-hold");
  hold.textContent = u.hold ? "Release the upgrade" : "Hold the upgrade";
  hold.dataset.action = u.hold ? "release" : "hold";
  const rows = u.active.map(name => el("tr", { "data-cap": name }, el("td", {}, name), el("td", { class: "state" }, "active"), el("td", {}, "-")));
  for (const p of u.pending) {
    const state = p.blockers.length ? "pending: blocked" : (p.held ? "pending: held" : "pending: activating");
    rows.push(el("tr", { "data-cap": p.name }, el("td", {}, p.name), el("td", { class: "state failed" }, state),
      el("td", {}, p.blockers.length ? p.blockers.map(b => `${b.who} (${b.version || "no version"}) lacks ${b.lacks.join(", ")}`).join("; ") : "-")));
  }
  fill(document.querySelector("#capabilities tbody"), rows);
  const caps = v => (v || []).join(", ") || "-";
  fill(document.querySelector("#upgrade-members tbody"), u.members.map(m =>
    el("tr", {}, el("td", {}, m.id), el("td", {}, m.version || "not advertised yet"), el("td", {}, caps(m.capabilities)))));
  fill(document.querySelector("#upgrade-chunks tbody"), u.chunks.map(c =>
    el("tr", {}, el("td", {}, c.cid), el("td", {}, c.version || "-"), el("td", {}, caps(c.capabilities)))));
}

// ---- Chaos reports ----------------------------------------------------

let chaosRun = null;    // the selected campaign's name
let chaosShown = null;  // name and modification time of the one drawn

function verdictText(valid, error) {
  if (error) return ["unreadable", "fail"];
  if (valid === true) return ["valid", "pass"];
  if (valid === false) return ["INVALID", "fail"];
  return ["not checked", "skipped"];
}

async function drawChaos() {
  const l = await get("/api/chaos/runs");
  document.getElementById("chaos-dir").textContent = `in ${l.dir}`;
  // The newest readable run until one is picked.
  if (!l.runs.some(r => r.name === chaosRun)) {
    const first = l.runs.find(r => !r.error) || l.runs[0];
    chaosRun = first ? first.name : null;
  }
  fill(document.querySelector("#runs tbody"), l.runs.map(r => {
    const [v, cls] = verdictText(r.valid, r.error);
    return el("tr", { "data-run": r.name, class: r.name === chaosRun ? "selected" : null, onclick: () => { chaosRun = r.name; poll(); } },
      el("td", {}, r.name === ".this" ? "(this directory)" : r.name), el("td", {}, dash(r.mode)), el("td", {}, dash(r.seed)),
      el("td", {}, dash(r.nodes)), el("td", {}, (r.nemeses || []).join(", ") || "-"),
      el("td", {}, r.duration_ms === null || r.duration_ms === undefined ? "-" : `${r.duration_ms / 1000} s`),
      el("td", { class: `verdict ${cls}` }, v), el("td", {}, r.error || r.failed_checks.join(", ") || "-"),
      el("td", {}, r.modified_ms ? new Date(r.modified_ms).toLocaleString() : "-"));
  }));
  const box = document.getElementById("run");
  box.hidden = chaosRun === null;
  const row = l.runs.find(r => r.name === chaosRun);
  const key = row ? `${row.name}@${row.modified_ms}` : null;
  if (key === null || key === chaosShown) return;
  await drawRun(await get(`/api/chaos/run/${encodeURIComponent(chaosRun)}`), row.modified_ms);
  chaosShown = key;
}

async function drawRun(d, modified) {
  const c = d.campaign || {};
  const v = d.verdict;
  const stats = (v && v.stats) || {};
  const linear = (v && v.linear) || {};
  const [text] = verdictText(v ? v.valid : null, null);
  document.getElementById("run-name").textContent = d.name === ".this" ? "(this directory)" : d.name;
  document.getElementById("run-summary").replaceChildren(...[
    card("verdict", text, v && v.valid === false), card("seed", dash(c.seed)), card("members", dash(c.nodes)),
    card("chunks", dash(c.chunks)), card("nemeses", (c.nemeses || []).join(", ") || "-"),
    card("session lease", c.lease_ms ? `${c.lease_ms / 1000} s` : "-"), card("faults injected", dash(stats.faults_injected)),
    card("events", dash(stats.events)),
    card("keys linearizable", linear.keys === undefined ? "-" : `${linear.valid_keys}/${linear.keys}`, (linear.violations || []).length > 0),
    card("keys unknown", (linear.unknown_keys || []).length, (linear.unknown_keys || []).length > 0),
    c.bug ? card("deliberate bug", c.bug, true) : null].filter(Boolean));
  const errors = document.getElementById("run-errors");
  errors.hidden = !d.errors.length;
  errors.textContent = d.errors.join("\n");
  fill(document.querySelector("#checks tbody"), (v ? v.checks : []).map(ch =>
    el("tr", { "data-check": ch.name }, el("td", {}, ch.name), el("td", { class: `result ${ch.status}` }, ch.status),
      el("td", { class: "details" }, (ch.details || []).join("\n")))));
  fill(document.querySelector("#operations tbody"), Object.entries(stats.operations || {}).map(([f, t]) =>
    el("tr", {}, el("td", {}, f), ["invoke", "ok", "fail", "info"].map(k => el("td", {}, t[k] || 0)))));
  const img = document.getElementById("timeline");
  img.hidden = !d.timeline;
  if (d.timeline) img.src = `/api/chaos/run/${encodeURIComponent(d.name)}/timeline.svg?m=${modified || 0}`;
}

// ---- Actions ----------------------------------------------------------

function confirmThen(text, run) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const yes = document.getElementById("confirm-yes");
  const no = document.getElementById("confirm-no");
  const close = () => { yes.onclick = null; no.onclick = null; d.close(); };
  no.onclick = close;
  yes.onclick = async () => { close(); await run(); };
  d.showModal();
}

async function act(path, what) {
  try {
    const r = await fetch(path, { method: "POST", headers: { "x-cairn-confirm": "yes" } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    showError("");
  } catch (e) {
    showError(`${what} failed: ${e.message}`);
  }
  poll();
}

for (const which of ["recover", "migrate"]) {
  document.getElementById(`act-${which}`).addEventListener("click", e => {
    const action = e.target.dataset.action;
    const text = action === "pause"
      ? `Pause ${which}? No new ${which} copies start on any leader until resumed (running ones finish).`
      : `Resume ${which}? The leader starts issuing ${which} copies again.`;
    confirmThen(text, () => act(`/api/sched/${action}/${which}`, `${action} ${which}`));
  });
}
document.getElementById("act-hold").addEventListener("click", e => {
  const action = e.target.dataset.action;
  const text = action === "hold"
    ? "Hold the upgrade? No capability activates until released, even once every member and chunk supports it."
    : "Release the upgrade? Capabilities activate as soon as every member and live chunk supports them; this cannot be undone.";
  confirmThen(text, () => act(`/api/upgrade/${action}`, `upgrade ${action}`));
});
document.getElementById("explain-form").addEventListener("submit", e => {
  e.preventDefault();
  const pid = document.getElementById("explain-pid").value;
  if (pid !== "") explain(pid);
});

// ---- Refresh ----------------------------------------------------------

const DRAW = { cluster: drawCluster, chunks: drawChunks, repairs: drawRepairs, upgrade: drawUpgrade, chaos: drawChaos };

// The pages this server has: a member's console has the cluster's, and
// the chaos reports when given a directory; `cairn-chaos serve` only those.
function pages() {
  if (!me) return [];
  if (me.mode === "chaos") return ["chaos"];
  return me.chaos ? PAGES : CLUSTER_PAGES;
}

function page() {
  const p = location.hash.replace("#", "");
  const have = pages();
  return have.includes(p) ? p : have[0];
}

function layout() {
  const p = page();
  for (const name of PAGES) {
    document.getElementById(`page-${name}`).hidden = name !== p;
    const nav = document.getElementById(`nav-${name}`);
    nav.hidden = !pages().includes(name);
    nav.classList.toggle("active", name === p);
  }
}

function show() {
  layout();
  lastOk = 0;
  poll();
}

async function whoami() {
  me = await get("/api/whoami");
  const chaosOnly = me.mode === "chaos";
  document.getElementById("served-by").textContent = chaosOnly
    ? `chaos reports · ${me.version}` : `member ${me.node_id} · ${me.version}${me.you ? ` · you: ${me.you}` : ""}`;
  document.getElementById("insecure").hidden = !me.insecure;
  const ro = document.getElementById("readonly");
  ro.hidden = me.actions || chaosOnly;
  ro.textContent = me.actions ? "" : `Read-only: ${me.actions_refused}`;
  for (const b of document.querySelectorAll(".actions button")) b.disabled = !me.actions;
  layout();
}

async function poll() {
  if (busy) return;
  busy = true;
  try {
    if (!me) await whoami();
    const p = page();
    await DRAW[p]();
    if (p === page()) {
      lastOk = Date.now();
      document.body.dataset.drawn = p;
      showError("");
    }
  } catch (e) {
    showError(e.message);
  } finally {
    busy = false;
  }
}

function tickAge() {
  const age = document.getElementById("age");
  if (!lastOk) { age.textContent = "-"; return; }
  const s = (Date.now() - lastOk) / 1000;
  age.textContent = `updated ${s.toFixed(0)} s ago`;
  age.classList.toggle("stale", s > 3);
}

window.addEventListener("hashchange", show);
setInterval(poll, POLL_MS);
setInterval(tickAge, 500);
poll();
