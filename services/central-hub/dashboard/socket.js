// A small Socket.IO v5 / Engine.IO v4 client over one WebSocket (no long-polling), enough
// for the hub (docs/protocol.md §1, §2, §4):
//
//   ws(s)://<host>/socket.io/?EIO=4&transport=websocket
//   ← 0{"sid","pingInterval","pingTimeout",…}   Engine.IO open
//   → 40{"api_key":"gzt_…"}                      Socket.IO CONNECT to "/" with the key
//   ← 40{"sid":"…"}  or  44{"message":"GZ4001: …"} connected, or refused
//   ← 2  → 3                                      the server pings, we answer
//   → 42["envelope",{…}]                          every message we send
//   ← 42["<event>",{…envelope}]                   every message we receive
//
// Requests are envelopes answered by a `reply` (or `gz_error`) whose `correlation_id` is
// the request's `id`. Rooms are remembered and joined again after every reconnect; the
// reconnect backoff doubles from 250 ms to 10 s, with jitter, and is reset by a session
// that reached CONNECT. A refused key (GZ4001/GZ4002) stops reconnecting.

import { uuid } from "./util.js";

const PROTOCOL_VERSION = 1;
const REQUEST_TIMEOUT_MS = 30000;
const OUTBOX_LIMIT = 2000;

/** An error from the hub or a component, or from this client (GZ1030/GZ1031). */
export class GzError extends Error {
  constructor(obj) {
    super(obj && obj.message ? obj.message : String(obj));
    this.code = (obj && obj.code) || "";
    this.hint = (obj && obj.hint) || "";
    this.retryable = !!(obj && obj.retryable);
    this.details = obj && obj.details;
  }
  toJSON() {
    return { code: this.code, message: this.message, hint: this.hint, retryable: this.retryable, details: this.details };
  }
}

export class HubSocket {
  /**
   * @param {{url?: string, apiKey: string, WebSocketImpl?: typeof WebSocket}} opts
   *   url: the hub's http(s) URL (default: this page's origin).
   */
  constructor({ url, apiKey, WebSocketImpl }) {
    const base = new URL(url || window.location.origin);
    base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    base.pathname = "/socket.io/";
    base.search = "?EIO=4&transport=websocket";
    this.wsUrl = base.toString();
    this.apiKey = apiKey;
    this.WS = WebSocketImpl || WebSocket;
    this.ws = null;
    this.state = "idle"; // idle | connecting | open | reconnecting | refused | closed
    this.sid = null;
    this.rooms = new Set();
    this.pending = new Map(); // request id -> {resolve, reject, timer, event}
    this.outbox = [];
    this.listeners = new Map(); // event -> Set<fn>
    this.backoff = 250;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pingDeadline = 45000;
    this.stats = { received: 0, sent: 0, reconnects: 0, lastMessageAt: 0 };
  }

