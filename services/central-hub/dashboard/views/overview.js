// Overview: the cluster at a glance. Components (type, id, hub, capacity and load, health,
// last heartbeat; joins and losses as they happen), LLM endpoints (health, cooldown, load
// against slots, latency, models), charts over time, and an activity feed.

import { h, replace, setText, fmtAge, fmtInt, fmtDuration, FINAL_WF } from "../util.js";
import { LineChart } from "../charts.js";

const GONE_SHOWN_MS = 60000;

export function mount(app, container) {
  const store = app.store;
  const cards = {
    components: card("Components", "card-components"),
    workflows: card("Workflows running", "card-workflows"),
    rate: card("Tasks finished / s", "card-rate"),
    hub: card("Hub", "card-hub"),
  };
  const charts = h("div.charts");
  const compBody = h("tbody", { id: "components-body" });
  const compTable = h(
    "table.table#components",
    null,
    h("thead", null, h("tr", null, ["Type", "ID", "Hub", "Capacity", "Load", "In flight", "Health", "Last heartbeat", "Connected"].map((t) => h("th", { text: t })))),
    compBody,
  );
  const epBody = h("tbody", { id: "endpoints-body" });
  const epTable = h(
    "table.table#endpoints",
    null,
    h("thead", null, h("tr", null, ["Provider", "Endpoint", "Kind", "Health", "Cooldown", "Load / slots", "Latency", "Models", "Requests", "Errors"].map((t) => h("th", { text: t })))),
    epBody,
  );
  const epNote = h("p.muted#endpoints-note");
  const feed = h("ul.feed#activity");
  container.append(
    h("section.cards", null, Object.values(cards).map((c) => c.el)),
    h("section", null, h("h2", { text: "Over time" }), charts),
    h("section", null, h("h2", null, "Components ", h("span.muted.small#components-count")), h("div.table-wrap", null, compTable)),
    h("section", null, h("h2", { text: "LLM endpoints" }), epNote, h("div.table-wrap", null, epTable)),
    h("section", null, h("h2", { text: "Activity" }), feed),
  );
  const finished = new LineChart(charts, { title: "Tasks finished per second", lines: [{ name: "finished", cls: "c-ok" }] });
  const depth = new LineChart(charts, {
    title: "Queue depth (active workflows)",
    lines: [
      { name: "queued", cls: "c-queued" },
      { name: "running", cls: "c-running" },
    ],
  });
  const failures = new LineChart(charts, { title: "Failed tasks per second", lines: [{ name: "failed", cls: "c-bad" }] });

  function drawCharts() {
    const s = store.series;
    finished.draw([s.finished.points()]);
    depth.draw([s.queued.points(), s.running.points()]);
    failures.draw([s.failed.points()]);
  }

  function drawCards() {
    const comps = [...store.components.values()];
    const healthy = comps.filter((c) => c.health === "healthy").length;
    setText(cards.components.value, `${healthy} / ${comps.length}`);
    setText(cards.components.sub, healthy === comps.length ? "all healthy" : `${comps.length - healthy} unhealthy`);
    const running = [...store.workflows.values()].filter((w) => !FINAL_WF.has(w.status)).length;
    setText(cards.workflows.value, fmtInt(running));
    setText(cards.workflows.sub, `${fmtInt(store.workflows.size)} known`);
    const pts = store.series.finished.points();
    const rate = pts[pts.length - 1] || 0;
    setText(cards.rate.value, rate >= 10 ? fmtInt(Math.round(rate)) : rate.toFixed(1));
    setText(cards.rate.sub, `${fmtInt(store.series.finishedTotal)} since this page opened`);
    const hub = store.hub;
    setText(cards.hub.value, hub ? hub.hub_id : "–");
    setText(cards.hub.sub, hub ? `v${hub.version} · up ${fmtDuration(hub.uptime_seconds * 1000)} · ${hub.connections} connections` : "");
  }

  function drawComponents() {
    const now = Date.now();
    const rows = [];
    for (const c of store.components.values()) rows.push(componentRow(c, now));
    for (const [id, g] of store.gone) {
      if (now - g.at > GONE_SHOWN_MS) {
        store.gone.delete(id);
        continue;
      }
      const info = g.info || {};
      rows.push(
        h(
          "tr.component-row.gone",
          { dataset: { id, type: info.component_type || "" } },
          h("td", { text: info.component_type || "" }),
          h("td.mono", { text: id }),
          h("td", { text: info.hub_id || "" }),
          h("td", { text: "" }),
          h("td", { text: "" }),
          h("td", { text: "" }),
          h("td", null, h("span.pill.s-left", { text: `left: ${g.reason}` })),
          h("td", { text: fmtAge(info.last_heartbeat, now) }),
          h("td", { text: `left ${fmtAge(g.at, now)}` }),
        ),
      );
    }
    replace(compBody, rows.length ? rows : h("tr", null, h("td.muted", { colSpan: 9, text: "No components registered." })));
    setText(document.getElementById("components-count"), `${store.components.size} registered`);
  }

  function drawEndpoints() {
    const rows = [];
    for (const p of store.providers || []) {
      const eps = Array.isArray(p.endpoints) ? p.endpoints : [];
      if (!eps.length) {
        rows.push(h("tr", null, h("td.mono", { text: p.provider_id }), h("td.muted", { colSpan: 9, text: "no endpoints reported yet" })));
      }
      for (const e of eps) {
        const health = e.health || "unknown";
        rows.push(
          h(
            "tr.endpoint-row",
            { dataset: { provider: p.provider_id, endpoint: e.name || "" } },
            h("td.mono", { text: p.provider_id }),
            h("td", null, h("div", { text: e.name || "" }), h("div.muted.small.mono", { text: e.url || "" })),
            h("td", { text: e.kind || "" }),
            h("td", null, h(`span.pill.s-${health === "healthy" ? "healthy" : health === "cooldown" ? "retrying" : "unhealthy"}`, { text: health })),
            h("td", { text: e.cooldown_remaining_seconds > 0 ? `${e.cooldown_remaining_seconds.toFixed(1)} s` : "–" }),
            h("td", null, loadBar(e.in_flight || 0, e.max_concurrent || 0)),
            h("td", { text: typeof e.latency_ms === "number" ? `${Math.round(e.latency_ms)} ms` : "–" }),
            h("td.small", { text: (e.models || []).join(", ") || "–", title: e.loaded_models && e.loaded_models.length ? `loaded: ${e.loaded_models.join(", ")}` : "" }),
            h("td", { text: fmtInt(e.requests ?? 0) }),
            h("td", { text: fmtInt(e.errors ?? 0), title: e.last_error ? String(e.last_error.message || e.last_error) : "" }),
          ),
        );
      }
    }
    replace(epBody, rows.length ? rows : h("tr", null, h("td.muted", { colSpan: 10, text: "No LLM providers registered." })));
    setText(epNote, store.providersError ? `Could not read /providers: ${store.providersError.code} ${store.providersError.message}` : "");
  }

  function drawFeed() {
    replace(
      feed,
      store.activity.slice(0, 40).map((a) => h(`li.feed-${a.kind}`, null, h("span.muted.small", { text: new Date(a.ts).toLocaleTimeString() }), " ", a.text)),
    );
    if (!store.activity.length) feed.append(h("li.muted", { text: "Joins, losses and finished workflows appear here as they happen." }));
  }

  return {
    update(dirty) {
      const all = dirty.has("all");
      if (all || dirty.has("components") || dirty.has("tick")) drawComponents();
      if (all || dirty.has("providers")) drawEndpoints();
      if (all || dirty.has("activity")) drawFeed();
      if (all || dirty.has("tick") || dirty.has("series")) {
        drawCharts();
        drawCards();
      } else if (dirty.has("components") || dirty.has("workflows") || dirty.has("hub")) drawCards();
    },
  };
}

