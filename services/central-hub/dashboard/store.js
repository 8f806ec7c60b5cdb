// The page's state, fed by the socket (events, replies) and read by the views.
//
// Nothing here touches the DOM. Every change marks what it touched as dirty and asks for
// one animation frame; the frame hands the dirty set to the views, which redraw only what
// is visible. So a burst of 10,000 events costs 10,000 cheap updates of plain objects and
// one redraw, not 10,000 redraws.

import { FINAL_TASK, FINAL_WF } from "./util.js";

/** Per-second values over the last `size` seconds (a ring). A gauge keeps its last
 * sample until the next one; a rate starts every second at 0. */
export class Series {
  constructor(size = 300, gauge = false) {
    this.size = size;
    this.gauge = gauge;
    this.empty = gauge ? NaN : 0;
    this.values = new Float64Array(size).fill(this.empty);
    this.second = Math.floor(Date.now() / 1000);
  }
  advance(now = Date.now()) {
    const s = Math.floor(now / 1000);
    const steps = Math.min(s - this.second, this.size);
    for (let i = 1; i <= steps; i++) this.values[(this.second + i) % this.size] = this.empty;
    if (s > this.second) this.second = s;
  }
  add(v = 1, now = Date.now()) {
    this.advance(now);
    this.values[this.second % this.size] += v;
  }
  set(v, now = Date.now()) {
    this.advance(now);
    this.values[this.second % this.size] = v;
  }
  /** Oldest first. */
  points(now = Date.now()) {
    this.advance(now);
    const out = new Array(this.size);
    let last = 0;
    for (let i = 0; i < this.size; i++) {
      const v = this.values[(this.second + 1 + i) % this.size];
      if (Number.isNaN(v)) out[i] = last;
      else out[i] = last = v;
    }
    return out;
  }
}

const RANK = { pending: 0, queued: 1, running: 2, retrying: 3 };
function rank(status) {
  return FINAL_TASK.has(status) ? 4 : RANK[status] ?? 0;
}

const TASK_EVENTS = new Set(["task_started", "task_completed", "task_retrying", "task_failed", "task_skipped"]);
const WF_EVENTS = new Set([
  "workflow_submitted",
  "workflow_started",
  "workflow_progress",
  "workflow_completed",
  "workflow_failed",
  "workflow_cancelled",
]);
export { TASK_EVENTS, WF_EVENTS };

/** The workflow open in the page: its tasks, the events applied, streamed text. */
export class WorkflowDetail {
  constructor(id) {
    this.id = id;
    this.record = null;
    this.counts = null;
    this.tasks = [];
    this.index = new Map();
    this.deps = null; // Map task_id -> [task ids] when the spec is known
    this.loaded = false;
    this.error = null;
    this.contig = null; // every seq up to this one was applied
    this.ahead = new Set(); // seqs above contig already applied
    this.maxSeq = 0;
    this.gapSince = 0;
    this.mustCatchUp = false; // set on a reconnect: what was missed is asked for until a reply comes
    this.buffer = []; // events received before the snapshot
    this.streams = new Map(); // task_id -> {attempt, text}
    this.grew = false; // tasks were added since the view last laid them out
    this.changed = new Set(); // task indices changed since the last frame
    this.version = 0; // bumps on any task change
    this.ownerQm = null;
    this.snapshots = 0; // workflow_get replies loaded
    this.caughtUp = 0; // events fetched with workflow_events
    this.catchUps = 0; // workflow_events replies
  }

  /** Loads the `workflow_get` reply. */
  loadSnapshot(reply) {
    this.record = reply.workflow;
    this.counts = reply.counts;
    this.tasks = reply.tasks.map((t) => ({
      task_id: t.task_id,
      name: t.name,
      method: t.method,
      status: t.status,
      attempt: t.attempts || 0,
      priority: t.priority,
      params: t.params,
      result: t.result,
      error: t.error,
      provider_id: t.provider_id,
      endpoint: t.provider_id,
      queued_at: t.queued_at,
      started_at: t.started_at,
      finished_at: t.finished_at,
      duration: t.started_at && t.finished_at ? (t.finished_at - t.started_at) / 1000 : null,
    }));
    this.index = new Map(this.tasks.map((t, i) => [t.task_id, i]));
    this.loaded = true;
    this.version++;
    for (let i = 0; i < this.tasks.length; i++) this.changed.add(i);
    const buffered = this.buffer;
    this.buffer = [];
    if (buffered.length) {
      this.contig = buffered.reduce((m, b) => Math.min(m, b.seq ?? Infinity), Infinity) - 1;
      if (!Number.isFinite(this.contig)) this.contig = null;
    }
    for (const b of buffered) this.apply(b.event, b.payload, b.ts, false);
  }

