// The dashboard's controller: signs in, keeps the socket, feeds the store from events and
// requests, and routes between the views.
//
// What it listens to and what it asks for (docs/dashboard.md, "How it talks to the hub"):
// - room `components` (joins, losses, unhealthy), plus `list_components` every 2 s for load
//   and heartbeats, which have no events;
// - the workflow list (`workflow_list`) every 4 s on the Workflows page, 10 s elsewhere, and
//   the counts of the active workflows (`workflow_get` with `summary: true`, at most 20,
//   every 2 s): progress, charts and finished workflows come from these, cheaply;
// - room `workflow:<id>` of the one workflow open in the page: every task event of it live,
//   caught up by `seq` with `workflow_events` after a gap or a reconnect.
// It does not join `events` (every task event of every workflow): twenty dashboards on
// that firehose cost the suite a fifth of its throughput (docs/dashboard.md, "Load").

import { HubSocket, GzError } from "./socket.js";
import { Store, WorkflowDetail, TASK_EVENTS, WF_EVENTS } from "./store.js";
import { h, replace, FINAL_WF } from "./util.js";
import * as overview from "./views/overview.js";
import * as workflows from "./views/workflows.js";
import * as workflow from "./views/workflow.js";
import * as submit from "./views/submit.js";

const KEY_STORAGE = "gleitzeit.dashboard.key";
const SPEC_STORAGE = "gleitzeit.dashboard.deps";
const READS_ALL = new Set(["ADMIN", "OPERATOR", "VIEWER"]);
const SUBMITS = new Set(["ADMIN", "OPERATOR", "USER"]);
const QM = "type:queue-manager";

class Dashboard {
  constructor() {
    this.store = new Store();
    this.socket = null;
    this.key = null;
    this.view = null;
    this.viewName = null;
    this.timers = [];
    this.deps = loadDeps(); // workflow id -> Map task -> deps (specs submitted from this browser)
    this.watched = null; // the room of the open workflow
    this.sampled = new Map(); // workflow id -> {finished, failed, final, at} at the last sample
    this.lastSample = 0;
    this.startedAt = Date.now();
    // A tab hidden for this long goes dormant: it leaves the open workflow's room and stops
    // polling; shown again, it joins, catches up by seq and polls as before.
    this.hiddenLeaveMs = 30000;
    this.hiddenSince = null;
    this.dormant = false;
    this.lastReload = 0;
    this.store.onFrame = (dirty) => this.frame(dirty);
  }

  // ---- signing in ----

