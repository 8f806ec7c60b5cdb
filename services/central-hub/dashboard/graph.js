// The task graph of a workflow in SVG: tasks in columns by depth (longest path from a
// root), ordered within a column by their parents' positions, dependencies drawn as
// curves. Only up to MAX_GRAPH_TASKS tasks are drawn; beyond, the page shows a summary.
// Status changes only swap a node's class (no relayout).

import { svg, h } from "./util.js";

export const MAX_GRAPH_TASKS = 400;
const NODE_W = 150;
const NODE_H = 26;
const COL_GAP = 60;
const ROW_GAP = 10;
const PAD = 12;

/**
 * Lays out tasks. `deps`: Map task_id -> [task ids] (null: unknown, tasks go in a grid).
 * Returns {pos: Map id -> {x, y}, width, height, edges: [[from, to]]}.
 */
export function layout(tasks, deps) {
  const ids = tasks.map((t) => t.task_id);
  const pos = new Map();
  const edges = [];
  if (!deps) {
    const cols = Math.max(1, Math.ceil(Math.sqrt(ids.length / 3)));
    ids.forEach((id, i) => {
      const c = i % cols;
      const r = Math.floor(i / cols);
      pos.set(id, { x: PAD + c * (NODE_W + COL_GAP), y: PAD + r * (NODE_H + ROW_GAP) });
    });
    const rows = Math.ceil(ids.length / cols);
    return { pos, edges, width: PAD * 2 + cols * (NODE_W + COL_GAP) - COL_GAP, height: PAD * 2 + rows * (NODE_H + ROW_GAP) - ROW_GAP };
  }
  const known = new Set(ids);
  const children = new Map(ids.map((id) => [id, []]));
  const indeg = new Map(ids.map((id) => [id, 0]));
  for (const id of ids) {
    for (const d of deps.get(id) || []) {
      if (!known.has(d)) continue;
      edges.push([d, id]);
      children.get(d).push(id);
      indeg.set(id, indeg.get(id) + 1);
    }
  }
  // Depth by longest path (Kahn's order); a cycle (never valid) leaves nodes at depth 0.
  const depth = new Map(ids.map((id) => [id, 0]));
  const queue = ids.filter((id) => indeg.get(id) === 0);
  for (let qi = 0; qi < queue.length; qi++) {
    const id = queue[qi];
    for (const c of children.get(id)) {
      depth.set(c, Math.max(depth.get(c), depth.get(id) + 1));
      indeg.set(c, indeg.get(c) - 1);
      if (indeg.get(c) === 0) queue.push(c);
    }
  }
  const columns = [];
  for (const id of ids) {
    const d = depth.get(id);
    (columns[d] ||= []).push(id);
  }
  // Order each column by the mean row of its parents (one sweep).
  const row = new Map();
  columns.forEach((col, ci) => {
    if (ci > 0) {
      const key = new Map(
        col.map((id, k) => {
          const ps = (deps.get(id) || []).filter((p) => row.has(p));
          return [id, ps.length ? ps.reduce((s, p) => s + row.get(p), 0) / ps.length : k];
        }),
      );
      col.sort((a, b) => key.get(a) - key.get(b));
    }
    col.forEach((id, k) => row.set(id, k));
  });
  let maxRows = 0;
  columns.forEach((col, ci) => {
    maxRows = Math.max(maxRows, col.length);
    col.forEach((id, k) => pos.set(id, { x: PAD + ci * (NODE_W + COL_GAP), y: PAD + k * (NODE_H + ROW_GAP) }));
  });
  return {
    pos,
    edges,
    width: PAD * 2 + Math.max(1, columns.length) * (NODE_W + COL_GAP) - COL_GAP,
    height: PAD * 2 + Math.max(1, maxRows) * (NODE_H + ROW_GAP) - ROW_GAP,
  };
}

export class TaskGraph {
  constructor(container, { onSelect }) {
    this.container = container;
    this.onSelect = onSelect;
    this.nodes = new Map(); // task_id -> {g, rect, label}
    this.selected = null;
  }

  /** Builds the drawing for these tasks (call again when the task set changes). */
  build(tasks, deps) {
    this.container.replaceChildren();
    this.nodes.clear();
    const { pos, edges, width, height } = layout(tasks, deps);
    const root = svg("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "task graph" });
    const edgeLayer = svg("g", { class: "edges" });
    const nodeLayer = svg("g", { class: "nodes" });
    root.append(
      svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 6, markerHeight: 6, orient: "auto" }, svg("path", { d: "M0,0L8,4L0,8Z", class: "arrowhead" }))),
      edgeLayer,
      nodeLayer,
    );
    for (const [from, to] of edges) {
      const a = pos.get(from);
      const b = pos.get(to);
      const x1 = a.x + NODE_W;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x;
      const y2 = b.y + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      edgeLayer.append(svg("path", { d: `M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge", "marker-end": "url(#arrow)", "data-from": from, "data-to": to }));
    }
    for (const t of tasks) {
      const p = pos.get(t.task_id);
      const g = svg("g", { class: `node s-${t.status}`, transform: `translate(${p.x},${p.y})`, "data-task": t.task_id, tabindex: "0" });
      const rect = svg("rect", { width: NODE_W, height: NODE_H, rx: 5 });
      const label = svg("text", { x: 8, y: NODE_H / 2 + 4 });
      const name = t.name || t.task_id;
      label.textContent = name.length > 19 ? `${name.slice(0, 18)}…` : name;
      const title = svg("title");
      title.textContent = `${t.task_id} (${t.status})`;
      g.append(rect, label, title);
      g.addEventListener("click", () => this.onSelect && this.onSelect(t.task_id));
      g.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && this.onSelect) this.onSelect(t.task_id);
      });
      nodeLayer.append(g);
      this.nodes.set(t.task_id, { g, title, status: t.status });
    }
    this.container.append(root);
  }

  /** Updates the node of a task whose status changed. */
  update(task) {
    const n = this.nodes.get(task.task_id);
    if (!n || n.status === task.status) return;
    n.status = task.status;
    n.g.setAttribute("class", `node s-${task.status}${this.selected === task.task_id ? " selected" : ""}`);
    n.title.textContent = `${task.task_id} (${task.status})`;
  }

  select(taskId) {
    if (this.selected) {
      const old = this.nodes.get(this.selected);
      if (old) old.g.classList.remove("selected");
    }
    this.selected = taskId;
    const n = this.nodes.get(taskId);
    if (n) n.g.classList.add("selected");
  }
}

/** The summary shown instead of the graph for big workflows: a bar of task states. */
export function statusBar(counts, total) {
  const order = ["completed", "running", "retrying", "queued", "pending", "failed", "skipped", "cancelled"];
  const bar = h("div.statusbar", { role: "img", "aria-label": "task states" });
  for (const s of order) {
    const n = counts[s] || 0;
    if (!n || !total) continue;
    const seg = h(`div.seg.s-${s}`, { title: `${s}: ${n}` });
    seg.style.width = `${(100 * n) / total}%`;
    bar.append(seg);
  }
  return bar;
}
