// Line charts drawn by the page in SVG: one value per second over the last five minutes.

import { h, svg, setText, fmtInt } from "./util.js";

const W = 600;
const H = 150;
const PAD = { left: 44, right: 8, top: 10, bottom: 20 };

export class LineChart {
  /**
   * @param {HTMLElement} container
   * @param {{title: string, lines: {name: string, cls: string}[], unit?: string}} opts
   */
  constructor(container, opts) {
    this.lines = opts.lines;
    this.root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": opts.title, preserveAspectRatio: "none" });
    this.grid = svg("g", { class: "grid" });
    this.root.append(this.grid);
    this.paths = this.lines.map((l) => {
      const area = svg("path", { class: `area ${l.cls}` });
      const p = svg("path", { class: `line ${l.cls}` });
      this.root.append(area, p);
      return { area, line: p };
    });
    this.maxLabel = svg("text", { x: PAD.left - 6, y: PAD.top + 8, class: "axis", "text-anchor": "end" });
    this.midLabel = svg("text", { x: PAD.left - 6, y: PAD.top + (H - PAD.top - PAD.bottom) / 2 + 4, class: "axis", "text-anchor": "end" });
    this.zeroLabel = svg("text", { x: PAD.left - 6, y: H - PAD.bottom, class: "axis", "text-anchor": "end" });
    const left = svg("text", { x: PAD.left, y: H - 4, class: "axis" });
    left.textContent = "5 min ago";
    const right = svg("text", { x: W - PAD.right, y: H - 4, class: "axis", "text-anchor": "end" });
    right.textContent = "now";
    this.root.append(this.maxLabel, this.midLabel, this.zeroLabel, left, right);
    for (const f of [0, 0.5, 1]) {
      const y = PAD.top + (H - PAD.top - PAD.bottom) * f;
      this.grid.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    }
    this.current = h("span.chart-now");
    this.legend = h(
      "div.legend",
      null,
      this.lines.map((l) => h("span", null, h(`i.swatch.${l.cls}`), l.name)),
      this.current,
    );
    this.unit = opts.unit || "";
    container.append(h("div.chart-box", null, h("div.chart-title", { text: opts.title }), this.root, this.legend));
  }

  /** Draws series (arrays of equal length, oldest first). */
  draw(series) {
    let max = 0;
    for (const s of series) for (const v of s) if (v > max) max = v;
    const top = niceCeil(max);
    const n = series[0] ? series[0].length : 0;
    const iw = W - PAD.left - PAD.right;
    const ih = H - PAD.top - PAD.bottom;
    series.forEach((s, k) => {
      let d = "";
      for (let i = 0; i < n; i++) {
        const x = PAD.left + (n > 1 ? (i * iw) / (n - 1) : 0);
        const y = PAD.top + ih - (top ? (s[i] / top) * ih : 0);
        d += `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      }
      this.paths[k].line.setAttribute("d", d);
      this.paths[k].area.setAttribute("d", n ? `${d}L${W - PAD.right},${PAD.top + ih}L${PAD.left},${PAD.top + ih}Z` : "");
    });
    setText(this.maxLabel, fmtInt(top));
    setText(this.midLabel, fmtInt(top / 2));
    setText(this.zeroLabel, "0");
    const now = series.map((s, k) => `${this.lines[k].name}: ${fmtNum(s[n - 1] ?? 0)}`).join(" · ");
    setText(this.current, `now ${now}${this.unit}`);
  }
}

function fmtNum(v) {
  return v >= 10 || v === 0 ? fmtInt(Math.round(v)) : v.toFixed(1);
}

function niceCeil(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
