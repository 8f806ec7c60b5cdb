// Small helpers shared by the views: DOM building (text only, never HTML from data),
// formatting of times, durations and errors.

/** Makes an element: h("div.a.b#id", {title: "x", onclick: f}, child, "text", …). */
export function h(tag, attrs, ...children) {
  const m = /^([a-z0-9]*)/i.exec(tag);
  const el = document.createElement(m[1] || "div");
  const classes = [];
  for (const part of tag.slice(m[1].length).match(/[.#][^.#]+/g) || []) {
    if (part[0] === "#") el.id = part.slice(1);
    else classes.push(part.slice(1));
  }
  if (classes.length) el.className = classes.join(" ");
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "text") el.textContent = v;
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets text only when it changed (cheap to call every frame). */
export function setText(el, text) {
  const t = text === undefined || text === null ? "" : String(text);
  if (el.textContent !== t) el.textContent = t;
}

/** Sets a class list only when it changed. */
export function setClass(el, cls) {
  if (el.className !== cls) el.className = cls;
}

export function fmtInt(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString("en-US");
}

/** "3.2 s", "4 min 12 s", "2 h 5 min", "12 ms". */
export function fmtDuration(ms) {
  if (ms === undefined || ms === null || !Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

/** "5 s ago" relative to now. */
export function fmtAge(ts, now = Date.now()) {
  if (!ts) return "–";
  const s = Math.max(0, Math.floor((now - ts) / 1000));
  if (s < 2) return "just now";
  if (s < 120) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min ago`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.floor(hrs / 24)} d ago`;
}

export function fmtTime(ts) {
  if (!ts) return "–";
  const d = new Date(ts);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** JSON for display, cut at `limit` characters. */
export function fmtJson(value, limit = 65536) {
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = "null";
  return text.length > limit ? `${text.slice(0, limit)}\n…[${fmtInt(text.length - limit)} more characters]` : text;
}

/** "GZ2025: message" (and the hint separately) from an error object or anything thrown. */
export function errorParts(err) {
  if (!err) return { code: "", message: "", hint: "" };
  if (typeof err === "string") {
    const m = /^(GZ\d{4}):\s*(.*?)(?:\s*\(hint: (.*)\))?$/s.exec(err);
    return m ? { code: m[1], message: m[2], hint: m[3] || "" } : { code: "", message: err, hint: "" };
  }
  return { code: err.code || "", message: err.message || String(err), hint: err.hint || "", details: err.details };
}

/** A block showing an error: code, message, hint. */
export function errorBlock(err, extra) {
  const e = errorParts(err);
  return h(
    "div.error-block",
    { role: "alert" },
    h("div.error-head", null, e.code ? h("span.code", { text: e.code }) : null, h("span.error-message", { text: e.message })),
    e.hint ? h("div.hint", null, h("b", { text: "Hint: " }), e.hint) : null,
    extra || null,
  );
}

export const FINAL_WF = new Set(["completed", "failed", "cancelled"]);
export const FINAL_TASK = new Set(["completed", "failed", "skipped", "cancelled"]);

/** A status pill. */
export function statusPill(status) {
  return h(`span.pill.s-${status || "unknown"}`, { text: status || "unknown" });
}

/** Runs `fn` at most once per `ms`, the last call winning. */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  let args = null;
  return (...a) => {
    args = a;
    const wait = last + ms - Date.now();
    if (timer) return;
    if (wait <= 0) {
      last = Date.now();
      fn(...args);
    } else {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn(...args);
      }, wait);
    }
  };
}

export function debounce(fn, ms) {
  let timer = null;
  return (...a) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...a), ms);
  };
}

/** A v4 UUID from getRandomValues (crypto.randomUUID needs a secure context). */
export function uuid() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
