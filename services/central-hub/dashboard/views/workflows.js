// Workflows: every workflow the key may read, newest first, with status, progress and age;
// filtered by status and name. The list is virtualised and rebuilt at most 4 times a second.

import { h, setText, setClass, fmtAge, fmtInt, fmtDuration, throttle, FINAL_WF } from "../util.js";
import { VirtualList } from "../virtual.js";

const ROW_H = 34;
const STATUSES = ["all", "pending", "running", "completed", "failed", "cancelled"];

export function mount(app, container) {
  const store = app.store;
  const status = h("select#wf-filter-status", { "aria-label": "status" }, STATUSES.map((s) => h("option", { value: s, text: s === "all" ? "all statuses" : s })));
  const name = h("input#wf-filter-name", { type: "search", placeholder: "filter by name or id", "aria-label": "name filter" });
  const count = h("span.muted#wf-count");
  const error = h("div#wf-error");
  const listBox = h("div.list-box.workflows-box");
  container.append(
    h("section", null, h("div.toolbar", null, h("h2", { text: "Workflows" }), status, name, count, h("a.button#new-workflow", { href: "#/submit", text: "Submit a workflow" })), error),
    h("div.list-head.wf-grid", null, ["Name", "Status", "Progress", "Failed", "Age", "Duration", "Owner"].map((t) => h("span", { text: t }))),
    listBox,
  );
  if (!app.canSubmit()) document.getElementById("new-workflow").classList.add("disabled");
  const list = new VirtualList(listBox, {
    rowHeight: ROW_H,
    label: "workflows",
    create: () => {
      const cells = {
        name: h("span.wf-name", null, h("span.name"), h("span.mono.muted.small.id")),
        status: h("span"),
        progress: h("span.progress-cell", null, h("div.bar", null, h("div.bar-fill")), h("span.small.count")),
        failed: h("span"),
        age: h("span.small"),
        duration: h("span.small"),
        owner: h("span.small"),
      };
      const row = h("div.wf-row.wf-grid", null, Object.values(cells));
      row.cells = cells;
      row.tabIndex = 0;
      return row;
    },
    render: (row, w) => renderRow(row, w),
    onClick: (w) => {
      window.location.hash = `#/workflow/${encodeURIComponent(w.id)}`;
    },
  });

  let items = [];
  const rebuild = throttle(() => {
    const s = status.value;
    const q = name.value.trim().toLowerCase();
    items = store.workflowList().filter((w) => (s === "all" || w.status === s) && (!q || (w.name || "").toLowerCase().includes(q) || w.id.toLowerCase().includes(q)));
    list.setItems(items);
    setText(count, `${fmtInt(items.length)} of ${fmtInt(store.workflows.size)}`);
  }, 250);
  status.addEventListener("change", rebuild);
  name.addEventListener("input", rebuild);

  return {
    update(dirty) {
      if (dirty.has("all") || dirty.has("workflows")) rebuild();
      else if (dirty.has("tick")) list.refresh();
      if (store.workflowsError) {
        error.replaceChildren(h("p.error-text", { text: `${store.workflowsError.code}: ${store.workflowsError.message}` }));
      } else error.replaceChildren();
    },
    unmount() {
      list.destroy();
    },
    list,
  };
}

function renderRow(row, w) {
  const c = row.cells;
  row.dataset.id = w.id;
  row.dataset.status = w.status;
  setText(c.name.firstChild, w.name || "(unnamed)");
  setText(c.name.lastChild, w.id);
  setClass(c.status, `pill s-${w.status}`);
  setText(c.status, w.status);
  const total = w.total_tasks || 0;
  const done = w.status === "completed" ? total : w.finished_tasks;
  const pct = total && done != null ? Math.min(100, (100 * done) / total) : FINAL_WF.has(w.status) ? 100 : 0;
  const fill = c.progress.firstChild.firstChild;
  fill.style.width = `${pct}%`;
  setClass(fill, `bar-fill ${w.status === "failed" ? "bad" : w.status === "cancelled" ? "muted-fill" : ""}`);
  setText(c.progress.lastChild, done != null ? `${fmtInt(done)} / ${fmtInt(total)}` : `? / ${fmtInt(total)}`);
  setText(c.failed, w.failed_tasks ? fmtInt(w.failed_tasks) : "");
  setClass(c.failed, w.failed_tasks ? "bad-text" : "");
  setText(c.age, fmtAge(w.created_at));
  const end = w.finished_at || (FINAL_WF.has(w.status) ? null : Date.now());
  setText(c.duration, w.started_at && end ? fmtDuration(end - w.started_at) : "–");
  setText(c.owner, w.owner || "");
}
