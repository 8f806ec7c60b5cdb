// A virtualised list: whatever the number of items, the DOM holds only the rows in view
// (plus a few above and below). Rows are recycled; scrolling and updates redraw at most
// once per animation frame.

import { h } from "./util.js";

export class VirtualList {
  /**
   * @param {HTMLElement} container  an element whose height is fixed by CSS
   * @param {{rowHeight: number, render: (row: HTMLElement, item: any, index: number) => void,
   *          create?: () => HTMLElement, onClick?: (item: any, index: number) => void,
   *          overscan?: number, label?: string}} opts
   */
  constructor(container, opts) {
    this.rowHeight = opts.rowHeight;
    this.renderRow = opts.render;
    this.createRow = opts.create || (() => h("div"));
    this.onClick = opts.onClick;
    this.onDraw = opts.onDraw;
    this.overscan = opts.overscan ?? 6;
    this.items = [];
    this.selected = null;
    this.viewport = h("div.vlist", { role: "list", "aria-label": opts.label || "list", tabindex: "0" });
    this.spacer = h("div.vlist-spacer");
    this.viewport.append(this.spacer);
    container.append(this.viewport);
    this.rows = []; // pool: {el, index}
    this.scheduled = false;
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.viewport.addEventListener("click", (ev) => {
      const row = ev.target.closest(".vrow");
      if (!row || !this.onClick) return;
      const i = Number(row.dataset.index);
      if (i >= 0 && i < this.items.length) this.onClick(this.items[i], i);
    });
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(this.viewport);
  }

  setItems(items) {
    this.items = items;
    this.spacer.style.height = `${items.length * this.rowHeight}px`;
    this.schedule(true);
  }

  /** Redraws the visible rows (all of them when `force`). */
  schedule(force = false) {
    if (force) this.force = true;
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  /** Redraws the visible rows now (called from the page's frame). */
  refresh() {
    this.force = true;
    this.draw();
  }

  /** Which item indices are on screen. */
  visibleRange() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - this.overscan);
    const last = Math.min(this.items.length, Math.ceil((top + height) / this.rowHeight) + this.overscan);
    return [first, last];
  }

  draw() {
    const [first, last] = this.visibleRange();
    const needed = Math.max(0, last - first);
    while (this.rows.length < needed) {
      const el = this.createRow();
      el.classList.add("vrow");
      el.setAttribute("role", "listitem");
      this.viewport.append(el);
      this.rows.push({ el, index: -1 });
    }
    while (this.rows.length > needed) this.rows.pop().el.remove();
    const force = this.force;
    this.force = false;
    for (let k = 0; k < needed; k++) {
      const i = first + k;
      const row = this.rows[k];
      if (row.index !== i) {
        row.index = i;
        row.el.dataset.index = String(i);
        row.el.style.transform = `translateY(${i * this.rowHeight}px)`;
      } else if (!force) continue;
      this.renderRow(row.el, this.items[i], i);
      row.el.classList.toggle("selected", this.selected !== null && this.selected === this.keyOf(this.items[i]));
    }
    if (this.onDraw) this.onDraw(this);
  }

  keyOf(item) {
    return item && (item.task_id ?? item.id);
  }

  scrollToIndex(i) {
    const top = i * this.rowHeight;
    const vp = this.viewport;
    if (top < vp.scrollTop || top + this.rowHeight > vp.scrollTop + vp.clientHeight) vp.scrollTop = Math.max(0, top - vp.clientHeight / 3);
    this.schedule(true);
  }

  /** Number of row elements in the DOM (for tests and the status line). */
  get domRows() {
    return this.rows.length;
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.viewport.remove();
  }
}