function card(title, id) {
  const value = h("div.card-value");
  const sub = h("div.card-sub.muted");
  return { el: h("div.card", { id }, h("div.card-title", { text: title }), value, sub), value, sub };
}

export function loadBar(load, capacity) {
  const pct = capacity > 0 ? Math.min(100, (100 * load) / capacity) : load > 0 ? 100 : 0;
  const fill = h(`div.bar-fill${pct >= 100 ? ".full" : ""}`);
  fill.style.width = `${pct}%`;
  return h("div.loadbar", { title: `${load} of ${capacity}` }, h("div.bar", null, fill), h("span.small", { text: `${fmtInt(load)} / ${fmtInt(capacity)}` }));
}

function componentRow(c, now) {
  const load = Math.max(c.load || 0, 0);
  return h(
    `tr.component-row.h-${c.health}`,
    { dataset: { id: c.component_id, type: c.component_type } },
    h("td", { text: c.component_type }),
    h("td.mono", { text: c.component_id, title: (c.capabilities || []).join(", ") }),
    h("td", { text: c.hub_id || "" }),
    h("td", { text: fmtInt(c.capacity) }),
    h("td", null, c.capacity > 0 ? loadBar(load, c.capacity) : h("span.muted", { text: fmtInt(load) })),
    h("td", { text: fmtInt(c.in_flight) }),
    h("td", null, h(`span.pill.s-${c.health}`, { text: c.health })),
    h("td", { text: fmtAge(c.last_heartbeat, now), title: c.last_heartbeat ? new Date(c.last_heartbeat).toISOString() : "" }),
    h("td", { text: fmtAge(c.connected_at, now) }),
  );
}
