// One workflow: status and progress, its task graph (dependencies drawn, states live), a
// virtualised task list, and the selected task's attempts, timings, provider/endpoint,
// result or error (GZ code and hint), and LLM text streaming into it while it runs.

import { h, replace, setText, setClass, fmtTime, fmtDuration, fmtInt, fmtJson, errorBlock, errorParts, throttle, FINAL_WF, FINAL_TASK } from "../util.js";
import { VirtualList } from "../virtual.js";
import { TaskGraph, MAX_GRAPH_TASKS, statusBar } from "../graph.js";

const ROW_H = 30;
const TASK_STATUSES = ["all", "pending", "queued", "running", "retrying", "completed", "failed", "skipped", "cancelled"];

export function mount(app, container, params) {
  const store = app.store;
  const id = params[0] || "";
  const title = h("h2#wf-name", { text: id });
  const statusPill = h("span.pill#wf-status", { text: "loading" });
  const cancel = h("button.danger#cancel-btn", { type: "button", text: "Cancel workflow" });
  const progressFill = h("div.bar-fill");
  const counts = h("span#wf-counts.small");
  const meta = h("dl.meta#wf-meta");
  const wfError = h("div#wf-error");
  const notice = h("div#wf-notice");
  const graphNote = h("p.muted.small#graph-note");
  const graphBox = h("div.graph-box#graph");
  const filter = h("select#task-filter-status", { "aria-label": "task status" }, TASK_STATUSES.map((s) => h("option", { value: s, text: s === "all" ? "all tasks" : s })));
  const search = h("input#task-filter-text", { type: "search", placeholder: "filter by id, name or method", "aria-label": "task filter" });
  const taskCount = h("span.muted.small#task-count");
  const listBox = h("div.list-box.tasks-box#task-list");
  const panel = h("aside.task-detail#task-detail", null, h("p.muted", { text: "Select a task to see its attempts, timings, result or error." }));
  container.append(
    h(
      "section.wf-head",
      null,
      h("a.back", { href: "#/workflows", text: "← Workflows" }),
      h("div.wf-title", null, title, statusPill, h("span.grow"), cancel),
      h("div.mono.muted.small#wf-id", { text: id }),
      h("div.progress", null, h("div.bar.big", null, progressFill), counts),
      meta,
      wfError,
      notice,
    ),
    h("section", null, h("h3", { text: "Task graph" }), graphNote, graphBox),
    h(
      "section",
      null,
      h("div.toolbar", null, h("h3", { text: "Tasks" }), filter, search, taskCount),
      h("div.tasks-layout", null, h("div", null, h("div.list-head.task-grid", null, ["Status", "Task", "Method", "Att.", "Provider", "Duration", "Error"].map((t) => h("span", { text: t }))), listBox), panel),
    ),
  );

  let selected = null;
  let graph = null;
  let graphSummary = false;
  let items = [];
  let armed = 0;

  const list = new VirtualList(listBox, {
    rowHeight: ROW_H,
    label: "tasks",
    create: () => {
      const cells = [h("span"), h("span.task-name"), h("span.small.mono"), h("span.small"), h("span.small.mono"), h("span.small"), h("span.small.code-cell")];
      const row = h("div.task-row.task-grid", null, cells);
      row.cells = cells;
      row.tabIndex = 0;
      return row;
    },
    render: (row, t) => renderTaskRow(row, t, store.detail),
    onClick: (t) => select(t.task_id),
    onDraw: (l) => {
      const d = store.detail;
      if (d) setText(taskCount, `${fmtInt(l.items.length)} of ${fmtInt(d.tasks.length)} tasks · ${l.domRows} rows in the page`);
    },
  });

  cancel.addEventListener("click", async () => {
    const d = store.detail;
    if (!d) return;
    if (Date.now() - armed > 4000) {
      armed = Date.now();
      cancel.textContent = "Click again to cancel";
      cancel.classList.add("armed");
      setTimeout(() => {
        if (Date.now() - armed >= 4000) resetCancel();
      }, 4100);
      return;
    }
    resetCancel();
    cancel.disabled = true;
    try {
      const r = await app.cancelWorkflow(d.id);
      replace(notice, h("p.ok-text#cancel-result", { text: r.cancelled ? `Cancelled (status ${r.status}).` : `Not cancelled: the workflow is ${r.status}.` }));
      if (r.cancelled && d.record) {
        d.record.status = "cancelled";
        store.touch("detail");
      }
    } catch (e) {
      replace(notice, errorBlock(e));
    } finally {
      cancel.disabled = false;
      store.touch("detail");
    }
  });
  function resetCancel() {
    armed = 0;
    cancel.textContent = "Cancel workflow";
    cancel.classList.remove("armed");
  }

  function select(taskId) {
    selected = taskId;
    list.selected = taskId;
    if (graph) graph.select(taskId);
    list.refresh();
    drawPanel(true);
  }

  const rebuildItems = throttle(() => {
    const d = store.detail;
    if (!d) return;
    const s = filter.value;
    const q = search.value.trim().toLowerCase();
    items = s === "all" && !q ? d.tasks : d.tasks.filter((t) => (s === "all" || t.status === s) && (!q || t.task_id.toLowerCase().includes(q) || (t.name || "").toLowerCase().includes(q) || (t.method || "").toLowerCase().includes(q)));
    list.setItems(items);
  }, 250);
  filter.addEventListener("change", rebuildItems);
  search.addEventListener("input", rebuildItems);

  const drawSummary = throttle(() => {
    const d = store.detail;
    if (!d || !graphSummary) return;
    replace(graphBox, statusBar(d.statusCounts(), d.tasks.length));
  }, 500);

  function buildGraph() {
    const d = store.detail;
    graph = null;
    graphSummary = false;
    if (!d || !d.loaded) {
      replace(graphBox, h("p.muted", { text: "Loading…" }));
      return;
    }
    if (d.tasks.length > MAX_GRAPH_TASKS) {
      graphSummary = true;
      setText(graphNote, `${fmtInt(d.tasks.length)} tasks: the graph is drawn for workflows of up to ${MAX_GRAPH_TASKS} tasks; here, the share of tasks in each state.`);
      drawSummary();
      return;
    }
    setText(
      graphNote,
      d.deps
        ? "Arrows point from a task to the tasks that depend on it."
        : "Dependencies are not shown: the hub's replies do not carry a workflow's spec, so they are known only for workflows submitted from this browser tab.",
    );
    graph = new TaskGraph(graphBox, { onSelect: select });
    graph.build(d.tasks, d.deps);
    if (selected) graph.select(selected);
  }

  function drawHead() {
    const d = store.detail;
    if (!d) return;
    const r = d.record || {};
    const w = store.workflows.get(d.id) || {};
    const status = r.status || w.status || "unknown";
    setText(title, r.name || w.name || d.id);
    setText(statusPill, status);
    setClass(statusPill, `pill s-${status}`);
    statusPill.dataset.status = status;
    const c = d.counts || {};
    const total = r.total_tasks ?? c.total ?? d.tasks.length;
    const finished = Math.max(c.finished ?? 0, status === "completed" ? total : 0);
    progressFill.style.width = `${total ? (100 * finished) / total : 0}%`;
    setClass(progressFill, `bar-fill ${status === "failed" ? "bad" : status === "cancelled" ? "muted-fill" : ""}`);
    setText(counts, `${fmtInt(finished)} / ${fmtInt(total)} finished · ${fmtInt(c.completed ?? 0)} completed · ${fmtInt(c.failed ?? 0)} failed · ${fmtInt(c.skipped ?? 0)} skipped`);
    const end = r.finished_at || (FINAL_WF.has(status) ? null : Date.now());
    const rows = [
      ["Created", fmtTime(r.created_at)],
      ["Started", fmtTime(r.started_at)],
      ["Finished", fmtTime(r.finished_at)],
      ["Duration", r.started_at && end ? fmtDuration(end - r.started_at) : "–"],
      ["Owner", r.owner || w.owner || "–"],
      ["Queue-manager", d.ownerQm || "–"],
    ];
    replace(meta, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
    const canCancel = app.canCancel(r.owner ? r : w);
    cancel.hidden = FINAL_WF.has(status);
    cancel.disabled = !canCancel;
    cancel.title = canCancel ? "" : `${store.me ? store.me.role : "this key"} may not cancel workflows`;
    // Until the snapshot is loaded the status may come from the workflow list, which a
    // live `workflow_failed` updates with its error: show that error with it.
    const error = d.error || r.error || (r.status ? null : w.error);
    if (error) replace(wfError, errorBlock(error));
    else wfError.replaceChildren();
  }

  function drawPanel(force) {
    const d = store.detail;
    if (!d || selected === null) return;
    const i = d.index.get(selected);
    if (i === undefined) return;
    if (!force && !d.changed.has(i)) return;
    const t = d.tasks[i];
    const stream = d.streams.get(t.task_id);
    const err = t.error ? errorParts(t.error) : null;
    const traceback = err && err.details && (err.details.traceback || err.details.truncated_output);
    const fields = [
      ["Status", h(`span.pill.s-${t.status}`, { text: t.status })],
      ["Method", t.method],
      ["Attempts", fmtInt(t.attempt)],
      ["Provider", t.provider_id || "–"],
      ["Endpoint", (t.result && t.result.endpoint) || t.endpoint || "–"],
      ["Priority", t.priority ?? "–"],
      ["Queued", fmtTime(t.queued_at)],
      ["Started", fmtTime(t.started_at)],
      ["Finished", fmtTime(t.finished_at)],
      ["Duration", t.duration != null ? fmtDuration(t.duration * 1000) : t.started_at && !FINAL_TASK.has(t.status) ? `${fmtDuration(Date.now() - t.started_at)} so far` : "–"],
    ];
    const usage = t.result && (t.result.tokens_used != null || t.result.completion_tokens != null) ? `${fmtInt(t.result.prompt_tokens ?? 0)} prompt + ${fmtInt(t.result.completion_tokens ?? 0)} completion tokens` : null;
    if (usage) fields.push(["Tokens", usage]);
    replace(
      panel,
      h("h3", null, t.name || t.task_id),
      h("div.mono.muted.small", { text: t.task_id }),
      h("dl.meta", null, fields.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)])),
      t.error && (t.status === "failed" || t.status === "retrying" || t.status === "skipped" || t.status === "cancelled" || t.attempt > 1)
        ? h("div#task-error", null, h("h4", { text: t.status === "failed" || t.status === "skipped" || t.status === "cancelled" ? "Error" : "Last error" }), errorBlock(t.error, traceback ? h("pre.traceback", { text: String(traceback) }) : null))
        : null,
      stream ? h("div", null, h("h4", null, FINAL_TASK.has(t.status) ? "Streamed text" : "Streaming ", FINAL_TASK.has(t.status) ? null : h("span.live-dot")), h("pre.stream#task-stream", { text: stream.text })) : null,
      t.result !== undefined && t.result !== null ? h("div", null, h("h4", { text: "Result" }), h("pre.json#task-result", { text: fmtJson(t.result) })) : null,
      t.params ? h("div", null, h("h4", { text: "Parameters" }), h("pre.json", { text: fmtJson(t.params, 16384) })) : null,
    );
    const pre = panel.querySelector("#task-stream");
    if (pre) pre.scrollTop = pre.scrollHeight;
  }

  return {
    update(dirty) {
      const d = store.detail;
      if (!d || d.id !== id) {
        if (dirty.has("all")) replace(graphBox, h("p.muted", { text: "Loading…" }));
        return;
      }
      if (dirty.has("all") || dirty.has("detail-reset")) {
        buildGraph();
        rebuildItems();
        drawHead();
        drawPanel(true);
        if (d.loaded && d.loadMs !== undefined) container.dataset.renderedAt = String(performance.now());
        return;
      }
      if (dirty.has("detail")) {
        drawHead();
        if (d.grew) {
          // Tasks made at run time (a fan-out's items): lay the graph and the list out again.
          d.grew = false;
          buildGraph();
          rebuildItems();
        }
        if (d.changed.size) {
          if (graph) for (const i of d.changed) graph.update(d.tasks[i]);
          if (graphSummary) drawSummary();
          if (filter.value !== "all" || search.value.trim()) rebuildItems();
          else list.refresh();
          drawPanel(false);
        }
      } else if (dirty.has("tick")) {
        drawHead();
        const i = selected !== null ? d.index.get(selected) : undefined;
        if (i !== undefined && !FINAL_TASK.has(d.tasks[i].status)) drawPanel(true);
      }
    },
    unmount() {
      list.destroy();
    },
    list,
  };
}

function renderTaskRow(row, t, d) {
  const c = row.cells;
  row.dataset.task = t.task_id;
  row.dataset.status = t.status;
  setClass(c[0], `pill s-${t.status}`);
  setText(c[0], t.status);
  setText(c[1], t.name && t.name !== t.task_id ? `${t.task_id} · ${t.name}` : t.task_id);
  setText(c[2], t.method);
  setText(c[3], t.attempt);
  setText(c[4], t.provider_id || "");
  setText(c[5], t.duration != null ? fmtDuration(t.duration * 1000) : t.started_at && !FINAL_TASK.has(t.status) ? "running" : "");
  const code = t.error && (t.status === "failed" || t.status === "retrying" || t.status === "skipped") ? t.error.code || "" : "";
  setText(c[6], code);
  const streaming = d && d.streams.has(t.task_id) && !FINAL_TASK.has(t.status);
  row.classList.toggle("streaming", !!streaming);
}
