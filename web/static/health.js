// The supervision tree as `orderdesk actors` shows it, from GET /admin/actors, refreshing.

import { api } from "./api.js";
import { istTime } from "./ist.js";

const REFRESH_MS = 2000;

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Number(seconds);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// Accept both shapes: {actors: [...]} and the older {children: {...} | [...]}.
function rows(body) {
  const list = body.actors ?? body.children ?? [];
  const entries = Array.isArray(list) ? list
    : Object.entries(list).map(([name, v]) => ({ name, ...v }));
  return entries.map((a) => ({
    name: a.name ?? "",
    kind: a.kind ?? "",
    state: a.state ?? "",
    restarts: a.restarts ?? 0,
    upstream: a.upstream ?? "",
    subscribers: a.subscribers ?? "",
    last_event_age_s: a.last_event_age_s,
    degraded: Boolean(a.degraded),
    why: (a.reasons ?? []).map((r) => r.message ?? r.code).join("; "),
    last_error: errorText(a.last_error),
  }));
}

function errorText(error) {
  if (!error) return "";
  if (typeof error !== "object") return String(error);
  return `${error.type ?? "Error"}: ${error.message ?? ""}`;
}

function summaryText(summary) {
  if (typeof summary === "string") return summary;
  if (!summary || typeof summary !== "object") return "";
  const parts = [];
  for (const [key, value] of Object.entries(summary)) {
    if (key === "ok" || value === null || value === undefined) continue;
    if (Array.isArray(value)) {
      if (value.length) parts.push(`${key}: ${value.join(", ")}`);
    } else if (typeof value === "object") {
      parts.push(Object.entries(value).map(([k, v]) => `${v} ${k}`).join(", "));
    } else {
      parts.push(`${key} ${value}`);
    }
  }
  return parts.filter(Boolean).join(" · ");
}

export class HealthView {
  constructor(root) {
    this.root = root;
    this.tbody = root.querySelector("#actors tbody");
    this.summary = root.querySelector("#health-summary");
    this.updated = root.querySelector("#health-updated");
    this.timer = null;
    this.running = false;
    document.addEventListener("visibilitychange", () => {
      if (this.running && !document.hidden) this.refresh();
    });
  }

  start() {
    this.root.hidden = false;
    this.running = true;
    this.refresh();
  }

  stop() {
    this.running = false;
    this.root.hidden = true;
    clearTimeout(this.timer);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.running) return;
    try {
      this.render(await api("/admin/actors"));
    } catch (err) {
      this.summary.dataset.state = "down";
      this.summary.textContent = `unavailable: ${err.message}`;
    }
    if (this.running && !document.hidden) {
      this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
    }
  }

  render(body) {
    const ok = body.ok ?? body.summary?.ok ?? true;
    const text = summaryText(body.summary);
    this.summary.dataset.state = ok ? "ok" : "degraded";
    this.summary.textContent = `${ok ? "healthy" : "degraded"}${text ? ` — ${text}` : ""}`;
    this.updated.textContent = `updated ${istTime(new Date())}`;
    const fresh = rows(body).map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.name = a.name;
      tr.dataset.state = a.state;
      tr.dataset.degraded = String(a.degraded);
      const cells = [a.name, a.kind, a.state, a.restarts, a.upstream, a.subscribers,
        age(a.last_event_age_s), a.why, a.last_error];
      cells.forEach((value, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        if ([3, 5, 6].includes(i)) cell.className = "num";
        if (i === 2) cell.className = `state st-${String(value).toLowerCase()}`;
        cell.textContent = String(value ?? "");
        tr.append(cell);
      });
      return tr;
    });
    this.tbody.replaceChildren(...fresh);
  }
}