  /** Records that `seq` was applied; false when it was seen already. */
  noteSeq(seq) {
    if (typeof seq !== "number") return true;
    if (this.contig === null) this.contig = seq - 1;
    if (seq <= this.contig || this.ahead.has(seq)) return false;
    this.ahead.add(seq);
    while (this.ahead.has(this.contig + 1)) {
      this.ahead.delete(this.contig + 1);
      this.contig += 1;
    }
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (this.ahead.size && !this.gapSince) this.gapSince = Date.now();
    if (!this.ahead.size) this.gapSince = 0;
    return true;
  }

  /** After a complete catch-up: nothing is missing up to `seq`. */
  settleTo(seq) {
    if (this.contig === null || seq > this.contig) this.contig = seq;
    for (const s of [...this.ahead]) if (s <= this.contig) this.ahead.delete(s);
    while (this.ahead.has(this.contig + 1)) {
      this.ahead.delete(this.contig + 1);
      this.contig += 1;
    }
    this.gapSince = this.ahead.size ? Date.now() : 0;
  }

  /** Applies a workflow or task event; `live` false for catch-up. Returns true if it changed something. */
  apply(event, p, ts, live = true) {
    if (!p) return false;
    if (!this.loaded) {
      this.buffer.push({ event, payload: p, ts, seq: p.seq });
      return false;
    }
    if (!this.noteSeq(p.seq)) return false;
    if (TASK_EVENTS.has(event)) return this.applyTask(event, p, ts);
    if (WF_EVENTS.has(event)) return this.applyWorkflow(event, p, ts);
    return false;
  }

  applyTask(event, p, ts) {
    let i = this.index.get(p.task_id);
    if (i === undefined) {
      // A task made at run time (an item of a fan-out, `batch: {from}`) joins the list.
      i = this.tasks.length;
      this.tasks.push({
        task_id: p.task_id, name: p.task_name || p.task_id, method: p.method, status: "queued",
        attempt: 0, priority: null, params: null, result: null, error: null, provider_id: null,
        endpoint: null, queued_at: null, started_at: null, finished_at: null, duration: null,
      });
      this.index.set(p.task_id, i);
      this.grew = true;
    }
    const t = this.tasks[i];
    const attempt = p.attempt ?? 0;
    if (attempt < t.attempt || (attempt === t.attempt && rank(p.status) < rank(t.status))) return false;
    t.status = p.status;
    t.attempt = attempt;
    if (p.task_name) t.name = p.task_name;
    if (p.method) t.method = p.method;
    if (p.provider_id) t.provider_id = p.provider_id;
    if (p.endpoint) t.endpoint = p.endpoint;
    if (event === "task_started") {
      t.started_at = ts || Date.now();
      t.finished_at = null;
      t.duration = null;
    } else {
      if (p.result !== undefined && p.result !== null) t.result = p.result;
      if (p.error !== undefined) t.error = p.error;
      if (typeof p.duration_seconds === "number") t.duration = p.duration_seconds;
      if (FINAL_TASK.has(p.status)) t.finished_at = ts || Date.now();
    }
    this.changed.add(i);
    this.version++;
    return true;
  }

  applyWorkflow(event, p, ts) {
    const r = this.record || (this.record = { id: this.id });
    r.name = p.name ?? r.name;
    r.status = p.status ?? r.status;
    r.total_tasks = p.total_tasks ?? r.total_tasks;
    if (event === "workflow_started" && !r.started_at) r.started_at = ts;
    if (FINAL_WF.has(p.status)) {
      r.finished_at = r.finished_at || ts;
      if (p.error !== undefined) r.error = p.error;
      if (event === "workflow_cancelled") this.cancelUnfinished(ts);
    }
    const c = this.counts || (this.counts = {});
    if ((p.finished_tasks ?? 0) >= (c.finished ?? 0)) {
      c.total = p.total_tasks;
      c.completed = p.completed_tasks;
      c.failed = p.failed_tasks;
      c.skipped = p.skipped_tasks;
      c.finished = p.finished_tasks;
    }
    if (p.task_results) {
      for (const [id, result] of Object.entries(p.task_results)) {
        const i = this.index.get(id);
        if (i === undefined) continue;
        const t = this.tasks[i];
        if (t.status !== "completed" || t.result == null) {
          t.status = "completed";
          t.result = result;
          this.changed.add(i);
        }
      }
    }
    this.version++;
    return true;
  }