  /** Listens to an event name (hub events, plus "state", "connect", "refused", "disconnect"). */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event)?.delete(fn);
  }

  emitLocal(event, ...args) {
    const set = this.listeners.get(event);
    if (set) {
      for (const fn of set) {
        try {
          fn(...args);
        } catch (e) {
          console.error(`listener of ${event} failed`, e);
        }
      }
    }
    const any = this.listeners.get("*");
    if (any && event !== "state") for (const fn of any) fn(event, ...args);
  }

  setState(state, detail) {
    this.state = state;
    this.emitLocal("state", state, detail);
  }

  start() {
    if (this.state === "closed") return;
    clearTimeout(this.retryTimer);
    this.setState(this.stats.reconnects ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new this.WS(this.wsUrl);
    } catch (e) {
      this.scheduleReconnect(String(e));
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.onFrame(ws, ev.data);
    ws.onclose = (ev) => this.onClose(ws, ev.reason || `websocket closed (${ev.code})`);
    ws.onerror = () => {}; // onclose follows
  }

  /** Ends the session for good (sign-out). */
  close() {
    this.setState("closed");
    clearTimeout(this.retryTimer);
    clearTimeout(this.pingTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        if (ws.readyState === 1) ws.send("41");
        ws.close();
      } catch {
        /* already closed */
      }
    }
    this.failPending("GZ1031", "the dashboard signed out");
  }

  onClose(ws, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.pingTimer);
    const wasOpen = this.state === "open";
    this.sid = null;
    this.failPending("GZ1031", "connection to the hub lost");
    if (wasOpen) this.emitLocal("disconnect", reason);
    if (this.state === "refused" || this.state === "closed") return;
    this.scheduleReconnect(reason);
  }

  scheduleReconnect(reason) {
    this.stats.reconnects += 1;
    const delay = this.backoff + Math.floor(Math.random() * 250);
    this.backoff = Math.min(this.backoff * 2, 10000);
    this.setState("reconnecting", { reason, delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.start(), delay);
  }

  /** No ping within pingInterval + pingTimeout: the connection is dead. */
  armPingWatch() {
    clearTimeout(this.pingTimer);
    const ws = this.ws;
    this.pingTimer = setTimeout(() => {
      if (ws === this.ws && ws) {
        try {
          ws.close();
        } catch {
          /* ignore */
        }
        this.onClose(ws, "no ping from the hub");
      }
    }, this.pingDeadline);
  }

  onFrame(ws, data) {
    if (ws !== this.ws || typeof data !== "string" || data.length === 0) return;
    this.stats.received += 1;
    this.stats.lastMessageAt = Date.now();
    const type = data[0];
    if (type === "2") {
      // ping → pong
      ws.send(`3${data.slice(1)}`);
      this.armPingWatch();
    } else if (type === "4") {
      this.onPacket(data.slice(1));
    } else if (type === "0") {
      let open = {};
      try {
        open = JSON.parse(data.slice(1));
      } catch {
        /* keep defaults */
      }
      this.pingDeadline = (open.pingInterval || 25000) + (open.pingTimeout || 20000);
      this.armPingWatch();
      ws.send(`40${JSON.stringify({ api_key: this.apiKey })}`);
    } else if (type === "1") {
      ws.close();
    }
    // "3" (pong), "6" (noop) need nothing.
  }

  onPacket(p) {
    const type = p[0];
    let rest = p.slice(1);
    if (rest.startsWith("/")) {
      // another namespace: not ours
      const comma = rest.indexOf(",");
      const nsp = comma < 0 ? rest : rest.slice(0, comma);
      if (nsp !== "/") return;
      rest = comma < 0 ? "" : rest.slice(comma + 1);
    }
    if (type === "2") {
      // EVENT, maybe with an ack id before the array (the hub sends none)
      const start = rest.indexOf("[");
      if (start < 0) return;
      let arr;
      try {
        arr = JSON.parse(rest.slice(start));
      } catch {
        return;
      }
      if (!Array.isArray(arr) || typeof arr[0] !== "string") return;
      this.onEnvelope(arr[0], arr[1]);
    } else if (type === "0") {
      let info = {};
      try {
        info = JSON.parse(rest || "{}");
      } catch {
        /* ignore */
      }
      this.sid = info.sid || null;
      this.backoff = 250;
      this.setState("open", { sid: this.sid });
      this.flushOutbox();
      this.rejoin().finally(() => this.emitLocal("connect", this.sid));
    } else if (type === "4") {
      let msg = "connection refused";
      try {
        const info = JSON.parse(rest || "{}");
        msg = info.message || (typeof info === "string" ? info : msg);
      } catch {
        /* keep the default */
      }
      const code = (/^(GZ\d{4})/.exec(msg) || [])[1] || "";
      if (code === "GZ4001" || code === "GZ4002") {
        this.setState("refused", { code, message: msg });
        this.emitLocal("refused", { code, message: msg });
        const ws = this.ws;
        this.ws = null;
        clearTimeout(this.pingTimer);
        try {
          ws && ws.close();
        } catch {
          /* ignore */
        }
      } else {
        this.emitLocal("connect_error", { code, message: msg });
        try {
          this.ws && this.ws.close();
        } catch {
          /* ignore */
        }
      }
    } else if (type === "1") {
      // the server ended the Socket.IO session (e.g. the key was revoked)
      try {
        this.ws && this.ws.close();
      } catch {
        /* ignore */
      }
    }
  }

  onEnvelope(name, env) {
    if (!env || typeof env !== "object") return;
    if ((name === "reply" || name === "gz_error" || name === "registered") && env.correlation_id) {
      const slot = this.pending.get(env.correlation_id);
      if (slot) {
        this.pending.delete(env.correlation_id);
        clearTimeout(slot.timer);
        if (name === "gz_error") slot.reject(new GzError(env.payload));
        else if (env.payload && "error" in env.payload && env.payload.error) slot.reject(new GzError(env.payload.error));
        else slot.resolve(env.payload ? env.payload.ok : undefined, env);
        return;
      }
    }
    this.emitLocal(name, env);
  }

  rawSend(text) {
    if (this.ws && this.ws.readyState === 1 && this.state === "open") {
      this.ws.send(text);
      this.stats.sent += 1;
      return true;
    }
    return false;
  }

  flushOutbox() {
    const queued = this.outbox;
    this.outbox = [];
    for (const text of queued) if (!this.rawSend(text)) this.outbox.push(text);
  }

  /** Sends an envelope; while disconnected it waits in a bounded outbox. */
  send(event, payload = {}, target = "hub", extra = {}) {
    const env = { v: PROTOCOL_VERSION, id: uuid(), target, event, payload, ts: Date.now(), ...extra };
    const text = `42${JSON.stringify(["envelope", env])}`;
    if (!this.rawSend(text)) {
      if (this.outbox.length >= OUTBOX_LIMIT) throw new GzError({ code: "GZ1031", message: "not connected and the outbox is full", retryable: true });
      this.outbox.push(text);
    }
    return env;
  }

  /** A request: resolves with the reply's `ok`, rejects with a GzError. */
  request(event, payload = {}, target = "hub", { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    return new Promise((resolve, reject) => {
      const id = uuid();
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GzError({ code: "GZ1030", message: `no reply to ${event} within ${timeoutMs / 1000} s`, retryable: true }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, event });
      try {
        this.send(event, payload, target, { id });
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e);
      }
    });
  }

  failPending(code, message) {
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.outbox = [];
    for (const slot of pending) {
      clearTimeout(slot.timer);
      slot.reject(new GzError({ code, message: `${message} (${slot.event})`, retryable: true }));
    }
  }

  /** Joins rooms now (if connected) and after every reconnect. */
  async subscribe(rooms) {
    const fresh = rooms.filter((r) => !this.rooms.has(r));
    for (const r of rooms) this.rooms.add(r);
    if (!fresh.length || this.state !== "open") return;
    try {
      await this.request("subscribe", { rooms: fresh });
    } catch (e) {
      for (const r of fresh) this.rooms.delete(r);
      throw e;
    }
  }

  async unsubscribe(rooms) {
    const had = rooms.filter((r) => this.rooms.delete(r));
    if (had.length && this.state === "open") await this.request("unsubscribe", { rooms: had }).catch(() => {});
  }

  async rejoin() {
    if (!this.rooms.size) return;
    const rooms = [...this.rooms];
    try {
      await this.request("subscribe", { rooms });
    } catch (e) {
      // A refused room (GZ4003) is dropped; the rest are joined one by one.
      if (e.code === "GZ4003" && rooms.length > 1) {
        for (const r of rooms) await this.request("subscribe", { rooms: [r] }).catch(() => this.rooms.delete(r));
      } else if (e.code === "GZ4003") {
        this.rooms.delete(rooms[0]);
      }
    }
  }
}