  boot() {
    const form = document.getElementById("signin-form");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = document.getElementById("api-key").value.trim();
      if (key) this.signIn(key);
    });
    document.getElementById("signout").addEventListener("click", () => this.signOut());
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("visibilitychange", () => this.onVisibility());
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) this.signIn(saved);
    else this.showSignIn();
  }

  showSignIn(error) {
    document.getElementById("app").hidden = true;
    document.getElementById("signin").hidden = false;
    const box = document.getElementById("signin-error");
    if (error) {
      box.hidden = false;
      replace(box, h("span.code", { text: error.code || "" }), " ", h("span", { text: error.message || String(error) }));
    } else box.hidden = true;
    document.getElementById("signin-state").textContent = "";
    document.getElementById("api-key").focus();
  }

  signIn(key) {
    if (this.socket) this.socket.close();
    this.key = key;
    const s = (this.socket = new HubSocket({ apiKey: key }));
    document.getElementById("signin-state").textContent = "Connecting…";
    s.on("state", (state, detail) => this.onState(state, detail));
    s.on("refused", (err) => this.signOut(err));
    s.on("connect", () => this.onConnect());
    s.on("disconnect", () => this.store.touch("connection"));
    s.on("component_joined", (env) => this.store.componentJoined(env.payload));
    s.on("component_left", (env) => this.store.componentLeft(env.payload));
    s.on("component_unhealthy", (env) => this.store.componentUnhealthy(env.payload));
    s.on("hub_shutting_down", () => this.store.log("hub", "the hub is shutting down"));
    s.on("gz_error", (env) => this.store.log("error", `${env.payload?.code}: ${env.payload?.message}`));
    // The queue-manager's events come in `event_batch` envelopes (one per workflow per
    // message it handled); `task_progress` from providers one by one.
    s.on("event_batch", (env) => this.store.workflowBatch(env));
    for (const e of [...TASK_EVENTS, ...WF_EVENTS, "task_progress"]) s.on(e, (env) => this.store.workflowEvent(e, env));
    s.start();
  }

  signOut(error) {
    sessionStorage.removeItem(KEY_STORAGE);
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.socket) this.socket.close();
    this.socket = null;
    this.key = null;
    this.unmountView();
    this.store = new Store();
    this.store.onFrame = (dirty) => this.frame(dirty);
    this.watched = null;
    this.sampled.clear();
    document.getElementById("api-key").value = "";
    this.showSignIn(error);
  }

  onState(state, detail) {
    this.store.connection = { state, detail, at: Date.now() };
    this.store.touch("connection");
    const el = document.getElementById("conn");
    el.className = `conn conn-${state}`;
    el.textContent = state === "open" ? "live" : state === "reconnecting" ? "reconnecting…" : state;
    el.title = detail && detail.reason ? `last: ${detail.reason}` : "";
  }

  async onConnect() {
    const s = this.socket;
    const first = !this.store.me;
    try {
      const me = await s.request("auth_whoami");
      this.store.me = me;
      sessionStorage.setItem(KEY_STORAGE, this.key);
      document.getElementById("who").textContent = `${me.user} · ${me.role}`;
      document.body.dataset.role = me.role;
      await s.subscribe(["components"]);
      if (first) {
        document.getElementById("signin").hidden = true;
        document.getElementById("app").hidden = false;
        this.startTimers();
        this.route();
      }
      // The open workflow first: what it missed while the page was cut off.
      const d = this.store.detail;
      // Live events may fill a gap by themselves, but the last ones of a workflow that ended
      // while the page was cut off never come: the catch-up is retried until it is answered.
      if (d && !first) {
        d.mustCatchUp = true;
        this.catchUp(d);
      }
      await Promise.all([this.refreshComponents(), this.refreshWorkflows(), this.refreshStatus()]);
      this.sampleActive();
    } catch (e) {
      this.store.log("error", `after connecting: ${e.code || ""} ${e.message}`);
    }
  }

  readsAll() {
    return !!this.store.me && READS_ALL.has(this.store.me.role);
  }

  canSubmit() {
    return !!this.store.me && SUBMITS.has(this.store.me.role);
  }

  canCancel(w) {
    const me = this.store.me;
    if (!me) return false;
    if (me.role === "ADMIN" || me.role === "OPERATOR") return true;
    return me.role === "USER" && (!w || !w.owner || w.owner === me.user);
  }

  // ---- requests ----

  request(event, payload, target = "hub", opts) {
    if (!this.socket) return Promise.reject(new GzError({ code: "GZ1031", message: "not signed in" }));
    return this.socket.request(event, payload, target, opts);
  }

  /** A JSON endpoint of the hub, with the key as Bearer. */
  async http(path, init = {}) {
    const res = await fetch(path, {
      ...init,
      headers: { ...(init.headers || {}), Authorization: `Bearer ${this.key}` },
      cache: "no-store",
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!res.ok) throw new GzError(body && body.code ? body : { code: `HTTP ${res.status}`, message: res.statusText || "request failed" });
    return body;
  }

  startTimers() {
    const every = (ms, fn) => this.timers.push(setInterval(fn, ms));
    every(1000, () => {
      this.onVisibility();
      if (this.dormant) return;
      this.store.touch("tick");
      const d = this.store.detail;
      if (d && (d.mustCatchUp || (d.gapSince && Date.now() - d.gapSince > 1000))) this.catchUp(d);
    });
    every(2000, () => {
      if (!this.active()) return;
      if (this.viewName === "overview") this.refreshComponents();
      this.sampleActive();
    });
    every(3000, () => {
      if (this.active() && this.viewName === "overview") this.refreshProviders();
    });
    let ticks = 0;
    every(2000, () => {
      ticks += 1;
      if (!this.active()) return;
      // the list: every 4 s on the Workflows page, every 10 s elsewhere
      if (this.viewName === "workflows" ? ticks % 2 === 0 : ticks % 5 === 0) this.refreshWorkflows();
      if (this.viewName === "overview" && ticks % 3 === 0) this.refreshStatus();
    });
    this.refreshProviders();
  }

  connected() {
    return this.socket && this.socket.state === "open";
  }

  /** Connected and not dormant: polls run. */
  active() {
    return this.connected() && !this.dormant;
  }

  /** Goes dormant after the tab was hidden for `hiddenLeaveMs`; wakes when it is shown. */
  onVisibility() {
    const hidden = document.visibilityState === "hidden";
    if (!hidden) {
      this.hiddenSince = null;
      if (this.dormant) this.wake();
      return;
    }
    if (this.hiddenSince === null) this.hiddenSince = Date.now();
    if (!this.dormant && this.socket && Date.now() - this.hiddenSince >= this.hiddenLeaveMs) {
      this.dormant = true;
      this.store.touch("connection");
      if (this.watched) this.socket.unsubscribe([this.watched]).catch(() => {});
    }
  }

  async wake() {
    this.dormant = false;
    this.store.touch("connection");
    if (!this.connected()) return; // onConnect does the rest
    const d = this.store.detail;
    try {
      if (this.watched) await this.socket.subscribe([this.watched]);
    } catch (e) {
      if (d) d.error = e;
    }
    if (d) this.catchUp(d);
    this.refreshComponents();
    this.refreshWorkflows();
    this.sampleActive();
  }

  async refreshComponents() {
    try {
      this.store.setComponents(await this.request("list_components"));
    } catch {
      /* shown by the connection state */
    }
  }

  async refreshStatus() {
    try {
      this.store.hub = await this.request("hub_status");
      this.store.touch("hub");
    } catch {
      /* ignore */
    }
  }

  async refreshProviders() {
    try {
      this.store.providers = await this.http("/providers");
      this.store.providersError = null;
    } catch (e) {
      this.store.providersError = e;
    }
    this.store.touch("providers");
  }

  async refreshWorkflows() {
    try {
      const list = await this.request("workflow_list", { limit: this.viewName === "workflows" ? 1000 : 200 }, QM);
      this.store.mergeWorkflowList(list);
      this.store.workflowsError = null;
    } catch (e) {
      this.store.workflowsError = e;
      this.store.touch("workflows");
    }
  }

  /**
   * Every 2 s: the counts of the active workflows (at most 20), from which come their
   * progress, the queue depth, and the finished and failed tasks per second.
   */
  async sampleActive() {
    if (this.sampling) return;
    this.sampling = true;
    const now = Date.now();
    const ids = new Set(this.store.activeWorkflows().slice(0, 20).map((w) => w.id));
    for (const [id, s] of this.sampled) {
      if (!s.final) ids.add(id);
      else if (!this.store.workflows.has(id)) this.sampled.delete(id);
    }
    // A workflow that started and finished between two samples (the list showed it already
    // final) is counted once, when it is first seen.
    for (const w of this.store.workflows.values()) {
      if (ids.size >= 24) break;
      if (FINAL_WF.has(w.status) && !this.sampled.has(w.id) && (w.created_at || 0) >= this.startedAt) ids.add(w.id);
    }
    let queued = 0;
    let running = 0;
    let finished = 0;
    let failed = 0;
    try {
      await Promise.all(
        [...ids].slice(0, 24).map((id) =>
          this.request("workflow_get", { workflow_id: id, summary: true }, QM, { timeoutMs: 5000 })
            .then((r) => {
              this.store.mergeCounts(id, r);
              const c = r.counts || {};
              const before = this.sampled.get(id);
              const created = r.workflow && r.workflow.created_at;
              // A workflow first seen running counts from now on, unless it began after the page.
              const base = before || (created && created >= this.startedAt ? { finished: 0, failed: 0 } : { finished: c.finished || 0, failed: c.failed || 0 });
              finished += Math.max(0, (c.finished || 0) - base.finished);
              failed += Math.max(0, (c.failed || 0) - base.failed);
              queued += (c.queued || 0) + (c.retrying || 0);
              running += c.running || 0;
              this.sampled.set(id, { finished: c.finished || 0, failed: c.failed || 0, final: FINAL_WF.has(r.workflow && r.workflow.status), at: now });
            })
            .catch(() => {}),
        ),
      );
    } finally {
      this.sampling = false;
    }
    const dt = this.lastSample ? Math.max(0.5, (now - this.lastSample) / 1000) : 2;
    this.lastSample = now;
    const series = this.store.series;
    series.queued.set(queued);
    series.running.set(running);
    series.finished.set(finished / dt);
    series.failed.set(failed / dt);
    series.finishedTotal += finished;
    this.store.touch("series");
  }

  /** Joins the room of the open workflow (leaving the one before). */
  async watch(id) {
    const room = id ? `workflow:${id}` : null;
    if (this.watched === room) return;
    const old = this.watched;
    this.watched = room;
    if (old) await this.socket.unsubscribe([old]);
    if (room && !this.dormant) await this.socket.subscribe([room]);
  }

  // ---- one workflow ----

  async openWorkflow(id) {
    const d = new WorkflowDetail(id);
    d.deps = this.depsOf(id);
    d.ownerQm = this.store.ownerQm.get(id) || null;
    this.store.detail = d;
    this.store.touch("detail-reset");
    try {
      await this.watch(id);
    } catch (e) {
      d.error = e;
    }
    await this.loadSnapshot(d);
  }

  closeWorkflow() {
    this.store.detail = null;
    if (this.socket && this.watched) this.watch(null).catch(() => {});
  }

  async loadSnapshot(d) {
    this.lastReload = Date.now();
    d.snapshots += 1;
    d.loaded = false;
    d.buffer = [];
    d.contig = null;
    d.ahead.clear();
    d.gapSince = 0;
    try {
      const reply = await this.readAllTasks(d);
      if (this.store.detail !== d) return;
      const t0 = performance.now();
      d.loadSnapshot(reply);
      d.mustCatchUp = false;
      d.error = null;
      d.loadMs = performance.now() - t0;
      const w = this.store.workflows.get(d.id);
      if (w) this.store.mergeCounts(d.id, reply);
      else this.store.mergeWorkflowList([reply.workflow]);
    } catch (e) {
      d.error = e;
      d.loaded = true;
    }
    this.store.touch("detail-reset");
  }

  /** `workflow_get` with every task, read in pages of 10,000 (a big workflow's task list
   *  does not fit one message); stops early when the detail view was closed. */
  async readAllTasks(d) {
    const ask = { workflow_id: d.id, limit: 10000 };
    const reply = await this.request("workflow_get", ask, QM, { timeoutMs: 120000 });
    const tasks = reply.tasks || [];
    while (reply.next_offset != null && this.store.detail === d) {
      ask.offset = reply.next_offset;
      const page = await this.request("workflow_get", ask, QM, { timeoutMs: 120000 });
      for (const t of page.tasks || []) tasks.push(t);
      reply.next_offset = page.next_offset;
    }
    delete reply.next_offset;
    reply.tasks = tasks;
    return reply;
  }

  /** Fetches the events after the last contiguous one; reloads when some are gone. */
  async catchUp(d) {
    if (d.catching || !this.connected()) return;
    d.catching = true;
    if (d.contig === null) {
      // No event seen since the snapshot: nothing to count from, so read it again.
      try {
        await this.loadSnapshot(d);
      } finally {
        d.catching = false;
      }
      return;
    }
    try {
      const after = d.contig;
      const target = d.ownerQm ? `component:${d.ownerQm}` : QM;
      const r = await this.request("workflow_events", { workflow_id: d.id, after_seq: after }, target, { timeoutMs: 60000 });
      if (this.store.detail !== d) return;
      d.mustCatchUp = false;
      let top = after;
      for (const e of r.events) {
        this.store.workflowEvent(e.event, { payload: e.payload, ts: e.ts }, false);
        top = Math.max(top, e.seq);
      }
      d.caughtUp += r.events.length;
      d.catchUps += 1;
      if (r.complete) {
        if (d.ahead.size) {
          let low = Infinity;
          for (const seq of d.ahead) if (seq < low) low = seq;
          top = Math.max(top, low - 1);
        }
        d.settleTo(top);
      } else if (Date.now() - this.lastReload > 5000) {
        await this.loadSnapshot(d);
      } else {
        d.gapSince = Date.now(); // reload a little later
      }
    } catch (e) {
      d.gapSince = Date.now(); // try again later
    } finally {
      d.catching = false;
      this.store.touch("detail");
    }
  }

  async cancelWorkflow(id) {
    const owner = this.store.ownerQm.get(id) || (this.store.detail && this.store.detail.id === id && this.store.detail.ownerQm);
    return this.request("workflow_cancel", { workflow_id: id }, owner ? `component:${owner}` : QM);
  }

  /** Validates YAML at the hub: {valid, diagnostics, spec}. */
  validate(text) {
    return this.http("/validate", { method: "POST", body: text, headers: { "Content-Type": "application/yaml" } });
  }

  async submitSpec(spec) {
    const reply = await this.request("workflow_submit", { spec }, QM, { timeoutMs: 120000 });
    this.rememberDeps(reply.workflow_id, spec);
    const w = { id: reply.workflow_id, name: spec.name, status: "pending", total_tasks: reply.total_tasks, created_at: Date.now(), owner: this.store.me && this.store.me.user };
    this.store.mergeWorkflowList([w]);
    return reply;
  }

  depsOf(id) {
    const entry = this.deps.get(id);
    return entry ? new Map(entry) : null;
  }

  rememberDeps(id, spec) {
    const entry = spec.tasks.map((t) => [t.id, t.dependencies || []]);
    this.deps.set(id, entry);
    while (this.deps.size > 50) this.deps.delete(this.deps.keys().next().value);
    try {
      sessionStorage.setItem(SPEC_STORAGE, JSON.stringify([...this.deps]));
    } catch {
      // Too big for session storage: kept for this page's life only.
    }
  }

  // ---- views ----

  route() {
    if (!this.store.me) return;
    const hash = window.location.hash || "#/";
    const parts = hash.slice(2).split("/").map(decodeURIComponent);
    let name = parts[0] || "overview";
    if (!["overview", "workflows", "workflow", "submit"].includes(name)) name = "overview";
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === name || (name === "workflow" && a.dataset.view === "workflows"));
    this.unmountView();
    const container = document.getElementById("view");
    container.replaceChildren();
    const mod = { overview, workflows, workflow, submit }[name];
    this.viewName = name;
    if (name !== "workflow") this.closeWorkflow();
    this.view = mod.mount(this, container, parts.slice(1));
    if (name === "workflow" && parts[1]) this.openWorkflow(parts[1]);
    this.frame(new Set(["all"]));
  }

  unmountView() {
    if (this.view && this.view.unmount) this.view.unmount();
    this.view = null;
  }

  frame(dirty) {
    if (this.view && this.view.update) {
      try {
        this.view.update(dirty);
      } catch (e) {
        console.error("view update failed", e);
      }
    }
    if (this.store.detail) this.store.detail.changed.clear();
  }
}

function loadDeps() {
  try {
    const raw = sessionStorage.getItem(SPEC_STORAGE);
    return new Map(raw ? JSON.parse(raw) : []);
  } catch {
    return new Map();
  }
}

const app = new Dashboard();
window.gleitzeitDashboard = app; // for the browser tests and the curious
app.boot();