  /** `workflow_cancelled` carries no task events: every unfinished task is cancelled. */
  cancelUnfinished(ts) {
    for (let i = 0; i < this.tasks.length; i++) {
      const t = this.tasks[i];
      if (!FINAL_TASK.has(t.status)) {
        t.status = "cancelled";
        t.finished_at = ts;
        t.error = t.error || { code: "GZ2006", message: "cancelled with its workflow" };
        this.changed.add(i);
      }
    }
  }

  /** Streamed text (`task_progress`) of a running task. */
  stream(p) {
    let s = this.streams.get(p.task_id);
    if (!s || (p.attempt ?? 0) > s.attempt) {
      s = { attempt: p.attempt ?? 0, text: "" };
      this.streams.set(p.task_id, s);
    }
    s.text += p.text ?? "";
    if (s.text.length > 262144) s.text = `…${s.text.slice(-200000)}`;
    const i = this.index.get(p.task_id);
    if (i !== undefined) this.changed.add(i);
  }

  /** Counts by task status, from the tasks held. */
  statusCounts() {
    const c = { pending: 0, queued: 0, running: 0, retrying: 0, completed: 0, failed: 0, skipped: 0, cancelled: 0 };
    for (const t of this.tasks) c[t.status] = (c[t.status] || 0) + 1;
    return c;
  }
}

export class Store {
  constructor() {
    this.me = null;
    this.hub = null;
    this.components = new Map();
    this.gone = new Map(); // component id -> {info, reason, at}
    this.activity = [];
    this.providers = [];
    this.providersError = null;
    this.workflows = new Map();
    this.ownerQm = new Map(); // workflow id -> queue-manager id (source of its events)
    this.detail = null;
    // Sampled every 2 s (app.sampleActive): rates and gauges, drawn as steps.
    this.series = { finished: new Series(300, true), failed: new Series(300, true), queued: new Series(300, true), running: new Series(300, true), finishedTotal: 0 };
    this.connection = { state: "idle" };
    this.dirty = new Set();
    this.frameRequested = false;
    this.onFrame = null;
    this.eventsSeen = 0;
  }

  /** Marks a part as changed and asks for one frame. */
  touch(part) {
    this.dirty.add(part);
    if (!this.frameRequested) {
      this.frameRequested = true;
      requestAnimationFrame(() => this.frame());
    }
  }

  frame() {
    this.frameRequested = false;
    const dirty = this.dirty;
    this.dirty = new Set();
    if (this.onFrame) this.onFrame(dirty);
  }

  log(kind, text, ts = Date.now()) {
    this.activity.unshift({ kind, text, ts });
    if (this.activity.length > 200) this.activity.length = 200;
    this.touch("activity");
  }

  // ---- components ----

  setComponents(list) {
    this.components = new Map(list.map((c) => [c.component_id, c]));
    for (const id of this.components.keys()) this.gone.delete(id);
    this.touch("components");
  }

  componentJoined(c) {
    const known = this.components.has(c.component_id);
    this.components.set(c.component_id, c);
    this.gone.delete(c.component_id);
    if (!known) this.log("joined", `${c.component_type} ${c.component_id} joined`);
    this.touch("components");
  }

  componentLeft(p) {
    const info = this.components.get(p.component_id);
    this.components.delete(p.component_id);
    this.gone.set(p.component_id, { info: info || p, reason: p.reason, at: Date.now() });
    this.log("left", `${p.component_type} ${p.component_id} left (${p.reason})`);
    this.touch("components");
  }

  componentUnhealthy(c) {
    this.components.set(c.component_id, c);
    this.log("unhealthy", `${c.component_type} ${c.component_id} is unhealthy (no heartbeat)`);
    this.touch("components");
  }

  // ---- workflows ----

  /** Merges a `workflow_list` reply (records are newer than nothing, older than live events). */
  mergeWorkflowList(list) {
    for (const r of list) {
      const w = this.workflows.get(r.id);
      if (!w) {
        this.workflows.set(r.id, {
          ...r,
          finished_tasks: FINAL_WF.has(r.status) && r.status === "completed" ? r.total_tasks : null,
          completed_tasks: null,
          failed_tasks: null,
          skipped_tasks: null,
          seq: 0,
        });
      } else {
        // A final status never goes back; timestamps and errors fill in.
        this.noteFinal(w, r.status, r.error);
        if (!FINAL_WF.has(w.status) || FINAL_WF.has(r.status)) w.status = r.status;
        for (const k of ["name", "total_tasks", "created_at", "started_at", "finished_at", "error", "owner"]) {
          if (r[k] !== null && r[k] !== undefined) w[k] = r[k];
        }
        if (w.status === "completed") w.finished_tasks = w.total_tasks;
      }
    }
    this.touch("workflows");
  }

  /** Counts from a `workflow_get` summary. */
  mergeCounts(id, reply) {
    const w = this.workflows.get(id);
    const c = reply.counts || {};
    if (w) {
      if ((c.finished ?? 0) >= (w.finished_tasks ?? 0)) {
        w.finished_tasks = c.finished;
        w.completed_tasks = c.completed;
        w.failed_tasks = c.failed;
        w.skipped_tasks = c.skipped;
      }
      w.counts = c;
      if (reply.workflow) {
        this.noteFinal(w, reply.workflow.status, reply.workflow.error);
        if (!FINAL_WF.has(w.status) || FINAL_WF.has(reply.workflow.status)) w.status = reply.workflow.status;
        for (const k of ["started_at", "finished_at", "error", "owner"]) if (reply.workflow[k] != null) w[k] = reply.workflow[k];
      }
      this.touch("workflows");
    }
  }

  /** An `event_batch` from a room: its events in seq order, applied in one pass (the
   * frame they request is drawn once, after the whole batch). */
  workflowBatch(env) {
    const events = (env.payload && env.payload.events) || [];
    for (const e of events) {
      if (e && e.event) this.workflowEvent(e.event, { payload: e.payload, ts: e.ts, source: env.source });
    }
  }

  /** A workflow or task event from a room, or from a catch-up (`live` false). */
  workflowEvent(event, env, live = true) {
    const p = env.payload || {};
    const id = p.workflow_id;
    if (!id) return;
    // The owning queue-manager is the source of workflow and task events (not of
    // task_progress, which comes from the provider).
    const fromQm = live && env.source && event !== "task_progress";
    if (fromQm) this.ownerQm.set(id, env.source);
    this.eventsSeen++;
    const ts = env.ts || Date.now();
    if (WF_EVENTS.has(event)) {
      let w = this.workflows.get(id);
      if (!w) {
        w = { id, name: p.name, status: p.status, total_tasks: p.total_tasks, created_at: ts, seq: 0 };
        this.workflows.set(id, w);
      }
      if ((p.seq ?? 0) >= (w.seq ?? 0) || FINAL_WF.has(p.status)) {
        if (live) this.noteFinal(w, p.status, p.error);
        if (!FINAL_WF.has(w.status) || FINAL_WF.has(p.status)) w.status = p.status;
        w.seq = Math.max(w.seq ?? 0, p.seq ?? 0);
      }
      w.name = p.name ?? w.name;
      w.total_tasks = p.total_tasks ?? w.total_tasks;
      if ((p.finished_tasks ?? 0) >= (w.finished_tasks ?? 0)) {
        w.finished_tasks = p.finished_tasks;
        w.completed_tasks = p.completed_tasks;
        w.failed_tasks = p.failed_tasks;
        w.skipped_tasks = p.skipped_tasks;
      }
      if (event === "workflow_started" && !w.started_at) w.started_at = ts;
      if (FINAL_WF.has(p.status)) {
        w.finished_at = w.finished_at || ts;
        if (p.error !== undefined) w.error = p.error;
      }
      this.touch("workflows");
    }
    const d = this.detail;
    if (d && d.id === id) {
      if (fromQm) d.ownerQm = env.source;
      if (event === "task_progress") d.stream(p);
      else d.apply(event, p, ts, live);
      this.touch("detail");
    }
  }

  /** Logs a workflow that became final while the page watched it. */
  noteFinal(w, status, error) {
    if (FINAL_WF.has(w.status) || !FINAL_WF.has(status)) return;
    const err = error && error.code ? ` (${error.code})` : "";
    this.log(status, `workflow ${w.name || w.id} ${status}${err}`);
  }

  /** Workflows newest first. */
  workflowList() {
    return [...this.workflows.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
  }

  activeWorkflows() {
    return this.workflowList().filter((w) => !FINAL_WF.has(w.status));
  }
}
